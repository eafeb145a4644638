//! End-to-end tests: the real `vigil` binary, run as separate processes
//! against real SQLite files and a real PostgreSQL server.

mod audit;
mod bad_input;
mod convert;
mod crash;
mod dependencies;
mod desk;
mod gateway;
mod helpers;
mod recording;
mod security;
mod session;
