//! The integrity page (administrators and compliance staff): the log's
//! size and head, the latest signed checkpoint the gateway wrote, and a
//! verification of the whole log (chain and Merkle tree) on request.

use std::path::Path;
use std::sync::Arc;

use audit_db::accounts::Role;
use axum::extract::State;
use axum::Form;
use maud::{html, Markup};

use super::login::Token;
use super::{layout, when};
use crate::error::WebError;
use crate::visit::Viewer;
use crate::App;

/// Who may see it.
const READERS: [Role; 2] = [Role::Admin, Role::Compliance];

/// The highest-numbered `SIZE.checkpoint` in `dir`: its size and text.
fn latest_checkpoint(dir: &Path) -> Option<(u64, String)> {
    let latest = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size: u64 = name.strip_suffix(".checkpoint")?.parse().ok()?;
            Some((size, e.path()))
        })
        .max_by_key(|(size, _)| *size)?;
    Some((latest.0, std::fs::read_to_string(latest.1).ok()?))
}

async fn page(app: &App, viewer: &Viewer, verified: Option<Markup>) -> Result<Markup, WebError> {
    if !READERS.contains(&viewer.role) {
        return Err(WebError::Forbidden("see the log's integrity"));
    }
    let head = app.log.store().head().await?;
    let checkpoint = app
        .config
        .checkpoints
        .as_deref()
        .and_then(latest_checkpoint);
    let body = html! {
        h2 { "Integrity" }
        dl.facts id="head" {
            dt { "Events" } dd id="size" { (head.seq) }
            dt { "Head hash" } dd.mono { (head.hash) }
        }
        h3 { "Latest checkpoint" }
        @match &checkpoint {
            Some((size, text)) => {
                p { "Signed by the log's key over its first " (size) " events "
                    @if *size < head.seq as u64 { "(" (head.seq as u64 - size) " appended since)" } }
                pre.mono id="checkpoint" { (text) }
            }
            None => p.empty { "No checkpoint yet: the gateway writes one at start, at stop and every --checkpoint-every." }
        }
        h3 { "Verification" }
        @if let Some(v) = verified { (v) }
        form method="post" action="/integrity/verify" {
            input type="hidden" name="csrf" value=(viewer.csrf);
            button type="submit" id="verify" { "Verify the whole log now" }
        }
    };
    Ok(layout("Integrity", Some(viewer), body))
}

/// `GET /integrity`.
pub(crate) async fn show(State(app): State<Arc<App>>, viewer: Viewer) -> Result<Markup, WebError> {
    page(&app, &viewer, None).await
}

/// `POST /integrity/verify`: checks every event's link and hash and the
/// Merkle tree, as `vigil audit verify` does.
pub(crate) async fn verify(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Form(token): Form<Token>,
) -> Result<Markup, WebError> {
    viewer.check_csrf(token.csrf.as_deref())?;
    if !READERS.contains(&viewer.role) {
        return Err(WebError::Forbidden("see the log's integrity"));
    }
    let started = std::time::Instant::now();
    let report = app.log.verify(None).await?;
    let took = started.elapsed().as_secs_f64();
    let now = audit_db::time_us::now();
    let verdict = html! {
        @match &report.outcome {
            Ok(()) => p.message.info id="verdict" {
                span.badge.ok { "intact" } " " (report.events) " events checked ("
                (report.erased) " erased bodies, " (report.archived) " archived) in "
                (format!("{took:.1}")) " s, at " (when(now)) " UTC."
            },
            Err(broken) => p.message.bad id="verdict" {
                span.badge.bad { "broken" } " " (broken.to_string())
            },
        }
    };
    page(&app, &viewer, Some(verdict)).await
}
