//! Logging in and out: the form, the gateway's login rules (the same
//! throttling, lockout, allow-lists, expiry and audit as a console's
//! login), and the visit's cookie.

use std::sync::Arc;

use audit_db::event::LogoutReason;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use protocol::wire::ErrorCode;
use serde::Deserialize;

use super::layout;
use crate::error::WebError;
use crate::visit::{self, Viewer};
use crate::App;

/// `GET /login`'s query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Shown {
    /// The visit ended (logout, idle time).
    ended: Option<String>,
}

/// The login form's fields.
#[derive(Deserialize)]
pub(crate) struct Credentials {
    email: String,
    password: String,
    /// Set when the password must be changed at this login.
    #[serde(default)]
    new_password: String,
}

/// A form with only its CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct Token {
    pub(crate) csrf: Option<String>,
}

fn page(email: &str, message: Option<(&str, &str)>, new_password: bool) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            div.login {
                h2 { "Log in" }
                @if let Some((class, text)) = message {
                    p class=(format!("message {class}")) id="login-message" { (text) }
                }
                form method="post" action="/login" {
                    label { "Email" input type="email" name="email" id="email" value=(email) required autofocus; }
                    label { "Password" input type="password" name="password" id="password" required; }
                    @if new_password {
                        label { "New password" input type="password" name="new_password" id="new-password" required; }
                    }
                    button type="submit" id="login" { "Log in" }
                }
            }
        },
    )
}

/// `GET /login`.
pub(crate) async fn form(Query(shown): Query<Shown>) -> Markup {
    let message = shown
        .ended
        .map(|_| ("info", "You are logged out. Log in again to continue."));
    page("", message, false)
}

/// Whether a form post comes from the portal's own pages: a browser names
/// the page's origin; one that names another site is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin.strip_prefix("https://") == Some(host)
}

/// `POST /login`.
pub(crate) async fn submit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    connect: axum::extract::ConnectInfo<std::net::SocketAddr>,
    Form(c): Form<Credentials>,
) -> Response {
    if !same_origin(&headers) {
        return WebError::Csrf.into_response();
    }
    let ip = connect.0.ip();
    let new_password = (!c.new_password.is_empty()).then(|| c.new_password.clone());
    match app
        .gate
        .login(ip, &c.email, &c.password, new_password)
        .await
    {
        Ok((tech, _group)) => match app.visits.open(&tech.email, tech.role, ip) {
            Ok(cookie) => {
                tracing::info!("{} logged in to the portal from {ip}", tech.email);
                ([(header::SET_COOKIE, cookie)], Redirect::to("/sessions")).into_response()
            }
            Err(e) => e.into_response(),
        },
        Err(refusal) => {
            let status = match refusal.code {
                ErrorCode::BadCredentials | ErrorCode::PasswordExpired => StatusCode::UNAUTHORIZED,
                ErrorCode::AccountLocked => StatusCode::LOCKED,
                ErrorCode::AccountDisabled | ErrorCode::IpNotAllowed => StatusCode::FORBIDDEN,
                ErrorCode::PasswordRejected => StatusCode::BAD_REQUEST,
                ErrorCode::Throttled => StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let expired = refusal.code == ErrorCode::PasswordExpired
                || (refusal.code == ErrorCode::PasswordRejected && new_password_given(&c));
            let mut response = (
                status,
                page(&c.email, Some(("bad", &refusal.message)), expired),
            )
                .into_response();
            if let Some(wait) = refusal.retry_after {
                if let Ok(v) = wait.as_secs().max(1).to_string().parse() {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            response
        }
    }
}

fn new_password_given(c: &Credentials) -> bool {
    !c.new_password.is_empty()
}

/// `POST /logout`: ends the visit (its CSRF token required) and audits it.
pub(crate) async fn logout(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(token): Form<Token>,
) -> Result<Response, WebError> {
    viewer.check_csrf(token.csrf.as_deref())?;
    if let Some(cookie) = visit::cookie(&headers) {
        app.visits.close(cookie);
    }
    visit::logout(&app, &viewer, LogoutReason::Client).await;
    let clear = format!(
        "{}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        visit::COOKIE
    );
    Ok((
        [(header::SET_COOKIE, clear)],
        Redirect::to("/login?ended=1"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_from_another_site_is_not_same_origin() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8443".parse().unwrap());
        assert!(same_origin(&h), "no Origin: not a cross-site browser post");
        h.insert(header::ORIGIN, "https://127.0.0.1:8443".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h));
    }
}
