//! The errors of the audit store, each saying what failed and with what input.

use std::path::PathBuf;

/// Everything that can go wrong opening, writing or reading the audit log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An archive bundle read beside the log could not be read.
    #[error("archive bundle {}: {reason}", bundle.display())]
    Archive {
        /// The bundle's manifest.
        bundle: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A restore was pointed at a database that already holds events.
    #[error("the database holds {events} events: restore into a new, empty database, never into a live log")]
    NotEmpty {
        /// Events found in it.
        events: i64,
    },

    /// The bundles being restored stopped before their end (their reader
    /// failed); nothing was restored.
    #[error("the restore stopped before the bundles' end; nothing was restored")]
    RestoreCut,

    /// The database holds restored archive bundles, not a live log.
    #[error("this database holds archive bundles put back by `vigil retention restore`, not a live log: {what} is not possible in it")]
    Restored {
        /// What was refused.
        what: &'static str,
    },

    /// The `--db` value is not a database URL Vigil understands.
    #[error("invalid database URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given (passwords masked).
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A read-only command was pointed at a SQLite file that does not exist.
    #[error("no audit database at {}", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },

    /// The data directory or database file could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The directory or file.
        path: PathBuf,
        #[source]
        /// What the system said.
        source: std::io::Error,
    },

    /// The database server could not be reached or refused the connection.
    #[error("cannot connect to {target}: {cause}")]
    Connect {
        /// The database (passwords masked).
        target: String,
        /// Why.
        cause: String,
    },

    /// The SQLite file is not a database or is damaged.
    #[error("{} is not a readable SQLite database: {cause}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        cause: String,
    },

    /// The SQLite file is a database, but not a Vigil audit log.
    #[error("{} is a SQLite database but not a Vigil audit log", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
    },

    /// A read-only command was pointed at a PostgreSQL database with no audit log in it.
    #[error("no audit log in {target}")]
    NoLog {
        /// The database (passwords masked).
        target: String,
    },

    /// A log of an older encoding format does not verify, so it was not
    /// converted: a new chain laid over it would hide the break.
    #[error("the log does not verify ({0}), so it was not converted to this vigil's format; restore it from a backup")]
    NotConverted(crate::chain::ChainBreak),

    /// A checkpoint of more events than the log holds.
    #[error(
        "the checkpoint is of {size} events, the log holds {log}: events were removed from its end"
    )]
    CheckpointAhead {
        /// The checkpoint's size.
        size: u64,
        /// The log's.
        log: u64,
    },

    /// The log's tree of a checkpoint's size has another root.
    #[error(
        "the log's first {size} events are not the ones the checkpoint signed: they were rewritten"
    )]
    CheckpointMismatch {
        /// The checkpoint's size.
        size: u64,
    },

    /// A checkpoint or key could not be used.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),

    /// A seq that no event of the log has.
    #[error("no event has seq {seq}: the log's last is {last}")]
    NoSuchEvent {
        /// The seq asked for.
        seq: i64,
        /// The last seq of the log.
        last: i64,
    },

    /// The chain head row is missing or malformed: the database was edited by hand.
    #[error("the chain head (table audit_head) is missing or malformed")]
    NoHead,

    /// The events table's definition is missing from the SQLite schema:
    /// the database was edited by hand.
    #[error("the events table's definition is missing from the database's schema: it was edited by hand")]
    NoEventsTable,

    /// An event was refused before it reached the log.
    #[error("event {id} refused: {reason}")]
    BadEvent {
        /// The event's id.
        id: uuid::Uuid,
        /// What is wrong with it.
        reason: String,
    },

    /// The database holds password hashes, chat and addresses, and other
    /// users could read it.
    #[error("{} is readable by other users (mode {mode:04o}): it holds password hashes, \
             chat text and client addresses; run chmod 600 on it (and its -wal and -shm \
             files) and chmod 700 on its directory", path.display())]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A read-only command was pointed at an empty file: an emptied log is not an intact one.
    #[error("{} is empty: it holds no audit log (was it emptied?)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },

    /// A read-only command was pointed at a log an older Vigil wrote, whose
    /// schema it may not change.
    #[error(
        "the audit log's schema (version {found}) is older than this vigil's ({supported}); \
             run a command that writes (vigil gateway, vigil admin ...) once to upgrade it"
    )]
    SchemaTooOld {
        /// The log's schema version.
        found: i64,
        /// This build's.
        supported: i64,
    },

    /// The database was written by a newer Vigil than this one.
    #[error("database schema version {found} is newer than this vigil supports ({supported}); upgrade vigil")]
    SchemaTooNew {
        /// The log's schema version.
        found: i64,
        /// This build's.
        supported: i64,
    },

    /// Applying the schema migrations failed.
    #[error("migrating the audit schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// A database statement failed.
    #[error("audit database error while {doing}: {source}")]
    Db {
        /// What was being done.
        doing: &'static str,
        #[source]
        /// What the database said.
        source: sqlx::Error,
    },

    /// Reading events from the SQLite log failed.
    #[error("reading {} failed while {doing}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What was being read.
        doing: &'static str,
        /// What SQLite said.
        cause: String,
    },

    /// A stored row holds a value that cannot be a valid event.
    #[error("row seq {seq} is malformed: {reason}")]
    BadRow {
        /// The row.
        seq: i64,
        /// What is wrong with it.
        reason: String,
    },

    /// An event's payload could not be encoded or decoded.
    #[error("event payload of type {kind:?} is invalid: {source}")]
    Payload {
        /// The event type.
        kind: String,
        #[source]
        /// Why it could not be serialised.
        source: serde_json::Error,
    },

    /// The Merkle tree could not be read or extended.
    #[error(transparent)]
    Tree(#[from] crate::merkle::MerkleError),

    /// A background task of the store failed.
    #[error("a background task failed: {0}")]
    Task(String),

    /// The writer task has stopped, so nothing more can be appended.
    #[error("the audit writer has shut down")]
    WriterGone,

    /// An account, group or setting with this name already exists.
    #[error("{what} {name:?} already exists")]
    Exists {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },

    /// No account, group or setting has this name.
    #[error("no {what} {name:?}")]
    NoSuch {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },

    /// A stored account, group or setting cannot be read as what Vigil writes.
    #[error("stored {key} is malformed: {reason}")]
    BadSetting {
        /// The setting.
        key: String,
        /// Why it cannot be read.
        reason: String,
    },

    /// A batch could not be committed; the writer reports the cause to every waiting caller.
    #[error("appending to the audit log failed: {0}")]
    Append(String),
}

/// Result with the audit store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a sqlx error with what was being done when it happened.
pub(crate) fn db(doing: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Db { doing, source }
}
