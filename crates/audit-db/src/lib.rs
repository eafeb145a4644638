//! Vigil's audit log: the canonical encoding of `audit-event`'s events, the
//! SHA-256 hash chain that makes the log tamper-evident, and the SQLite and
//! PostgreSQL stores behind one interface.
//!
//! Only this crate writes audit rows. Callers build [`NewEvent`]s and hand
//! them to an [`AuditLog`], whose single writer task commits whatever is
//! waiting as one batch and acknowledges each event once it is durable.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod archive;
pub mod chain;
pub mod checkpoint;
pub mod encoding;
mod error;
mod log;
pub mod merkle;
pub mod proof;
pub mod query;
pub mod record;
pub mod restored;
pub mod session_index;
pub mod store;
pub mod verify;
pub mod webhooks;

// The event model lives in `audit-event`, which clients link without SQL;
// the log's API speaks it, so it is re-exported here under the same paths.
pub use audit_event::{event, time_us};

pub use accounts::Accounts;
pub use chain::{Anchor, BreakKind, ChainBreak, Head};
pub use error::{Error, Result};
pub use event::{Actor, EventKind, NewEvent, Permission, Source};
pub use log::{ranges, AuditLog, MAX_NAME, MAX_PAYLOAD};
pub use query::Filter;
pub use record::{Hash, Receipt, StoredEvent};
pub use store::{DbUrl, OpenMode, Store};
pub use verify::VerifyReport;
pub use webhooks::Webhooks;
