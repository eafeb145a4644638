//! The technician's window on the end user's screen: a page served on
//! 127.0.0.1, under a random path token, that shows the live screen (the
//! pointer drawn in) and sends mouse and keyboard input back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use recorder::input::InputEvent;
use session_core::session::console::InputSender;
use session_core::session::view::Screen;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// How long a request for the next screen waits before answering "no change".
const LONG_POLL: Duration = Duration::from_secs(10);
/// Input events taken per request, at most.
const MAX_EVENTS: usize = 256;

/// A running viewer; it stops when dropped.
pub struct Viewer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared<S> {
    screen: watch::Receiver<Screen>,
    input: InputSender<S>,
}

#[derive(serde::Deserialize)]
struct After {
    after: Option<i64>,
}

/// Serves the viewer on 127.0.0.1:`port` (0: any free port).
pub async fn serve<S>(
    port: u16,
    screen: watch::Receiver<Screen>,
    input: InputSender<S>,
) -> Result<Viewer>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).context("reading the OS random source")?;
    let token = hex::encode(token);
    let shared = Arc::new(Shared { screen, input });
    let app = Router::new()
        .route(&format!("/{token}/"), get(page))
        .route(&format!("/{token}/screen.png"), get(screen_png::<S>))
        .route(&format!("/{token}/input"), post(input_events::<S>))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} for the viewer"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the viewer stopped: {e}");
        }
    });
    Ok(Viewer {
        url: format!("http://{addr}/{token}/"),
        task,
    })
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// The screen once it has more than `after` updates (or after the long poll, 204).
async fn screen_png<S>(State(shared): State<Arc<Shared<S>>>, Query(q): Query<After>) -> Response
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let after = q.after.unwrap_or(-1);
    let snapshot = match newer_screen(shared.screen.clone(), after).await {
        Ok(Some(s)) => s,
        Ok(None) => return StatusCode::NO_CONTENT.into_response(),
        Err(()) => return StatusCode::GONE.into_response(),
    };
    let Some(frame) = snapshot.frame else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let png = tokio::task::spawn_blocking(move || {
        let mut frame = (*frame).clone();
        if let Some(c) = snapshot.cursor.as_ref().filter(|c| c.visible) {
            if let Some(shape) = &c.shape {
                shape.draw(&mut frame, c.x, c.y);
            }
        }
        let mut out = Vec::new();
        frame.write_png(&mut out).map(|_| out)
    })
    .await;
    match png {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "image/png".to_owned()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (
                    header::HeaderName::from_static("x-updates"),
                    snapshot.updates.to_string(),
                ),
            ],
            Bytes::from(bytes),
        )
            .into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The screen once it has more than `after` updates; `None` after the long
/// poll; an error once the session is gone.
async fn newer_screen(
    mut screen: watch::Receiver<Screen>,
    after: i64,
) -> Result<Option<Screen>, ()> {
    let wanted = |s: &Screen| s.frame.is_some() && s.updates as i64 > after;
    match tokio::time::timeout(LONG_POLL, screen.wait_for(wanted)).await {
        Ok(Ok(s)) => Ok(Some(s.clone())),
        Ok(Err(_)) => Err(()),
        Err(_) => Ok(None),
    }
}

/// Mouse and keyboard from the page, passed on in order (the applet drops
/// them unless the end user granted control).
async fn input_events<S>(
    State(shared): State<Arc<Shared<S>>>,
    Json(events): Json<Vec<InputEvent>>,
) -> StatusCode
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    if events.len() > MAX_EVENTS || events.iter().any(|e| e.check().is_err()) {
        return StatusCode::BAD_REQUEST;
    }
    match shared.input.send(events).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::GONE,
    }
}
