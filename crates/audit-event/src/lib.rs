//! Vigil's audit event model: [`NewEvent`] (what happened, who did it, which
//! component reported it, when), the typed payload of every [`EventKind`],
//! and timestamps as integer microseconds. No storage and no SQL: the
//! console, the applet and the gateway all speak it, and only `audit-db`
//! stores it.
#![forbid(unsafe_code)]

pub mod event;
pub mod time_us;

pub use event::{Actor, EventKind, NewEvent, Permission, Source};
