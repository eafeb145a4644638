//! Vigil's output for compliance staff: today the audit event listing
//! (`vigil audit query`) as a table or JSON lines; the session, chat, file,
//! login and permission reports join it here.
#![forbid(unsafe_code)]

pub mod events;
