//! Legal holds (administrators and compliance staff, the one change
//! compliance may make): what is held, by whom and why, placed and
//! released through `retention::admin` as `vigil admin hold` does, each
//! audited under the person's own role.

use std::sync::Arc;

use audit_db::accounts::Role;
use audit_db::archive::{Archive, HoldScope};
use audit_db::Source;
use axum::extract::State;
use axum::http::StatusCode;
use maud::{html, Markup};
use retention::admin::{describe, RetentionAdmin};

use super::admin::{self, csrf, outcome, Fields, Posted, Said};
use super::sessions::day_start;
use super::when;
use crate::error::WebError;
use crate::visit::Viewer;
use crate::App;

fn allowed(viewer: &Viewer) -> Result<(), WebError> {
    if matches!(viewer.role, Role::Admin | Role::Compliance) {
        Ok(())
    } else {
        Err(WebError::Forbidden("place or release legal holds"))
    }
}

/// `GET /admin/holds`.
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    viewer: Viewer,
) -> Result<(StatusCode, Markup), WebError> {
    allowed(&viewer)?;
    render(&app, &viewer, None).await
}

async fn render(
    app: &App,
    viewer: &Viewer,
    said: Option<Said>,
) -> Result<(StatusCode, Markup), WebError> {
    let mut holds = Archive::new(app.log.store().clone()).holds().await?;
    // In force first, newest first within each.
    holds.sort_by_key(|h| (h.released.is_some(), std::cmp::Reverse(h.id)));
    let body = html! {
        h2 { "Legal holds" }
        p { "What a hold covers is kept past every retention period, and cannot be erased, until the hold is released." }
        table id="holds" {
            thead { tr { th { "#" } th { "Covers" } th { "Placed" } th { "Reason" } th { "State" } } }
            tbody { @for h in &holds { tr data-hold=(h.id) {
                td.num { (h.id) }
                td { (describe(&h.scope)) }
                td { (when(h.created_at_us)) " by " (h.created_by) }
                td { (h.reason) }
                td { @match &h.released {
                    None => {
                        span.badge.ok { "in force" }
                        form.inline method="post" action="/admin/holds" {
                            (csrf(viewer)) input type="hidden" name="id" value=(h.id);
                            input type="text" name="reason" placeholder="Why it is released" required;
                            button type="submit" name="action" value="release" { "Release" }
                        }
                    },
                    Some(r) => { span.badge { "released" } " " (when(r.at_us)) " by " (r.by) ": " (r.reason) },
                } }
            } } }
        }
        @if holds.is_empty() { p.empty { "No hold has been placed." } }
        h3 { "Place a hold" }
        form.group method="post" action="/admin/holds" id="place-hold" {
            (csrf(viewer)) input type="hidden" name="action" value="place";
            p { "On one of:" }
            label { "A session (its id)" input type="text" name="session" id="h-session"; }
            label { "A technician's sessions and actions (email)" input type="text" name="technician" id="h-technician"; }
            label { "Everything from" input type="date" name="since"; }
            label { "until (inclusive)" input type="date" name="until"; }
            label { "Reason (case or matter)" input type="text" name="reason" id="h-reason" required; }
            button type="submit" id="h-place" { "Place the hold" }
        }
    };
    Ok(admin::page(
        "Legal holds",
        "/admin/holds",
        viewer,
        said,
        body,
    ))
}

/// What the place form asks to hold.
fn scope(f: &Fields) -> Result<HoldScope, String> {
    let period = (f.some("since"), f.some("until"));
    match (f.some("session"), f.some("technician"), period) {
        (Some(id), None, (None, None)) => id
            .parse()
            .map(HoldScope::Session)
            .map_err(|_| format!("{id:?} is not a session id")),
        (None, Some(email), (None, None)) => Ok(HoldScope::Technician(email.to_lowercase())),
        (None, None, (Some(since), Some(until))) => {
            let day = |text: &str, plus, name| {
                day_start(text, plus, name)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{name} is missing"))
            };
            Ok(HoldScope::Period {
                since_us: day(since, 0, "from")?,
                until_us: day(until, 1, "until")?,
            })
        }
        _ => Err(
            "a hold covers one of: a session, a technician, or a period (from and until)".into(),
        ),
    }
}

/// `POST /admin/holds`: place or release.
pub(crate) async fn change(
    State(app): State<Arc<App>>,
    Posted { viewer, fields: f }: Posted,
) -> Result<(StatusCode, Markup), WebError> {
    allowed(&viewer)?;
    let admin = RetentionAdmin::with_actor(&app.log, viewer.actor(), Source::web(&app.config.host));
    let said = match f.get("action") {
        "place" => match scope(&f) {
            Err(refused) => Said::Refused(refused),
            Ok(scope) => outcome(
                admin
                    .add_hold(scope, f.get("reason"))
                    .await
                    .map(|h| format!("legal hold {} placed on {}", h.id, describe(&h.scope))),
            )?,
        },
        "release" => match f.number::<i64>("id", "Hold") {
            Err(refused) => Said::Refused(refused),
            Ok(id) => outcome(
                admin
                    .release_hold(id, f.get("reason"))
                    .await
                    .map(|()| format!("legal hold {id} released")),
            )?,
        },
        other => return Err(WebError::BadRequest(format!("no action {other:?}"))),
    };
    render(&app, &viewer, Some(said)).await
}
