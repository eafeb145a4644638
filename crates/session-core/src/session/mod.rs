//! The support session itself, end to end between console and applet
//! inside the inner TLS: the inner protocol, file handling, system
//! information, and the console and applet engines.

pub mod applet;
pub mod commands;
pub mod console;
pub mod files;
mod link;
pub mod proto;
pub mod sysinfo;

pub use link::SessionError;
