//! The technician's page: a console in the browser, served by `vigil
//! console` on 127.0.0.1 under a random path token, from its own files only.
//! It shows the live screen (the pointer drawn over it apart), the session
//! and what is on, chat, files and every line the console prints; its
//! buttons, chat and uploads become console commands, run by the same loop
//! as typed ones, through the same consent and audit path.
//!
//! One event stream (`events`, server-sent events) carries everything that
//! changes: `state` (the session and what is on), `line` (each console
//! line, as `--json` prints it), `screen` (a new picture: fetch
//! `screen.png`) and `pointer` (where the pointer is, and its shape's serial:
//! fetch `cursor.png`).

mod feed;
mod files;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use recorder::input::InputEvent;
use session_core::session::console::{InputSender, Status};
use session_core::session::view::Screen;
use tokio::sync::{broadcast, mpsc, watch};
use uuid::Uuid;

use crate::console::Inner;

/// Input events taken per request, at most.
const MAX_EVENTS: usize = 256;
/// Console lines kept for a page that reads slowly; older ones are skipped.
const LINES_KEPT: usize = 256;

/// The session the console works on, as its page sees it.
#[derive(Clone)]
pub struct Link {
    /// The session.
    pub guid: Uuid,
    /// The end user's address, as the gateway saw it.
    pub address: Option<IpAddr>,
    /// The verification code both sides show.
    pub sas: String,
    /// What is on, and what the end user granted.
    pub status: watch::Receiver<Status>,
    /// The end user's screen.
    pub screen: watch::Receiver<Screen>,
    /// Where mouse and keyboard go.
    pub input: InputSender<Inner>,
}

/// What the page asks the console to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A line, as typed in the terminal (`/view`, `/record on`...).
    Line(String),
    /// A chat line, sent as it is even if it starts with `/`.
    Chat(String),
}

/// The console's side of its page; the server stops when this is dropped.
pub struct Page {
    /// The page's address, token included.
    pub url: String,
    link: watch::Sender<Option<Link>>,
    lines: broadcast::Sender<String>,
    downloads: Arc<Mutex<Vec<PathBuf>>>,
    task: tokio::task::JoinHandle<()>,
    /// Files uploaded from the browser, kept until the console exits.
    _uploads: tempfile::TempDir,
}

impl Drop for Page {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Page {
    /// Shows `link` as the session worked on (`None`: none any more).
    pub fn attach(&self, link: Option<Link>) {
        self.link.send_replace(link);
    }

    /// Where the console's lines go to reach the page.
    pub fn lines(&self) -> broadcast::Sender<String> {
        self.lines.clone()
    }

    /// Offers a file fetched from the end user for download from the page.
    pub fn downloaded(&self, path: PathBuf) {
        self.downloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path);
    }
}

/// Everything the handlers share.
struct Shared {
    technician: Technician,
    link: watch::Receiver<Option<Link>>,
    lines: broadcast::Sender<String>,
    requests: mpsc::Sender<Request>,
    downloads: Arc<Mutex<Vec<PathBuf>>>,
    uploads: PathBuf,
    /// The last picture encoded, by screen version: tabs and reloads share it.
    png: Mutex<Option<(u64, Bytes)>>,
}

/// Who is logged in, as the page shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Technician {
    /// Their email.
    pub email: String,
    /// Their group.
    pub group: String,
}

/// Serves the page on 127.0.0.1:`port` (0: any free port). What the page
/// asks for arrives on the receiver.
pub async fn serve(port: u16, technician: Technician) -> Result<(Page, mpsc::Receiver<Request>)> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).context("reading the OS random source")?;
    let token = hex::encode(token);
    let uploads = tempfile::Builder::new()
        .prefix("vigil-uploads-")
        .tempdir()
        .context("making a directory for files uploaded from the page")?;
    let (link_tx, link) = watch::channel(None);
    let (lines, _) = broadcast::channel(LINES_KEPT);
    let (requests_tx, requests) = mpsc::channel(64);
    let downloads = Arc::default();
    let shared = Arc::new(Shared {
        technician,
        link,
        lines: lines.clone(),
        requests: requests_tx,
        downloads: Arc::clone(&downloads),
        uploads: uploads.path().to_owned(),
        png: Mutex::new(None),
    });
    let at = |path: &str| format!("/{token}/{path}");
    let app = Router::new()
        .route(&at(""), get(page))
        .route(&at("favicon.svg"), get(favicon))
        .route(&at("state"), get(state))
        .route(&at("events"), get(feed::events))
        .route(&at("screen.png"), get(screen_png))
        .route(&at("cursor.png"), get(cursor_png))
        .route(&at("input"), post(input_events))
        .route(&at("command"), post(command))
        .route(&at("upload"), post(files::upload))
        .route(&at("files/{name}"), get(files::download))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} for the console page"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the console page stopped: {e}");
        }
    });
    let page = Page {
        url: format!("http://{addr}/{token}/"),
        link: link_tx,
        lines,
        downloads,
        task,
        _uploads: uploads,
    };
    Ok((page, requests))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn favicon() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("favicon.svg"),
    )
}

/// The page's view of the console: who is logged in, and the session.
#[derive(Debug, serde::Serialize)]
struct PageState<'a> {
    technician: &'a Technician,
    session: Option<SessionState>,
}

#[derive(Debug, serde::Serialize)]
struct SessionState {
    guid: Uuid,
    address: Option<IpAddr>,
    sas: String,
    #[serde(flatten)]
    status: Status,
}

impl Shared {
    fn state(&self, link: Option<&Link>) -> PageState<'_> {
        PageState {
            technician: &self.technician,
            session: link.map(|l| SessionState {
                guid: l.guid,
                address: l.address,
                sas: l.sas.clone(),
                status: l.status.borrow().clone(),
            }),
        }
    }
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let link = shared.link.borrow().clone();
    Json(shared.state(link.as_ref())).into_response()
}

/// The latest picture (without the pointer, which the page draws over it),
/// with its version; 204 before the first.
async fn screen_png(State(shared): State<Arc<Shared>>) -> Response {
    let Some(link) = shared.link.borrow().clone() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let screen = link.screen.borrow().clone();
    let Some(frame) = screen.frame else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let cached = shared
        .png
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .filter(|(v, _)| *v == screen.updates);
    let bytes = match cached {
        Some((_, bytes)) => bytes,
        None => {
            let encoded = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                frame.write_png(&mut out).map(|()| out)
            })
            .await;
            let Ok(Ok(bytes)) = encoded else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            let bytes = Bytes::from(bytes);
            *shared.png.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((screen.updates, bytes.clone()));
            bytes
        }
    };
    png_response(bytes, screen.updates)
}

/// The pointer's current shape, straight (not premultiplied) RGBA; 204 if none is known.
async fn cursor_png(State(shared): State<Arc<Shared>>) -> Response {
    let Some(link) = shared.link.borrow().clone() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let shape = link
        .screen
        .borrow()
        .cursor
        .as_ref()
        .and_then(|c| c.shape.clone());
    let Some(shape) = shape else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let mut out = Vec::new();
    match shape.write_png(&mut out) {
        Ok(()) => png_response(Bytes::from(out), shape.serial),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn png_response(bytes: Bytes, version: u64) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (
                header::HeaderName::from_static("x-version"),
                version.to_string(),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// Mouse and keyboard from the page, passed on in order (the applet drops
/// them unless the end user granted control).
async fn input_events(
    State(shared): State<Arc<Shared>>,
    Json(events): Json<Vec<InputEvent>>,
) -> (StatusCode, String) {
    if events.len() > MAX_EVENTS {
        return (
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_EVENTS} events a request"),
        );
    }
    if let Some(why) = events.iter().find_map(|e| e.check().err()) {
        return (StatusCode::BAD_REQUEST, why);
    }
    let Some(link) = shared.link.borrow().clone() else {
        return (StatusCode::CONFLICT, "no session is active".to_owned());
    };
    match link.input.send(events).await {
        Ok(()) => (StatusCode::NO_CONTENT, String::new()),
        Err(e) => (StatusCode::GONE, e.to_string()),
    }
}

/// What the page posts to `command`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Posted {
    /// A console line.
    Line(String),
    /// A chat line.
    Chat(String),
}

/// A console line or a chat line from the page, queued for the console;
/// what comes of it arrives as console lines.
async fn command(State(shared): State<Arc<Shared>>, Json(posted): Json<Posted>) -> StatusCode {
    let (request, text) = match posted {
        Posted::Line(line) => (Request::Line as fn(String) -> Request, line),
        Posted::Chat(text) => (Request::Chat as fn(String) -> Request, text),
    };
    if text.contains(['\n', '\r']) || text.trim().is_empty() {
        return StatusCode::BAD_REQUEST;
    }
    match shared.requests.send(request(text)).await {
        Ok(()) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::GONE,
    }
}
