//! Privacy erasure: the chat text, file names and recording of one
//! session go, online and in the archive, while every leaf stays, so the
//! log still verifies and proves; refused while a legal hold covers it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use audit_db::archive::Archive;
use audit_db::checkpoint::LogKey;
use audit_db::record::Body;
use audit_db::{encoding, Actor, AuditLog, EventKind, Filter, Hash, Source, StoredEvent};
use futures::TryStreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::bundle::{self, BundleError, Writer};
use crate::hold::{Holds, Record};
use crate::policy::RecordClass;

/// What to erase of a session.
#[derive(Clone, Debug)]
pub struct Request {
    /// The session.
    pub session: Uuid,
    /// Its chat messages' text.
    pub chat: bool,
    /// The names (and hashes) of files that crossed it.
    pub files: bool,
    /// Its recording files.
    pub recording: bool,
    /// Why (a privacy request's reference).
    pub reason: String,
}

/// What an erasure did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Erased {
    /// The `audit.erased` event's seq.
    pub record_seq: i64,
    /// Bodies erased (online and archived).
    pub bodies: u64,
    /// Archive bundles rewritten without them.
    pub bundles_rewritten: Vec<String>,
    /// Recording files deleted.
    pub recordings_deleted: Vec<String>,
}

/// An erasure could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// A legal hold covers the session.
    #[error("session {session} is under legal hold {hold} ({reason}): nothing was erased")]
    Held {
        /// The session.
        session: Uuid,
        /// The hold's id.
        hold: i64,
        /// Its reason.
        reason: String,
    },
    /// The log has no such session.
    #[error("no session {0} in the log or its archive")]
    NoSuchSession(Uuid),
    /// A recording file could not be deleted.
    #[error("deleting recording {}: {source}", path.display())]
    Recording {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An archive bundle could not be read or rewritten.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The log could not be read or written.
    #[error(transparent)]
    Log(#[from] audit_db::Error),
}

impl EraseError {
    /// Whether it is the caller's input that is wrong (exit 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, EraseError::Held { .. } | EraseError::NoSuchSession(_))
    }
}

/// An event of the session, where it is.
struct Found {
    event: StoredEvent,
    technician: Option<String>,
}

/// Erases what `request` asks of its session, as `actor`.
pub async fn erase(
    log: &AuditLog,
    key: &LogKey,
    archive_dir: &Path,
    actor: Actor,
    source: Source,
    request: &Request,
) -> Result<Erased, EraseError> {
    let store = log.store();
    let archive = Archive::new(store.clone());
    let holds = Holds::in_force(archive.holds().await?);
    let bundles: Vec<_> = archive
        .bundles()
        .await?
        .into_iter()
        .filter(|b| !b.purged)
        .collect();

    // The session's events: online, then in the archive.
    let mut found: Vec<Found> = Vec::new();
    let filter = Filter {
        session: Some(request.session),
        ..Filter::default()
    };
    let mut live = std::pin::pin!(audit_db::query::stream(store.clone(), filter));
    while let Some(event) = live.try_next().await? {
        found.push(Found {
            event,
            technician: None,
        });
    }
    let mut in_bundles: Vec<String> = Vec::new();
    for b in &bundles {
        let (_, path) = bundle::paths(archive_dir, &b.name);
        let mut any = false;
        bundle::for_each_event(&path, |event, subject| {
            if event.session == Some(request.session) {
                any = true;
                found.push(Found {
                    event,
                    technician: subject.technician.as_deref().map(str::to_owned),
                });
            }
            Ok(())
        })?;
        if any {
            in_bundles.push(b.name.clone());
        }
    }
    if found.is_empty() {
        return Err(EraseError::NoSuchSession(request.session));
    }
    let technician = found.iter().find_map(|f| match f.event.decode() {
        Ok(Some(EventKind::SessionCreated(c))) => Some(c.technician),
        _ => f.technician.clone(),
    });

    // Nothing goes while a hold covers any of it.
    for f in &found {
        for class in [RecordClass::SessionEvents, RecordClass::Recordings] {
            let record = Record {
                class,
                session: f.event.session,
                technician: technician.as_deref(),
                occurred_at_us: f.event.occurred_at_us,
            };
            if let Some(h) = holds.covering(&record) {
                return Err(EraseError::Held {
                    session: request.session,
                    hold: h.id,
                    reason: h.reason.clone(),
                });
            }
        }
    }

    let wanted = |kind: &str| {
        (request.chat && kind == "chat.message") || (request.files && kind == "file.transferred")
    };
    let seqs: Vec<i64> = found
        .iter()
        .filter(|f| wanted(&f.event.kind) && !f.event.is_erased())
        .map(|f| f.event.seq)
        .collect();
    // Where the console wrote them, and (moved by retention) where they went.
    let tracked = archive.recordings(Some(request.session)).await?;
    let mut recordings: Vec<PathBuf> = Vec::new();
    if request.recording {
        let written = found.iter().filter_map(|f| match f.event.decode() {
            Ok(Some(EventKind::RecordingStopped(r))) => Some(r.path),
            _ => None,
        });
        let moved = tracked.iter().filter_map(|r| r.archived_to.clone());
        for path in written.chain(moved) {
            let path = PathBuf::from(path);
            if !recordings.contains(&path) {
                recordings.push(path);
            }
        }
    }

    // The record first: a crash after it leaves the bodies, and erasing
    // again finishes.
    let mut reason = request.reason.clone();
    if !recordings.is_empty() {
        reason = format!(
            "{reason} (and the session's recording{}: {})",
            if recordings.len() == 1 { "" } else { "s" },
            recordings
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (receipt, online) = log.erase(&seqs, actor, source, &reason).await?;
    let mut done = Erased {
        record_seq: receipt.seq,
        bodies: online,
        ..Erased::default()
    };

    let targets: HashSet<i64> = seqs.iter().copied().collect();
    for name in in_bundles {
        let (_, path) = bundle::paths(archive_dir, &name);
        let (manifest, events) = bundle::read_events(&path)?;
        let hits = events
            .iter()
            .filter(|(e, _)| targets.contains(&e.seq) && !e.is_erased())
            .count();
        if hits == 0 {
            continue;
        }
        let new_name = format!("{name}-e{}", receipt.seq);
        let mut writer = Writer::create(archive_dir, &new_name)?;
        for (mut event, subject) in events {
            if targets.contains(&event.seq) {
                erase_body(&mut event);
            }
            writer.push(&event, &subject)?;
        }
        let rewritten = writer.finish(store, key, manifest.run).await?;
        archive
            .commit_purge(
                &name,
                &[],
                Some((
                    &crate::run::row_of(&rewritten, manifest.run),
                    &rewritten.ranges(),
                )),
            )
            .await?;
        // The old files hold the erased text: a failure to delete them is
        // reported, not passed over.
        bundle::remove(archive_dir, &name)?;
        bundle::sync_dir(archive_dir)?;
        done.bodies += hits as u64;
        done.bundles_rewritten.push(name);
    }

    for path in recordings {
        match std::fs::remove_file(&path) {
            Ok(()) => done.recordings_deleted.push(path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(EraseError::Recording { path, source }),
        }
    }
    if request.recording {
        for row in tracked.iter().filter(|r| r.gone_at_us.is_none()) {
            archive
                .recording_gone(&row.path, audit_db::time_us::now())
                .await?;
        }
    }
    Ok(done)
}

/// Replaces a kept body by the digest its leaf committed to.
fn erase_body(event: &mut StoredEvent) {
    if let Body::Kept {
        payload,
        salt: Some(salt),
    } = &event.body
    {
        event.body = Body::Erased {
            digest: Hash(encoding::body_digest(salt, payload)),
        };
    }
}
