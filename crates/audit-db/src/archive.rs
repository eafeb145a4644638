//! What retention keeps beside the log: the archive bundles events left
//! for, the stretches of seqs that left (which verification accepts as
//! gone), the runs that moved them and the legal holds. This module only
//! stores and reads them; what is archived, purged or held, and when, is
//! `retention`'s.
//!
//! Events leave `audit_events` only here ([`Archive::commit_archive`]), in
//! the transaction that records the stretch they left for; the triggers
//! refuse a deletion outside such a stretch. Their leaves stay in
//! `audit_tree`, so every root and proof is unchanged.

use serde::Serialize;
use uuid::Uuid;

use crate::error::{db, Error, Result};
use crate::store::{on_pool, Pools, Store};

/// Seqs `[first, last]` that left the live log for `bundle` (`None`: its
/// archive period is over and they were purged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchivedRange {
    /// The first seq.
    pub first_seq: i64,
    /// The last seq (inclusive).
    pub last_seq: i64,
    /// The bundle holding them, by name; `None` once purged.
    pub bundle: Option<String>,
}

/// A bundle as the database knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleRow {
    /// Its file name in the archive directory, without extension.
    pub name: String,
    /// Lower-case hex SHA-256 of its data file.
    pub sha256: String,
    /// Events in it.
    pub events: i64,
    /// Its first and last seq.
    pub first_seq: i64,
    /// Its last seq.
    pub last_seq: i64,
    /// The earliest time an event in it occurred (microseconds).
    pub oldest_at_us: i64,
    /// The run that wrote it.
    pub run_id: i64,
    /// `archived`, or `purged` once its file is to go.
    pub purged: bool,
}

/// One retention run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunRow {
    /// Its number.
    pub id: i64,
    /// The clock it ran at (microseconds).
    pub as_of_us: i64,
    /// When it started (microseconds, wall clock).
    pub started_at_us: i64,
    /// The id its `retention.run` event gets (or got).
    pub event_id: Uuid,
    /// When it finished; `None` for a run that was interrupted.
    pub finished_at_us: Option<i64>,
}

/// What a legal hold covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldScope {
    /// One session.
    Session(Uuid),
    /// Every session of one technician, and what they did.
    Technician(String),
    /// Everything that happened in `[since, until)` (microseconds).
    Period {
        /// From.
        since_us: i64,
        /// Until (exclusive).
        until_us: i64,
    },
}

/// A legal hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hold {
    /// Its number.
    pub id: i64,
    /// What it covers.
    pub scope: HoldScope,
    /// Why it was placed.
    pub reason: String,
    /// Who placed it.
    pub created_by: String,
    /// When (microseconds).
    pub created_at_us: i64,
    /// Who released it, when and why; `None` while it holds.
    pub released: Option<Release>,
}

/// A hold's release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Release {
    /// Who released it.
    pub by: String,
    /// When (microseconds).
    pub at_us: i64,
    /// Why.
    pub reason: String,
}

/// A session recording as retention tracks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordingRow {
    /// Where the console wrote it (its `recording.stopped` event's path).
    pub path: String,
    /// Its session.
    pub session: Uuid,
    /// Lower-case hex SHA-256, as its event has it.
    pub sha256: String,
    /// When its periods start (its session's creation, microseconds).
    pub age_from_us: i64,
    /// The technician group whose policy applies.
    pub group: Option<String>,
    /// The session's technician.
    pub technician: Option<String>,
    /// Its copy in the archive directory, once moved there.
    pub archived_to: Option<String>,
    /// When it was deleted, once purged or erased.
    pub gone_at_us: Option<i64>,
}

type RecordingTuple = (
    String,
    Vec<u8>,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

type HoldRow = (
    i64,
    Option<Vec<u8>>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    String,
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
);

type RunTuple = (i64, i64, i64, Vec<u8>, Option<i64>);

type BundleTuple = (String, String, i64, i64, i64, i64, i64, String);

const BUNDLE_COLUMNS: &str = "name, sha256, events, first_seq, last_seq, oldest_at, run_id, state";

/// Events leaving the live log: for `bundle`, or (`None`) purged straight.
#[derive(Clone, Copy, Debug)]
pub struct Departure<'a> {
    /// The bundle they now live in.
    pub bundle: Option<&'a BundleRow>,
    /// Their seqs, as inclusive ranges in order.
    pub runs: &'a [(i64, i64)],
}

/// SQLite's page cache while events leave, in KiB (negative, as
/// `PRAGMA cache_size` takes it).
const ARCHIVE_CACHE_KIB: i64 = -16_384;

/// SQLite's page cache while a VACUUM drops an archive's freed pages, in
/// KiB (negative, as `PRAGMA cache_size` takes it).
const VACUUM_CACHE_KIB: i64 = -4_096;

/// Below this many departing rows a deletion is never worth rebuilding
/// SQLite's indexes for.
const BULK_FROM: i64 = 10_000;

/// Retention's tables in one audit database.
#[derive(Clone, Debug)]
pub struct Archive {
    store: Store,
}

impl Archive {
    /// Retention's tables in `store`'s database.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The database these tables are in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every stretch of seqs that left the live log, in seq order.
    pub async fn ranges(&self) -> Result<Vec<ArchivedRange>> {
        let sql = "SELECT first_seq, last_seq, bundle FROM audit_archived ORDER BY first_seq";
        let rows: Vec<(i64, i64, Option<String>)> = on_pool!(self, pool => sqlx::query_as(sql)
            .fetch_all(pool).await.map_err(db("reading the archived stretches"))?);
        Ok(rows
            .into_iter()
            .map(|(first_seq, last_seq, bundle)| ArchivedRange {
                first_seq,
                last_seq,
                bundle,
            })
            .collect())
    }

    /// Every bundle, purged ones too, by first seq.
    pub async fn bundles(&self) -> Result<Vec<BundleRow>> {
        let sql =
            format!("SELECT {BUNDLE_COLUMNS} FROM retention_bundles ORDER BY first_seq, name");
        let rows: Vec<BundleTuple> = on_pool!(self, pool => sqlx::query_as(&sql)
            .fetch_all(pool).await.map_err(db("reading the archive bundles"))?);
        rows.into_iter().map(decode_bundle).collect()
    }

    /// The last run, finished or not.
    pub async fn last_run(&self) -> Result<Option<RunRow>> {
        let sql = "SELECT id, as_of, started_at, event_id, finished_at FROM retention_runs \
                   ORDER BY id DESC LIMIT 1";
        let row: Option<RunTuple> = on_pool!(self, pool =>
            sqlx::query_as(sql).fetch_optional(pool).await.map_err(db("reading the last retention run"))?);
        row.map(|(id, as_of_us, started_at_us, event_id, finished_at_us)| {
            Ok(RunRow {
                id,
                as_of_us,
                started_at_us,
                event_id: Uuid::from_slice(&event_id).map_err(|_| Error::BadRow {
                    seq: 0,
                    reason: format!(
                        "retention run {id} has an event id of {} bytes",
                        event_id.len()
                    ),
                })?,
                finished_at_us,
            })
        })
        .transpose()
    }

    /// Records the start of a run at `as_of_us`.
    pub async fn start_run(&self, as_of_us: i64, now_us: i64) -> Result<RunRow> {
        let event_id = Uuid::new_v4();
        let sql = "INSERT INTO retention_runs (as_of, started_at, event_id) VALUES ($1, $2, $3) \
                   RETURNING id";
        let id: i64 = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(as_of_us).bind(now_us).bind(&event_id.as_bytes()[..])
            .fetch_one(pool).await.map_err(db("recording a retention run"))?);
        Ok(RunRow {
            id,
            as_of_us,
            started_at_us: now_us,
            event_id,
            finished_at_us: None,
        })
    }

    /// Records that run `id` finished.
    pub async fn finish_run(&self, id: i64, now_us: i64) -> Result<()> {
        let sql = "UPDATE retention_runs SET finished_at = $1 WHERE id = $2";
        on_pool!(self, pool => sqlx::query(sql).bind(now_us).bind(id)
            .execute(pool).await.map_err(db("finishing a retention run"))?.rows_affected());
        Ok(())
    }

    /// Records each bundle of `departures` (whose events are the seqs of
    /// its runs, inclusive ranges in order) as archived and deletes those
    /// events from the live log, all in one transaction; done again, it
    /// changes nothing. Without a bundle the events are purged straight
    /// from the live log (they were past their archive period too).
    pub async fn commit_archive(&self, departures: &[Departure<'_>]) -> Result<()> {
        if departures.is_empty() {
            return Ok(());
        }
        match self.store.write_pools() {
            Pools::Sqlite(pool) => commit_archive_with(pool, departures).await,
            Pools::Postgres(pool) => commit_archive_with(pool, departures).await,
        }
    }

    /// Records the purge of bundle `old`: the seqs of `purged` are gone for
    /// good, those of `kept` (if any) now live in `replacement`. One
    /// transaction; done again, it changes nothing.
    pub async fn commit_purge(
        &self,
        old: &str,
        purged: &[(i64, i64)],
        replacement: Option<(&BundleRow, &[(i64, i64)])>,
    ) -> Result<()> {
        match self.store.pools() {
            Pools::Sqlite(pool) => commit_purge_with(pool, old, purged, replacement).await,
            Pools::Postgres(pool) => commit_purge_with(pool, old, purged, replacement).await,
        }
    }

    /// Starts tracking `r` (a recording not seen before; one already
    /// tracked is left as it is).
    pub async fn track_recording(&self, r: &RecordingRow) -> Result<()> {
        let sql = "INSERT INTO retention_recordings \
                   (path, session_id, sha256, age_from, grp, technician) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (path) DO NOTHING";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(&r.path).bind(&r.session.as_bytes()[..]).bind(&r.sha256)
            .bind(r.age_from_us).bind(&r.group).bind(&r.technician)
            .execute(pool).await.map_err(db("tracking a recording"))?.rows_affected());
        Ok(())
    }

    /// Every tracked recording not yet deleted (or, with `session`, that
    /// session's, deleted ones too).
    pub async fn recordings(&self, session: Option<Uuid>) -> Result<Vec<RecordingRow>> {
        let columns = "path, session_id, sha256, age_from, grp, technician, archived_to, gone_at";
        let rows: Vec<RecordingTuple> = match session {
            None => {
                let sql = format!("SELECT {columns} FROM retention_recordings WHERE gone_at IS NULL ORDER BY age_from, path");
                on_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await.map_err(db("reading the tracked recordings"))?)
            }
            Some(id) => {
                let sql = format!("SELECT {columns} FROM retention_recordings WHERE session_id = $1 ORDER BY path");
                on_pool!(self, pool => sqlx::query_as(&sql).bind(&id.as_bytes()[..]).fetch_all(pool).await.map_err(db("reading a session's recordings"))?)
            }
        };
        rows.into_iter()
            .map(
                |(
                    path,
                    session,
                    sha256,
                    age_from_us,
                    group,
                    technician,
                    archived_to,
                    gone_at_us,
                )| {
                    Ok(RecordingRow {
                        session: Uuid::from_slice(&session).map_err(|_| Error::BadSetting {
                            key: format!("retention_recordings.{path}"),
                            reason: "a session id not 16 bytes".into(),
                        })?,
                        path,
                        sha256,
                        age_from_us,
                        group,
                        technician,
                        archived_to,
                        gone_at_us,
                    })
                },
            )
            .collect()
    }

    /// The path of every recording ever tracked, deleted ones too.
    pub async fn recordings_ever(&self) -> Result<Vec<String>> {
        let sql = "SELECT path FROM retention_recordings";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql)
            .fetch_all(pool).await.map_err(db("reading the tracked recordings"))?))
    }

    /// Records that the recording at `path` now lives at `archived_to`.
    pub async fn recording_archived(&self, path: &str, archived_to: &str) -> Result<()> {
        let sql = "UPDATE retention_recordings SET archived_to = $1 WHERE path = $2";
        on_pool!(self, pool => sqlx::query(sql).bind(archived_to).bind(path)
            .execute(pool).await.map_err(db("recording where a recording went"))?.rows_affected());
        Ok(())
    }

    /// Records that the recording at `path` was deleted.
    pub async fn recording_gone(&self, path: &str, at_us: i64) -> Result<()> {
        let sql =
            "UPDATE retention_recordings SET gone_at = $1 WHERE path = $2 AND gone_at IS NULL";
        on_pool!(self, pool => sqlx::query(sql).bind(at_us).bind(path)
            .execute(pool).await.map_err(db("recording a recording's deletion"))?.rows_affected());
        Ok(())
    }

    /// Places a hold; returns its id.
    pub async fn add_hold(
        &self,
        scope: &HoldScope,
        reason: &str,
        by: &str,
        now_us: i64,
    ) -> Result<i64> {
        let (session, technician, since, until) = match scope {
            HoldScope::Session(id) => (Some(id.as_bytes().to_vec()), None, None, None),
            HoldScope::Technician(email) => (None, Some(email.clone()), None, None),
            HoldScope::Period { since_us, until_us } => {
                (None, None, Some(*since_us), Some(*until_us))
            }
        };
        let sql = "INSERT INTO retention_holds \
                   (session_id, technician, since_at, until_at, reason, created_by, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(session).bind(technician).bind(since).bind(until)
            .bind(reason).bind(by).bind(now_us)
            .fetch_one(pool).await.map_err(db("placing a legal hold"))?))
    }

    /// Every hold, released ones too, by id.
    pub async fn holds(&self) -> Result<Vec<Hold>> {
        let sql = "SELECT id, session_id, technician, since_at, until_at, reason, created_by, \
                   created_at, released_by, released_at, release_reason \
                   FROM retention_holds ORDER BY id";
        let rows: Vec<HoldRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .fetch_all(pool).await.map_err(db("reading the legal holds"))?);
        rows.into_iter().map(decode_hold).collect()
    }

    /// Releases hold `id`; `false` if there is no such hold still in force.
    pub async fn release_hold(&self, id: i64, by: &str, reason: &str, now_us: i64) -> Result<bool> {
        let sql = "UPDATE retention_holds SET released_by = $1, released_at = $2, \
                   release_reason = $3 WHERE id = $4 AND released_at IS NULL";
        let n = on_pool!(self, pool => sqlx::query(sql)
            .bind(by).bind(now_us).bind(reason).bind(id)
            .execute(pool).await.map_err(db("releasing a legal hold"))?.rows_affected());
        Ok(n == 1)
    }
}

async fn commit_archive_with<DB>(pool: &sqlx::Pool<DB>, departures: &[Departure<'_>]) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
    for<'r> (String, String): sqlx::FromRow<'r, DB::Row>,
{
    const DOING: &str = "moving events to an archive bundle";
    let sqlite = DB::NAME == "SQLite";
    let mut conn = pool.acquire().await.map_err(db(DOING))?;
    // SQLite: a smaller page cache while the events leave, whose deletes
    // walk the table in order; the writer's usual 64 MiB would be most of
    // a large run's memory.
    let mut cache = None;
    if sqlite {
        let (size,): (i64,) = sqlx::query_as("PRAGMA cache_size")
            .fetch_one(&mut *conn)
            .await
            .map_err(db(DOING))?;
        sqlx::query(&format!("PRAGMA cache_size = {ARCHIVE_CACHE_KIB}"))
            .execute(&mut *conn)
            .await
            .map_err(db(DOING))?;
        cache = Some(size);
    }
    let done = async {
        let mut tx = sqlx::Connection::begin_with(
            &mut *conn,
            if sqlite { "BEGIN IMMEDIATE" } else { "BEGIN" },
        )
        .await
        .map_err(db(DOING))?;
        let bulk = is_bulk::<DB>(&mut tx, departures).await?;
        // PostgreSQL: the delete guard is a row trigger that asks
        // audit_archived about every row. A bulk archive, every deletion of
        // which is of a stretch recorded in this transaction, turns it off
        // inside the transaction: DDL is transactional, so no other session
        // ever sees it off (appends wait for the commit, as on SQLite).
        let unguarded = bulk && !sqlite;
        if unguarded {
            sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change")
                .execute(&mut *tx)
                .await
                .map_err(db(DOING))?;
        }
        // SQLite: what stays moves to a new table.
        let rebuild = bulk && sqlite;
        // SQLite: the deleted rows' bytes must not stay in free pages, so
        // that what is purged or erased from the archive later is not still
        // in the database file (PostgreSQL: see README, VACUUM FULL). A few
        // rows are overwritten where they lie (secure delete). When most of
        // the log leaves, what stays moves to a new table and the old one is
        // dropped whole, and a VACUUM after the commit, which writes only
        // what stays, removes the freed pages; zeroing them instead would
        // write them twice (WAL, then checkpoint). The pending mark,
        // committed with the drop, makes the next opening finish a VACUUM
        // that a stopped run did not.
        if sqlite {
            sqlx::query(if rebuild {
                "PRAGMA secure_delete = OFF"
            } else {
                "PRAGMA secure_delete = ON"
            })
            .execute(&mut *tx)
            .await
            .map_err(db(DOING))?;
        }
        if rebuild {
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, 'true') \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(VACUUM_PENDING)
            .execute(&mut *tx)
            .await
            .map_err(db(DOING))?;
        }
        for d in departures {
            if let Some(bundle) = d.bundle {
                insert_bundle::<DB>(&mut tx, bundle).await?;
            }
            insert_ranges::<DB>(&mut tx, d.runs, d.bundle.map(|b| b.name.as_str())).await?;
            if rebuild {
                continue;
            }
            for &(first, last) in d.runs {
                sqlx::query("DELETE FROM audit_events WHERE seq BETWEEN $1 AND $2")
                    .bind(first)
                    .bind(last)
                    .execute(&mut *tx)
                    .await
                    .map_err(db(DOING))?;
            }
        }
        // The sessions index may hold what leaves: emptied with it, built again later.
        crate::session_index::reset_with::<DB>(&mut tx).await?;
        if unguarded {
            sqlx::query("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change")
                .execute(&mut *tx)
                .await
                .map_err(db(DOING))?;
        }
        if rebuild {
            let mut leaving: Vec<(i64, i64)> = departures
                .iter()
                .flat_map(|d| d.runs.iter().copied())
                .collect();
            leaving.sort_unstable();
            keep_only_staying::<DB>(&mut tx, &leaving).await?;
        }
        tx.commit().await.map_err(db(DOING))
    }
    .await;
    if let Some(size) = cache {
        let off = sqlx::query("PRAGMA secure_delete = OFF")
            .execute(&mut *conn)
            .await
            .map_err(db(DOING));
        let restored = sqlx::query(&format!("PRAGMA cache_size = {size}"))
            .execute(&mut *conn)
            .await
            .map_err(db(DOING));
        done?;
        off?;
        restored?;
        // The commit stands: a VACUUM that fails leaves its mark for the
        // next opening, and says so.
        if let Err(e) = vacuum_if_pending::<DB>(&mut conn).await {
            tracing::warn!("{e}: the archived events' free pages stay in the database file until it is next opened for writing");
        }
        // The deleted rows' old pages leave the WAL too (a reader holding
        // them keeps them until the next checkpoint).
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await
            .map_err(db(DOING))?;
        return Ok(());
    }
    done
}

/// The `settings` key a bulk archive on SQLite commits with its deletion
/// and removes once a VACUUM has dropped the freed pages.
const VACUUM_PENDING: &str = "sqlite.vacuum_pending";

/// On SQLite: if a bulk archive left free pages holding its events (its
/// [`VACUUM_PENDING`] mark), rewrites the file without them, then removes
/// the mark. Outside any transaction.
pub(crate) async fn vacuum_if_pending<DB>(conn: &mut DB::Connection) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    const DOING: &str = "dropping an archive's freed pages (VACUUM)";
    let pending: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM settings WHERE key = $1")
        .bind(VACUUM_PENDING)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db(DOING))?;
    if pending.is_none() {
        return Ok(());
    }
    tracing::info!("rewriting the database without the archived events' free pages");
    // VACUUM's copy and index builds take several times the connection's
    // page cache: with the writer's, hundreds of MiB; with a small one, a
    // few percent more time.
    let (size,): (i64,) = sqlx::query_as("PRAGMA cache_size")
        .fetch_one(&mut *conn)
        .await
        .map_err(db(DOING))?;
    sqlx::query(&format!("PRAGMA cache_size = {VACUUM_CACHE_KIB}"))
        .execute(&mut *conn)
        .await
        .map_err(db(DOING))?;
    let vacuumed = sqlx::query("VACUUM")
        .execute(&mut *conn)
        .await
        .map_err(db(DOING));
    // The writer's cache comes back whether or not the VACUUM succeeded.
    sqlx::query(&format!("PRAGMA cache_size = {size}"))
        .execute(&mut *conn)
        .await
        .map_err(db(DOING))?;
    vacuumed?;
    sqlx::query("DELETE FROM settings WHERE key = $1")
        .bind(VACUUM_PENDING)
        .execute(&mut *conn)
        .await
        .map_err(db(DOING))?;
    Ok(())
}

/// Whether `departures` take so much of the live log that a bulk path
/// pays: on SQLite, deleting ten million rows one table and index entry at
/// a time costs far more than copying the rest to a new table and dropping
/// the old one whole; on PostgreSQL, the delete guard's check of every row
/// is most of the deletion's time.
async fn is_bulk<DB>(conn: &mut DB::Connection, departures: &[Departure<'_>]) -> Result<bool>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let leaving: i64 = departures
        .iter()
        .flat_map(|d| d.runs.iter())
        .map(|(first, last)| last - first + 1)
        .sum();
    if leaving < BULK_FROM {
        return Ok(false);
    }
    // Rows online: the head less what already left (no count of the table).
    let (online,): (i64,) = sqlx::query_as(
        "SELECT CAST((SELECT seq FROM audit_head WHERE id = 1) - \
         (SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM audit_archived) AS BIGINT)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db("preparing a bulk archive"))?;
    Ok(leaving * 2 >= online)
}

/// On SQLite, inside the archive's transaction: replaces the events table
/// by a copy holding only the events outside `leaving` (sorted inclusive
/// seq ranges), with the same definition, indexes and triggers, read from
/// the schema so that a column or index added later comes along.
async fn keep_only_staying<DB>(conn: &mut DB::Connection, leaving: &[(i64, i64)]) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String, String): sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    const DOING: &str = "moving the staying events to a new table";
    let schema: Vec<(String, String)> = sqlx::query_as(
        "SELECT type, sql FROM sqlite_master WHERE tbl_name = 'audit_events' \
         AND sql IS NOT NULL ORDER BY type = 'table' DESC, rowid",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db(DOING))?;
    let columns = match schema.first() {
        Some((kind, sql)) if kind == "table" => sql.find('(').map(|at| &sql[at..]),
        _ => None,
    }
    .ok_or(Error::NoEventsTable)?;
    sqlx::query(&format!("CREATE TABLE audit_events_staying {columns}"))
        .execute(&mut *conn)
        .await
        .map_err(db(DOING))?;
    for (first, last) in staying(leaving) {
        sqlx::query(
            "INSERT INTO audit_events_staying SELECT * FROM audit_events \
             WHERE seq BETWEEN $1 AND $2",
        )
        .bind(first)
        .bind(last)
        .execute(&mut *conn)
        .await
        .map_err(db(DOING))?;
    }
    for sql in [
        "DROP TABLE audit_events",
        "ALTER TABLE audit_events_staying RENAME TO audit_events",
    ] {
        sqlx::query(sql)
            .execute(&mut *conn)
            .await
            .map_err(db(DOING))?;
    }
    for (_, sql) in &schema[1..] {
        sqlx::query(sql).execute(&mut *conn).await.map_err(db(
            "rebuilding the log's indexes and triggers after archiving",
        ))?;
    }
    Ok(())
}

/// The inclusive seq ranges outside the sorted inclusive ranges `leaving`.
fn staying(leaving: &[(i64, i64)]) -> Vec<(i64, i64)> {
    // i128: the range after one ending at i64::MAX is empty, not a wrap.
    let mut stay = Vec::with_capacity(leaving.len() + 1);
    let mut from = i128::from(i64::MIN);
    for &(first, last) in leaving {
        if i128::from(first) > from {
            stay.push((from as i64, first - 1));
        }
        from = from.max(i128::from(last) + 1);
    }
    if from <= i128::from(i64::MAX) {
        stay.push((from as i64, i64::MAX));
    }
    stay
}

async fn commit_purge_with<DB>(
    pool: &sqlx::Pool<DB>,
    old: &str,
    purged: &[(i64, i64)],
    replacement: Option<(&BundleRow, &[(i64, i64)])>,
) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    const DOING: &str = "recording a purge";
    let mut tx = begin_write(pool, DOING).await?;
    let state: Option<(String,)> =
        sqlx::query_as("SELECT state FROM retention_bundles WHERE name = $1")
            .bind(old)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(DOING))?;
    if state.is_some_and(|(s,)| s == "archived") {
        sqlx::query("DELETE FROM audit_archived WHERE bundle = $1")
            .bind(old)
            .execute(&mut *tx)
            .await
            .map_err(db(DOING))?;
        insert_ranges::<DB>(&mut tx, purged, None).await?;
        if let Some((bundle, kept)) = replacement {
            insert_bundle::<DB>(&mut tx, bundle).await?;
            insert_ranges::<DB>(&mut tx, kept, Some(&bundle.name)).await?;
        }
        sqlx::query("UPDATE retention_bundles SET state = 'purged' WHERE name = $1")
            .bind(old)
            .execute(&mut *tx)
            .await
            .map_err(db(DOING))?;
    }
    tx.commit().await.map_err(db(DOING))?;
    Ok(())
}

/// A write transaction: on SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so it waits for the log's writer instead of failing
/// half-way when it first writes.
async fn begin_write<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    doing: &'static str,
) -> Result<sqlx::Transaction<'static, DB>> {
    let statement = if DB::NAME == "SQLite" {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    };
    pool.begin_with(statement).await.map_err(db(doing))
}

async fn insert_bundle<DB>(conn: &mut DB::Connection, b: &BundleRow) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let sql = format!(
        "INSERT INTO retention_bundles ({BUNDLE_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'archived') ON CONFLICT (name) DO NOTHING"
    );
    sqlx::query(&sql)
        .bind(b.name.as_str())
        .bind(b.sha256.as_str())
        .bind(b.events)
        .bind(b.first_seq)
        .bind(b.last_seq)
        .bind(b.oldest_at_us)
        .bind(b.run_id)
        .execute(&mut *conn)
        .await
        .map_err(db("recording an archive bundle"))?;
    Ok(())
}

async fn insert_ranges<DB>(
    conn: &mut DB::Connection,
    runs: &[(i64, i64)],
    bundle: Option<&str>,
) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    for &(first, last) in runs {
        sqlx::query(
            "INSERT INTO audit_archived (first_seq, last_seq, bundle) VALUES ($1, $2, $3) \
             ON CONFLICT (first_seq) DO NOTHING",
        )
        .bind(first)
        .bind(last)
        .bind(bundle)
        .execute(&mut *conn)
        .await
        .map_err(db("recording an archived stretch"))?;
    }
    Ok(())
}

fn decode_bundle(
    (name, sha256, events, first_seq, last_seq, oldest_at_us, run_id, state): BundleTuple,
) -> Result<BundleRow> {
    let purged = match state.as_str() {
        "archived" => false,
        "purged" => true,
        other => {
            return Err(Error::BadSetting {
                key: format!("retention_bundles.{name}"),
                reason: format!("unknown state {other:?}"),
            })
        }
    };
    Ok(BundleRow {
        name,
        sha256,
        events,
        first_seq,
        last_seq,
        oldest_at_us,
        run_id,
        purged,
    })
}

fn decode_hold(
    (
        id,
        session,
        technician,
        since,
        until,
        reason,
        created_by,
        created_at_us,
        released_by,
        released_at,
        release_reason,
    ): HoldRow,
) -> Result<Hold> {
    let bad = |what: &str| Error::BadSetting {
        key: format!("retention_holds.{id}"),
        reason: what.to_owned(),
    };
    let scope = match (session, technician, since, until) {
        (Some(s), None, None, None) => {
            HoldScope::Session(Uuid::from_slice(&s).map_err(|_| bad("a session id not 16 bytes"))?)
        }
        (None, Some(t), None, None) => HoldScope::Technician(t),
        (None, None, Some(since_us), Some(until_us)) => HoldScope::Period { since_us, until_us },
        _ => return Err(bad("not exactly one of session, technician or period")),
    };
    let released = match (released_by, released_at, release_reason) {
        (Some(by), Some(at_us), Some(reason)) => Some(Release { by, at_us, reason }),
        (None, None, None) => None,
        _ => return Err(bad("a release with missing fields")),
    };
    Ok(Hold {
        id,
        scope,
        reason,
        created_by,
        created_at_us,
        released,
    })
}

#[cfg(test)]
mod tests {
    use super::staying;

    #[test]
    fn what_stays_is_everything_outside_what_leaves() {
        let all = (i64::MIN, i64::MAX);
        assert_eq!(staying(&[]), vec![all]);
        assert_eq!(
            staying(&[(1, 10), (12, 20)]),
            vec![(i64::MIN, 0), (11, 11), (21, i64::MAX)]
        );
        assert_eq!(
            staying(&[(1, 10), (11, 20)]),
            vec![(i64::MIN, 0), (21, i64::MAX)]
        );
        assert_eq!(staying(&[(5, i64::MAX)]), vec![(i64::MIN, 4)]);
        assert_eq!(staying(&[(i64::MIN, 3)]), vec![(4, i64::MAX)]);
    }
}
