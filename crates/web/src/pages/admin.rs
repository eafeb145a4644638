//! What the administration pages share: who may use them, the fields of
//! their forms, and how the outcome of a change is told (done, or refused
//! with the reason and nothing changed).
//!
//! Every change goes through the same library call as on the command line
//! (`gateway::admin`, `webhook::admin`, `retention::admin`), which checks
//! it and audits it as an `admin.change` naming the person and `web@HOST`.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};

use super::layout;
use crate::error::WebError;
use crate::visit::Viewer;
use crate::App;

/// The sections of the administration, for the tabs: path and title.
const SECTIONS: [(&str, &str); 4] = [
    ("/admin/accounts", "Technicians and groups"),
    ("/admin/policy", "Policy"),
    ("/admin/webhooks", "Webhooks"),
    ("/admin/holds", "Legal holds"),
];

/// The outcome of a change, told at the top of the page.
#[derive(Debug)]
pub(crate) enum Said {
    /// It was made.
    Done(String),
    /// It was refused for its input; nothing changed.
    Refused(String),
}

impl Said {
    /// The status the page answers with: 400 for refused input.
    fn status(&self) -> StatusCode {
        match self {
            Said::Done(_) => StatusCode::OK,
            Said::Refused(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error of a library's administration that may be the input's fault.
pub(crate) trait Refusable: std::fmt::Display {
    /// Whether the input is at fault (refused, nothing changed) rather
    /// than the system (an internal error).
    fn is_refusal(&self) -> bool;
}

/// Store errors that name the input: a duplicate, or a name that is not there.
fn store_refusal(e: &audit_db::Error) -> bool {
    matches!(
        e,
        audit_db::Error::Exists { .. } | audit_db::Error::NoSuch { .. }
    )
}

impl Refusable for gateway::admin::AdminError {
    fn is_refusal(&self) -> bool {
        use gateway::admin::AdminError as E;
        match self {
            E::Store(e) => store_refusal(e),
            E::Password(_) | E::BadNetwork(_) | E::BadEmail(_) | E::BadGroupName(_) => true,
            E::Policy(_) => true,
            E::Hash(_) | E::Unaudited(_) => false,
        }
    }
}

impl Refusable for webhook::admin::WebhookAdminError {
    fn is_refusal(&self) -> bool {
        use webhook::admin::WebhookAdminError as E;
        match self {
            E::Store(e) => store_refusal(e),
            E::Url(_) | E::Type(_) | E::NoGroup(_) | E::Ca(_) => true,
            E::Random(_) | E::Unaudited(_) => false,
        }
    }
}

impl Refusable for retention::admin::AdminError {
    fn is_refusal(&self) -> bool {
        self.is_bad_input()
    }
}

impl Refusable for retention::policy::PolicyError {
    fn is_refusal(&self) -> bool {
        !matches!(self, retention::policy::PolicyError::Store(_))
    }
}

/// What a change came to: done (with what to say), refused, or an internal error.
pub(crate) fn outcome<E: Refusable>(result: Result<String, E>) -> Result<Said, WebError> {
    match result {
        Ok(done) => Ok(Said::Done(done)),
        Err(e) if e.is_refusal() => Ok(Said::Refused(e.to_string())),
        Err(e) => Err(WebError::internal(e)),
    }
}

/// Refused unless the viewer is an administrator.
pub(crate) fn admin_only(viewer: &Viewer, doing: &'static str) -> Result<(), WebError> {
    if viewer.role == audit_db::accounts::Role::Admin {
        Ok(())
    } else {
        Err(WebError::Forbidden(doing))
    }
}

/// An administration page: its tabs (those the viewer may open), what the
/// last change came to, and its body; 400 when the change was refused.
pub(crate) fn page(
    title: &str,
    here: &str,
    viewer: &Viewer,
    said: Option<Said>,
    body: Markup,
) -> (StatusCode, Markup) {
    let status = said.as_ref().map_or(StatusCode::OK, Said::status);
    let is_admin = viewer.role == audit_db::accounts::Role::Admin;
    let markup = layout(
        title,
        Some(viewer),
        html! {
            nav.tabs {
                @for (path, name) in SECTIONS {
                    @if is_admin || path == "/admin/holds" {
                        a href=(path) class=[(path == here).then_some("here")] { (name) }
                    }
                }
            }
            @match &said {
                Some(Said::Done(text)) => p.message.info id="said" { (text) },
                Some(Said::Refused(text)) => p.message.bad id="said" { "Refused, nothing changed: " (text) },
                None => {},
            }
            (body)
        },
    );
    (status, markup)
}

/// The fields of a posted form, in order (a name may come more than once,
/// as checked boxes of one name do).
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// The value of `name` if given and not blank.
    pub fn some(&self, name: &str) -> Option<&str> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }

    /// `name` as a comma-separated list, blanks left out.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.trim())
    }

    /// Whether a box called `name` was checked.
    pub fn checked(&self, name: &str) -> bool {
        self.some(name).is_some()
    }

    /// `name` as a number, or the refusal saying which field is wrong.
    pub fn number<T: std::str::FromStr>(&self, name: &str, label: &str) -> Result<T, String> {
        self.get(name)
            .parse()
            .map_err(|_| format!("{label}: {:?} is not a whole number", self.get(name)))
    }

    /// `name` as a number, or `None` when left blank.
    pub fn optional_number<T: std::str::FromStr>(
        &self,
        name: &str,
        label: &str,
    ) -> Result<Option<T>, String> {
        match self.some(name) {
            None => Ok(None),
            Some(_) => self.number(name, label).map(Some),
        }
    }
}

/// A posted administration form from a logged-in person, whose CSRF token
/// was checked before any handler sees it.
pub(crate) struct Posted {
    /// Who posted it.
    pub viewer: Viewer,
    /// What it holds.
    pub fields: Fields,
}

impl FromRequest<Arc<App>> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let Form(fields) = Form::<Fields>::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        viewer
            .check_csrf(fields.some("csrf"))
            .map_err(IntoResponse::into_response)?;
        Ok(Self { viewer, fields })
    }
}

/// The hidden field every form of the viewer's carries.
pub(crate) fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn form_fields_are_read_as_given() {
        let f = fields(&[
            ("permission", "desktop_view"),
            ("name", "  support "),
            ("permission", "remote_control"),
            ("blank", " "),
            ("n", "12"),
            ("bad", "12x"),
        ]);
        assert_eq!(f.get("name"), "support");
        assert_eq!(
            f.all("permission").collect::<Vec<_>>(),
            ["desktop_view", "remote_control"]
        );
        assert!(f.some("blank").is_none() && !f.checked("missing"));
        assert_eq!(
            fields(&[("allow", " 10.0.0.0/8, ,192.168.1.1 ")]).list("allow"),
            ["10.0.0.0/8", "192.168.1.1"]
        );
        assert_eq!(f.number::<u32>("n", "N"), Ok(12));
        assert!(f.number::<u32>("bad", "Bad").unwrap_err().contains("Bad"));
        assert_eq!(f.optional_number::<u32>("blank", "B"), Ok(None));
    }

    #[test]
    fn input_errors_are_refusals_and_the_rest_internal() {
        let exists = gateway::admin::AdminError::Store(audit_db::Error::Exists {
            what: "technician",
            name: "a@example.com".into(),
        });
        assert!(matches!(
            outcome::<_>(Err::<String, _>(exists)),
            Ok(Said::Refused(t)) if t.contains("already exists")
        ));
        let broken = gateway::admin::AdminError::Unaudited(audit_db::Error::WriterGone);
        assert!(outcome::<_>(Err::<String, _>(broken)).is_err());
    }
}
