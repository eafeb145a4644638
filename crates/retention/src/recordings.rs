//! Session recordings under the same policy and holds as events: a
//! `.vrec` file is matched to its session by its `recording.stopped`
//! event, moves to `ARCHIVE/recordings/SESSION/` once past its online
//! period (copied, fsynced and checked against the event's SHA-256 before
//! the original goes) and is deleted once past its archive period.

use std::path::{Path, PathBuf};

use audit_db::archive::{Archive, RecordingRow};
use audit_db::event::RecordingMove;
use audit_db::{EventKind, Filter, Store};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use crate::bundle::{self, BundleError, Hashing};
use crate::hold::{Holds, Record};
use crate::policy::{Policy, RecordClass};
use crate::run::RunError;
use crate::subject::People;

/// The archive's subdirectory for recordings.
pub const DIR: &str = "recordings";

/// Every recording whose `recording.stopped` event is in the live log up
/// to `until_seq`, with those tracked before (as they were); unless
/// `dry_run`, the new ones are tracked from now on.
pub(crate) async fn learn(
    store: &Store,
    archive: &Archive,
    people: &mut People,
    until_seq: i64,
    dry_run: bool,
) -> Result<Vec<RecordingRow>, RunError> {
    let mut rows = archive.recordings(None).await?;
    let known: std::collections::HashSet<String> =
        archive.recordings_ever().await?.into_iter().collect();
    let filter = Filter {
        kind: Some("recording.stopped".into()),
        until_seq: Some(until_seq),
        ..Filter::default()
    };
    let mut events = std::pin::pin!(audit_db::query::stream(store.clone(), filter));
    while let Some(event) = events.try_next().await? {
        let (Some(session), Ok(Some(EventKind::RecordingStopped(r)))) =
            (event.session, event.decode())
        else {
            continue;
        };
        if known.contains(&r.path) || rows.iter().any(|k| k.path == r.path) {
            continue;
        }
        let subject = people.subject(store, &event).await?;
        let row = RecordingRow {
            path: r.path,
            session,
            sha256: r.sha256,
            age_from_us: subject.age_from_us,
            group: subject.group.as_deref().map(str::to_owned),
            technician: subject.technician.as_deref().map(str::to_owned),
            archived_to: None,
            gone_at_us: None,
        };
        if !dry_run {
            archive.track_recording(&row).await?;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// What a run does with the tracked recordings as of `as_of_us`: copies
/// those due for the archive into it (durably, checked) and lists them,
/// and lists those due for deletion. Nothing is deleted here.
pub(crate) fn plan(
    rows: &[RecordingRow],
    policy: &Policy,
    holds: &Holds,
    as_of_us: i64,
    archive_dir: &Path,
    dry_run: bool,
    held: &mut u64,
) -> Result<Vec<RecordingMove>, RunError> {
    let mut moves = Vec::new();
    for row in rows {
        let periods = policy
            .for_group(row.group.as_deref())
            .periods(RecordClass::Recordings);
        let now_at = row.archived_to.as_deref().unwrap_or(&row.path);
        if periods.total().after(row.age_from_us) <= as_of_us {
            let record = Record {
                class: RecordClass::Recordings,
                session: Some(row.session),
                technician: row.technician.as_deref(),
                occurred_at_us: row.age_from_us,
            };
            if holds.covering(&record).is_some() {
                *held += 1;
            } else {
                moves.push(RecordingMove {
                    session: row.session,
                    from: now_at.to_owned(),
                    to: None,
                    sha256: row.sha256.clone(),
                });
                continue;
            }
        }
        if row.archived_to.is_some() || periods.online.after(row.age_from_us) > as_of_us {
            continue;
        }
        let source = Path::new(&row.path);
        if !source.exists() {
            // Written on another machine (a technician's), or gone already:
            // nothing here to move.
            tracing::debug!(path = %source.display(), "a recording due for the archive is not on this machine");
            continue;
        }
        let target = archived_path(archive_dir, row);
        if !dry_run {
            copy_checked(source, &target, &row.sha256)?;
        }
        moves.push(RecordingMove {
            session: row.session,
            from: row.path.clone(),
            to: Some(target.display().to_string()),
            sha256: row.sha256.clone(),
        });
    }
    Ok(moves)
}

/// Where a recording goes in the archive.
fn archived_path(archive_dir: &Path, row: &RecordingRow) -> PathBuf {
    let name = Path::new(&row.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{}.vrec", row.sha256));
    archive_dir
        .join(DIR)
        .join(row.session.to_string())
        .join(name)
}

/// Copies `from` to `to` through a temporary file that is fsynced, checked
/// against `sha256` and renamed; an existing `to` with that hash is kept.
fn copy_checked(from: &Path, to: &Path, sha256: &str) -> Result<(), RunError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RunError::Bundle(BundleError::Io { path, source })
    };
    if to.exists() && file_sha256(to).map_err(io(to))? == sha256 {
        return Ok(());
    }
    let dir = to.parent().unwrap_or(to);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = to.with_extension("vrec.tmp");
    let mut input = std::fs::File::open(from).map_err(io(from))?;
    let mut output = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut hash = Hashing {
        inner: &mut output,
        hash: Sha256::new(),
        bytes: 0,
    };
    std::io::copy(&mut input, &mut hash).map_err(io(&tmp))?;
    let found = hex::encode(hash.hash.finalize());
    output.sync_all().map_err(io(&tmp))?;
    if found != sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(RunError::Bundle(BundleError::DataAltered {
            path: from.to_owned(),
            found,
            expected: sha256.to_owned(),
        }));
    }
    std::fs::rename(&tmp, to).map_err(io(to))?;
    crate::bundle::sync_dir(dir)?;
    Ok(())
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut hash = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hash)?;
    Ok(hex::encode(hash.finalize()))
}

/// Makes what a run decided for recordings so: the database learns where
/// each went, then originals of moved ones and purged ones are deleted.
/// Idempotent.
pub(crate) async fn commit(archive: &Archive, moves: &[RecordingMove]) -> Result<(), RunError> {
    let tracked = archive.recordings(None).await?;
    for m in moves {
        // The row by where the recording was, or (purged from the archive)
        // where it went.
        let row = tracked
            .iter()
            .find(|r| r.path == m.from || r.archived_to.as_deref() == Some(&m.from));
        let Some(row) = row else { continue };
        match &m.to {
            // Where it went first, then the original goes: a crash between
            // leaves the row, which finds the original again.
            Some(to) => {
                archive.recording_archived(&row.path, to).await?;
                bundle::remove_file(Path::new(&m.from))?;
            }
            // The file first, then the row says so, for the same reason.
            None => {
                bundle::remove_file(Path::new(&m.from))?;
                archive
                    .recording_gone(&row.path, audit_db::time_us::now())
                    .await?;
            }
        }
    }
    Ok(())
}
