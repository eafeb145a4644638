//! CRM webhooks: which endpoint receives which audit event, the bodies
//! built from the log, Standard Webhooks signing, the guard against posts
//! to private addresses, and the at-least-once delivery worker with its
//! retry schedule. Endpoints, messages and the delivery log are stored by
//! `audit_db::webhooks`; this crate decides what they hold and when.
#![forbid(unsafe_code)]

pub mod admin;
pub mod deliver;
pub mod payload;
pub mod schedule;
pub mod sign;
pub mod ssrf;
pub mod worker;
