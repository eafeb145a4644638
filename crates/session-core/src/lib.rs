//! The client side of a support session: connecting to the gateway and
//! logging in (`client`), the end-to-end inner TLS between console and
//! applet (`inner`), the console's spool of unacknowledged events, and the
//! console and applet engines (`session`). Links no database driver and no
//! password hashing: the applet is built from it.
#![forbid(unsafe_code)]

pub mod client;
pub mod inner;
pub mod lines;
pub mod session;
pub mod spool;
