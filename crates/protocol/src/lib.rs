//! What gateway and clients share on the wire: frames and messages
//! (`wire`), the outer TLS 1.3 configurations and the gateway's identity
//! (`tls`, `readahead`), and what a session certificate binds (`identity`).
//! docs/protocol.md is the reference.
#![forbid(unsafe_code)]

pub mod identity;
pub mod readahead;
pub mod tls;
pub mod wire;
