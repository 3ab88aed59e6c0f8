//! srvd: a static-file web server daemon.
//!
//! The crate is laid out the way the process runs:
//!
//! - [`cli`] turns argv into [`cli::Args`]; `main.rs` only maps results to exit codes.
//! - [`config`] reads the TOML file into a validated, immutable [`config::Config`].
//! - [`master`] binds the listener, forks workers and supervises them (signals, reload,
//!   respawn). It never holds a client connection.
//! - [`worker`] runs one non-blocking epoll loop per process; [`worker::conn`] is the
//!   per-connection state machine.
//! - [`http`] parses request heads and encodes response heads; pure, no I/O.
//! - [`static_files`] turns a request into a response: path, file, validators, ranges.
//! - [`log`] is the error log (stderr) and the access log.
//! - [`metrics`] is what workers count in the scoreboard and how the master renders it;
//!   [`status_cmd`] is `srvd status`.
//! - [`tls`] loads certificates, builds a generation's rustls configuration and adapts a
//!   rustls connection to the non-blocking loop (not wired into the worker yet).
//! - [`sys`] is the only module allowed `unsafe`: fork, raw fds, sendfile, openat2.
//!
//! Dependencies point one way: `master`/`worker` → `http`, `static_files` → `sys`,
//! `config`, `log`.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod cli;
pub mod config;
pub mod http;
pub mod log;
pub mod master;
pub mod metrics;
pub mod proxy;
pub mod reload_cmd;
pub mod site;
pub mod static_files;
pub mod status_cmd;
#[allow(unsafe_code)]
pub mod sys;
pub mod tls;
pub mod worker;
