//! Vigil's output for compliance staff: the audit event listing (`vigil
//! audit query`) and the compliance reports (`vigil report`), as CSV, JSON
//! lines, terminal tables or self-contained HTML, with evidence bundles
//! that prove a report against the log.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod events;
pub mod html;
pub mod recordings;
pub mod reports;
pub mod session;
pub mod table;
pub mod zone;
