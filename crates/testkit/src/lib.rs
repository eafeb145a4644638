//! Test-only helpers shared by the audit-db suite, the end-to-end tests and
//! the benchmarks: a throwaway database of either backend, raw SQL access to
//! it that bypasses Vigil (as someone with database access would), and a
//! gateway running as a child process, a throwaway X display, a headless
//! Chromium, and media helpers (the corpus, FFmpeg's pictures, PSNR).
//!
//! PostgreSQL tests run when `VIGIL_TEST_POSTGRES_URL` is set, each in a
//! schema of its own so that runs never collide; when it is set and the
//! server cannot be reached, or when `CI` is set and it is not, they fail
//! rather than skip.
#![forbid(unsafe_code)]

mod browser;
pub mod media;
mod process;
mod receiver;
mod xvfb;

use std::path::Path;

pub use browser::Browser;
pub use process::GatewayProcess;
pub use receiver::{Received, Receiver, Reply};
pub use xvfb::{Terminal, Xvfb};

use sqlx::{Connection, Executor};
use tempfile::TempDir;

/// The variable that switches the PostgreSQL runs on, holding the server's URL.
pub const POSTGRES_ENV: &str = "VIGIL_TEST_POSTGRES_URL";

/// The file name of a test's SQLite log in its directory.
pub const SQLITE_FILE: &str = "audit.db";

/// Which backend a [`TestDb`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A file in a temporary directory.
    Sqlite,
    /// A schema of its own on a PostgreSQL server.
    Postgres,
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    /// The `--db` URL Vigil should use.
    pub url: String,
    /// Which of the two.
    pub backend: Backend,
    dir: TempDir,
    /// For PostgreSQL: the server URL and this test's schema.
    server: Option<(String, String)>,
}

impl TestDb {
    /// A SQLite database file (not yet created) in a fresh directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        TestDb {
            url: format!("sqlite://{}", dir.path().join(SQLITE_FILE).display()),
            backend: Backend::Sqlite,
            dir,
            server: None,
        }
    }

    /// A fresh schema on the server named by [`POSTGRES_ENV`], or `None`
    /// when the variable is unset. Panics if the server cannot be reached.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(server) = std::env::var(POSTGRES_ENV) else {
            // Under CI a test that does nothing must not pass.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {POSTGRES_ENV} is not: the PostgreSQL half would not run \
                 (scripts/test sets it)"
            );
            eprintln!("{POSTGRES_ENV} is not set: PostgreSQL case not run");
            return None;
        };
        Some(Self::postgres_at(&server).await)
    }

    /// A fresh schema on the PostgreSQL server at `server`. Panics if it cannot be reached.
    pub async fn postgres_at(server: &str) -> TestDb {
        let server = server.to_owned();
        let schema = format!("vigil_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={server} cannot be reached: {e}"));
        conn.execute(&*format!("CREATE SCHEMA {schema}"))
            .await
            .expect("creating the test schema");
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-c%20search_path%3D{schema}");
        TestDb {
            url,
            backend: Backend::Postgres,
            dir: tempfile::tempdir().expect("creating a temporary directory"),
            server: Some((server, schema)),
        }
    }

    /// A scratch directory that lives as long as the database (for SQLite, the data directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs raw SQL (one or more statements) directly against the database.
    pub async fn exec(&self, sql: &str) {
        self.try_exec(sql)
            .await
            .unwrap_or_else(|e| panic!("raw SQL failed: {e}\n{sql}"));
    }

    /// Runs raw SQL on the database and says whether the database took it
    /// (for statements a trigger should refuse).
    pub async fn try_exec(&self, sql: &str) -> Result<(), String> {
        match self.backend {
            Backend::Sqlite => {
                let conn = self.raw_sqlite();
                let r = conn.execute_batch(sql).map_err(|e| e.to_string());
                close(conn);
                r
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("raw PostgreSQL connection");
                c.execute(sqlx::raw_sql(sql))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Drops the append-only triggers of the events and the Merkle tree,
    /// as a tamperer with database access would.
    pub async fn allow_tampering(&self) {
        self.exec(match self.backend {
            Backend::Sqlite => {
                "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete; \
                 DROP TRIGGER audit_tree_no_update; DROP TRIGGER audit_tree_no_delete;"
            }
            Backend::Postgres => {
                "DROP TRIGGER audit_events_no_change ON audit_events; \
                 DROP TRIGGER audit_events_no_truncate ON audit_events; \
                 DROP TRIGGER audit_tree_no_change ON audit_tree; \
                 DROP TRIGGER audit_tree_no_truncate ON audit_tree;"
            }
        })
        .await;
    }

    /// A SQL literal for raw bytes in this backend's dialect.
    pub fn bytes_sql(&self, bytes: &[u8]) -> String {
        match self.backend {
            Backend::Sqlite => format!("X'{}'", hex::encode(bytes)),
            Backend::Postgres => format!("decode('{}', 'hex')", hex::encode(bytes)),
        }
    }

    /// A SQL literal for an event or session id in this backend's dialect.
    pub fn uuid_sql(&self, id: &uuid::Uuid) -> String {
        match self.backend {
            Backend::Sqlite => self.bytes_sql(id.as_bytes()),
            Backend::Postgres => format!("'{id}'::uuid"),
        }
    }

    /// A SQL expression for a fresh random event id.
    pub fn fresh_id_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "randomblob(16)",
            Backend::Postgres => "gen_random_uuid()",
        }
    }

    /// Swaps the contents of two events, keeping their positions: what an
    /// UPDATE that reorders the log does.
    pub async fn swap_events(&self, a: i64, b: i64) {
        self.exec(&format!(
            "UPDATE audit_events SET seq = -seq WHERE seq IN ({a}, {b}); \
             UPDATE audit_events SET seq = CASE seq WHEN -{a} THEN {b} ELSE {a} END WHERE seq IN (-{a}, -{b});"
        ))
        .await;
    }

    /// Inserts a copy of event `from` (with a new id) at position `at`,
    /// renumbering the events after it, as a forger of history would.
    pub async fn insert_copy(&self, from: i64, at: i64) {
        let id = self.fresh_id_sql();
        self.exec(&format!(
            "UPDATE audit_events SET seq = -(seq + 1) WHERE seq >= {at}; \
             UPDATE audit_events SET seq = -seq WHERE seq < 0; \
             INSERT INTO audit_events (seq, event_id, session_id, occurred_at, recorded_at, source, actor, kind, payload, format, prev_hash, hash) \
             SELECT {at}, {id}, session_id, occurred_at, recorded_at, source, actor, kind, payload, format, prev_hash, hash \
             FROM audit_events WHERE seq = {from};"
        ))
        .await;
    }

    /// Marks the database as migrated by a newer Vigil than this one.
    pub async fn stamp_newer_schema(&self) {
        let checksum = self.bytes_sql(&[0; 48]);
        self.exec(&format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'from the future', TRUE, {checksum}, 0);"
        ))
        .await;
    }

    /// Removes the whole database, as someone rebuilding the log from
    /// scratch would: the SQLite file (and its WAL), or every object in the
    /// PostgreSQL schema. The next `vigil` that writes starts a new log.
    pub async fn wipe(&self) {
        match &self.server {
            None => {
                for suffix in ["", "-wal", "-shm"] {
                    let path = self.dir.path().join(format!("{SQLITE_FILE}{suffix}"));
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => panic!("removing {}: {e}", path.display()),
                    }
                }
            }
            Some((server, schema)) => {
                let mut conn = sqlx::PgConnection::connect(server)
                    .await
                    .expect("reconnecting to wipe the test schema");
                conn.execute(&*format!(
                    "DROP SCHEMA {schema} CASCADE; CREATE SCHEMA {schema}"
                ))
                .await
                .expect("wiping the test schema");
            }
        }
    }

    /// Drops the PostgreSQL schema; the SQLite directory goes with `self`.
    pub async fn cleanup(self) {
        if let Some((server, schema)) = &self.server {
            let mut conn = sqlx::PgConnection::connect(server)
                .await
                .expect("reconnecting to drop the test schema");
            conn.execute(&*format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .expect("dropping the test schema");
        }
    }
}

impl TestDb {
    /// Whether `text` is anywhere in the bytes of the audit table's files
    /// (SQLite: the database and its WAL; PostgreSQL: the table's heap file,
    /// after a checkpoint).
    pub async fn files_hold(&self, text: &[u8]) -> bool {
        let files = match self.backend {
            Backend::Sqlite => {
                let file = self.dir().join(SQLITE_FILE);
                vec![file.clone(), file.with_extension("db-wal")]
            }
            Backend::Postgres => {
                self.exec("CHECKPOINT").await;
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("raw PostgreSQL connection");
                let (path,): (String,) = sqlx::query_as(
                    "SELECT current_setting('data_directory') || '/' || pg_relation_filepath('audit_events')",
                )
                .fetch_one(&mut conn)
                .await
                .expect("the audit table's file");
                vec![path.into()]
            }
        };
        let mut found = false;
        for file in files {
            match std::fs::read(&file) {
                Ok(bytes) => found |= bytes.windows(text.len()).any(|w| w == text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // PostgreSQL's files are its own user's: under CI (root) they are read.
                Err(e) if std::env::var_os("CI").is_none() => {
                    eprintln!("{} not read ({e}): file bytes not checked", file.display());
                    return false;
                }
                Err(e) => panic!("reading {}: {e}", file.display()),
            }
        }
        found
    }

    /// Whether `text` has left the audit table's files. On PostgreSQL old
    /// row versions stay in the heap until the table is rewritten (`VACUUM
    /// FULL`, which the README tells operators to run after an erasure),
    /// and a rewrite keeps them while any transaction that might still see
    /// them runs (other tests' on the same server): bounded retries.
    pub async fn text_gone(&self, text: &[u8]) -> bool {
        for _ in 0..200 {
            if !self.files_hold(text).await {
                return true;
            }
            if self.backend != Backend::Postgres {
                return false;
            }
            self.exec("VACUUM FULL audit_events").await;
            if !self.files_hold(text).await {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    /// Runs a query returning integers, one per row, directly against the database.
    pub async fn query_i64s(&self, sql: &str) -> Vec<i64> {
        match self.backend {
            Backend::Sqlite => {
                let conn = self.raw_sqlite();
                let r: Vec<i64> = {
                    let mut stmt = conn.prepare(sql).expect("preparing raw SQL");
                    let rows = stmt
                        .query_map([], |row| row.get(0))
                        .expect("running raw SQL");
                    rows.collect::<Result<_, _>>()
                        .expect("reading raw SQL's rows")
                };
                close(conn);
                r
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("raw PostgreSQL connection");
                sqlx::query_scalar(sql)
                    .fetch_all(&mut c)
                    .await
                    .unwrap_or_else(|e| panic!("raw SQL failed: {e}\n{sql}"))
            }
        }
    }

    /// Runs a query returning one integer, directly against the database.
    pub async fn query_i64(&self, sql: &str) -> i64 {
        let result = match self.backend {
            Backend::Sqlite => {
                let conn = self.raw_sqlite();
                let r = conn
                    .query_row(sql, [], |row| row.get(0))
                    .map_err(|e| e.to_string());
                close(conn);
                r
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("raw PostgreSQL connection");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut c)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        result.unwrap_or_else(|e| panic!("raw query failed: {e}\n{sql}"))
    }
}

impl TestDb {
    /// A plain connection to the SQLite file (created if missing), through
    /// rusqlite so that closing it is synchronous: when [`close`] returns, the
    /// -wal and -shm files are settled and a snapshot of the directory is stable.
    fn raw_sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join(SQLITE_FILE))
            .expect("raw SQLite connection")
    }
}

fn close(conn: rusqlite::Connection) {
    conn.close()
        .unwrap_or_else(|(_, e)| panic!("closing raw SQLite connection: {e}"));
}

/// Generates, for each named async fn of module `$cases` taking `&TestDb`,
/// a test `sqlite::name` and a test `postgres::name`. The PostgreSQL tests
/// return at once, saying so, when [`POSTGRES_ENV`] is unset.
#[macro_export]
macro_rules! both_backends {
    (mod $cases:ident; $($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = $crate::TestDb::sqlite();
                    super::$cases::$case(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = $crate::TestDb::postgres().await else { return };
                    super::$cases::$case(&db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}
