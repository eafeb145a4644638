//! `vigil retention restore`: archive bundles put back into a separate
//! database for an investigation, where queries and reports read them as
//! they read a live log.
//!
//! The bundles are verified first (each against its signed checkpoint), then
//! read again as their events are inserted, all in one transaction of the
//! target database; a bundle that changes in between fails that second
//! reading and nothing is restored. The target is marked as a restoration
//! (`audit_db::restored`): it takes no new events and verifies against the
//! bundles' checkpoints.

use std::path::PathBuf;

use audit_db::restored::{self, Item, Restoration};
use audit_db::Store;
use tokio::sync::mpsc;

use crate::bundle::{self, BundleError, Manifest};

/// Events sent to the database per batch.
const BATCH: usize = 2_000;

/// What a restore put back.
#[derive(Debug)]
pub struct Restored {
    /// The bundles, by name, in seq order.
    pub bundles: Vec<String>,
    /// The log they are of.
    pub log: String,
    /// Events inserted.
    pub events: u64,
    /// The first and last seq restored.
    pub seqs: (i64, i64),
}

/// A restore could not be made; the target database is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A path names no bundle, or a directory holds none.
    #[error("{}: {why}", path.display())]
    NoBundle {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// A bundle does not verify, or is of another log than the others.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Two bundles hold the same seqs.
    #[error("{} and {} both hold seq {seq}: restore one of them", first.display(), second.display())]
    Overlap {
        /// One bundle.
        first: PathBuf,
        /// The other.
        second: PathBuf,
        /// A seq both hold.
        seq: i64,
    },
    /// The database refused them (it holds events, or could not be written).
    #[error(transparent)]
    Log(#[from] audit_db::Error),
}

impl RestoreError {
    /// Whether it is the caller's input that is wrong (exit 2), not the system.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, RestoreError::Log(audit_db::Error::Db { .. }))
    }
}

/// The manifests `paths` name: a bundle's manifest or data file, or a
/// directory of bundles.
pub fn manifests_of(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RestoreError> {
    let mut manifests = Vec::new();
    for path in paths {
        if path.is_dir() {
            let found = bundle::manifests_in(path)?;
            if found.is_empty() {
                return Err(RestoreError::NoBundle {
                    path: path.clone(),
                    why: "holds no archive bundles",
                });
            }
            manifests.extend(found);
        } else if path.exists() {
            manifests.push(bundle::manifest_path(path));
        } else {
            return Err(RestoreError::NoBundle {
                path: path.clone(),
                why: "no such file or directory",
            });
        }
    }
    Ok(manifests)
}

/// Verifies the bundles at `manifests` (with `key`, the log's public key,
/// or the key their manifests name) and checks they are of one log and hold
/// no seq twice; returns them in seq order. Touches no database.
pub fn check(
    manifests: &[PathBuf],
    key: Option<&str>,
) -> Result<Vec<(PathBuf, Manifest)>, RestoreError> {
    let mut verified: Vec<(PathBuf, Manifest)> = Vec::new();
    for (path, result) in manifests.iter().zip(bundle::verify_all(manifests, key)) {
        let manifest = result?.manifest;
        if let Some((first, m)) = verified.first() {
            if m.log != manifest.log {
                return Err(BundleError::OtherLog {
                    path: path.clone(),
                    found: manifest.log,
                    expected: format!("{}, of {}", m.log, first.display()),
                }
                .into());
            }
        }
        verified.push((path.clone(), manifest));
    }
    verified.sort_by_key(|(_, m)| m.first_seq());
    let mut stretches: Vec<(i64, i64, &PathBuf)> = verified
        .iter()
        .flat_map(|(p, m)| m.stretches.iter().map(move |s| (s.first, s.last, p)))
        .collect();
    stretches.sort_unstable();
    for pair in stretches.windows(2) {
        let ((_, last, first), (next, _, second)) = (pair[0], pair[1]);
        if next <= last {
            return Err(RestoreError::Overlap {
                first: first.clone(),
                second: second.clone(),
                seq: next,
            });
        }
    }
    Ok(verified)
}

/// Restores the bundles `check` returned into `store`, which must hold no
/// events; `key` is the one they were checked with (else each manifest's).
pub async fn restore(
    store: &Store,
    bundles: &[(PathBuf, Manifest)],
    key: Option<&str>,
    now_us: i64,
) -> Result<Restored, RestoreError> {
    let (tx, rx) = mpsc::channel(4);
    let paths: Vec<(PathBuf, Manifest)> = bundles.to_vec();
    let key = key.map(str::to_owned);
    let reader = tokio::task::spawn_blocking(move || send_all(&paths, key.as_deref(), &tx));
    let inserted = restored::restore(store, rx, now_us).await;
    let read = reader
        .await
        .map_err(|e| audit_db::Error::Task(format!("bundle reader: {e}")))?;
    // The reader's failure is the cause of the cut.
    read?;
    let events = inserted?;
    Ok(Restored {
        bundles: bundles.iter().map(|(_, m)| m.name.clone()).collect(),
        log: bundles
            .first()
            .map(|(_, m)| m.log.clone())
            .unwrap_or_default(),
        events,
        seqs: (
            bundles.first().map_or(0, |(_, m)| m.first_seq()),
            bundles.iter().map(|(_, m)| m.last_seq()).max().unwrap_or(0),
        ),
    })
}

/// Reads every bundle's events into `tx`, each bundle's [`Restoration`]
/// after them, then [`Item::Done`]; stops at the first error (or when the
/// database side has gone), without `Done`.
fn send_all(
    bundles: &[(PathBuf, Manifest)],
    key: Option<&str>,
    tx: &mpsc::Sender<Item>,
) -> Result<(), RestoreError> {
    for (path, manifest) in bundles {
        let mut batch = Vec::with_capacity(BATCH);
        let mut gone = false;
        let read = bundle::for_each_event(path, |event, _| {
            batch.push(event);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if tx.blocking_send(Item::Events(full)).is_err() {
                    gone = true;
                    return Err("the database stopped taking events".into());
                }
            }
            Ok(())
        });
        if gone {
            return Ok(());
        }
        let read = read?;
        if read != *manifest {
            return Err(BundleError::Manifest {
                path: path.clone(),
                why: "it changed while it was being restored".into(),
            }
            .into());
        }
        if tx.blocking_send(Item::Events(batch)).is_err()
            || tx
                .blocking_send(Item::Bundle(restoration(manifest, key)))
                .is_err()
        {
            return Ok(());
        }
    }
    // The database side may have gone; it reports why.
    let _ = tx.blocking_send(Item::Done);
    Ok(())
}

/// What the restored database keeps of `manifest` to verify against.
fn restoration(manifest: &Manifest, key: Option<&str>) -> Restoration {
    Restoration {
        bundle: manifest.name.clone(),
        log: manifest.log.clone(),
        key: key.unwrap_or(&manifest.key).to_owned(),
        checkpoint: manifest.checkpoint.clone(),
        stretches: manifest.stretches.clone(),
        range_proof: manifest.range_proof.clone(),
        data_sha256: manifest.data.sha256.clone(),
    }
}
