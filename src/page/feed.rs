//! The page's event stream: the console's state, its lines, and the
//! screen's and pointer's changes, as server-sent events. A slow page skips
//! to the latest state and picture instead of falling behind.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use session_core::session::view::Screen;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::{Link, Shared};

/// `GET events`.
pub(super) async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut feed = Feed {
        lines: shared.lines.subscribe(),
        link: shared.link.clone(),
        session: None,
        shown: Shown::default(),
        pending: VecDeque::new(),
        shared,
    };
    feed.relink();
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

struct Feed {
    shared: Arc<Shared>,
    lines: broadcast::Receiver<String>,
    link: watch::Receiver<Option<Link>>,
    /// The session's own receivers, while there is one (`None` once a
    /// sender is gone, so a closed channel is not polled again).
    session: Option<Watched>,
    shown: Shown,
    pending: VecDeque<Event>,
}

struct Watched {
    status: Option<watch::Receiver<session_core::session::console::Status>>,
    screen: Option<watch::Receiver<Screen>>,
}

/// What the page was last told of the screen.
#[derive(Default, PartialEq)]
struct Shown {
    updates: u64,
    pointer: Option<Pointer>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
struct Pointer {
    x: i32,
    y: i32,
    visible: bool,
    /// The shape's serial (fetch `cursor.png` when it changes), 0 before any.
    serial: u64,
    hot_x: u16,
    hot_y: u16,
}

impl Feed {
    /// Takes the session now linked (or none), and tells the page all of it.
    fn relink(&mut self) {
        let link = self.link.borrow_and_update().clone();
        self.session = link.as_ref().map(|l| Watched {
            status: Some(l.status.clone()),
            screen: Some(l.screen.clone()),
        });
        self.shown = Shown::default();
        self.push_state(link.as_ref());
        if let Some(l) = &link {
            let screen = l.screen.borrow().clone();
            self.push_screen(&screen);
        }
    }

    fn push_state(&mut self, link: Option<&Link>) {
        let state = self.shared.state(link);
        if let Ok(event) = Event::default().event("state").json_data(&state) {
            self.pending.push_back(event);
        }
    }

    fn push_screen(&mut self, screen: &Screen) {
        if let Some(frame) = screen
            .frame
            .as_ref()
            .filter(|_| screen.updates != self.shown.updates)
        {
            self.shown.updates = screen.updates;
            let data = serde_json::json!({
                "updates": screen.updates,
                "width": frame.width,
                "height": frame.height,
            });
            if let Ok(event) = Event::default().event("screen").json_data(data) {
                self.pending.push_back(event);
            }
        }
        let pointer = screen.cursor.as_ref().map(|c| {
            let shape = c.shape.as_ref();
            Pointer {
                x: c.x,
                y: c.y,
                visible: c.visible,
                serial: shape.map_or(0, |s| s.serial),
                hot_x: shape.map_or(0, |s| s.hot_x),
                hot_y: shape.map_or(0, |s| s.hot_y),
            }
        });
        if pointer.is_some() && pointer != self.shown.pointer {
            if let Ok(event) = Event::default().event("pointer").json_data(&pointer) {
                self.pending.push_back(event);
            }
            self.shown.pointer = pointer;
        }
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let (status, screen) = match &mut self.session {
                Some(w) => (w.status.as_mut(), w.screen.as_mut()),
                None => (None, None),
            };
            let event = tokio::select! {
                linked = self.link.changed() => Changed::Link(linked.is_ok()),
                line = self.lines.recv() => Changed::Line(line),
                alive = changed(status) => Changed::Status(alive),
                alive = changed(screen) => Changed::Screen(alive),
            };
            match event {
                Changed::Link(alive) => {
                    // The console is gone: so is the page's session.
                    if !alive {
                        return None;
                    }
                    self.relink();
                }
                Changed::Line(line) => match line {
                    Ok(json) => self
                        .pending
                        .push_back(Event::default().event("line").data(json)),
                    Err(RecvError::Lagged(skipped)) => {
                        let message =
                            format!("{skipped} console lines were skipped: the page fell behind");
                        let note = serde_json::json!({
                            "text": format!("warning: {message}"),
                            "line": { "event": "warning", "message": message },
                        });
                        if let Ok(event) = Event::default().event("line").json_data(note) {
                            self.pending.push_back(event);
                        }
                    }
                    Err(RecvError::Closed) => return None,
                },
                Changed::Status(true) => {
                    let link = self.link.borrow().clone();
                    self.push_state(link.as_ref());
                }
                Changed::Screen(true) => {
                    let now = self
                        .session
                        .as_mut()
                        .and_then(|s| s.screen.as_mut())
                        .map(|r| r.borrow_and_update().clone());
                    if let Some(screen) = now {
                        self.push_screen(&screen);
                    }
                }
                Changed::Status(false) => {
                    if let Some(s) = &mut self.session {
                        s.status = None;
                    }
                }
                Changed::Screen(false) => {
                    if let Some(s) = &mut self.session {
                        s.screen = None;
                    }
                }
            }
        }
    }
}

/// What woke the feed.
enum Changed {
    Link(bool),
    Line(Result<String, RecvError>),
    Status(bool),
    Screen(bool),
}

/// Waits for `receiver` to change: true when it did, false once its sender
/// is gone; never returns without a receiver.
async fn changed<T>(receiver: Option<&mut watch::Receiver<T>>) -> bool {
    match receiver {
        Some(r) => r.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}
