//! The access audit: what a person is about to see or take away is
//! recorded before it is sent (`record.viewed`, `record.exported`); if the
//! log cannot take the event, nothing is shown.

use audit_db::event::{RecordExported, RecordViewed};
use audit_db::{EventKind, NewEvent, Source};
use uuid::Uuid;

use crate::error::WebError;
use crate::visit::Viewer;
use crate::App;

/// Records that `viewer` is shown `what` (`target`) of `session`.
pub(crate) async fn viewed(
    app: &App,
    viewer: &Viewer,
    session: Option<Uuid>,
    what: &str,
    target: &str,
) -> Result<(), WebError> {
    let kind = EventKind::RecordViewed(RecordViewed {
        what: what.to_owned(),
        target: target.to_owned(),
    });
    append(app, viewer, session, kind).await
}

/// Records that `viewer` takes away `bytes` bytes of `what` (`target`).
pub(crate) async fn exported(
    app: &App,
    viewer: &Viewer,
    session: Option<Uuid>,
    export: RecordExported,
) -> Result<(), WebError> {
    append(app, viewer, session, EventKind::RecordExported(export)).await
}

async fn append(
    app: &App,
    viewer: &Viewer,
    session: Option<Uuid>,
    kind: EventKind,
) -> Result<(), WebError> {
    let mut event = NewEvent::now(viewer.actor(), Source::web(&app.config.host), kind);
    if let Some(s) = session {
        event = event.in_session(s);
    }
    app.log.append_one(event).await.map(|_| ()).map_err(|e| {
        WebError::internal(format!(
            "the access could not be audited, so nothing is shown: {e}"
        ))
    })
}
