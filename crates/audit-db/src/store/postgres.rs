//! The PostgreSQL store, for installations that outgrow one machine or run
//! several gateways: every append locks the chain head row, so concurrent
//! writers in any number of processes extend one chain.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{ConnectOptions, Connection, Postgres};
use uuid::Uuid;

use super::{check_schema_version, is_unique_violation, OpenMode, PackedPage};
use crate::chain::{self, Head, Pending};
use crate::encoding::CURRENT_FORMAT;
use crate::error::{db, Error, Result};
use crate::merkle;
use crate::query::{PageQuery, PageSender, Param, READ_PAGE};
use crate::record::{Hash, Receipt, StoredEvent};
use crate::store::row::{columns, placed, HeadRow, PlacedRow, RawRow};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long to wait for a server connection before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An open PostgreSQL audit database.
#[derive(Clone, Debug)]
pub(crate) struct PgStore {
    writer: PgPool,
    readers: PgPool,
    edge: merkle::EdgeCache,
}

impl PgStore {
    /// Connects, checks the schema version before writing anything, then migrates.
    pub(crate) async fn open(url: &str, shown: &str, mode: OpenMode) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| Error::BadUrl {
            url: shown.to_owned(),
            reason: e.to_string(),
        })?;
        let connect_err = |e: sqlx::Error| Error::Connect {
            target: shown.to_owned(),
            cause: e.to_string(),
        };
        // One direct connection first: a pool would keep retrying an
        // unreachable server until its timeout instead of saying so at once.
        let mut probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| Error::Connect {
                target: shown.to_owned(),
                cause: format!("no answer within {CONNECT_TIMEOUT:?}"),
            })?
            .map_err(connect_err)?;
        let has_log: bool = sqlx::query_scalar("SELECT to_regclass('audit_events') IS NOT NULL")
            .fetch_one(&mut probe)
            .await
            .map_err(db("looking for the audit log"))?;
        if !has_log && mode == OpenMode::ReadOnly {
            return Err(Error::NoLog {
                target: shown.to_owned(),
            });
        }
        let has_migrations: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&mut probe)
                .await
                .map_err(db("looking for the schema version"))?;
        if has_migrations {
            let version: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                    .fetch_one(&mut probe)
                    .await
                    .map_err(db("reading the schema version"))?;
            check_schema_version(version, &MIGRATOR, mode)?;
        } else if mode == OpenMode::ReadOnly {
            return Err(Error::NoLog {
                target: shown.to_owned(),
            });
        }
        probe
            .close()
            .await
            .map_err(db("closing the probe connection"))?;

        // Read only: every transaction of every connection is read-only, so
        // nothing can be created, migrated or written, whatever runs.
        let options = match mode {
            OpenMode::ReadOnly => options.options([("default_transaction_read_only", "on")]),
            OpenMode::Create => options,
        };
        let pool = |n, options: PgConnectOptions| {
            super::pool_options::<Postgres>()
                .max_connections(n)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(options)
        };
        // A streamed listing is one statement that lasts as long as its
        // consumer takes: sqlx's "slow statement" warning would fire on
        // every large report.
        let quiet = options
            .clone()
            .log_slow_statements(log::LevelFilter::Off, Duration::ZERO);
        let readers = pool(4, quiet).await.map_err(connect_err)?;
        let writer = match mode {
            OpenMode::ReadOnly => readers.clone(),
            OpenMode::Create => {
                let writer = pool(1, options).await.map_err(connect_err)?;
                MIGRATOR.run(&writer).await?;
                writer
            }
        };
        Ok(Self {
            writer,
            readers,
            edge: merkle::EdgeCache::default(),
        })
    }

    /// The reader pool, also used for the few non-audit writes (accounts).
    pub(crate) fn readers(&self) -> &PgPool {
        &self.readers
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

    /// Erases bodies (see [`super::erase_with`]) in one transaction. The
    /// old row versions stay in the table's files until VACUUM reclaims
    /// them (see README: a privacy erasure is complete after `VACUUM FULL
    /// audit_events`).
    pub(crate) async fn erase_bodies(&self, seqs: &[i64]) -> Result<u64> {
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting a write transaction"))?;
        let erased = super::erase_with::<Postgres>(&mut tx, seqs).await?;
        // The index may hold the erased chat: emptied with it, built again later.
        crate::session_index::reset_with::<Postgres>(&mut tx).await?;
        tx.commit().await.map_err(db("committing the erasure"))?;
        Ok(erased)
    }

    pub(crate) async fn head(&self) -> Result<Head> {
        sqlx::query_as::<_, HeadRow>("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.readers)
            .await
            .map_err(db("reading the chain head"))?
            .ok_or(Error::NoHead)?
            .try_into()
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

    pub(crate) async fn max_seq(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0)::int8 FROM audit_events")
            .fetch_one(&self.readers)
            .await
            .map_err(db("reading the last seq"))
    }

    /// One page of `query` after seq `after`.
    pub(crate) async fn page(
        &self,
        query: &PageQuery,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        bound(query, after, limit)
            .fetch_all(&self.readers)
            .await
            .map_err(db("querying events"))?
            .into_iter()
            .map(StoredEvent::try_from)
            .collect()
    }

    /// Reads all of `query` into `pages` from a task of its own, so that
    /// rows arrive and are decoded while the consumer works through the
    /// page before; stops at the end or when the receiver is dropped.
    ///
    /// One statement streamed, not a statement per page: PostgreSQL plans
    /// `kind IN (…) AND seq > $1 ORDER BY seq LIMIT $n` per page as a
    /// bitmap scan of every matching row and a sort, so paging a report of
    /// a few types re-read the rest of the log for every page (5,000 rows/s
    /// at 1M events, measured). Planned once, it is one pass; the rows come
    /// as the client reads them, so memory stays at one page here.
    pub(crate) fn read_pages(&self, query: PageQuery, pages: PageSender) {
        let readers = self.readers.clone();
        tokio::spawn(async move {
            let mut rows = bound(&query, query.start, i64::MAX).fetch(&readers);
            let mut page = Vec::with_capacity(READ_PAGE as usize);
            while let Some(row) = rows.next().await {
                match row
                    .map_err(db("querying events"))
                    .and_then(StoredEvent::try_from)
                {
                    Ok(event) => page.push(event),
                    Err(e) => {
                        // The rows before a failure go out first; the
                        // receiver may be gone already, then nobody is waiting.
                        if !page.is_empty() && pages.send(Ok(page)).await.is_err() {
                            return;
                        }
                        let _ = pages.send(Err(e)).await;
                        return;
                    }
                }
                if page.len() as i64 == READ_PAGE {
                    let full = std::mem::replace(&mut page, Vec::with_capacity(READ_PAGE as usize));
                    if pages.send(Ok(full)).await.is_err() {
                        return;
                    }
                }
            }
            if !page.is_empty() {
                let _ = pages.send(Ok(page)).await;
            }
        });
    }

    /// Rows `from..=to` packed for verification, from their columns.
    /// Rows `from..=to` packed for verification, then the tree's rows for
    /// the same seqs. Two plain index range scans: joined in one statement
    /// (bounded to the page, or PostgreSQL hashed the whole tree for every
    /// page), verifying a freshly written log was slower in every run
    /// (3.8-4.5 s against 2.6 s for 305,000 events, measured).
    pub(crate) async fn packed_page(&self, from: i64, to: i64, limit: i64) -> Result<PackedPage> {
        let rows: Vec<(i64, Option<Vec<u8>>)> = self
            .range_page(from, to, limit)
            .await?
            .iter()
            .map(|row| (row.seq, Some(row.packed())))
            .collect();
        let tree = sqlx::query_as(
            "SELECT seq, hashes FROM audit_tree WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.readers)
        .await
        .map_err(db("reading the Merkle tree"))?;
        Ok(PackedPage { rows, tree })
    }

    pub(crate) async fn range_page(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        sqlx::query_as::<_, RawRow>(super::RANGE_SQL)
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

/// Inserts rows of `audit_tree` in one statement (a [`super::InsertTree`]).
fn insert_tree<'c>(
    conn: &'c mut PgConnection,
    rows: &'c [(i64, Vec<u8>)],
) -> futures::future::BoxFuture<'c, Result<()>> {
    Box::pin(async move {
        sqlx::query(
            "INSERT INTO audit_tree (seq, hashes) SELECT * FROM UNNEST($1::int8[], $2::bytea[])",
        )
        .bind(rows.iter().map(|(seq, _)| *seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, h)| &h[..]).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map_err(db("extending the Merkle tree"))?;
        Ok(())
    })
}

/// Reads the chain head and locks it until the transaction ends: every
/// writer of the log, in any process, waits here for the one before.
async fn lock_head(conn: &mut PgConnection) -> Result<Head> {
    sqlx::query_as::<_, HeadRow>("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("locking the chain head"))?
        .ok_or(Error::NoHead)?
        .try_into()
}

/// Brings a log from an older vigil up to date ([`super::complete_with`])
/// with the head locked, in one transaction.
async fn complete_tree(conn: &mut PgConnection) -> Result<()> {
    let mut tx = conn
        .begin()
        .await
        .map_err(db("starting a transaction to complete the Merkle tree"))?;
    let head = lock_head(&mut tx).await?;
    super::complete_with::<Postgres>(&mut tx, head, insert_tree).await?;
    tx.commit().await.map_err(db("committing the Merkle tree"))
}

/// `query` with its values bound: events after `after`, at most `limit`.
fn bound(
    query: &PageQuery,
    after: i64,
    limit: i64,
) -> sqlx::query::QueryAs<'_, Postgres, RawRow, sqlx::postgres::PgArguments> {
    let mut statement = sqlx::query_as::<_, RawRow>(&query.sql).bind(after);
    for p in &query.params {
        statement = match p {
            Param::Int(n) => statement.bind(*n),
            Param::Uuid(u) => statement.bind(*u),
            Param::Text(t) => statement.bind(t.as_str()),
        };
    }
    statement.bind(limit)
}

/// One attempt at a batch; `Ok(None)` when an id already in the log made the
/// optimistic attempt fail (nothing was written).
async fn write_once(
    conn: &mut PgConnection,
    batch: &[&Pending],
    recorded_at_us: i64,
    look_up_duplicates: bool,
    cache: &merkle::EdgeCache,
) -> Result<Option<Vec<Receipt>>> {
    let mut tx = conn
        .begin()
        .await
        .map_err(db("starting a write transaction"))?;
    let head = lock_head(&mut tx).await?;
    let existing = if look_up_duplicates {
        lookup(&mut tx, batch).await?
    } else {
        HashMap::new()
    };
    let plan = chain::plan(head, recorded_at_us, batch, &existing);
    // One statement for the whole batch: each column travels as one array.
    let rows = &plan.rows;
    let events: Vec<&Pending> = rows.iter().map(|r| batch[r.event]).collect();
    let insert = sqlx::query(concat!(
        "INSERT INTO audit_events (",
        columns!(),
        ") SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::uuid[], $4::int8[], $5::int8[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::int2[], $11::bytea[], $12::bytea[], \
         $13::int8[], $14::bytea[], $15::bytea[])"
    ))
    .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.session).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.occurred_at_us).collect::<Vec<_>>())
    .bind(vec![plan.recorded_at_us; rows.len()])
    .bind(events.iter().map(|e| e.source.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.kind).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.payload.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(vec![CURRENT_FORMAT; rows.len()])
    .bind(rows.iter().map(|r| &r.prev_hash.0[..]).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| &r.hash.0[..]).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.reported_at_us).collect::<Vec<_>>())
    .bind(events.iter().map(|e| &e.salt[..]).collect::<Vec<_>>())
    .bind(vec![None::<&[u8]>; rows.len()]);
    match insert.execute(&mut *tx).await {
        Ok(_) => {}
        Err(e) if !look_up_duplicates && is_unique_violation(&e) => {
            tx.rollback().await.map_err(db("rolling back"))?;
            return Ok(None);
        }
        Err(e) => return Err(db("inserting events")(e)),
    }
    let leaves: Vec<Hash> = plan.rows.iter().map(|r| r.leaf).collect();
    let grown = if leaves.is_empty() {
        None
    } else {
        let (rows, grown) = super::tree_growth(&mut *tx, head.seq, &leaves, cache).await?;
        insert_tree(&mut tx, &rows).await?;
        Some(grown)
    };
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
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

async fn lookup(conn: &mut PgConnection, batch: &[&Pending]) -> Result<HashMap<Uuid, (i64, Hash)>> {
    let ids: Vec<Uuid> = batch.iter().map(|p| p.id).collect();
    let rows = sqlx::query_as::<_, PlacedRow>(
        "SELECT event_id, seq, hash FROM audit_events WHERE event_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("looking up duplicate event ids"))?;
    placed(rows)
}
