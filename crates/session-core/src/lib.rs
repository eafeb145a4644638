//! Vigil's session engine: the wire protocol, TLS and the session CA, and
//! the gateway, console and applet ends of a support session.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod client;
pub mod gateway;
pub mod hasher;
pub mod inner;
pub mod readahead;
pub mod session;
pub mod session_ca;
pub mod spool;
pub mod throttle;
pub mod tls;
pub mod wire;
