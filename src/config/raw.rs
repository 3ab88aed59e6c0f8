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
    /// Several listeners: `["0.0.0.0:80", "[::]:80"]` (replaces `port` and `bind`).
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
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
    /// The `[admin]` table: the admin listener (health and metrics). Optional; off by
    /// default.
    pub admin: Option<Spanned<RawAdmin>>,
    /// Extra extension -> Content-Type entries (extension without the dot,
    /// case-insensitive), merged over the built-in table.
    pub mime_types: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// The `[log]` table.
    pub log: Option<RawLog>,

    // Sites (see `config::site`). Every key below, and `root` to `mime_types` and `log`
    // above, may also appear in a `[[site]]` table; the process-wide keys above may not.
    /// Host names this site answers to: exact names, or `*.suffix` wildcards. Required
    /// in a `[[site]]`, optional at the top level.
    pub hosts: Option<Spanned<Vec<Spanned<String>>>>,
    /// What a request for a host no site claims gets: "default" (the top-level site),
    /// "misdirected" (421) or "close". Top level only. Default "default".
    pub unknown_host: Option<Spanned<String>>,
    /// Status ("404") or class ("5xx") -> page file, read at load.
    pub error_pages: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// `[[headers]]` rules, in order.
    pub headers: Option<Vec<Spanned<RawHeaderRule>>>,
    /// `[[redirect]]` routes, in order.
    pub redirect: Option<Vec<Spanned<RawRedirect>>>,
    /// SPA fallback file (a path beneath the root, e.g. "/index.html"), for navigations.
    pub fallback: Option<Spanned<String>>,
    /// `/about` serves `about.html`, and `/about.html` redirects to `/about`.
    pub clean_urls: Option<Spanned<bool>>,
    /// "redirect" (default) or "ignore": what `/dir` without its slash gets.
    pub trailing_slash: Option<Spanned<String>>,
    /// Directory listings: true, false (default), or a list of path globs.
    pub listing: Option<Spanned<RawListing>>,
    /// Cache-Control preset: "static-site" or "off" (default).
    pub cache: Option<Spanned<String>>,
    /// max-age of assets under the "static-site" preset that are not content-hashed.
    /// Default "1h".
    pub cache_max_age: Option<Spanned<String>>,
    /// The `[compression]` table.
    pub compression: Option<RawCompression>,
    /// `[[proxy]]` routes: requests handed to an application server.
    pub proxy: Option<Vec<Spanned<RawProxy>>>,
    /// `tls = { cert = "fullchain.pem", key = "privkey.pem" }`: the site's certificate (at
    /// the top level: the default one, inherited by sites without their own).
    pub tls: Option<Spanned<RawTls>>,
    /// On a plain listener, answer with a 308 to the same URL over HTTPS.
    pub https_redirect: Option<Spanned<bool>>,
    /// `Strict-Transport-Security` value ("max-age=…"), sent over TLS only.
    pub hsts: Option<Spanned<String>>,
    /// Peers whose X-Forwarded-* headers are believed: IP addresses or CIDR ranges. Top
    /// level only.
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// More sites: `[[site]]` tables, each with the per-site keys above.
    pub site: Option<Vec<Spanned<RawConfig>>>,
}

/// The `[admin]` table (top level only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Where `/health` and `/metrics` are served: "127.0.0.1:9180" (an IP address and a
    /// port) or "unix:/run/srvd/admin.sock" (relative paths against the config's
    /// directory). Required in `[admin]`.
    pub listen: Option<Spanned<String>>,
}

/// One `[[proxy]]` route.
/// `tls = { cert, key }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// Path prefix: "/api" matches /api and /api/..., "/api/" only below it.
    #[serde(rename = "match")]
    pub prefix: Option<Spanned<String>>,
    /// Path suffix, e.g. ".py".
    pub suffix: Option<Spanned<String>>,
    /// Path glob.
    pub glob: Option<Spanned<String>>,
    /// "unix:/run/app.sock", "127.0.0.1:8000", or a list of them (round robin).
    pub upstream: Option<Spanned<RawUpstreams>>,
    pub strip_prefix: Option<Spanned<bool>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub send_timeout: Option<Spanned<String>>,
    pub read_timeout: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_body: Option<Spanned<RawSize>>,
    pub max_response_head: Option<Spanned<RawSize>>,
    pub keepalive: Option<Spanned<i64>>,
    pub keepalive_timeout: Option<Spanned<String>>,
    pub fail_timeout: Option<Spanned<String>>,
}

/// `upstream` as written: one address or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawUpstreams {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for RawUpstreams {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UpstreamsVisitor;

        impl<'de> Visitor<'de> for UpstreamsVisitor {
            type Value = RawUpstreams;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address such as \"127.0.0.1:8000\" or \"unix:/run/app.sock\", or a list of them")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawUpstreams, E> {
                Ok(RawUpstreams::One(v.to_owned()))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawUpstreams, A::Error> {
                let mut all = Vec::new();
                while let Some(a) = seq.next_element::<String>()? {
                    all.push(a);
                }
                Ok(RawUpstreams::Many(all))
            }
        }

        deserializer.deserialize_any(UpstreamsVisitor)
    }
}

/// The `[compression]` table (per site; each key inherited on its own).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompression {
    /// Serve `file.br`, `file.zst`, `file.gz` sidecars. Default true.
    pub precompressed: Option<Spanned<bool>>,
    /// Codings made on the fly (and cached). Default ["br", "zstd", "gzip"]; [] turns it off.
    pub on_the_fly: Option<Vec<Spanned<String>>>,
    /// The server's order among codings of equal q. Default ["br", "zstd", "gzip"].
    pub prefer: Option<Vec<Spanned<String>>>,
    /// Smallest file encoded on the fly: bytes or "1KiB". Default 1 KiB.
    pub min_size: Option<Spanned<RawSize>>,
    /// Largest file encoded on the fly. Default 16 MiB.
    pub max_size: Option<Spanned<RawSize>>,
    /// Media types encoded besides the built-in list.
    pub types: Option<Vec<Spanned<String>>>,
    /// Level per coding: `{ br = 9, zstd = 19, gzip = 9 }`.
    pub levels: Option<BTreeMap<Spanned<String>, Spanned<i64>>>,
    /// Directory where encoded variants are kept and shared by the workers.
    pub cache_dir: Option<Spanned<String>>,
    /// Memory for encoded variants, per worker. Default 32 MiB.
    pub cache_size: Option<Spanned<RawSize>>,
    /// Bound of `cache_dir`'s total size. Default 1 GiB.
    pub cache_dir_size: Option<Spanned<RawSize>>,
}

/// A size as written: bytes, or a string with a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSize {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of bytes or a size such as \"16MiB\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(i64::try_from(v).unwrap_or(i64::MAX)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

/// One `[[headers]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRule {
    /// Path glob the rule applies to. Required.
    #[serde(rename = "match")]
    pub pattern: Option<Spanned<String>>,
    /// Header name -> value, set on matching responses.
    pub set: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Header names removed from matching responses.
    pub remove: Option<Vec<Spanned<String>>>,
    /// "always" (default: errors included) or "success" (2xx and 3xx).
    pub on: Option<Spanned<String>>,
}

/// One `[[redirect]]` route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    /// Exact path or glob. Required.
    pub from: Option<Spanned<String>>,
    /// Path or absolute URL, with `{1}`.. and `{path}`. Required.
    pub to: Option<Spanned<String>>,
    /// 301, 302, 303, 307 or 308 (default).
    pub status: Option<Spanned<i64>>,
    /// Only for these request hosts.
    pub hosts: Option<Vec<Spanned<String>>>,
}

/// The `listing` value as written: a switch or a list of globs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawListing {
    Switch(bool),
    Paths(Vec<String>),
}

impl<'de> Deserialize<'de> for RawListing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListingVisitor;

        impl<'de> Visitor<'de> for ListingVisitor {
            type Value = RawListing;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or an array of path globs")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawListing, E> {
                Ok(RawListing::Switch(v))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawListing, A::Error> {
                let mut paths = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    paths.push(p);
                }
                Ok(RawListing::Paths(paths))
            }
        }

        deserializer.deserialize_any(ListingVisitor)
    }
}

/// The `[log]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Access log destination: a file path, "-" for stdout, or "off".
    /// Default "-".
    pub access: Option<Spanned<String>>,
    /// "combined" (default), "vhost_combined" or "json".
    pub format: Option<Spanned<String>>,
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
