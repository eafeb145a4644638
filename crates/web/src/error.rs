//! What can go wrong serving a request, and how each answers: a page for
//! a browser, JSON for the player's requests, always with the right status.

use std::net::SocketAddr;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The portal could not start, or a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// Not logged in, or the web session ended (logout, idle time).
    #[error("you are not logged in, or your session ended; log in again")]
    LoggedOut,
    /// Not logged in, asked by the player's requests (answered 401 as JSON).
    #[error("you are not logged in, or your session ended; log in again")]
    Unauthenticated,
    /// A form without its CSRF token, or with another session's.
    #[error("the form's security token is missing or wrong: reload the page and try again")]
    Csrf,
    /// The account's role may not do this.
    #[error("your account may not {0}")]
    Forbidden(&'static str),
    /// No such thing, or none this account may see (the same answer for both).
    #[error("{0} not found")]
    NotFound(String),
    /// A parameter that cannot be what it claims to be.
    #[error("{0}")]
    BadRequest(String),
    /// A recording that is not what the log recorded.
    #[error("the recording is refused: {0}")]
    Altered(String),
    /// The audit log or another part failed.
    #[error("the portal could not complete the request: {0}")]
    Internal(String),
}

impl WebError {
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::LoggedOut | WebError::Unauthenticated => StatusCode::UNAUTHORIZED,
            WebError::Csrf | WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Altered(_) => StatusCode::CONFLICT,
            WebError::Listen { .. } | WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A failure inside, logged in full; the person learns what failed.
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("web request failed: {e}");
        WebError::Internal(e.to_string())
    }
}

impl From<audit_db::Error> for WebError {
    fn from(e: audit_db::Error) -> Self {
        WebError::internal(e)
    }
}

/// A failure as JSON (`{"error": ...}`), for the player's requests.
#[derive(Debug)]
pub(crate) struct ApiError(pub WebError);

impl From<WebError> for ApiError {
    fn from(e: WebError) -> Self {
        ApiError(e)
    }
}

impl From<audit_db::Error> for ApiError {
    fn from(e: audit_db::Error) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.0.to_string() });
        (self.0.status(), axum::Json(body)).into_response()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if matches!(self, WebError::LoggedOut) {
            // A page: back to the login form, which says why.
            return (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, "/login?ended=1")],
            )
                .into_response();
        }
        if matches!(self, WebError::Unauthenticated) {
            return ApiError(self).into_response();
        }
        let status = self.status();
        (status, crate::pages::error_page(status, &self.to_string())).into_response()
    }
}
