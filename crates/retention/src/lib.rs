//! Retention: how long each kind of record is kept, online and then in an
//! archive, and the machinery that keeps exactly that: verifiable archive
//! bundles, purging, legal holds that stop both, and privacy erasure.
//!
//! Only `audit-db` writes audit rows; this crate decides which leave and
//! when, and asks `audit-db` to move them (`audit_db::archive`).
#![forbid(unsafe_code)]

pub mod admin;
pub mod archived;
pub mod bundle;
pub mod erase;
pub mod hold;
pub mod policy;
pub mod recordings;
pub mod restore;
pub mod run;
mod subject;
mod webhook_log;

pub use hold::Holds;
pub use policy::{Period, Periods, Policy, RecordClass};
