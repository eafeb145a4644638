//! End-to-end tests: the real `vigil` binary, run as separate processes
//! against real SQLite files and a real PostgreSQL server.
// A test crate: unwrap() says "this must hold" as well as expect() here.
#![allow(clippy::unwrap_used)]

mod audit;
mod bad_input;
mod convert;
mod crash;
mod dependencies;
mod desk;
mod gateway;
mod helpers;
mod page;
mod proofs;
mod recording;
mod report;
mod retention;
mod security;
mod session;
mod web;
mod webhook;
