//! Databases made by `vigil retention restore`: archive bundles put back,
//! beside no live log, for an investigation.
//!
//! Such a database holds stretches of a log, not a log. It has no Merkle
//! tree (a tree cannot be rebuilt from part of a log) and takes no new
//! events: the restore records its bundles after inserting their events,
//! and from then on a trigger refuses every insert. It verifies against
//! what the bundles were proven against: each bundle's stretches must
//! chain from the hashes its manifest names, and their leaves, with the
//! bundle's range proof, must give the root of its checkpoint, signed by
//! the log's key.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::chain::{BreakKind, ChainBreak, Head, Walker};
use crate::checkpoint;
use crate::error::{db, Error, Result};
use crate::merkle;
use crate::record::{Body, Hash, StoredEvent};
use crate::store::{on_pool, row::columns, Pools, Store};
use crate::verify::{Progress, VerifyReport, PAGE};

/// A stretch of consecutive seqs, with the chain hash before its first
/// event and that of its last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stretch {
    /// The first seq.
    pub first: i64,
    /// The last seq (inclusive).
    pub last: i64,
    /// The chain hash of the event before `first`.
    pub prev_hash: Hash,
    /// The chain hash of `last`.
    pub hash: Hash,
}

/// One restored bundle: what its events are proven against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restoration {
    /// The bundle's name.
    pub bundle: String,
    /// The log it came from (its checkpoint's origin).
    pub log: String,
    /// The public key its checkpoint was checked with at the restore.
    pub key: String,
    /// The signed checkpoint.
    pub checkpoint: String,
    /// Its stretches of seqs, in order.
    pub stretches: Vec<Stretch>,
    /// The hashes that, with the events' leaves, give the checkpoint's root.
    pub range_proof: Vec<Hash>,
    /// Lower-case hex SHA-256 of the bundle's data file.
    pub data_sha256: String,
}

/// What a restore is fed, in order: every bundle's events (in seq order,
/// in batches), each bundle's [`Restoration`] after its events, then
/// `Done`. A channel closed before `Done` leaves the database unchanged.
#[derive(Debug)]
pub enum Item {
    /// The next events.
    Events(Vec<StoredEvent>),
    /// The bundle the events since the last `Bundle` came from.
    Bundle(Restoration),
    /// Everything was sent.
    Done,
}

/// Events inserted per statement (15 parameters each).
const INSERT_CHUNK: usize = 1_000;

/// The bundles restored into `store` (none in a live log).
pub async fn restorations(store: &Store) -> Result<Vec<Restoration>> {
    let sql = "SELECT bundle, log, log_key, checkpoint, stretches, range_proof, data_sha256 \
               FROM audit_restored ORDER BY bundle";
    type Row = (String, String, String, String, String, String, String);
    let rows: Vec<Row> = on_pool!(store store, pool => sqlx::query_as(sql)
        .fetch_all(pool).await.map_err(db("reading the restored bundles"))?);
    rows.into_iter()
        .map(
            |(bundle, log, key, checkpoint, stretches, proof, data_sha256)| {
                let bad = |what: &str, e: serde_json::Error| Error::BadSetting {
                    key: format!("audit_restored.{bundle}.{what}"),
                    reason: e.to_string(),
                };
                Ok(Restoration {
                    stretches: serde_json::from_str(&stretches).map_err(|e| bad("stretches", e))?,
                    range_proof: serde_json::from_str(&proof).map_err(|e| bad("range_proof", e))?,
                    bundle,
                    log,
                    key,
                    checkpoint,
                    data_sha256,
                })
            },
        )
        .collect()
}

/// Whether `store` is a restoration rather than a live log.
pub async fn is_restored(store: &Store) -> Result<bool> {
    let sql = "SELECT COUNT(*) FROM audit_restored";
    let n: i64 = on_pool!(store store, pool => sqlx::query_scalar(sql)
        .fetch_one(pool).await.map_err(db("looking for restored bundles"))?);
    Ok(n > 0)
}

/// Restores what `items` brings into `store`, which must hold no events,
/// in one transaction; returns the events inserted.
pub async fn restore(store: &Store, items: mpsc::Receiver<Item>, now_us: i64) -> Result<u64> {
    match store.write_pools() {
        Pools::Sqlite(pool) => restore_with(pool, items, now_us).await,
        Pools::Postgres(pool) => restore_with(pool, items, now_us).await,
    }
}

async fn restore_with<DB>(
    pool: &sqlx::Pool<DB>,
    mut items: mpsc::Receiver<Item>,
    now_us: i64,
) -> Result<u64>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i16: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> uuid::Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<uuid::Uuid>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q [u8]>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
{
    let mut tx = pool
        .begin()
        .await
        .map_err(db("starting the restore's transaction"))?;
    let (held,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events")
        .fetch_one(&mut *tx)
        .await
        .map_err(db("counting the events already there"))?;
    if held > 0 {
        return Err(Error::NotEmpty { events: held });
    }
    let mut bundles = Vec::new();
    let mut head = Head::EMPTY;
    let mut inserted = 0u64;
    loop {
        match items.recv().await {
            Some(Item::Events(events)) => {
                for chunk in events.chunks(INSERT_CHUNK) {
                    let sql = insert_sql(chunk.len());
                    let mut q = sqlx::query::<DB>(&sql);
                    for e in chunk {
                        let (payload, salt, digest) = match &e.body {
                            Body::Kept { payload, salt } => {
                                (Some(payload.as_str()), salt.as_ref().map(|s| &s[..]), None)
                            }
                            Body::Erased { digest } => (None, None, Some(&digest.0[..])),
                        };
                        q = q
                            .bind(e.seq)
                            .bind(e.id)
                            .bind(e.session)
                            .bind(e.occurred_at_us)
                            .bind(e.recorded_at_us)
                            .bind(e.source.as_str())
                            .bind(e.actor.as_str())
                            .bind(e.kind.as_str())
                            .bind(payload)
                            .bind(e.format)
                            .bind(&e.prev_hash.0[..])
                            .bind(&e.hash.0[..])
                            .bind(e.reported_at_us)
                            .bind(salt)
                            .bind(digest);
                    }
                    q.execute(&mut *tx)
                        .await
                        .map_err(db("inserting restored events"))?;
                }
                if let Some(last) = events.last() {
                    if last.seq > head.seq {
                        head = Head {
                            seq: last.seq,
                            hash: last.hash,
                        };
                    }
                }
                inserted += events.len() as u64;
            }
            Some(Item::Bundle(r)) => bundles.push(r),
            Some(Item::Done) => break,
            // The sender failed: the dropped transaction rolls back.
            None => return Err(Error::RestoreCut),
        }
    }
    // After every event: from the first of these rows on, inserts are refused.
    for r in &bundles {
        let (stretches, proof) = (json(&r.stretches), json(&r.range_proof));
        sqlx::query(
            "INSERT INTO audit_restored (bundle, log, log_key, checkpoint, stretches, \
             range_proof, data_sha256, restored_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.bundle.as_str())
        .bind(r.log.as_str())
        .bind(r.key.as_str())
        .bind(r.checkpoint.as_str())
        .bind(stretches.as_str())
        .bind(proof.as_str())
        .bind(r.data_sha256.as_str())
        .bind(now_us)
        .execute(&mut *tx)
        .await
        .map_err(db("recording a restored bundle"))?;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(head.seq)
        .bind(&head.hash.0[..])
        .execute(&mut *tx)
        .await
        .map_err(db("setting the restored events' head"))?;
    tx.commit()
        .await
        .map_err(db("committing the restored events"))?;
    Ok(inserted)
}

/// An INSERT of `rows` events, their columns as `$n` placeholders.
fn insert_sql(rows: usize) -> String {
    const COLUMNS: usize = 15;
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=COLUMNS)
                .map(|c| format!("${}", row * COLUMNS + c))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        concat!("INSERT INTO audit_events (", columns!(), ") VALUES {}"),
        values.join(", ")
    )
}

/// `value` as JSON text (vectors of plain structs and hashes: it cannot fail).
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Verifies a restored database: every row lies in a restored bundle's
/// stretch, each stretch chains from the hash before it to the hash of its
/// end, and each bundle's leaves give its signed checkpoint's root.
pub(crate) async fn verify(
    store: &Store,
    restorations: &[Restoration],
    progress: &Progress,
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        events: 0,
        erased: 0,
        archived: 0,
        head: store.head().await?,
        outcome: Ok(()),
        restored: restorations.iter().map(|r| r.bundle.clone()).collect(),
    };
    report.outcome = check(store, restorations, progress, &mut report).await?;
    Ok(report)
}

async fn check(
    store: &Store,
    restorations: &[Restoration],
    progress: &Progress,
    report: &mut VerifyReport,
) -> Result<std::result::Result<(), ChainBreak>> {
    let mut stretches: Vec<(&Restoration, &Stretch)> = restorations
        .iter()
        .flat_map(|r| r.stretches.iter().map(move |s| (r, s)))
        .collect();
    stretches.sort_by_key(|(_, s)| s.first);
    let expected: i64 = stretches.iter().map(|(_, s)| s.last - s.first + 1).sum();
    progress
        .total
        .store(expected.max(0) as u64, Ordering::Relaxed);
    let mut leaves_of: HashMap<&str, Vec<Hash>> = HashMap::new();
    let mut last = None;
    for (r, s) in &stretches {
        let mut walker = Walker::new(s.first, s.last, Some(s.prev_hash), None);
        let mut cursor = s.first;
        while cursor <= s.last {
            let end = (cursor + PAGE - 1).min(s.last);
            let page = store.packed_page(cursor, end, PAGE).await?;
            cursor = end + 1;
            // Hashing is CPU work: keep it off the async worker threads.
            let (w, broke) = tokio::task::spawn_blocking(move || {
                let broke = page
                    .rows
                    .iter()
                    .try_for_each(|(seq, packed)| walker.push(*seq, packed.as_deref()))
                    .err();
                (walker, broke)
            })
            .await
            .map_err(|e| Error::Task(format!("verifier: {e}")))?;
            walker = w;
            let leaves = std::mem::take(&mut walker.leaves);
            progress
                .checked
                .fetch_add(leaves.len() as u64, Ordering::Relaxed);
            leaves_of.entry(&r.bundle).or_default().extend(leaves);
            if let Some(broke) = broke {
                report.events += walker.rows;
                return Ok(Err(broke));
            }
        }
        report.events += walker.rows;
        report.erased += walker.erased;
        if let Err(broke) = walker.finish() {
            return Ok(Err(broke));
        }
        if walker.last.map(|(_, hash)| hash) != Some(s.hash) {
            return Ok(Err(ChainBreak {
                seq: s.last,
                kind: BreakKind::Altered,
            }));
        }
        last = walker.last;
    }
    let ranges: Vec<(i64, i64)> = stretches.iter().map(|(_, s)| (s.first, s.last)).collect();
    if let Some(seq) = first_outside(store, &ranges).await? {
        return Ok(Err(ChainBreak {
            seq,
            kind: BreakKind::NotRestored,
        }));
    }
    let head = report.head;
    if last.is_some_and(|(seq, hash)| (seq, hash) != (head.seq, head.hash)) {
        return Ok(Err(ChainBreak {
            seq: head.seq,
            kind: BreakKind::HeadMismatch { head_seq: head.seq },
        }));
    }
    for r in restorations {
        let leaves = leaves_of.remove(r.bundle.as_str()).unwrap_or_default();
        if let Err(why) = proven(r, &leaves) {
            return Ok(Err(ChainBreak {
                seq: r.stretches.first().map_or(0, |s| s.first),
                kind: BreakKind::NotProven {
                    bundle: r.bundle.clone(),
                    why,
                },
            }));
        }
    }
    Ok(Ok(()))
}

/// Whether `leaves`, bundle `r`'s in seq order, give the root of its
/// checkpoint, signed by its key.
fn proven(r: &Restoration, leaves: &[Hash]) -> std::result::Result<(), String> {
    let cp = checkpoint::open(r.checkpoint.as_bytes(), &r.key).map_err(|e| e.to_string())?;
    if cp.origin != r.log {
        return Err(format!("its checkpoint is of log {}", cp.origin));
    }
    let runs: Vec<(u64, u64)> = r
        .stretches
        .iter()
        .map(|s| ((s.first - 1).max(0) as u64, s.last.max(0) as u64))
        .collect();
    let root =
        merkle::range_root(cp.size, &runs, leaves, &r.range_proof).map_err(|e| e.to_string())?;
    if root != cp.root {
        return Err("its events give another root than its signed checkpoint's".into());
    }
    Ok(())
}

/// The first stored seq in none of `ranges` (inclusive, in order).
async fn first_outside(store: &Store, ranges: &[(i64, i64)]) -> Result<Option<i64>> {
    let mut from = i64::MIN;
    for &(first, last) in ranges.iter().chain([(i64::MAX, i64::MAX)].iter()) {
        let sql = "SELECT MIN(seq) FROM audit_events WHERE seq >= $1 AND seq < $2";
        let found: Option<i64> = on_pool!(store store, pool => sqlx::query_scalar(sql)
            .bind(from).bind(first)
            .fetch_one(pool).await.map_err(db("looking for rows outside the restored bundles"))?);
        if found.is_some() {
            return Ok(found);
        }
        from = last.saturating_add(1);
    }
    Ok(None)
}
