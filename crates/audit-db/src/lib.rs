//! Vigil's audit log: the typed event model, its canonical encoding, the
//! SHA-256 hash chain that makes the log tamper-evident, and the SQLite and
//! PostgreSQL stores behind one interface.
//!
//! Only this crate writes audit rows. Callers build [`NewEvent`]s and hand
//! them to an [`AuditLog`], whose single writer task commits whatever is
//! waiting as one batch and acknowledges each event once it is durable.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod chain;
pub mod encoding;
mod error;
pub mod event;
mod log;
pub mod query;
pub mod record;
pub mod store;
pub mod time_us;
pub mod verify;

pub use accounts::Accounts;
pub use chain::{Anchor, BreakKind, ChainBreak, Head};
pub use error::{Error, Result};
pub use event::{Actor, EventKind, NewEvent, Permission, Source};
pub use log::{AuditLog, MAX_NAME, MAX_PAYLOAD};
pub use query::Filter;
pub use record::{Hash, Receipt, StoredEvent};
pub use store::{DbUrl, OpenMode, Store};
pub use verify::VerifyReport;
