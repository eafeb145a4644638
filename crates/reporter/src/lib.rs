//! Vigil's output for compliance staff: the audit event listing (`vigil
//! audit query`) as a table or JSON lines, and a recording checked against
//! what the log recorded of it; the session, chat, file, login and
//! permission reports join them here.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod events;
pub mod html;
pub mod recordings;
pub mod reports;
pub mod session;
pub mod table;
