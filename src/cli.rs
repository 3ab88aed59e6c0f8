//! Command line: argv → [`Args`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// srvd: a static-file web server daemon (master + forked epoll workers).
#[derive(Debug, Parser)]
#[command(name = "srvd", version, about)]
pub struct Args {
    /// The configuration file.
    #[arg(short, long, default_value = "config/srvd.toml", global = true)]
    pub config: PathBuf,
    /// Validate the configuration and exit: 0 when valid, 1 with every error otherwise.
    /// Nothing is bound, written or signalled.
    #[arg(long)]
    pub check: bool,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// Subcommands; without one, srvd runs the server in the foreground.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Reload the running server synchronously: exit 0 once the new configuration serves,
    /// non-zero with the reason when it was rejected (needs `pid_file`).
    Reload,
    /// Replace the running binary without dropping a connection: the master executes the
    /// binary at its path on disk as a new master, which inherits the listening sockets;
    /// exit 0 once the new master serves (the old one then drains and exits), non-zero
    /// with the reason otherwise (the old master keeps serving). Needs `pid_file`.
    Upgrade,
    /// Show the running server's figures (requests, connections, cache, reloads, uptime)
    /// from its admin listener's /metrics (needs `[admin] listen`).
    Status,
}
