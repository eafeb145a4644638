//! The support session itself, end to end between console and applet
//! inside the inner TLS: the inner protocol, file handling, system
//! information, the desktop view, and the console and applet engines.

pub mod applet;
pub mod commands;
pub mod console;
pub mod files;
mod link;
pub mod proto;
pub mod sysinfo;
mod tape;
pub mod view;

pub use link::SessionError;
