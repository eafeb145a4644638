//! The command line, parsed once at start into one typed value.

use std::path::PathBuf;

use audit_db::DbUrl;
use clap::{ArgAction, Args, Parser, Subcommand};
use uuid::Uuid;

/// Vigil: accountable remote support. Every session authenticated, end-to-end
/// encrypted, consent-gated, recorded and audited in a tamper-evident log.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, propagate_version = true)]
pub struct Cli {
    /// Data directory; the audit log is the SQLite file DIR/audit.db
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "db")]
    pub data: Option<PathBuf>,

    /// Audit database: sqlite://PATH or postgres://USER@HOST[:PORT]/DB
    /// [default: sqlite://./vigil-data/audit.db]
    #[arg(long, global = true, value_name = "URL")]
    pub db: Option<String>,

    /// Log more to stderr (-v: info, -vv: debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The audit database the command works on. Parsed here rather than by
    /// clap so that a bad URL is reported in one line like every other error.
    pub fn db_url(&self) -> Result<DbUrl, audit_db::Error> {
        match (&self.db, &self.data) {
            (Some(url), _) => url.parse(),
            (None, Some(dir)) => Ok(DbUrl::in_data_dir(dir)),
            (None, None) => Ok(DbUrl::in_data_dir("./vigil-data")),
        }
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read and check the audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Administer Vigil
    #[command(subcommand)]
    Admin(AdminCommand),
}

/// `vigil audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Prove the log was not altered: exit 0 if intact, 1 with the first break if not
    Verify {
        /// Also require the event at SEQ to have HASH (a head printed or published earlier);
        /// catches a log rewritten from the start
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_anchor)]
        anchor: Option<audit_db::Anchor>,
        /// Print the result as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// List events, oldest first, filtered by session, actor, type and time
    Query(QueryArgs),
}

/// Filters and format of `vigil audit query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Only this session (GUID)
    #[arg(long, value_name = "GUID")]
    pub session: Option<Uuid>,
    /// Only this actor, e.g. technician:ann@example.com
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this event type, e.g. login.failed
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    pub kind: Option<String>,
    /// Only events that occurred at or after T (RFC 3339 or YYYY-MM-DD)
    #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
    pub since: Option<i64>,
    /// Only events that occurred before T (RFC 3339 or YYYY-MM-DD)
    #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
    pub until: Option<i64>,
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `vigil admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Append an administrator's note to the audit log (e.g. "investigation opened")
    Note {
        /// The note; omit it with --stdin
        #[arg(required_unless_present = "stdin", conflicts_with = "stdin")]
        text: Option<String>,
        /// Read notes from standard input, one per line, printing a JSON receipt
        /// for each as soon as it is durable
        #[arg(long)]
        stdin: bool,
        /// The administrator to record [default: the local user@host]
        #[arg(long = "as", value_name = "NAME")]
        admin: Option<String>,
    },
}

fn parse_anchor(text: &str) -> Result<audit_db::Anchor, String> {
    let (seq, hash) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not SEQ:HASH"))?;
    Ok(audit_db::Anchor {
        seq: seq
            .parse()
            .map_err(|_| format!("{seq:?} is not a sequence number"))?,
        hash: audit_db::Hash::from_hex(hash)
            .ok_or_else(|| format!("{hash:?} is not 64 hex digits"))?,
    })
}

fn parse_type(text: &str) -> Result<String, String> {
    if audit_db::EventKind::TYPE_NAMES.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "unknown event type {text:?}; one of: {}",
            audit_db::EventKind::TYPE_NAMES.join(", ")
        ))
    }
}
