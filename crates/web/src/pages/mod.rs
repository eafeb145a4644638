//! The portal's pages and routes, the layout they share, and the headers
//! every answer carries (a strict Content-Security-Policy: scripts and
//! styles only from the portal's own files, no inline script).

mod accounts;
mod admin;
mod holds;
mod integrity;
mod login;
mod policy;
mod reports;
mod session;
mod sessions;
mod webhooks;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Serialize;

pub(crate) use session::load as load_session;

use audit_db::accounts::Role;

use crate::visit::Viewer;
use crate::{assets, player, App};

/// The longest request target served; longer ones are refused (414) before
/// any handler reads them.
const MAX_URI: usize = 4096;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Every route of the portal.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/sessions") }))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(session::show))
        .route("/events/{seq}", get(session::event))
        .route("/sessions/{id}/recordings/{recording}", get(player::page))
        .route(
            "/sessions/{id}/recordings/{recording}/video.mp4",
            get(player::download),
        )
        .route(
            "/api/sessions/{id}/recordings/{recording}/info",
            get(player::info),
        )
        .route(
            "/api/sessions/{id}/recordings/{recording}/stream",
            get(player::stream),
        )
        .route("/reports", get(reports::form))
        .route("/reports/run", get(reports::run))
        .route("/integrity", get(integrity::show))
        .route("/integrity/verify", post(integrity::verify))
        .route("/admin", get(|| async { Redirect::to("/admin/accounts") }))
        .route("/admin/accounts", get(accounts::show))
        .route("/admin/accounts/user", post(accounts::user))
        .route("/admin/accounts/group", post(accounts::group))
        .route("/admin/policy", get(policy::show))
        .route("/admin/policy/access", post(policy::access))
        .route("/admin/policy/retention", post(policy::retention))
        .route("/admin/webhooks", get(webhooks::show))
        .route("/admin/webhooks/endpoint", post(webhooks::endpoint))
        .route("/admin/webhooks/replay", post(webhooks::replay))
        .route("/admin/holds", get(holds::show).post(holds::change))
        .route("/assets/{name}", get(assets::asset))
        .with_state(app)
        .layer(middleware::from_fn(guard))
}

/// Refuses over-long targets and adds the security headers to every answer.
async fn guard(request: Request, next: Next) -> Response {
    let long = request
        .uri()
        .path_and_query()
        .is_some_and(|p| p.as_str().len() > MAX_URI);
    let mut response = if long {
        (
            StatusCode::URI_TOO_LONG,
            error_page(
                StatusCode::URI_TOO_LONG,
                &format!("the address is longer than {MAX_URI} characters"),
            ),
        )
            .into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not no-referrer: with it, browsers send `Origin: null` on form
        // posts, which the login's origin check must refuse.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    // What a page shows is for the person who asked, and only now.
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The frame of every page: the bar with the sections and who is logged in.
pub(crate) fn layout(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Vigil" }
                link rel="stylesheet" href="/assets/portal.css";
                link rel="icon" href="/assets/favicon.svg";
                script src="/assets/portal.js" defer {}
            }
            body {
                header.top {
                    h1 { img src="/assets/favicon.svg" alt=""; "Vigil" }
                    @if let Some(v) = viewer {
                        nav {
                            a href="/sessions" { "Sessions" }
                            @if v.sees_all() {
                                a href="/reports" { "Reports" }
                                a href="/integrity" { "Integrity" }
                            }
                            @match v.role {
                                Role::Admin => a href="/admin/accounts" id="nav-admin" { "Administration" },
                                Role::Compliance => a href="/admin/holds" id="nav-holds" { "Legal holds" },
                                Role::Technician => {},
                            }
                        }
                        span.who { (v.email) " · " (v.role.as_str()) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button.plain type="submit" id="logout" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page that says what went wrong.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Markup {
    layout(
        status.canonical_reason().unwrap_or("Error"),
        None,
        html! {
            h2 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.message.bad id="error" { (message) }
            p { a href="/sessions" { "Back to the sessions" } }
        },
    )
}

/// A time for people: RFC 3339 in UTC, to the second.
pub(crate) fn when(us: i64) -> String {
    let text = audit_db::time_us::format(us);
    // 2026-12-02T11:48:54.123456Z -> 2026-12-02 11:48:54
    match text.get(..19) {
        Some(head) if text.len() > 19 => head.replacen('T', " ", 1),
        _ => text,
    }
}

/// A duration for people: 1 h 02 min 03 s.
pub(crate) fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s:02} s"),
        (h, m, s) => format!("{h} h {m:02} min {s:02} s"),
    }
}

/// The stored word of an enum that serialises as one (a permission, a reason).
pub(crate) fn word(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_plainly() {
        assert_eq!(when(0), "1970-01-01 00:00:00");
        assert_eq!(duration(59_999), "59 s");
        assert_eq!(duration(62_000), "1 min 02 s");
        assert_eq!(duration(3_723_000), "1 h 02 min 03 s");
    }
}
