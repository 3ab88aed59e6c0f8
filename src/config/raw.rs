//! The serde mirror of `srvd.toml`: exactly the keys the file may contain,
//! with their TOML types, before any validation. Unknown keys are rejected
//! here; values that need semantic checks are kept as [`Spanned`] so the
//! validator in `config::mod` can point at them by line and column. This is
//! the one place each key is documented.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The whole file. Every key is optional at this level so that a missing
/// key becomes a validation error (or a default) rather than a serde error
/// that stops at the first problem.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// TCP port to listen on, 1..=65535. Default 8080.
    pub port: Option<Spanned<i64>>,
    /// IP address to bind ("0.0.0.0" for all IPv4, "::" for IPv6).
    /// Default "0.0.0.0".
    pub bind: Option<Spanned<String>>,
    /// Number of worker processes: an integer >= 1, or "auto" for one per
    /// available CPU. Default "auto".
    pub workers: Option<Spanned<RawWorkers>>,
    /// Document root: an existing directory, relative paths resolved
    /// against the config file's directory. Required.
    pub root: Option<Spanned<String>>,
    /// File names tried, in order, when a directory is requested. Each is a
    /// plain name (no '/'). Default ["index.html"].
    pub index: Option<Vec<Spanned<String>>>,
    /// Page served with 404 responses: a readable regular file. Absent
    /// means the built-in page.
    pub not_found_page: Option<Spanned<String>>,
    /// Content-Type for files whose extension is not in the table.
    /// Default "application/octet-stream".
    pub default_type: Option<Spanned<String>>,
    /// How long an idle keep-alive connection is kept open. Default "15s".
    pub keepalive_timeout: Option<Spanned<String>>,
    /// How long a client may take to send a complete request head.
    /// Default "10s".
    pub header_timeout: Option<Spanned<String>>,
    /// How long a response may go without the client accepting any bytes.
    /// Default "30s".
    pub send_timeout: Option<Spanned<String>>,
    /// How long a graceful shutdown waits for in-flight requests before
    /// workers are killed. Default "30s".
    pub shutdown_timeout: Option<Spanned<String>>,
    /// Maximum simultaneous connections per worker, >= 1. Default 4096.
    pub max_connections: Option<Spanned<i64>>,
    /// User the workers switch to when srvd is started as root. Optional.
    pub user: Option<Spanned<String>>,
    /// Group the workers switch to when srvd is started as root. Optional.
    pub group: Option<Spanned<String>>,
    /// Where the master writes its process id. Optional.
    pub pid_file: Option<Spanned<String>>,
    /// Extra extension -> Content-Type entries (extension without the dot,
    /// case-insensitive), merged over the built-in table.
    pub mime_types: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// The `[log]` table.
    pub log: Option<RawLog>,
}

/// The `[log]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Access log destination: a file path, "-" for stdout, or "off".
    /// Default "-".
    pub access: Option<Spanned<String>>,
}

/// The `workers` value as written: TOML allows either an integer or a
/// string there, and both are range- or spelling-checked later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawWorkers {
    /// An explicit count (not yet checked to be >= 1).
    Count(i64),
    /// A string; only "auto" is valid.
    Name(String),
}

impl<'de> Deserialize<'de> for RawWorkers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WorkersVisitor;

        impl Visitor<'_> for WorkersVisitor {
            type Value = RawWorkers;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or \"auto\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawWorkers, E> {
                Ok(RawWorkers::Count(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawWorkers, E> {
                // Saturate: anything this large is rejected as too many
                // workers later, with a position, instead of as a type error.
                Ok(RawWorkers::Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawWorkers, E> {
                Ok(RawWorkers::Name(v.to_owned()))
            }
        }

        deserializer.deserialize_any(WorkersVisitor)
    }
}
