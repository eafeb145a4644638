//! One session: what is known of it, its recordings, the chat transcript,
//! permissions, files with both ends' digests, and its timeline of every
//! audit event, each linked to the raw event. Opening it is audited.

use std::sync::Arc;

use audit_db::{Filter, StoredEvent};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use maud::{html, Markup};
use reporter::session::SessionStory;
use uuid::Uuid;

use super::{duration, layout, when, word};
use crate::access;
use crate::error::WebError;
use crate::visit::Viewer;
use crate::App;

/// Events a session page lists at most (a session has tens to thousands).
const MAX_EVENTS: usize = 50_000;

/// A session's events and story, if `viewer` may see it. Another
/// technician's session is "not found", as a session that does not exist.
pub(crate) async fn load(
    app: &App,
    viewer: &Viewer,
    session: Uuid,
) -> Result<(SessionStory, Vec<StoredEvent>), WebError> {
    let mut events = std::pin::pin!(app.log.query(Filter {
        session: Some(session),
        ..Filter::default()
    }));
    let mut story = SessionStory::new(session);
    let mut kept = Vec::new();
    while let Some(e) = events.try_next().await? {
        story.add(&e);
        if kept.len() < MAX_EVENTS {
            kept.push(e);
        }
    }
    if kept.is_empty() || !viewer.may_see(story.technician.as_deref()) {
        return Err(WebError::NotFound(format!("session {session}")));
    }
    Ok((story, kept))
}

/// A payload shortened for the timeline.
fn summary(e: &StoredEvent) -> String {
    let Some(payload) = e.payload() else {
        return "(erased)".into();
    };
    const MAX: usize = 160;
    match payload.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &payload[..cut]),
        None => payload.to_owned(),
    }
}

/// `GET /sessions/{id}`.
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(session): Path<Uuid>,
) -> Result<Markup, WebError> {
    let (story, events) = load(&app, &viewer, session).await?;
    access::viewed(&app, &viewer, Some(session), "session", "").await?;
    // Where the CRM posts went: for those who see every session (the
    // endpoints' addresses are the organisation's, not a technician's).
    let deliveries = if viewer.sees_all() {
        Some(super::webhooks::of_session(&app, session).await?)
    } else {
        None
    };
    let body = html! {
        h2 { "Session " span.mono { (session) } }
        div.grid {
            dl.facts id="facts" {
                dt { "Technician" } dd { (story.technician.as_deref().unwrap_or("—")) }
                dt { "Group" } dd { (story.group.as_deref().unwrap_or("—")) }
                dt { "Gateway" } dd { (story.gateway.as_deref().unwrap_or("—")) }
                dt { "End user" } dd { (story.address.as_deref().unwrap_or("—"))
                    @if let Some(h) = &story.host { " · " (h) } }
                dt { "Created" } dd { (story.created_at_us.map(when).unwrap_or_default()) }
                dt { "Picked up" } dd { (story.picked_up_at_us.map(when).unwrap_or_default()) }
                @match &story.ended {
                    Some(end) => {
                        dt { "Ended" } dd { (when(end.at_us)) " · " (duration(end.duration_ms)) }
                        dt { "How" } dd id="end-reason" { (end.reason) }
                        dt { "Relayed" } dd { (end.bytes_to_applet + end.bytes_to_console) " bytes" }
                    }
                    None => { dt { "Ended" } dd { span.badge.warn { "not ended" } } }
                }
                dt { "Events" } dd { (story.events)
                    @if let Some((seq, hash)) = &story.last { " · last " a href=(format!("/events/{seq}")) { "#" (seq) } " " span.mono { (hash.to_string().get(..16).unwrap_or("")) "…" } } }
            }
            div {
                h3 { "Recordings" }
                @if story.recordings.is_empty() { p.empty { "No recording." } }
                ul id="recordings" {
                    @for r in &story.recordings {
                        li {
                            a href=(format!("/sessions/{session}/recordings/{}", r.recording)) { "▶ Play " (r.recording) }
                            " · " (r.size) " bytes · sha256 " span.mono { (r.sha256.get(..16).unwrap_or("")) "…" }
                        }
                    }
                }
                h3 { "Permissions" }
                @if story.requested.is_empty() && story.granted.is_empty() && story.denied.is_empty() {
                    p.empty { "None asked for." }
                }
                ul id="permissions" {
                    @for g in &story.granted { li { span.badge.ok { "granted" } " " (word(&g.permission)) " (" (word(&g.consent)) ") " (when(g.at_us)) } }
                    @for d in &story.denied { li { span.badge.bad { "denied" } " " (word(&d.permission)) " (" (word(&d.reason)) ") " (when(d.at_us)) } }
                }
            }
        }
        h3 { "Chat" }
        @if story.chat.is_empty() { p.empty { "No chat." } } @else {
            ul.chat id="chat" {
                @for line in &story.chat {
                    li {
                        span.who { (when(line.at_us)) " " (word(&line.from)) }
                        @match &line.text { Some(t) => { (t) }, None => { em { "(" (line.chars) " characters, text not kept)" } } }
                    }
                }
            }
        }
        h3 { "Files" }
        @if story.files.is_empty() { p.empty { "No file." } } @else {
            table id="files" {
                thead { tr { th { "Time" } th { "Name" } th { "Direction" } th { "Size" } th { "Sender SHA-256" } th { "Receiver SHA-256" } th { "Match" } } }
                tbody { @for f in &story.files { tr {
                    td { (when(f.at_us)) } td { (f.name) } td { (f.direction) } td.num { (f.size) }
                    td.mono { (f.sender.as_ref().map(|d| d.sha256.as_str()).unwrap_or("—")) }
                    td.mono { (f.receiver.as_ref().map(|d| d.sha256.as_str()).unwrap_or("—")) }
                    td { @if f.matched { span.badge.ok { "both ends agree" } } @else { span.badge.bad { "differ or one end missing" } } }
                } } }
            }
        }
        @if let Some(deliveries) = &deliveries {
            h3 { "Webhook deliveries" }
            (deliveries)
        }
        h3 { "Timeline" }
        table id="timeline" {
            thead { tr { th { "Seq" } th { "Time (UTC)" } th { "Event" } th { "Actor" } th { "Source" } th { "Details" } } }
            tbody { @for e in &events { tr data-kind=(e.kind) {
                td.num { a href=(format!("/events/{}", e.seq)) { (e.seq) } }
                td { (when(e.occurred_at_us)) }
                td { (e.kind) }
                td { (e.actor) }
                td { (e.source) }
                td.mono { (summary(e)) }
            } } }
        }
        @if events.len() >= MAX_EVENTS { p.message.info { "The first " (MAX_EVENTS) " events are listed." } }
    };
    Ok(layout("Session", Some(&viewer), body))
}

/// `GET /events/{seq}`: one event as JSON, as `vigil audit query --json`
/// prints it. Only events of a session the viewer may see, for a technician.
pub(crate) async fn event(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(seq): Path<i64>,
) -> Result<Response, WebError> {
    let missing = || WebError::NotFound(format!("event {seq}"));
    let e = app
        .log
        .store()
        .range_page(seq, seq, 1)
        .await?
        .pop()
        .ok_or_else(missing)?;
    if !viewer.sees_all() {
        let session = e.session.ok_or_else(missing)?;
        load(&app, &viewer, session).await.map_err(|_| missing())?;
    }
    access::viewed(&app, &viewer, e.session, "event", &seq.to_string()).await?;
    Ok(axum::Json(e.to_json()).into_response())
}
