//! A recording checked against the audit log: what the log says of it
//! (`recording.started`, and the size and SHA-256 `recording.stopped`
//! carries), joined with what the file holds, into one verdict.

use std::path::Path;

use audit_db::{AuditLog, EventKind, Filter};
use futures::TryStreamExt;
use recorder::vrec::integrity::{self, Logged, Verdict};
use recorder::vrec::{Header, VrecError};

/// A recording could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file could not be read (it is missing, or not a recording).
    #[error(transparent)]
    Recording(#[from] VrecError),
    /// The audit log could not be read.
    #[error(transparent)]
    Log(#[from] audit_db::Error),
    /// The checking task failed.
    #[error("checking the recording failed: {0}")]
    Task(String),
}

/// Reads every chunk of `path`, decodes every update, hashes the file and,
/// with a `log`, compares it with what the log recorded of it.
pub async fn verify(path: &Path, log: Option<&AuditLog>) -> Result<Verdict, CheckError> {
    let owned = path.to_owned();
    let check = tokio::task::spawn_blocking(move || integrity::check(&owned))
        .await
        .map_err(|e| CheckError::Task(e.to_string()))?;
    let check = match check {
        Ok(c) => c,
        // Not even the header reads: the file is not what was recorded.
        Err(e @ VrecError::Corrupt { .. }) => return Ok(Verdict::Altered(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let logged = match log {
        Some(log) => Some(logged(log, &check.header).await?),
        None => None,
    };
    Ok(integrity::judge(&check, logged.as_ref()))
}

/// What the audit log holds about the recording `header` names.
pub async fn logged(log: &AuditLog, header: &Header) -> Result<Logged, audit_db::Error> {
    let session = header.session.parse::<uuid::Uuid>().ok();
    let mut found = Logged::default();
    for kind in ["recording.started", "recording.stopped"] {
        let filter = Filter {
            session,
            kind: Some(kind.into()),
            ..Filter::default()
        };
        let mut events = std::pin::pin!(log.query(filter));
        while let Some(event) = events.try_next().await? {
            match event.decode() {
                Ok(Some(EventKind::RecordingStarted(p))) if p.recording == header.recording => {
                    found.started = true
                }
                Ok(Some(EventKind::RecordingStopped(p))) if p.recording == header.recording => {
                    found.stopped = Some((p.size, p.sha256))
                }
                _ => {}
            }
        }
    }
    Ok(found)
}
