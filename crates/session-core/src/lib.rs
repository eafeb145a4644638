//! Will own the wire protocol between console, gateway and applet, the outer
//! and inner TLS set-up with the gateway's per-session CA, and the gateway,
//! applet and console engines. Nothing here yet: the gateway is issue 3.
#![forbid(unsafe_code)]
