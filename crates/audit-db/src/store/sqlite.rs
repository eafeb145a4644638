//! The embedded SQLite store: one file in the data directory, WAL, one
//! writer connection taking `BEGIN IMMEDIATE`, a small pool of readers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite};
use uuid::Uuid;

use super::{check_schema_version, is_unique_violation, OpenMode, PackedPage, RANGE_SQL};
use crate::chain::{self, Head, Pending, Placed};
use crate::encoding::{BodyRef, CURRENT_FORMAT};
use crate::error::{db, Error, Result};
use crate::merkle;
use crate::query::{PageQuery, PageSender, Param, READ_PAGE};
use crate::record::{Hash, Receipt, StoredEvent};
use crate::store::row::{body, columns, placed, HeadRow, PlacedRow, RawRow, COLUMN_NAMES};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Rows per INSERT statement: 15 parameters each stays far below SQLite's
/// variable limit, and equal-sized chunks reuse one prepared statement.
const INSERT_CHUNK: usize = 512;
/// Ids per duplicate-lookup statement.
const LOOKUP_CHUNK: usize = 500;

/// Page size of a new database file, in bytes.
const PAGE_SIZE: u32 = 16_384;

/// The writer's page cache, in KiB (negative, as PRAGMA cache_size takes it).
const WRITER_CACHE: &str = "-65536";

/// How long a write waits for another process holding the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// An open SQLite audit database.
#[derive(Clone, Debug)]
pub(crate) struct SqliteStore {
    path: PathBuf,
    writer: SqlitePool,
    readers: SqlitePool,
    edge: merkle::EdgeCache,
}

impl SqliteStore {
    /// Opens (and with [`OpenMode::Create`], creates) the database at `path`,
    /// probing an existing file with reads only before anything writes to it.
    pub(crate) async fn open(path: &Path, mode: OpenMode) -> Result<Self> {
        let exists = path.try_exists().map_err(|source| Error::Create {
            path: path.to_owned(),
            source,
        })?;
        // Held while this process makes a new file into a log, so that
        // another one never takes the empty file for an emptied log.
        let mut creating = None;
        if !exists && mode == OpenMode::ReadOnly {
            return Err(Error::NotFound {
                path: path.to_owned(),
            });
        } else if !exists {
            let owned = path.to_owned();
            creating = tokio::task::spawn_blocking(move || create_private(&owned))
                .await
                .map_err(|e| Error::Task(format!("creating the database: {e}")))??;
        }
        if creating.is_none() {
            let owned = path.to_owned();
            tokio::task::spawn_blocking(move || probe(&owned, mode))
                .await
                .map_err(|e| Error::Task(format!("probing the database: {e}")))??;
        }
        if mode == OpenMode::ReadOnly {
            return Self::open_read_only(path).await;
        }

        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(mode == OpenMode::Create)
            .busy_timeout(BUSY_TIMEOUT)
            // For a new file only (an existing one keeps its size): each event
            // lands in the table, four indexes and the tree, and larger pages mean fewer
            // splits and WAL frames per event (+11 % appends at 1M events, measured).
            .page_size(PAGE_SIZE)
            // FULL: a commit is on disk before the append is acknowledged.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(false);
        let connect_err = |e: sqlx::Error| Error::Connect {
            target: format!("sqlite://{}", path.display()),
            cause: e.to_string(),
        };
        let writer = super::pool_options::<Sqlite>()
            .max_connections(1)
            .connect_with(
                options
                    .clone()
                    // Retention deletes a bundle's events (up to 250,000
                    // rows) in one statement: seconds are expected.
                    .log_slow_statements(log::LevelFilter::Warn, std::time::Duration::from_secs(60))
                    .journal_mode(SqliteJournalMode::Wal)
                    // Appends touch the table, four indexes and the tree; SQLite's default
                    // 2 MB page cache sends most of those page reads to the kernel.
                    .pragma("cache_size", WRITER_CACHE),
            )
            .await
            .map_err(connect_err)?;
        migrate(&writer).await?;
        {
            let mut conn = writer
                .acquire()
                .await
                .map_err(db("acquiring the writer connection"))?;
            crate::archive::vacuum_if_pending::<Sqlite>(&mut conn).await?;
        }
        drop(creating);
        let readers = super::pool_options::<Sqlite>()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        Ok(Self {
            path: path.to_owned(),
            writer,
            readers,
            edge: merkle::EdgeCache::default(),
        })
    }

    /// Connections that cannot write (`PRAGMA query_only`): no schema,
    /// journal mode or page size is set, nothing migrated, and any statement
    /// that would change the file fails. Not `SQLITE_OPEN_READONLY`: such a
    /// connection cannot remove the `-wal` and `-shm` files SQLite makes to
    /// read a WAL log, so every read would leave them behind; a read-write
    /// handle in query-only mode removes them on close (and SQLite opens it
    /// read-only anyway where the file is not writable).
    async fn open_read_only(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .pragma("query_only", "ON")
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(false);
        let readers = super::pool_options::<Sqlite>()
            // One: the heavy reads go through rusqlite, and each sqlx
            // connection's close is acknowledged before its worker has let
            // go of the file, so concurrent ones (verify's stretches read
            // the tree's edges at once) could leave -wal/-shm behind at exit.
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| Error::Connect {
                target: format!("sqlite://{}", path.display()),
                cause: e.to_string(),
            })?;
        Ok(Self {
            path: path.to_owned(),
            writer: readers.clone(),
            readers,
            edge: merkle::EdgeCache::default(),
        })
    }

    /// The reader pool, also used for the few non-audit writes (accounts).
    pub(crate) fn readers(&self) -> &SqlitePool {
        &self.readers
    }

    /// The writer's pool (one connection, a large page cache): for bulk
    /// changes besides appends, which it serialises with them.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    pub(crate) async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    /// One attempt at a batch (see [`super::Store::write_batch`]).
    pub(crate) async fn write_once(
        &self,
        batch: &[&Pending],
        recorded_at_us: i64,
        look_up_duplicates: bool,
    ) -> Result<Option<Vec<Receipt>>> {
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(db("acquiring the writer connection"))?;
        write_once(
            &mut conn,
            batch,
            recorded_at_us,
            look_up_duplicates,
            &self.edge,
        )
        .await
    }

    /// Brings the tree up to the head if a log from before it is opened.
    pub(crate) async fn complete_tree(&self) -> Result<()> {
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(db("acquiring the writer connection"))?;
        complete_tree(&mut conn).await
    }

    /// Erases bodies (see [`super::erase_with`]) so that their text leaves
    /// the file: `secure_delete` zeroes the freed space of the rewritten
    /// pages, and a checkpoint then moves them into the database and
    /// empties the WAL, which still held the pages as first written.
    pub(crate) async fn erase_bodies(&self, seqs: &[i64]) -> Result<u64> {
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(db("acquiring the writer connection"))?;
        sqlx::query("PRAGMA secure_delete = ON")
            .execute(&mut *conn)
            .await
            .map_err(db("turning on secure deletion"))?;
        let erased = async {
            let mut tx = conn
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(db("starting a write transaction"))?;
            let erased = super::erase_with::<Sqlite>(&mut tx, seqs).await?;
            // The index may hold the erased chat: emptied with it, built again later.
            crate::session_index::reset_with::<Sqlite>(&mut tx).await?;
            tx.commit().await.map_err(db("committing the erasure"))?;
            Ok::<_, Error>(erased)
        }
        .await;
        // Off again whatever happened: appends need not pay for it.
        let off = sqlx::query("PRAGMA secure_delete = OFF")
            .execute(&mut *conn)
            .await
            .map_err(db("turning off secure deletion"));
        let erased = erased?;
        off?;
        // (busy, WAL frames, frames checkpointed): a reader still using
        // the old pages keeps the WAL; the next checkpoint finishes the job.
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await
            .map_err(db("checkpointing the erasure"))?;
        if busy != 0 {
            tracing::warn!(
                "a reader held up the checkpoint: erased text stays in the WAL file until the next one"
            );
        }
        Ok(erased)
    }

    pub(crate) async fn head(&self) -> Result<Head> {
        let mut conn = self
            .readers
            .acquire()
            .await
            .map_err(db("acquiring a reader"))?;
        read_head(&mut conn).await
    }

    pub(crate) async fn max_seq(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_events")
            .fetch_one(&self.readers)
            .await
            .map_err(db("reading the last seq"))
    }

    /// One page of `query` after seq `after`, on a blocking thread (see
    /// [`SqliteStore::read_pages`] for why not through sqlx).
    pub(crate) async fn page(
        &self,
        query: &PageQuery,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let (path, query) = (self.path.clone(), query.clone());
        tokio::task::spawn_blocking(move || {
            let conn = reader(&path, QUERYING)?;
            let mut page = Vec::new();
            read_page(&conn, &path, &query, after, limit, &mut page)?;
            Ok(page)
        })
        .await
        .map_err(|e| Error::Task(format!("reading events: {e}")))?
    }

    /// Reads every page of `query` into `pages` from a blocking thread with
    /// one connection of its own, until the last page or until the receiver
    /// is dropped. Through rusqlite rather than sqlx: sqlx-sqlite hands each
    /// row from its worker thread to the async side and decodes it column by
    /// column through its type machinery, ~4 µs a row (measured); here a row
    /// is a few `sqlite3_column_*` calls. Each page is its own statement
    /// execution, so no read transaction outlives a page and a long report
    /// never holds up WAL checkpoints.
    pub(crate) fn read_pages(&self, query: PageQuery, pages: PageSender) {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match reader(&path, QUERYING) {
                Ok(conn) => conn,
                Err(e) => {
                    // The receiver may be gone already; then nobody is waiting.
                    let _ = pages.blocking_send(Err(e));
                    return;
                }
            };
            let mut after = query.start;
            loop {
                let mut page = Vec::with_capacity(READ_PAGE as usize);
                let read = read_page(&conn, &path, &query, after, READ_PAGE, &mut page);
                let full = read.is_ok() && page.len() as i64 == READ_PAGE;
                let next = page.last().map(|e| e.seq).filter(|_| full);
                // The rows before a failure go out first: a listing shows
                // everything it could read, then says where it stopped.
                if !page.is_empty() && pages.blocking_send(Ok(page)).is_err() {
                    return;
                }
                if let Err(e) = read {
                    let _ = pages.blocking_send(Err(e));
                    return;
                }
                match next {
                    Some(seq) => after = seq,
                    None => return,
                }
            }
        });
    }

    /// Rows `from..=to` packed for verification. Read through rusqlite on a
    /// blocking thread: sqlx-sqlite hands every row from its worker thread to
    /// the async side, which alone costs ~4 µs a row (measured), more than the
    /// whole verification budget.
    pub(crate) async fn packed_page(&self, from: i64, to: i64, limit: i64) -> Result<PackedPage> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || read_packed(&path, from, to, limit))
            .await
            .map_err(|e| Error::Task(format!("reading events: {e}")))?
    }

    pub(crate) async fn range_page(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        sqlx::query_as::<_, RawRow>(RANGE_SQL)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(&self.readers)
            .await
            .map_err(db("reading events"))?
            .into_iter()
            .map(StoredEvent::try_from)
            .collect()
    }
}

/// A rusqlite connection to an existing file that cannot write (`PRAGMA
/// query_only`), for reading. Not `SQLITE_OPEN_READONLY`, for the reason
/// [`SqliteStore::open_read_only`] gives: it could not remove the -wal and
/// -shm files it needs; this one, if it is the last user, removes them when
/// it closes.
fn open_existing(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// What a reader connection is being used for, for its errors.
const QUERYING: &str = "querying events";
const VERIFYING: &str = "reading events for verification";

/// A read failure of `path` while `doing`.
fn read_error<'a>(path: &'a Path, doing: &'static str) -> impl Fn(rusqlite::Error) -> Error + 'a {
    move |e| Error::Read {
        path: path.to_owned(),
        doing,
        cause: e.to_string(),
    }
}

/// A rusqlite reader of the log at `path` that waits for writers as the
/// store's other connections do.
fn reader(path: &Path, doing: &'static str) -> Result<rusqlite::Connection> {
    let fail = read_error(path, doing);
    let conn = open_existing(path).map_err(&fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&fail)?;
    Ok(conn)
}

/// One page of `query` after seq `after`, into `page` (which keeps the
/// rows read before a failure).
fn read_page(
    conn: &rusqlite::Connection,
    path: &Path,
    query: &PageQuery,
    after: i64,
    limit: i64,
    page: &mut Vec<StoredEvent>,
) -> Result<()> {
    use rusqlite::types::Value;
    let fail = read_error(path, QUERYING);
    let mut stmt = conn.prepare_cached(&query.sql).map_err(&fail)?;
    let mut index = 1;
    let mut bind = |value: Value| {
        let at = index;
        index += 1;
        stmt.raw_bind_parameter(at, value)
    };
    bind(Value::Integer(after)).map_err(&fail)?;
    for p in &query.params {
        let value = match p {
            Param::Int(n) => Value::Integer(*n),
            Param::Uuid(u) => Value::Blob(u.as_bytes().to_vec()),
            Param::Text(t) => Value::Text(t.clone()),
        };
        bind(value).map_err(&fail)?;
    }
    bind(Value::Integer(limit)).map_err(&fail)?;
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(&fail)? {
        page.push(stored_row(row)?);
    }
    Ok(())
}

/// A row as a [`StoredEvent`], every column checked for its type and size.
fn stored_row(row: &rusqlite::Row<'_>) -> Result<StoredEvent> {
    use rusqlite::types::ValueRef;
    let seq: i64 = match row.get_ref(0) {
        Ok(ValueRef::Integer(n)) => n,
        _ => {
            return Err(Error::BadRow {
                seq: 0,
                reason: "seq is not an integer".into(),
            })
        }
    };
    let bad = |column: &str, what: &str| Error::BadRow {
        seq,
        reason: format!("{column} is not {what}"),
    };
    let value = |i| {
        row.get_ref(i)
            .map_err(|e| bad(COLUMN_NAMES[i], &e.to_string()))
    };
    let text = |i| match value(i)? {
        ValueRef::Text(t) => {
            String::from_utf8(t.to_vec()).map_err(|_| bad(COLUMN_NAMES[i], "UTF-8 text"))
        }
        _ => Err(bad(COLUMN_NAMES[i], "text")),
    };
    let int = |i| match value(i)? {
        ValueRef::Integer(n) => Ok(n),
        _ => Err(bad(COLUMN_NAMES[i], "an integer")),
    };
    let opt_int = |i| match value(i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n)),
        _ => Err(bad(COLUMN_NAMES[i], "an integer or NULL")),
    };
    let opt_blob = |i| match value(i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(b) => Ok(Some(b)),
        _ => Err(bad(COLUMN_NAMES[i], "a blob or NULL")),
    };
    let uuid = |v: ValueRef<'_>, i| match v {
        ValueRef::Blob(b) => Uuid::from_slice(b).map_err(|_| bad(COLUMN_NAMES[i], "a 16-byte id")),
        _ => Err(bad(COLUMN_NAMES[i], "a 16-byte id")),
    };
    let hash = |i| match value(i)? {
        ValueRef::Blob(b) => {
            Hash::from_slice(b).ok_or_else(|| bad(COLUMN_NAMES[i], "a 32-byte hash"))
        }
        _ => Err(bad(COLUMN_NAMES[i], "a 32-byte hash")),
    };
    Ok(StoredEvent {
        seq,
        id: uuid(value(1)?, 1)?,
        session: match value(2)? {
            ValueRef::Null => None,
            v => Some(uuid(v, 2)?),
        },
        occurred_at_us: int(3)?,
        recorded_at_us: int(4)?,
        source: text(5)?,
        actor: text(6)?,
        kind: text(7)?,
        body: body(
            seq,
            match value(8)? {
                ValueRef::Null => None,
                _ => Some(text(8)?),
            },
            opt_blob(13)?,
            opt_blob(14)?,
        )?,
        format: i16::try_from(int(9)?).map_err(|_| bad("format", "a small integer"))?,
        prev_hash: hash(10)?,
        hash: hash(11)?,
        reported_at_us: opt_int(12)?,
    })
}

fn read_packed(path: &Path, from: i64, to: i64, limit: i64) -> Result<PackedPage> {
    use rusqlite::types::ValueRef;
    let fail = read_error(path, VERIFYING);
    let conn = reader(path, VERIFYING)?;
    let mut page = PackedPage {
        rows: Vec::with_capacity(limit.clamp(0, 65_536) as usize),
        tree: Vec::new(),
    };
    let mut stmt = conn.prepare_cached(RANGE_SQL).map_err(&fail)?;
    let mut rows = stmt.query((from, to, limit)).map_err(&fail)?;
    while let Some(row) = rows.next().map_err(&fail)? {
        let seq: i64 = row.get(0).map_err(&fail)?;
        page.rows.push((seq, pack_row(row)));
    }
    let mut stmt = conn
        .prepare_cached("SELECT seq, hashes FROM audit_tree WHERE seq BETWEEN ? AND ? ORDER BY seq")
        .map_err(&fail)?;
    let mut rows = stmt.query((from, to)).map_err(&fail)?;
    while let Some(row) = rows.next().map_err(&fail)? {
        let seq: i64 = row.get(0).map_err(&fail)?;
        // Anything but a blob cannot match what the events give.
        let hashes = match row.get_ref(1).map_err(&fail)? {
            ValueRef::Blob(b) => b.to_vec(),
            _ => Vec::new(),
        };
        page.tree.push((seq, hashes));
    }
    Ok(page)
}

/// Packs a row as [`crate::encoding::Packed`]; `None` when a column holds a
/// value of the wrong type or size, which no append writes.
fn pack_row(row: &rusqlite::Row<'_>) -> Option<Vec<u8>> {
    use rusqlite::types::ValueRef;
    let blob = |i| match row.get_ref(i).ok()? {
        ValueRef::Blob(b) => Some(b),
        _ => None,
    };
    let text = |i| match row.get_ref(i).ok()? {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    };
    let int = |i| match row.get_ref(i).ok()? {
        ValueRef::Integer(n) => Some(n),
        _ => None,
    };
    let id = Uuid::from_slice(blob(1)?).ok()?;
    let session = match row.get_ref(2).ok()? {
        ValueRef::Null => None,
        ValueRef::Blob(b) => Some(Uuid::from_slice(b).ok()?),
        _ => return None,
    };
    let opt_blob = |i| match row.get_ref(i).ok()? {
        ValueRef::Null => Some(None),
        ValueRef::Blob(b) => Some(Some(b)),
        _ => None,
    };
    let body = match (row.get_ref(8).ok()?, opt_blob(13)?) {
        (ValueRef::Null, _) => BodyRef::Erased {
            digest: opt_blob(14)??.try_into().ok()?,
        },
        (_, salt) => BodyRef::Kept {
            payload: text(8)?,
            salt: match salt {
                None => None,
                Some(s) => Some(s.try_into().ok()?),
            },
        },
    };
    let fields = crate::encoding::Fields {
        seq: int(0)?,
        id: &id,
        session: session.as_ref(),
        occurred_at_us: int(3)?,
        recorded_at_us: int(4)?,
        reported_at_us: match row.get_ref(12).ok()? {
            ValueRef::Null => None,
            ValueRef::Integer(n) => Some(n),
            _ => return None,
        },
        source: text(5)?,
        actor: text(6)?,
        kind: text(7)?,
        body,
    };
    let format = i16::try_from(int(9)?).ok()?;
    let prev_hash: &[u8; 32] = blob(10)?.try_into().ok()?;
    let hash: &[u8; 32] = blob(11)?.try_into().ok()?;
    Some(crate::encoding::pack(format, prev_hash, hash, &fields))
}

/// Brings the schema up to date under SQLite's write lock. sqlx's migrator
/// takes no lock on SQLite, so two processes creating the same new log would
/// both run the first migration; inside `BEGIN IMMEDIATE` (each migration
/// becomes a savepoint) the second waits and then finds it applied.
async fn migrate(writer: &SqlitePool) -> Result<()> {
    let mut conn = writer
        .acquire()
        .await
        .map_err(db("acquiring the writer connection"))?;
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db("locking the database to migrate it"))?;
    MIGRATOR.run(&mut *tx).await?;
    tx.commit().await.map_err(db("committing the schema"))
}

/// Checks an existing file without writing to it: is it a SQLite database,
/// is it ours, and is its schema one this version understands. Through
/// rusqlite, whose close is synchronous: the -wal and -shm files this
/// connection may create are gone again when it returns, so a refused file
/// is left exactly as it was.
fn probe(path: &Path, mode: OpenMode) -> Result<()> {
    let corrupt = |e: rusqlite::Error| Error::Corrupt {
        path: path.to_owned(),
        cause: e.to_string(),
    };
    let tables = |conn: &rusqlite::Connection| -> Result<Vec<String>> {
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .and_then(|mut st| st.query_map([], |row| row.get(0))?.collect())
            .map_err(corrupt)
    };
    let mut conn = open_existing(path).map_err(corrupt)?;
    let mut names = tables(&conn)?;
    if names.is_empty() {
        // A process making the log right now holds its directory's lock
        // until the schema is in: look again once it is done.
        conn.close().map_err(|(_, e)| corrupt(e))?;
        let _held = lock_dir(path, false).map_err(|e| Error::Corrupt {
            path: path.to_owned(),
            cause: e.to_string(),
        })?;
        conn = open_existing(path).map_err(corrupt)?;
        names = tables(&conn)?;
    }
    let tables = names;
    // An emptied log is not a new one: starting a fresh chain in it would
    // hide what was removed.
    if !tables.iter().any(|t| t == "_sqlx_migrations") {
        return Err(if tables.is_empty() {
            Error::Empty {
                path: path.to_owned(),
            }
        } else {
            Error::Foreign {
                path: path.to_owned(),
            }
        });
    }
    let version: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM _sqlx_migrations", [], |row| {
            row.get(0)
        })
        .map_err(corrupt)?;
    check_schema_version(version, &MIGRATOR, mode)?;
    conn.close().map_err(|(_, e)| corrupt(e))?;
    check_private(path)
}

/// The database and its `-wal` and `-shm` files (which SQLite creates with
/// the database's own mode) must not be open to other users.
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        if let Ok(meta) = std::fs::metadata(&file) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(Error::Exposed { path: file, mode });
            }
        }
    }
    Ok(())
}

/// A new, empty database file readable by its owner only, in a directory
/// (made if missing) that only its owner may enter. SQLite then gives the
/// `-wal` and `-shm` files the same mode. Returns the directory's lock,
/// held until it is dropped (once the schema is in), or `None` if another
/// process made the file first.
fn create_private(path: &Path) -> Result<Option<std::fs::File>> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let failed = |path: &Path, source| Error::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| failed(dir, e))?;
    }
    let held = lock_dir(path, true).map_err(|e| failed(path, e))?;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => Ok(Some(held)),
        // Another process made it first: it is probed like any existing file.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(failed(path, e)),
    }
}

/// Locks the directory of `path` (`flock`), shared or exclusive, until the
/// returned handle is dropped. The directory, not the database: closing
/// any other descriptor of the database file would drop the `fcntl` locks
/// SQLite holds on it in this process.
fn lock_dir(path: &Path, exclusive: bool) -> std::io::Result<std::fs::File> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let handle = std::fs::File::open(dir)?;
    if exclusive {
        handle.lock()?;
    } else {
        handle.lock_shared()?;
    }
    Ok(handle)
}

async fn read_head(conn: &mut SqliteConnection) -> Result<Head> {
    sqlx::query_as::<_, HeadRow>("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading the chain head"))?
        .ok_or(Error::NoHead)?
        .try_into()
}

/// One attempt at a batch; `Ok(None)` when an id already in the log made the
/// optimistic attempt fail (nothing was written).
async fn write_once(
    conn: &mut SqliteConnection,
    batch: &[&Pending],
    recorded_at_us: i64,
    look_up_duplicates: bool,
    cache: &merkle::EdgeCache,
) -> Result<Option<Vec<Receipt>>> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db("starting a write transaction"))?;
    let head = read_head(&mut tx).await?;
    let existing = if look_up_duplicates {
        lookup(&mut tx, batch).await?
    } else {
        HashMap::new()
    };
    let plan = chain::plan(head, recorded_at_us, batch, &existing);
    let edge = match plan.rows.is_empty() {
        true => None,
        false => Some(super::tree_edge(&mut *tx, head.seq, cache).await?),
    };
    // Encoding a statement's arguments is CPU work on this task; doing the
    // next one while SQLite executes the current one keeps its thread busy.
    // So is the batch's Merkle tree, computed during the first statement.
    let mut tree = None;
    let mut chunks = plan.rows.chunks(INSERT_CHUNK);
    let mut next = chunks
        .next()
        .map(|rows| insert_statement(rows, batch, plan.recorded_at_us));
    while let Some(mut current) = next.take() {
        let (result, following) = tokio::join!(current.build().execute(&mut *tx), async {
            if let (None, Some(edge)) = (&tree, &edge) {
                let leaves: Vec<Hash> = plan.rows.iter().map(|r| r.leaf).collect();
                tree = Some(super::grow(head.seq, &leaves, edge));
            }
            chunks
                .next()
                .map(|rows| insert_statement(rows, batch, plan.recorded_at_us))
        });
        next = following;
        match result {
            Ok(_) => {}
            Err(e) if !look_up_duplicates && is_unique_violation(&e) => {
                tx.rollback().await.map_err(db("rolling back"))?;
                return Ok(None);
            }
            Err(e) => return Err(db("inserting events")(e)),
        }
    }
    let grown = match tree {
        Some(growth) => {
            let (rows, grown) = growth?;
            insert_tree(&mut tx, &rows).await?;
            Some(grown)
        }
        None => None,
    };
    sqlx::query("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1")
        .bind(plan.head.seq)
        .bind(&plan.head.hash.0[..])
        .execute(&mut *tx)
        .await
        .map_err(db("advancing the chain head"))?;
    tx.commit().await.map_err(db("committing events"))?;
    if let Some((size, edge)) = grown {
        cache.put(size, edge);
    }
    Ok(Some(plan.receipts))
}

/// Tree rows per INSERT statement (two parameters each).
const TREE_CHUNK: usize = 4_096;

/// Inserts rows of `audit_tree` (a [`super::InsertTree`]).
fn insert_tree<'c>(
    conn: &'c mut SqliteConnection,
    rows: &'c [(i64, Vec<u8>)],
) -> futures::future::BoxFuture<'c, Result<()>> {
    Box::pin(async move {
        for chunk in rows.chunks(TREE_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO audit_tree (seq, hashes) ");
            q.push_values(chunk, |mut b, (seq, hashes)| {
                b.push_bind(*seq).push_bind(&hashes[..]);
            });
            q.build()
                .execute(&mut *conn)
                .await
                .map_err(db("extending the Merkle tree"))?;
        }
        Ok(())
    })
}

/// Brings a log from an older vigil up to date ([`super::complete_with`])
/// under the write lock, in one transaction.
async fn complete_tree(conn: &mut SqliteConnection) -> Result<()> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db("locking the database to complete the Merkle tree"))?;
    let head = read_head(&mut tx).await?;
    super::complete_with::<Sqlite>(&mut tx, head, insert_tree).await?;
    tx.commit().await.map_err(db("committing the Merkle tree"))
}

/// A multi-row INSERT of `rows`, with every argument encoded.
fn insert_statement<'a>(
    rows: &'a [Placed],
    batch: &'a [&'a Pending],
    recorded_at_us: i64,
) -> QueryBuilder<'a, Sqlite> {
    let mut q = QueryBuilder::new(concat!("INSERT INTO audit_events (", columns!(), ") "));
    q.push_values(rows, |mut b, r| {
        let e = batch[r.event];
        b.push_bind(r.seq)
            .push_bind(e.id)
            .push_bind(e.session)
            .push_bind(e.occurred_at_us)
            .push_bind(recorded_at_us)
            .push_bind(e.source.as_str())
            .push_bind(e.actor.as_str())
            .push_bind(e.kind)
            .push_bind(e.payload.as_str())
            .push_bind(CURRENT_FORMAT)
            .push_bind(&r.prev_hash.0[..])
            .push_bind(&r.hash.0[..])
            .push_bind(e.reported_at_us)
            .push_bind(&e.salt[..])
            .push_bind(None::<&[u8]>);
    });
    q
}

async fn lookup(
    conn: &mut SqliteConnection,
    batch: &[&Pending],
) -> Result<HashMap<Uuid, (i64, Hash)>> {
    let mut found = HashMap::new();
    for ids in batch.chunks(LOOKUP_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT event_id, seq, hash FROM audit_events WHERE event_id IN (",
        );
        let mut sep = q.separated(", ");
        for p in ids {
            sep.push_bind(p.id);
        }
        q.push(")");
        let rows = q
            .build_query_as::<PlacedRow>()
            .fetch_all(&mut *conn)
            .await
            .map_err(db("looking up duplicate event ids"))?;
        found.extend(placed(rows)?);
    }
    Ok(found)
}
