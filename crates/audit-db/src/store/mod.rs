//! The two stores behind one interface: SQLite (embedded default) and
//! PostgreSQL. Everything above this module is backend-neutral.

mod postgres;
pub(crate) mod row;
mod sqlite;
mod url;

pub use url::DbUrl;

use sqlx::migrate::Migrator;

use crate::chain::{Conversion, Head, Pending};
use crate::encoding;
use crate::error::{Error, Result};
use crate::merkle;
use crate::query::{Dialect, Filter, PageQuery, PageSender};
use crate::record::{Hash, Receipt, StoredEvent};
use postgres::PgStore;
use sqlite::SqliteStore;

/// Pool options without sqlx's maintenance task. With an idle timeout or a
/// maximum lifetime (sqlx's defaults) a task reaps idle connections, and in
/// sqlx 0.8.6 a race in its count of idle connections can make that task
/// spin at 100 % CPU for good (launchbadge/sqlx#3645, seen here once in a CI
/// run: a gateway busy for 15 minutes). Connections here go to a local file
/// or to a server this process uses steadily: nothing needs reaping, and a
/// connection the server dropped is found by the check before each use.
fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .idle_timeout(None)
        .max_lifetime(None)
}

/// Whether opening may create or change the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the database and schema if missing, and bring an older schema
    /// up to date (writers: gateway, `admin`).
    Create,
    /// Read only: the log must exist, hold this version's schema, and is
    /// neither created, migrated nor written (`audit verify`, `audit query`,
    /// reports). Appends fail.
    ReadOnly,
}

/// An open audit database of either kind. Cheap to clone (pools inside).
#[derive(Clone, Debug)]
pub struct Store(Backend);

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// The connection pool account statements run on (not the audit writer's).
pub(crate) enum Pools<'a> {
    Sqlite(&'a sqlx::SqlitePool),
    Postgres(&'a sqlx::PgPool),
}

/// Runs the same statement code against whichever pool the store has: the
/// SQL is written once with `$n` placeholders, which both backends accept.
macro_rules! on_pool {
    ($self:ident, $pool:ident => $body:expr) => {
        crate::store::on_pool!(store $self.store, $pool => $body)
    };
    (store $store:expr, $pool:ident => $body:expr) => {
        match $store.pools() {
            crate::store::Pools::Sqlite($pool) => $body,
            crate::store::Pools::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

macro_rules! dispatch {
    ($self:ident, $s:ident => $body:expr) => {
        match &$self.0 {
            Backend::Sqlite($s) => $body,
            Backend::Postgres($s) => $body,
        }
    };
}

impl Store {
    /// Opens the log at `url`, migrating its schema to this version's.
    /// A file or server that is unusable is reported without being changed.
    pub async fn open(url: &DbUrl, mode: OpenMode) -> Result<Self> {
        let backend = match url {
            DbUrl::Sqlite(path) => Backend::Sqlite(SqliteStore::open(path, mode).await?),
            DbUrl::Postgres(raw) => {
                Backend::Postgres(PgStore::open(raw, &url.to_string(), mode).await?)
            }
        };
        let store = Store(backend);
        // A restored database has part of a log: a tree (or a conversion)
        // over it would be of other leaves.
        if mode == OpenMode::Create && !crate::restored::is_restored(&store).await? {
            store.complete_tree().await?;
        }
        Ok(store)
    }

    /// Brings the Merkle tree up to the head where a log from before the
    /// tree is opened for writing (looked at first without the write lock).
    async fn complete_tree(&self) -> Result<()> {
        let head = self.head().await?;
        if self.tree_size().await? as i64 >= head.seq {
            return Ok(());
        }
        dispatch!(self, s => s.complete_tree().await)
    }

    /// Events the Merkle tree covers (the head's seq, unless the tree was cut).
    pub async fn tree_size(&self) -> Result<u64> {
        match self.pools() {
            Pools::Sqlite(pool) => tree_size_with(pool).await,
            Pools::Postgres(pool) => tree_size_with(pool).await,
        }
    }

    /// The stored tree hashes at `indexes`.
    pub async fn tree_hashes(&self, indexes: &[u64]) -> Result<merkle::Stored> {
        let found = match self.pools() {
            Pools::Sqlite(pool) => tree_hashes_with(pool, indexes).await,
            Pools::Postgres(pool) => tree_hashes_with(pool, indexes).await,
        };
        match found {
            Err(Error::Tree(_)) if crate::restored::is_restored(self).await? => {
                Err(Error::Restored {
                    what: "a Merkle root, proof or checkpoint",
                })
            }
            found => found,
        }
    }

    /// The Merkle root over the first `size` events.
    pub async fn root(&self, size: u64) -> Result<Hash> {
        let stored = self.tree_hashes(&merkle::root_indexes(size)).await?;
        Ok(merkle::root(size, &stored)?)
    }

    /// The inclusion proof of the event at `seq` in the tree of `size` events.
    pub async fn inclusion_proof(&self, size: u64, seq: i64) -> Result<Vec<Hash>> {
        let leaf = (seq - 1) as u64;
        let stored = self
            .tree_hashes(&merkle::inclusion_indexes(size, leaf)?)
            .await?;
        Ok(merkle::inclusion_proof(size, leaf, &stored)?)
    }

    /// The proof that the tree of `new_size` events extends that of `old_size`.
    pub async fn consistency_proof(&self, new_size: u64, old_size: u64) -> Result<Vec<Hash>> {
        let stored = self
            .tree_hashes(&merkle::consistency_indexes(new_size, old_size)?)
            .await?;
        Ok(merkle::consistency_proof(new_size, old_size, &stored)?)
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.0 {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The pool for statements outside the audit log (accounts, settings).
    pub(crate) fn pools(&self) -> Pools<'_> {
        match &self.0 {
            Backend::Sqlite(s) => Pools::Sqlite(s.readers()),
            Backend::Postgres(s) => Pools::Postgres(s.readers()),
        }
    }

    /// The pool for bulk changes to the log's tables besides appends: the
    /// writer's on SQLite (its page cache, and one writer at a time), the
    /// pool on PostgreSQL.
    pub(crate) fn write_pools(&self) -> Pools<'_> {
        match &self.0 {
            Backend::Sqlite(s) => Pools::Sqlite(s.writer()),
            Backend::Postgres(s) => Pools::Postgres(s.readers()),
        }
    }

    /// Closes every connection (SQLite checkpoints its WAL on the last close).
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// The chain head: the last appended event's seq and hash.
    pub async fn head(&self) -> Result<Head> {
        dispatch!(self, s => s.head().await)
    }

    /// The highest seq of any stored row (0 when empty), whatever the head says.
    pub async fn max_seq(&self) -> Result<i64> {
        dispatch!(self, s => s.max_seq().await)
    }

    /// Up to `limit` events after seq `after` that match `filter`, in seq order.
    pub async fn page(&self, filter: &Filter, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let query = PageQuery::new(filter, self.dialect());
        dispatch!(self, s => s.page(&query, after, limit).await)
    }

    /// Starts reading every event `filter` matches into `pages` (see [`crate::query::stream`]).
    pub(crate) fn read_pages(&self, filter: &Filter, pages: PageSender) {
        let query = PageQuery::new(filter, self.dialect());
        dispatch!(self, s => s.read_pages(query, pages))
    }

    fn dialect(&self) -> Dialect {
        match self.0 {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Every `session.created` event whose session has no `session.ended`,
    /// in log order.
    pub async fn unended_sessions(&self) -> Result<Vec<StoredEvent>> {
        const SQL: &str = concat!(
            "SELECT ",
            crate::store::row::columns!(),
            " FROM audit_events c WHERE c.kind = 'session.created' AND NOT EXISTS \
             (SELECT 1 FROM audit_events e WHERE e.kind = 'session.ended' \
             AND e.session_id = c.session_id) ORDER BY c.seq"
        );
        let rows: Vec<row::RawRow> = match self.pools() {
            Pools::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
            Pools::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
        }
        .map_err(crate::error::db("looking for sessions without an end"))?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }

    /// The event with id `id`, if the live log holds it.
    pub async fn event_by_id(&self, id: &uuid::Uuid) -> Result<Option<StoredEvent>> {
        const SQL: &str = concat!(
            "SELECT ",
            crate::store::row::columns!(),
            " FROM audit_events WHERE event_id = $1"
        );
        let row: Option<row::RawRow> = match self.pools() {
            Pools::Sqlite(pool) => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await,
            Pools::Postgres(pool) => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await,
        }
        .map_err(crate::error::db("looking an event up by id"))?;
        row.map(StoredEvent::try_from).transpose()
    }

    /// Up to `limit` stored rows with `from <= seq <= to`, in seq order.
    pub async fn range_page(&self, from: i64, to: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        dispatch!(self, s => s.range_page(from, to, limit).await)
    }

    /// Up to `limit` rows with `from <= seq <= to` in the packed form
    /// verification reads, with the tree's rows for the same seqs.
    pub async fn packed_page(&self, from: i64, to: i64, limit: i64) -> Result<PackedPage> {
        dispatch!(self, s => s.packed_page(from, to, limit).await)
    }

    /// Erases the bodies of the events at `seqs` (sorted, in the log): see
    /// [`crate::AuditLog::erase`], which records the erasure first. Returns
    /// how many bodies were erased (not those erased before).
    pub(crate) async fn erase_bodies(&self, seqs: &[i64]) -> Result<u64> {
        dispatch!(self, s => s.erase_bodies(seqs).await)
    }

    /// Appends a batch in one durable transaction and returns a receipt per
    /// event. Only the writer task calls this.
    ///
    /// Duplicates are rare (only resends), so the first attempt does not look
    /// them up; a unique violation rolls it back and the second attempt does.
    pub(crate) async fn write_batch(
        &self,
        batch: &[&Pending],
        recorded_at_us: i64,
    ) -> Result<Vec<Receipt>> {
        match dispatch!(self, s => s.write_once(batch, recorded_at_us, false).await) {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(e) if crate::restored::is_restored(self).await? => {
                tracing::debug!("append refused: {e}");
                return Err(Error::Restored {
                    what: "appending an event",
                });
            }
            Err(e) => return Err(e),
        }
        dispatch!(self, s => s.write_once(batch, recorded_at_us, true).await)?
            .ok_or_else(|| Error::Append("event id conflict persisted after lookup".into()))
    }
}

/// A stretch of the log as verification reads it.
#[derive(Debug, Default)]
pub struct PackedPage {
    /// (seq, row packed as [`crate::encoding::Packed`]), in seq order;
    /// `None` where the database could not build it (a NULL where none
    /// may be, a value of the wrong type).
    pub rows: Vec<(i64, Option<Vec<u8>>)>,
    /// The Merkle tree's rows (seq, hashes) of the seqs asked for, in seq
    /// order (archived events have a row here and none in `rows`).
    pub tree: Vec<(i64, Vec<u8>)>,
}

/// Refuses a database whose schema is newer than the migrations compiled
/// in, or (read only, where it may not be migrated) older.
pub(crate) fn check_schema_version(
    found: Option<i64>,
    migrator: &Migrator,
    mode: OpenMode,
) -> Result<()> {
    let supported = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match found {
        Some(found) if found > supported => Err(Error::SchemaTooNew { found, supported }),
        Some(found) if found < supported && mode == OpenMode::ReadOnly => {
            Err(Error::SchemaTooOld { found, supported })
        }
        _ => Ok(()),
    }
}

/// The stored tree hashes at `indexes`, read through `executor` (a pool,
/// or the writer's transaction) of either backend.
pub(crate) async fn tree_hashes_with<'e, DB, E>(
    executor: E,
    indexes: &[u64],
) -> Result<merkle::Stored>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'e, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64, Vec<u8>): sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    if indexes.is_empty() {
        return Ok(merkle::Stored::new());
    }
    let seqs = merkle::rows_for(indexes);
    let sql = merkle::select_sql(seqs.len());
    let mut q = sqlx::query_as::<DB, (i64, Vec<u8>)>(&sql);
    for seq in seqs {
        q = q.bind(seq);
    }
    let rows = q
        .fetch_all(executor)
        .await
        .map_err(crate::error::db("reading the Merkle tree"))?;
    Ok(merkle::from_rows(indexes, rows)?)
}

/// Events read per step when the tree is brought up to the head.
pub(crate) const TREE_BACKFILL_PAGE: i64 = 10_000;

/// Events the Merkle tree covers (its last row's seq), read through
/// `executor` of either backend.
pub(crate) async fn tree_size_with<'e, DB, E>(executor: E) -> Result<u64>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'e, Database = DB>,
    for<'r> (Option<i64>,): sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM audit_tree")
        .fetch_one(executor)
        .await
        .map_err(crate::error::db("reading the Merkle tree's size"))?;
    Ok(max.map_or(0, |m| m.max(0) as u64))
}

/// What appending `leaves` to the tree of `size` events stores (rows of
/// `audit_tree`) and the new tree's size and right edge, for the cache once
/// the caller's transaction has committed. The edge comes from `cache`, or
/// through `executor` when this process did not make the last append.
pub(crate) async fn tree_growth<'e, DB, E>(
    executor: E,
    size: i64,
    leaves: &[Hash],
    cache: &merkle::EdgeCache,
) -> Result<TreeGrowth>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'e, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64, Vec<u8>): sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let edge = tree_edge(executor, size, cache).await?;
    grow(size, leaves, &edge)
}

/// The rows a batch adds to `audit_tree`, and the tree's size and right
/// edge after it.
pub(crate) type TreeGrowth = (Vec<(i64, Vec<u8>)>, (u64, merkle::Stored));

/// The right edge of the tree of `size` events: from `cache`, or read
/// through `executor` when this process did not make the last append.
pub(crate) async fn tree_edge<'e, DB, E>(
    executor: E,
    size: i64,
    cache: &merkle::EdgeCache,
) -> Result<merkle::Stored>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'e, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64, Vec<u8>): sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    match cache.take(size as u64) {
        Some(edge) => Ok(edge),
        None => tree_hashes_with(executor, &merkle::frontier(size as u64)).await,
    }
}

/// [`tree_growth`] from a known edge: CPU only.
pub(crate) fn grow(size: i64, leaves: &[Hash], edge: &merkle::Stored) -> Result<TreeGrowth> {
    let size = size as u64;
    let nodes = merkle::append(size, leaves, edge)?;
    let new_size = size + leaves.len() as u64;
    let new_edge = merkle::edge_after(new_size, edge, &nodes);
    Ok((merkle::leaf_rows(size, &nodes), (new_size, new_edge)))
}

/// Inserts rows of `audit_tree` on one backend's connection (each backend
/// writes them its own way: a multi-row VALUES, or arrays and UNNEST).
pub(crate) type InsertTree<DB> = for<'c> fn(
    &'c mut <DB as sqlx::Database>::Connection,
    &'c [(i64, Vec<u8>)],
) -> futures::future::BoxFuture<'c, Result<()>>;

/// The events of seqs `$1..=$2`, at most `$3`, in the column order both
/// backends read (rusqlite too: SQLite numbers `$n` in order of appearance).
pub(crate) const RANGE_SQL: &str = concat!(
    "SELECT ",
    row::columns!(),
    " FROM audit_events WHERE seq BETWEEN $1 AND $2 ORDER BY seq LIMIT $3"
);

/// Brings a log from an older vigil up to date inside the caller's locked
/// transaction on `conn`, whose chain head is `head`: its rows are
/// converted to encoding format 3 (if they are older), then the Merkle tree
/// is brought up to the head (a log written before the tree existed, or
/// just converted), a page of events at a time.
pub(crate) async fn complete_with<DB>(
    conn: &mut DB::Connection,
    head: Head,
    insert: InsertTree<DB>,
) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i16,): sqlx::FromRow<'r, DB::Row>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
    for<'r> (Option<i64>,): sqlx::FromRow<'r, DB::Row>,
    for<'r> (i64, Vec<u8>): sqlx::FromRow<'r, DB::Row>,
    for<'r> row::RawRow: sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let head = convert_rows::<DB>(conn, head).await?;
    let mut size = tree_size_with(&mut *conn).await?;
    while (size as i64) < head.seq {
        let rows: Vec<row::RawRow> = sqlx::query_as(RANGE_SQL)
            .bind(size as i64 + 1)
            .bind(head.seq)
            .bind(TREE_BACKFILL_PAGE)
            .fetch_all(&mut *conn)
            .await
            .map_err(crate::error::db("reading events for the Merkle tree"))?;
        let leaves = leaves_of(rows)?;
        if leaves.is_empty() {
            break;
        }
        let fresh = merkle::EdgeCache::default();
        let (tree_rows, _) = tree_growth(&mut *conn, size as i64, &leaves, &fresh).await?;
        insert(conn, &tree_rows).await?;
        size += leaves.len() as u64;
    }
    Ok(())
}

/// Converts a log written in encoding formats 1 and 2 to format 3 (see
/// [`crate::chain::Conversion`]) inside the caller's locked transaction on
/// `conn`, and returns the new head; a log whose first row is of format 3
/// is left alone. A log that does not verify is refused, its rows unchanged.
async fn convert_rows<DB>(conn: &mut DB::Connection, head: Head) -> Result<Head>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i16,): sqlx::FromRow<'r, DB::Row>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
    for<'r> row::RawRow: sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let first: Option<(i16,)> =
        sqlx::query_as("SELECT format FROM audit_events ORDER BY seq LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(crate::error::db("reading the log's format"))?;
    if first.is_none_or(|(format,)| format >= encoding::CURRENT_FORMAT) {
        return Ok(head);
    }
    tracing::info!(
        events = head.seq,
        "converting the audit log to encoding format 3"
    );
    let mut conversion = Conversion::new(head.seq);
    let mut after = 0;
    loop {
        let rows: Vec<row::RawRow> = sqlx::query_as(RANGE_SQL)
            .bind(after + 1)
            .bind(head.seq)
            .bind(TREE_BACKFILL_PAGE)
            .fetch_all(&mut *conn)
            .await
            .map_err(crate::error::db("reading events to convert"))?;
        let Some(last) = rows.last().map(|r| r.seq()) else {
            break;
        };
        after = last;
        for row in rows {
            let event = StoredEvent::try_from(row)?;
            let new = conversion.push(&event).map_err(Error::NotConverted)?;
            sqlx::query(
                "UPDATE audit_events SET format = 3, body_salt = $1, prev_hash = $2, hash = $3 \
                 WHERE seq = $4",
            )
            .bind(&new.salt[..])
            .bind(&new.prev_hash.0[..])
            .bind(&new.hash.0[..])
            .bind(new.seq)
            .execute(&mut *conn)
            .await
            .map_err(crate::error::db("converting an event"))?;
        }
    }
    let (max_seq,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM audit_events")
        .fetch_one(&mut *conn)
        .await
        .map_err(crate::error::db("reading the last seq"))?;
    let new_head = conversion
        .finish(head, max_seq)
        .map_err(Error::NotConverted)?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(new_head.seq)
        .bind(&new_head.hash.0[..])
        .execute(&mut *conn)
        .await
        .map_err(crate::error::db("moving the chain head"))?;
    Ok(new_head)
}

/// Erases the bodies at `seqs` in the caller's transaction on `conn`:
/// each keeps the digest its leaf committed to (taken from the stored
/// payload and salt, so a body altered before its erasure still shows as
/// altered: the digest then differs from the leaf's). Rows already erased
/// are left as they are.
pub(crate) async fn erase_with<DB>(conn: &mut DB::Connection, seqs: &[i64]) -> Result<u64>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (Option<String>, Option<Vec<u8>>): sqlx::FromRow<'r, DB::Row>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let mut erased = 0;
    for &seq in seqs {
        let row: Option<(Option<String>, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT payload, body_salt FROM audit_events WHERE seq = $1")
                .bind(seq)
                .fetch_optional(&mut *conn)
                .await
                .map_err(crate::error::db("reading a body to erase"))?;
        let (payload, salt) = match row {
            Some((Some(payload), Some(salt))) => (payload, salt),
            // Gone already, or nothing that could be erased (a row of an
            // unconverted log has no salt; verify names it).
            _ => continue,
        };
        let salt: encoding::Salt = salt.as_slice().try_into().map_err(|_| Error::BadRow {
            seq,
            reason: format!(
                "body_salt is {} bytes, not {}",
                salt.len(),
                encoding::SALT_LEN
            ),
        })?;
        let digest = encoding::body_digest(&salt, &payload);
        sqlx::query(
            "UPDATE audit_events SET payload = NULL, body_salt = NULL, body_digest = $1 \
             WHERE seq = $2",
        )
        .bind(&digest[..])
        .bind(seq)
        .execute(&mut *conn)
        .await
        .map_err(crate::error::db("erasing a body"))?;
        erased += 1;
    }
    Ok(erased)
}

/// The leaf hashes of stored rows, in order.
fn leaves_of(rows: Vec<row::RawRow>) -> Result<Vec<Hash>> {
    rows.into_iter()
        .map(|r| {
            let e = StoredEvent::try_from(r)?;
            e.leaf_hash().map_err(|f| Error::BadRow {
                seq: e.seq,
                reason: f.to_string(),
            })
        })
        .collect()
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Whether retrying the same write may succeed: lock contention with another
/// process, a dropped connection, a serialisation failure.
pub(crate) fn is_transient(e: &Error) -> bool {
    let Error::Db { source, .. } = e else {
        return false;
    };
    match source {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // SQLite BUSY / LOCKED (and their extended codes); PostgreSQL
            // connection exceptions, serialisation failure, deadlock, shutdown.
            let sqlite_busy = code
                .parse::<u32>()
                .is_ok_and(|c| c & 0xff == 5 || c & 0xff == 6);
            sqlite_busy || code.starts_with("08") || ["40001", "40P01", "57P01"].contains(&&*code)
        }
        _ => false,
    }
}
