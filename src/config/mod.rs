//! Configuration: reads `srvd.toml`, parses it into [`raw::RawConfig`] and
//! validates that into the [`Config`] the rest of the server uses. Owns the
//! defaults, the resolution of relative paths (against the config file's
//! directory) and the error reporting, which names the file, line and
//! column of each problem and reports every semantic error at once so an
//! operator can fix them in one pass.

pub mod admin;
pub mod compression;
mod duration;
pub mod raw;
pub mod route;
pub mod site;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use crate::static_files::mime::{self, MimeTable};
use raw::{RawConfig, RawLog, RawWorkers};
pub use site::SiteConfig;

/// Port used when `port` is absent.
pub const DEFAULT_PORT: u16 = 8080;
/// Address bound when `bind` is absent: every IPv4 interface.
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
/// Index file list used when `index` is absent.
pub const DEFAULT_INDEX: &str = "index.html";
/// `keepalive_timeout` when absent.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(15);
/// `header_timeout` when absent.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `send_timeout` when absent.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// `shutdown_timeout` when absent.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// `max_connections` (per worker) when absent.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Upper bound for `workers`: each worker is a process, so a typo such as
/// `workers = 80000` should be rejected rather than fork that many.
pub const MAX_WORKERS: usize = 1024;
/// Upper bound for `max_connections`: far above what one epoll worker can
/// serve, but low enough that per-connection tables sized from it stay
/// reasonable.
pub const MAX_MAX_CONNECTIONS: usize = 1 << 20;
/// Largest `not_found_page` accepted: the body is held in memory by every
/// worker, and a 404 page bigger than this is almost certainly the wrong
/// file.
pub const MAX_NOT_FOUND_PAGE_BYTES: u64 = 1 << 20;

/// A generation's TLS: the rustls configuration its workers use, and the resolver that
/// also says which site an SNI name selected (for 421).
#[derive(Debug, Clone)]
pub struct TlsSetup {
    pub server: Arc<rustls::ServerConfig>,
    pub resolver: Arc<crate::tls::server::SniResolver>,
}

/// Most `listen` entries (each worker gives its listeners epoll tokens of their own).
pub const MAX_LISTENERS: usize = 32;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file as given on the command line (used for reloads and
    /// messages).
    pub path: PathBuf,
    /// The first listener's address (`bind`:`port`, or the first of `listen`): the one
    /// named in logs, and the port of a request without a Host.
    pub listen: SocketAddr,
    /// Every address to listen on, in file order (`listen`, or the one `bind`:`port`);
    /// `listeners[0] == listen`.
    pub listeners: Vec<SocketAddr>,
    /// The listeners that speak TLS (`"ADDR tls"` entries), a subset of `listeners`.
    pub tls_listeners: Vec<SocketAddr>,
    /// The generation's TLS configuration, when a listener speaks TLS.
    pub tls: Option<TlsSetup>,
    /// For `--check`: each certificate loaded and when it expires.
    pub notes: Vec<String>,
    /// Number of worker processes, >= 1.
    pub workers: usize,
    /// The sites: `[0]` is the top level (the default site), then each `[[site]]` in
    /// file order.
    pub sites: Vec<SiteConfig>,
    /// What a request whose host no site claims gets.
    pub unknown_host: UnknownHost,
    /// Peers whose X-Forwarded-* headers proxy routes keep (appending to them).
    pub trusted_proxies: Vec<crate::http::upstream::Cidr>,
    /// Things worth telling the operator that do not stop the config from loading.
    pub warnings: Vec<String>,
    /// Idle time allowed between requests on a keep-alive connection.
    pub keepalive_timeout: Duration,
    /// Time allowed to receive a complete request head.
    pub header_timeout: Duration,
    /// Time a response may go without progress.
    pub send_timeout: Duration,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_timeout: Duration,
    /// Maximum simultaneous connections per worker, >= 1.
    pub max_connections: usize,
    /// User the workers drop privileges to when started as root.
    pub user: Option<String>,
    /// Group the workers drop privileges to when started as root.
    pub group: Option<String>,
    /// Where to write the master's process id, resolved against the config
    /// directory.
    pub pid_file: Option<PathBuf>,
    /// The admin listener (`/health`, `/metrics`), served by the master; `None`: off.
    pub admin: Option<admin::AdminListen>,
}

/// `unknown_host`: the answer to a request for a host no site claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownHost {
    /// Served by the default (top-level) site.
    Default,
    /// 421 Misdirected Request.
    Misdirected,
    /// Closed without a response.
    Close,
}

impl Config {
    /// The top-level site.
    pub fn default_site(&self) -> &SiteConfig {
        &self.sites[0]
    }
}

/// Destination of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// No access log.
    Off,
    /// One line per request on standard output.
    Stdout,
    /// Appended to this file (resolved against the config directory).
    File(PathBuf),
}

/// One problem found in a config file.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A problem at a known place in the file; `line` and `column` are
    /// 1-based and the column counts characters.
    #[error("{}:{line}:{column}: {message}", .path.display())]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A problem with the file as a whole: it cannot be read, or a
    /// required key is missing.
    #[error("{}: {message}", .path.display())]
    File { path: PathBuf, message: String },
}

impl ConfigError {
    /// Sort key: whole-file errors first, then by position.
    fn position(&self) -> (usize, usize) {
        match self {
            ConfigError::At { line, column, .. } => (*line, *column),
            ConfigError::File { .. } => (0, 0),
        }
    }
}

/// Every problem found in a config file, in file order. Displays one error
/// per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads, parses and validates the file at `path`. Syntax and type
    /// errors stop parsing, so at most one of those is reported; semantic
    /// errors are all collected.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let bytes = fs::read(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::File {
                path: path.to_path_buf(),
                message: format!("cannot read config file: {}", io_reason(&e)),
            }])
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            // Point at the first invalid byte: the prefix before it is valid
            // UTF-8, so its length is a usable offset into a lossy copy.
            let valid = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes());
            let (line, column) = line_col(&lossy, valid);
            ConfigErrors(vec![ConfigError::At {
                path: path.to_path_buf(),
                line,
                column,
                message: "invalid utf-8".to_owned(),
            }])
        })?;
        Config::from_str(path, &text)
    }

    /// Parses and validates `text` as if it had been read from `path`;
    /// `path` names the file in messages and its directory anchors relative
    /// paths. Touches the file system only for the paths the config names.
    pub fn from_str(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigErrors(vec![toml_error(path, text, &e)]))?;
        let mut validator = Validator {
            path,
            text,
            base: config_dir(path),
            errors: Vec::new(),
            claimed: HashMap::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
        };
        let config = validator.validate(raw);
        if validator.errors.is_empty() {
            Ok(config)
        } else {
            let mut errors = validator.errors;
            errors.sort_by_key(ConfigError::position);
            Err(ConfigErrors(errors))
        }
    }
}

/// The directory relative config paths are resolved against, made absolute
/// so the result does not change if the process later changes directory.
fn config_dir(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

/// 1-based line and character column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // Spans should fall on character boundaries; step back if not, rather
    // than slicing in the middle of a character.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// An io::Error's description without the "(os error N)" suffix and
/// starting lowercase, to match the rest of the messages.
fn io_reason(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    lowercase_first(text)
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Converts a toml parse or type error, rewording the common cases in the
/// config's own vocabulary (keys and tables rather than serde's fields,
/// maps and Rust type names).
fn toml_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let original = error.message();
    let message = match unknown_field(original) {
        Some(key) => format!("unknown key {key:?}"),
        None => original
            .trim()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
            .replace("expected i64", "expected an integer")
            .replace("expected struct RawLog", "expected a table")
            .replace("expected a map", "expected a table")
            .replace("expected a sequence", "expected an array"),
    };
    match error.span() {
        Some(span) => {
            let (line, column) = line_col(text, span.start);
            ConfigError::At {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        }
        None => ConfigError::File {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// The key named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    ["`, expected", "`, there are no fields"]
        .iter()
        .find_map(|end| rest.find(end).map(|i| &rest[..i]))
}

/// Accumulates errors while turning a [`RawConfig`] into a [`Config`]. Each
/// check records its errors and returns a placeholder on failure, so every
/// key gets checked; the placeholder is discarded because any error makes
/// the whole load fail.
struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    base: PathBuf,
    errors: Vec<ConfigError>,
    /// Host names claimed so far, with the line that claimed them.
    claimed: HashMap<String, usize>,
    warnings: Vec<String>,
    /// What `--check` reports besides "ok" (each certificate and its expiry).
    notes: Vec<String>,
}

impl Validator<'_> {
    fn error_at(&mut self, span: Range<usize>, message: String) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(ConfigError::At {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
        });
    }

    fn error_file(&mut self, message: String) {
        self.errors.push(ConfigError::File {
            path: self.path.to_path_buf(),
            message,
        });
    }

    fn validate(&mut self, mut raw: RawConfig) -> Config {
        let listen_list = raw.listen.take();
        if let (Some(list), Some(key)) = (
            &listen_list,
            raw.port
                .as_ref()
                .map(|_| "port")
                .or(raw.bind.as_ref().map(|_| "bind")),
        ) {
            self.error_at(
                list.span(),
                format!("listen replaces port and bind: set either listen or {key}, not both"),
            );
        }
        let port = self.port(raw.port.take());
        let bind = self.bind(raw.bind.take());
        let workers = self.workers(raw.workers.take());
        let keepalive_timeout = self.duration(
            "keepalive_timeout",
            raw.keepalive_timeout.take(),
            DEFAULT_KEEPALIVE_TIMEOUT,
        );
        let header_timeout = self.duration(
            "header_timeout",
            raw.header_timeout.take(),
            DEFAULT_HEADER_TIMEOUT,
        );
        let send_timeout = self.duration(
            "send_timeout",
            raw.send_timeout.take(),
            DEFAULT_SEND_TIMEOUT,
        );
        let shutdown_timeout = self.duration(
            "shutdown_timeout",
            raw.shutdown_timeout.take(),
            DEFAULT_SHUTDOWN_TIMEOUT,
        );
        let max_connections = self.max_connections(raw.max_connections.take());
        let user = raw.user.take().and_then(|u| self.account("user", u));
        let group = raw.group.take().and_then(|g| self.account("group", g));
        let pid_file = raw
            .pid_file
            .take()
            .and_then(|p| self.path_text("pid_file", &p).map(|p| self.base.join(p)));
        let listen_at = listen_list.as_ref().map(Spanned::span);
        let (listeners, tls_listeners) = match listen_list {
            Some(list) => self.listeners(list),
            None => (vec![SocketAddr::new(bind, port)], Vec::new()),
        };
        let listen = listeners[0];
        let admin = raw.admin.take().and_then(|a| self.admin(a, &listeners));
        let unknown_host = match raw.unknown_host.take() {
            Some(v) => self.choice(
                "unknown_host",
                &v,
                &[
                    ("default", UnknownHost::Default),
                    ("misdirected", UnknownHost::Misdirected),
                    ("close", UnknownHost::Close),
                ],
            ),
            None => None,
        }
        .unwrap_or(UnknownHost::Default);
        let mut trusted_proxies = Vec::new();
        for entry in raw.trusted_proxies.take().unwrap_or_default() {
            match crate::http::upstream::Cidr::parse(entry.get_ref()) {
                Ok(c) => trusted_proxies.push(c),
                Err(problem) => {
                    let message = format!(
                        "invalid trusted_proxies entry {:?}: {problem}",
                        entry.get_ref()
                    );
                    self.error_at(entry.span(), message);
                }
            }
        }
        let more = raw.site.take().unwrap_or_default();
        let default = self.site(&mut raw, None, 0..0);
        let mut sites = vec![default];
        for table in more {
            let at = table.span();
            let mut raw = table.into_inner();
            let site = self.site(&mut raw, Some(&sites[0]), at);
            sites.push(site);
        }
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.extend(nested_roots(&sites));
        let tls = self.tls_setup(&sites, &tls_listeners, listen_at);
        Config {
            path: self.path.to_path_buf(),
            listen,
            listeners,
            tls_listeners,
            tls,
            notes: std::mem::take(&mut self.notes),
            workers,
            sites,
            unknown_host,
            trusted_proxies,
            warnings,
            keepalive_timeout,
            header_timeout,
            send_timeout,
            shutdown_timeout,
            max_connections,
            user,
            group,
            pid_file,
            admin,
        }
    }

    /// `listen = ["IP:PORT", ...]`: at least one, each an IP address (IPv6 in brackets)
    /// and a port, none twice. Never empty (a default stands in after an error).
    fn listeners(
        &mut self,
        list: Spanned<Vec<Spanned<String>>>,
    ) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        let at = list.span();
        let mut out: Vec<SocketAddr> = Vec::new();
        let mut tls = Vec::new();
        for entry in list.into_inner() {
            let full = entry.get_ref().trim();
            let (text, is_tls) = match full.strip_suffix(" tls") {
                Some(addr) => (addr.trim_end(), true),
                None => (full, false),
            };
            let problem = match text.parse::<SocketAddr>() {
                Ok(a) if a.port() == 0 => "the port must be between 1 and 65535".to_owned(),
                Ok(a) if out.contains(&a) => format!("{a} is listed twice"),
                Ok(_) if out.len() == MAX_LISTENERS => {
                    format!("at most {MAX_LISTENERS} listeners")
                }
                Ok(a) => {
                    out.push(a);
                    if is_tls {
                        tls.push(a);
                    }
                    continue;
                }
                Err(_) => "expected an IP address and a port such as \"0.0.0.0:80\" or \
                           \"[::]:443 tls\""
                    .to_owned(),
            };
            let message = format!("invalid listen entry {:?}: {problem}", entry.get_ref());
            self.error_at(entry.span(), message);
        }
        if out.is_empty() {
            if self.errors.is_empty() {
                self.error_at(at, "listen needs at least one address".to_owned());
            }
            out.push(SocketAddr::new(DEFAULT_BIND, DEFAULT_PORT));
        }
        (out, tls)
    }

    /// The generation's rustls configuration: certificates by SNI (each site's, the top
    /// level's for unknown names, or a refused handshake without one), ticket keys shared
    /// by the generation's workers (made here, in the master, before the fork).
    fn tls_setup(
        &mut self,
        sites: &[SiteConfig],
        tls_listeners: &[SocketAddr],
        listen_at: Option<Range<usize>>,
    ) -> Option<TlsSetup> {
        let at = listen_at.unwrap_or(0..0);
        if tls_listeners.is_empty() {
            if let Some(site) = sites.iter().find(|s| s.https_redirect) {
                let message = format!(
                    "site {}: https_redirect needs a TLS listener (listen = [\"0.0.0.0:443 tls\"])",
                    site.name
                );
                self.error_at(at, message);
            }
            return None;
        }
        if sites.iter().all(|s| s.tls.is_none()) {
            self.error_at(
                at,
                "a TLS listener needs a certificate: tls = { cert = \"fullchain.pem\", key = \"privkey.pem\" }"
                    .to_owned(),
            );
            return None;
        }
        use crate::tls::server::{self, SiteTls, SniResolver, UnknownName};
        let list: Vec<SiteTls> = sites
            .iter()
            .enumerate()
            .map(|(i, s)| SiteTls {
                site: i,
                hosts: s.hosts.clone(),
                cert: s.tls.clone(),
            })
            .collect();
        let unknown = match &sites[0].tls {
            Some(cert) => UnknownName::Default(Arc::clone(cert)),
            None => UnknownName::Refuse,
        };
        let resolver = Arc::new(SniResolver::new(&list, unknown));
        let made = crate::tls::tickets::TicketKeys::new(crate::tls::tickets::ROTATION)
            .map_err(|e| format!("{e:?}"))
            .and_then(|keys| {
                server::server_config(Arc::clone(&resolver), Arc::new(keys))
                    .map_err(|e| e.to_string())
            });
        match made {
            Ok(server) => Some(TlsSetup { server, resolver }),
            Err(e) => {
                self.error_file(format!("cannot set up TLS: {e}"));
                None
            }
        }
    }

    fn port(&mut self, value: Option<Spanned<i64>>) -> u16 {
        let Some(value) = value else {
            return DEFAULT_PORT;
        };
        match u16::try_from(*value.get_ref()) {
            Ok(port) if port != 0 => port,
            _ => {
                let message = format!(
                    "invalid port {}: must be between 1 and 65535",
                    value.get_ref()
                );
                self.error_at(value.span(), message);
                DEFAULT_PORT
            }
        }
    }

    fn bind(&mut self, value: Option<Spanned<String>>) -> IpAddr {
        let Some(value) = value else {
            return DEFAULT_BIND;
        };
        match value.get_ref().parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                let message = format!(
                    "invalid bind {:?}: expected an IP address such as \"0.0.0.0\" or \"::\"",
                    value.get_ref()
                );
                self.error_at(value.span(), message);
                DEFAULT_BIND
            }
        }
    }

    fn workers(&mut self, value: Option<Spanned<RawWorkers>>) -> usize {
        let auto = || {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_WORKERS)
        };
        let Some(value) = value else {
            return auto();
        };
        let span = value.span();
        let message = match value.into_inner() {
            RawWorkers::Name(name) if name == "auto" => return auto(),
            RawWorkers::Name(name) => {
                format!("invalid workers {name:?}: expected an integer >= 1 or \"auto\"")
            }
            RawWorkers::Count(n) if n < 1 => format!("invalid workers {n}: must be at least 1"),
            RawWorkers::Count(n) => match usize::try_from(n) {
                Ok(count) if count <= MAX_WORKERS => return count,
                _ => format!("invalid workers {n}: must be at most {MAX_WORKERS}"),
            },
        };
        self.error_at(span, message);
        1
    }

    /// Checks the text of a path-valued key; `None` (with an error
    /// recorded) if it cannot name a file.
    fn path_text<'s>(&mut self, key: &str, value: &'s Spanned<String>) -> Option<&'s str> {
        let text = value.get_ref().as_str();
        let problem = if text.is_empty() {
            "must not be empty"
        } else if text.contains('\0') {
            "must not contain NUL"
        } else {
            return Some(text);
        };
        self.error_at(value.span(), format!("invalid {key} {text:?}: {problem}"));
        None
    }

    fn root(&mut self, value: Option<Spanned<String>>) -> PathBuf {
        let Some(value) = value else {
            self.error_file("missing key \"root\"".to_owned());
            return PathBuf::new();
        };
        let Some(text) = self.path_text("root", &value) else {
            return PathBuf::new();
        };
        let problem = match fs::canonicalize(self.base.join(text)) {
            Ok(path) if path.is_dir() => return path,
            Ok(_) => "not a directory".to_owned(),
            Err(e) => io_reason(&e),
        };
        self.error_at(value.span(), format!("invalid root {text:?}: {problem}"));
        PathBuf::new()
    }

    fn index(&mut self, value: Option<Vec<Spanned<String>>>) -> Vec<String> {
        let Some(names) = value else {
            return vec![DEFAULT_INDEX.to_owned()];
        };
        let mut index = Vec::with_capacity(names.len());
        for name in names {
            let text = name.get_ref();
            let problem = if text.is_empty() {
                "must not be empty"
            } else if text.contains('/') {
                "must be a plain file name without '/'"
            } else if text.contains('\0') {
                "must not contain NUL"
            } else if text == "." || text == ".." {
                "must be a file name, not \".\" or \"..\""
            } else {
                index.push(name.into_inner());
                continue;
            };
            let message = format!("invalid index entry {text:?}: {problem}");
            self.error_at(name.span(), message);
        }
        index
    }

    fn default_type(&mut self, value: Option<Spanned<String>>) -> String {
        let Some(value) = value else {
            return mime::DEFAULT_TYPE.to_owned();
        };
        match mime::check_media_type(value.get_ref()) {
            Ok(()) => value.into_inner(),
            Err(problem) => {
                let message = format!("invalid default_type {:?}: {problem}", value.get_ref());
                self.error_at(value.span(), message);
                mime::DEFAULT_TYPE.to_owned()
            }
        }
    }

    fn duration(
        &mut self,
        key: &str,
        value: Option<Spanned<String>>,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else {
            return default;
        };
        match duration::parse_duration(value.get_ref()) {
            Ok(duration) => duration,
            Err(problem) => {
                let message = format!("invalid {key} {:?}: {problem}", value.get_ref());
                self.error_at(value.span(), message);
                default
            }
        }
    }

    fn max_connections(&mut self, value: Option<Spanned<i64>>) -> usize {
        let Some(value) = value else {
            return DEFAULT_MAX_CONNECTIONS;
        };
        let n = *value.get_ref();
        let problem = if n < 1 {
            "must be at least 1".to_owned()
        } else {
            match usize::try_from(n) {
                Ok(count) if count <= MAX_MAX_CONNECTIONS => return count,
                _ => format!("must be at most {MAX_MAX_CONNECTIONS}"),
            }
        };
        self.error_at(
            value.span(),
            format!("invalid max_connections {n}: {problem}"),
        );
        DEFAULT_MAX_CONNECTIONS
    }

    fn mime_types(
        &mut self,
        entries: std::collections::BTreeMap<Spanned<String>, Spanned<String>>,
        table: &mut MimeTable,
    ) {
        // The map is ordered by key, not by position; walk it in file order
        // so "listed twice" blames the later entry.
        let mut entries: Vec<_> = entries.into_iter().collect();
        entries.sort_by_key(|(ext, _)| ext.span().start);
        let mut seen: HashMap<String, String> = HashMap::new();
        for (ext, value) in entries {
            let ext_text = ext.get_ref();
            let mut ok = true;
            if !mime::is_valid_extension(ext_text) {
                let message = format!(
                    "invalid [mime_types] extension {ext_text:?}: use 1 to {} of A-Z a-z 0-9 _ + - (no dot)",
                    mime::MAX_EXTENSION_LEN
                );
                self.error_at(ext.span(), message);
                ok = false;
            } else if let Some(first) = seen.get(&ext_text.to_ascii_lowercase()) {
                let message = format!(
                    "invalid [mime_types] extension {ext_text:?}: {first:?} is already listed (extensions are case-insensitive)"
                );
                self.error_at(ext.span(), message);
                ok = false;
            } else {
                seen.insert(ext_text.to_ascii_lowercase(), ext_text.clone());
            }
            if let Err(problem) = mime::check_media_type(value.get_ref()) {
                let message = format!(
                    "invalid [mime_types] value {:?} for {ext_text:?}: {problem}",
                    value.get_ref()
                );
                self.error_at(value.span(), message);
                ok = false;
            }
            if ok {
                table.insert(ext_text, value.get_ref());
            }
        }
    }

    fn access_log(&mut self, log: Option<RawLog>) -> AccessLog {
        let Some(value) = log.and_then(|log| log.access) else {
            return AccessLog::Stdout;
        };
        let text = value.get_ref().as_str();
        match text {
            "-" => return AccessLog::Stdout,
            "off" => return AccessLog::Off,
            _ => {}
        }
        // Words that look like an attempt at a keyword are far more likely
        // to be mistakes than wanted file names next to the config.
        const LOOKALIKES: &[&str] = &["off", "none", "no", "false", "stdout", "stderr", "-"];
        if LOOKALIKES
            .iter()
            .any(|w| w.eq_ignore_ascii_case(text.trim()))
        {
            let message = format!(
                "invalid [log] access {text:?}: use \"-\" for stdout, \"off\" to disable, or a file path (write \"./{}\" for a file of that name)",
                text.trim()
            );
            self.error_at(value.span(), message);
            return AccessLog::Stdout;
        }
        match self.path_text("[log] access", &value) {
            Some(text) => AccessLog::File(self.base.join(text)),
            None => AccessLog::Stdout,
        }
    }

    /// Checks a `user` or `group` name and that the account exists, so a
    /// typo is reported at load (and rejected on reload) rather than when a
    /// worker tries to drop privileges.
    fn account(&mut self, key: &str, value: Spanned<String>) -> Option<String> {
        let name = value.get_ref().as_str();
        let problem = if name.is_empty() {
            "must not be empty".to_owned()
        } else if name.contains('\0') {
            "must not contain NUL".to_owned()
        } else {
            let found = if key == "user" {
                nix::unistd::User::from_name(name).map(|u| u.is_some())
            } else {
                nix::unistd::Group::from_name(name).map(|g| g.is_some())
            };
            match found {
                Ok(true) => return Some(value.into_inner()),
                Ok(false) => format!("no such {key}"),
                Err(errno) => format!("cannot look up {key}: {}", lowercase_first(errno.desc())),
            }
        };
        self.error_at(value.span(), format!("invalid {key} {name:?}: {problem}"));
        None
    }
}

/// A warning for each site whose root lies inside another site's root: the outer site
/// serves the inner one's files too.
fn nested_roots(sites: &[SiteConfig]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, inner) in sites.iter().enumerate() {
        for (j, outer) in sites.iter().enumerate() {
            if i != j && inner.root != outer.root && inner.root.starts_with(&outer.root) {
                warnings.push(format!(
                    "site {:?}: its root {} is inside the root of site {:?}, which serves its files too",
                    inner.name,
                    inner.root.display(),
                    outer.name
                ));
            }
        }
    }
    warnings
}

/// Resolves and reads an error page; on failure returns the reason.
fn read_page(path: &Path) -> Result<(PathBuf, Vec<u8>), String> {
    let path = fs::canonicalize(path).map_err(|e| io_reason(&e))?;
    // Check the type before opening: opening a FIFO for reading would block
    // the load until a writer appeared.
    let metadata = fs::metadata(&path).map_err(|e| io_reason(&e))?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    let file = fs::File::open(&path).map_err(|e| io_reason(&e))?;
    let mut body = Vec::new();
    // Read one byte past the limit to tell "exactly at" from "over" without
    // trusting the earlier size, which may have changed since.
    file.take(MAX_NOT_FOUND_PAGE_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| io_reason(&e))?;
    if body.len() as u64 > MAX_NOT_FOUND_PAGE_BYTES {
        return Err(format!(
            "larger than the maximum of {} KiB",
            MAX_NOT_FOUND_PAGE_BYTES / 1024
        ));
    }
    Ok((path, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch tree per test: `<dir>/conf/` holds the (virtual) config
    /// file and `<dir>/html/` a document root with index.html and 404.html.
    struct Scratch {
        dir: PathBuf,
    }

    impl Scratch {
        fn new(name: &str) -> Scratch {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "srvd-config-test-{}-{}-{name}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("conf")).expect("create conf dir");
            fs::create_dir_all(dir.join("html")).expect("create html dir");
            fs::write(dir.join("html/index.html"), "<h1>hi</h1>\n").expect("write index");
            fs::write(dir.join("html/404.html"), "<h1>not found</h1>\n").expect("write 404");
            Scratch { dir }
        }

        fn config_path(&self) -> PathBuf {
            self.dir.join("conf/srvd.toml")
        }

        fn parse(&self, text: &str) -> Result<Config, ConfigErrors> {
            Config::from_str(&self.config_path(), text)
        }

        /// Parses and returns the error lines with the directory prefix
        /// replaced by "srvd.toml" so expectations stay readable.
        fn errors(&self, text: &str) -> Vec<String> {
            let errors = self.parse(text).expect_err("config should be rejected");
            let prefix = self.config_path().display().to_string();
            errors
                .0
                .iter()
                .map(|e| e.to_string().replacen(&prefix, "srvd.toml", 1))
                .collect()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    /// Errors for a config that never reaches the file system checks.
    fn syntax_errors(text: &str) -> Vec<String> {
        Config::from_str(Path::new("srvd.toml"), text)
            .expect_err("config should be rejected")
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const MINIMAL: &str = "root = \"../html\"\n";

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/srvd.toml"));
        let config = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.path, path);
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        assert!(config.workers >= 1);
        let html = fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/html")).unwrap();
        assert_eq!(config.sites[0].root, html);
        assert_eq!(config.sites[0].index, vec!["index.html"]);
        assert_eq!(
            config.sites[0].error_pages.get(404).map(|p| p.path.clone()),
            Some(html.join("404.html"))
        );

        assert_eq!(config.sites[0].default_type, "application/octet-stream");
        assert_eq!(config.keepalive_timeout, Duration::from_secs(15));
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.send_timeout, Duration::from_secs(30));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(config.max_connections, 4096);
        assert_eq!(
            config.sites[0].mime.lookup("/README.md"),
            "text/markdown; charset=utf-8"
        );
        assert_eq!(config.sites[0].access_log, AccessLog::Stdout);
        assert_eq!(config.user, None);
        assert_eq!(config.group, None);
        assert_eq!(config.pid_file, None);
    }

    #[test]
    fn defaults_applied() {
        let s = Scratch::new("defaults");
        let config = s.parse(MINIMAL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.listen, SocketAddr::new(DEFAULT_BIND, 8080));
        assert!(config.workers >= 1 && config.workers <= MAX_WORKERS);
        assert_eq!(
            config.sites[0].root,
            fs::canonicalize(s.dir.join("html")).unwrap()
        );
        assert_eq!(config.sites[0].index, vec!["index.html"]);
        assert!(config.sites[0].error_pages.get(404).is_none());
        assert_eq!(config.sites[0].default_type, "application/octet-stream");
        assert_eq!(
            config.sites[0].mime.lookup("/x.unknown"),
            "application/octet-stream"
        );
        assert_eq!(
            config.sites[0].mime.lookup("/x.html"),
            "text/html; charset=utf-8"
        );
        assert_eq!(config.keepalive_timeout, DEFAULT_KEEPALIVE_TIMEOUT);
        assert_eq!(config.header_timeout, DEFAULT_HEADER_TIMEOUT);
        assert_eq!(config.send_timeout, DEFAULT_SEND_TIMEOUT);
        assert_eq!(config.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert_eq!(config.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(config.sites[0].access_log, AccessLog::Stdout);
        assert_eq!(
            (config.user, config.group, config.pid_file),
            (None, None, None)
        );
    }

    #[test]
    fn explicit_values() {
        let s = Scratch::new("explicit");
        let text = r#"
port = 9000
bind = "::1"
workers = 3
root = "../html"
index = ["index.htm", "default.html"]
default_type = "text/plain"
keepalive_timeout = "500ms"
header_timeout = "2m"
send_timeout = "1h"
shutdown_timeout = "5s"
max_connections = 10
user = "root"
group = "root"
[log]
access = "off"
"#;
        let config = s.parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.listen, "[::1]:9000".parse().unwrap());
        assert_eq!(config.workers, 3);
        assert_eq!(config.sites[0].index, vec!["index.htm", "default.html"]);
        assert_eq!(config.sites[0].default_type, "text/plain");
        assert_eq!(config.sites[0].mime.lookup("Makefile"), "text/plain");
        assert_eq!(config.keepalive_timeout, Duration::from_millis(500));
        assert_eq!(config.header_timeout, Duration::from_secs(120));
        assert_eq!(config.send_timeout, Duration::from_secs(3600));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(config.max_connections, 10);
        assert_eq!(config.user.as_deref(), Some("root"));
        assert_eq!(config.group.as_deref(), Some("root"));
        assert_eq!(config.sites[0].access_log, AccessLog::Off);
        let ipv6_any = s.parse("bind = \"::\"\nroot = \"../html\"").unwrap();
        assert_eq!(ipv6_any.listen, "[::]:8080".parse().unwrap());
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let s = Scratch::new("relative");
        let text = r#"
root = "../html"
not_found_page = "../html/404.html"
pid_file = "run/srvd.pid"
[log]
access = "logs/access.log"
"#;
        let config = s.parse(text).unwrap_or_else(|e| panic!("{e}"));
        let base = fs::canonicalize(s.dir.join("conf")).unwrap();
        let html = fs::canonicalize(s.dir.join("html")).unwrap();
        assert_eq!(config.sites[0].root, html);
        assert_eq!(
            config.sites[0].error_pages.get(404).map(|p| p.path.clone()),
            Some(html.join("404.html"))
        );
        assert_eq!(
            config.sites[0].error_pages.get(404).map(|p| &p.body[..]),
            Some(&b"<h1>not found</h1>\n"[..])
        );
        assert_eq!(config.pid_file, Some(base.join("run/srvd.pid")));
        assert_eq!(
            config.sites[0].access_log,
            AccessLog::File(base.join("logs/access.log"))
        );

        // Absolute paths are kept as written.
        let html_text = html.display().to_string();
        let text = format!(
            "root = {html_text:?}\npid_file = \"/run/x.pid\"\n[log]\naccess = \"/var/log/a.log\"\n"
        );
        let config = s.parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.sites[0].root, html);
        assert_eq!(config.pid_file, Some(PathBuf::from("/run/x.pid")));
        assert_eq!(
            config.sites[0].access_log,
            AccessLog::File("/var/log/a.log".into())
        );
    }

    #[test]
    fn workers_auto_and_invalid() {
        let s = Scratch::new("workers");
        let auto = s.parse("workers = \"auto\"\nroot = \"../html\"").unwrap();
        assert!(auto.workers >= 1);
        assert_eq!(
            s.errors("workers = 0\nroot = \"../html\""),
            ["srvd.toml:1:11: invalid workers 0: must be at least 1"]
        );
        assert_eq!(
            s.errors("workers = \"many\"\nroot = \"../html\""),
            ["srvd.toml:1:11: invalid workers \"many\": expected an integer >= 1 or \"auto\""]
        );
        assert_eq!(
            s.errors("root = \"../html\"\nworkers = 100000"),
            ["srvd.toml:2:11: invalid workers 100000: must be at most 1024"]
        );
        assert_eq!(
            syntax_errors("workers = true"),
            ["srvd.toml:1:11: invalid type: boolean `true`, expected an integer or \"auto\""]
        );
    }

    #[test]
    fn unknown_keys() {
        assert_eq!(
            syntax_errors("port = 8080\nbind = \"::\"\nrot = \"/srv\"\n"),
            ["srvd.toml:3:1: unknown key \"rot\""]
        );
        assert_eq!(
            syntax_errors("port = 8080\n\n   rot = \"/srv\"\n"),
            ["srvd.toml:3:4: unknown key \"rot\""]
        );
        assert_eq!(
            syntax_errors("root = \"x\"\n[log]\naccess = \"-\"\nacces = \"off\"\n"),
            ["srvd.toml:4:1: unknown key \"acces\""]
        );
        assert_eq!(
            syntax_errors("root = \"x\"\nlog.error = \"-\"\n"),
            ["srvd.toml:2:5: unknown key \"error\""]
        );
        assert_eq!(
            syntax_errors("root = \"x\"\n[server]\nport = 1\n"),
            ["srvd.toml:2:2: unknown key \"server\""]
        );
    }

    #[test]
    fn syntax_and_type_errors_have_positions() {
        assert_eq!(
            syntax_errors("port = 8080\nbind = \n"),
            ["srvd.toml:2:8: invalid string, expected `\"`, `'`"]
        );
        // Columns count characters, not bytes.
        let errors = syntax_errors("root = \"x\"\nbind = \"\u{e9}\u{e9}\" junk\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("srvd.toml:2:13: "), "{errors:?}");
        assert_eq!(
            syntax_errors("port = \"80\"\n"),
            ["srvd.toml:1:8: invalid type: string \"80\", expected an integer"]
        );
        assert_eq!(
            syntax_errors("root = \"x\"\nport = 1\nport = 2\n"),
            ["srvd.toml:3:1: duplicate key `port` in document root"]
        );
        assert_eq!(
            syntax_errors("root = \"x\"\nlog = 1\n"),
            ["srvd.toml:2:7: invalid type: integer `1`, expected a table"]
        );
        assert_eq!(
            syntax_errors("root = \"x\"\nindex = \"index.html\"\n"),
            ["srvd.toml:2:9: invalid type: string \"index.html\", expected an array"]
        );
    }

    #[test]
    fn missing_root_key() {
        assert_eq!(
            syntax_errors("port = 80\n"),
            ["srvd.toml: missing key \"root\""]
        );
        // Reported together with positioned errors, and first.
        assert_eq!(
            syntax_errors("port = 0\n"),
            [
                "srvd.toml: missing key \"root\"",
                "srvd.toml:1:8: invalid port 0: must be between 1 and 65535",
            ]
        );
    }

    #[test]
    fn port_range() {
        let s = Scratch::new("port");
        assert_eq!(
            s.errors("root = \"../html\"\nport = 0"),
            ["srvd.toml:2:8: invalid port 0: must be between 1 and 65535"]
        );
        assert_eq!(
            s.errors("root = \"../html\"\nport = 70000"),
            ["srvd.toml:2:8: invalid port 70000: must be between 1 and 65535"]
        );
        assert_eq!(
            s.errors("root = \"../html\"\nport =   -1"),
            ["srvd.toml:2:10: invalid port -1: must be between 1 and 65535"]
        );
        let ok = s.parse("root = \"../html\"\nport = 65535").unwrap();
        assert_eq!(ok.listen.port(), 65535);
    }

    #[test]
    fn bad_bind() {
        let s = Scratch::new("bind");
        for bad in ["nope", "localhost", "[::]", "0.0.0.0:80", "", "256.0.0.1"] {
            let text = format!("root = \"../html\"\nbind = {bad:?}");
            assert_eq!(
                s.errors(&text),
                [format!(
                    "srvd.toml:2:8: invalid bind {bad:?}: expected an IP address such as \"0.0.0.0\" or \"::\""
                )]
            );
        }
    }

    #[test]
    fn bad_durations() {
        let s = Scratch::new("durations");
        assert_eq!(
            s.errors("root = \"../html\"\nkeepalive_timeout = \"10\""),
            ["srvd.toml:2:21: invalid keepalive_timeout \"10\": missing unit (ms, s, m or h)"]
        );
        assert_eq!(
            s.errors("root = \"../html\"\nheader_timeout = \"5x\""),
            ["srvd.toml:2:18: invalid header_timeout \"5x\": unknown unit \"x\" (use ms, s, m or h)"]
        );
        assert_eq!(
            s.errors("root = \"../html\"\nsend_timeout = \"0s\""),
            ["srvd.toml:2:16: invalid send_timeout \"0s\": must be greater than zero"]
        );
        assert_eq!(
            s.errors("root = \"../html\"\nshutdown_timeout = \"25h\""),
            ["srvd.toml:2:20: invalid shutdown_timeout \"25h\": longer than the maximum of 24h"]
        );
        assert_eq!(
            syntax_errors("root = \"x\"\nsend_timeout = 30\n"),
            ["srvd.toml:2:16: invalid type: integer `30`, expected a string"]
        );
    }

    #[test]
    fn root_must_be_an_existing_directory() {
        let s = Scratch::new("root");
        let errors = s.errors("root = \"../missing\"");
        assert_eq!(
            errors,
            ["srvd.toml:1:8: invalid root \"../missing\": no such file or directory"]
        );
        assert_eq!(
            s.errors("root = \"../html/index.html\""),
            ["srvd.toml:1:8: invalid root \"../html/index.html\": not a directory"]
        );
        assert_eq!(
            s.errors("root = \"\""),
            ["srvd.toml:1:8: invalid root \"\": must not be empty"]
        );
    }

    #[test]
    fn not_found_page_must_be_readable() {
        let s = Scratch::new("notfound");
        assert_eq!(
            s.errors("root = \"../html\"\nnot_found_page = \"../html/nope.html\""),
            ["srvd.toml:2:18: invalid not_found_page \"../html/nope.html\": no such file or directory"]
        );
        assert_eq!(
            s.errors("root = \"../html\"\nnot_found_page = \"../html\""),
            ["srvd.toml:2:18: invalid not_found_page \"../html\": not a regular file"]
        );
        let big = s.dir.join("html/big.html");
        let too_big = usize::try_from(MAX_NOT_FOUND_PAGE_BYTES).unwrap() + 1;
        fs::write(&big, vec![b'x'; too_big]).unwrap();
        assert_eq!(
            s.errors("root = \"../html\"\nnot_found_page = \"../html/big.html\""),
            ["srvd.toml:2:18: invalid not_found_page \"../html/big.html\": larger than the maximum of 1024 KiB"]
        );
        // Permission bits do not stop root, so only check them otherwise.
        if !nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::PermissionsExt;
            let locked = s.dir.join("html/locked.html");
            fs::write(&locked, "secret").unwrap();
            fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
            assert_eq!(
                s.errors("root = \"../html\"\nnot_found_page = \"../html/locked.html\""),
                ["srvd.toml:2:18: invalid not_found_page \"../html/locked.html\": permission denied"]
            );
        }
    }

    #[test]
    fn index_names_must_be_plain() {
        let s = Scratch::new("index");
        let text =
            "root = \"../html\"\nindex = [\"ok.html\", \"\", \"a/b\", \"..\", \".\", \"x\\u0000\"]";
        assert_eq!(
            s.errors(text),
            [
                "srvd.toml:2:21: invalid index entry \"\": must not be empty",
                "srvd.toml:2:25: invalid index entry \"a/b\": must be a plain file name without '/'",
                "srvd.toml:2:32: invalid index entry \"..\": must be a file name, not \".\" or \"..\"",
                "srvd.toml:2:38: invalid index entry \".\": must be a file name, not \".\" or \"..\"",
                "srvd.toml:2:43: invalid index entry \"x\\0\": must not contain NUL",
            ]
        );
        let empty = s.parse("root = \"../html\"\nindex = []").unwrap();
        assert!(empty.sites[0].index.is_empty());
    }

    #[test]
    fn mime_types_override_case_insensitively() {
        let s = Scratch::new("mime");
        let text = r#"
root = "../html"
default_type = "text/plain; charset=utf-8"
[mime_types]
MD = "text/x-markdown"
Html = "application/xhtml+xml"
gmi = "text/gemini; charset=utf-8; lang=\"en us\""
"#;
        let config = s.parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.sites[0].mime.lookup("/docs/README.md"),
            "text/x-markdown"
        );
        assert_eq!(
            config.sites[0].mime.lookup("/docs/README.MD"),
            "text/x-markdown"
        );
        assert_eq!(
            config.sites[0].mime.lookup("/index.HTML"),
            "application/xhtml+xml"
        );
        assert_eq!(
            config.sites[0].mime.lookup("/capsule/index.gmi"),
            "text/gemini; charset=utf-8; lang=\"en us\""
        );
        assert_eq!(
            config.sites[0].mime.lookup("/a.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(
            config.sites[0].mime.lookup("/LICENSE"),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn bad_mime_entries() {
        let s = Scratch::new("badmime");
        let text = r#"root = "../html"
default_type = "binary"
[mime_types]
md = "markdown"
"tar.gz" = "application/gzip"
txt = "text/plain\r\nX-Injected: 1"
MD = "text/markdown"
"#;
        assert_eq!(
            s.errors(text),
            [
                "srvd.toml:2:16: invalid default_type \"binary\": expected type/subtype",
                "srvd.toml:4:6: invalid [mime_types] value \"markdown\" for \"md\": expected type/subtype",
                "srvd.toml:5:1: invalid [mime_types] extension \"tar.gz\": use 1 to 32 of A-Z a-z 0-9 _ + - (no dot)",
                "srvd.toml:6:7: invalid [mime_types] value \"text/plain\\r\\nX-Injected: 1\" for \"txt\": must not contain control characters",
                "srvd.toml:7:1: invalid [mime_types] extension \"MD\": \"md\" is already listed (extensions are case-insensitive)",
            ]
        );
    }

    #[test]
    fn access_log_values() {
        let s = Scratch::new("log");
        let parse =
            |value: &str| s.parse(&format!("root = \"../html\"\n[log]\naccess = {value:?}"));
        assert_eq!(parse("-").unwrap().sites[0].access_log, AccessLog::Stdout);
        assert_eq!(parse("off").unwrap().sites[0].access_log, AccessLog::Off);
        assert_eq!(
            s.parse("root = \"../html\"\n[log]\n").unwrap().sites[0].access_log,
            AccessLog::Stdout
        );
        assert_eq!(
            s.errors("root = \"../html\"\n[log]\naccess = \"stdout\""),
            ["srvd.toml:3:10: invalid [log] access \"stdout\": use \"-\" for stdout, \"off\" to disable, or a file path (write \"./stdout\" for a file of that name)"]
        );
        assert_eq!(
            s.errors("root = \"../html\"\n[log]\naccess = \"\""),
            ["srvd.toml:3:10: invalid [log] access \"\": must not be empty"]
        );
        assert!(parse("./stdout").is_ok());
    }

    #[test]
    fn user_and_group_must_exist() {
        let s = Scratch::new("user");
        assert_eq!(
            s.errors("root = \"../html\"\nuser = \"srvd-no-such-user-x\"\ngroup = \"\""),
            [
                "srvd.toml:2:8: invalid user \"srvd-no-such-user-x\": no such user",
                "srvd.toml:3:9: invalid group \"\": must not be empty",
            ]
        );
        assert_eq!(
            s.errors("root = \"../html\"\ngroup = \"srvd-no-such-group-x\""),
            ["srvd.toml:2:9: invalid group \"srvd-no-such-group-x\": no such group"]
        );
    }

    #[test]
    fn all_semantic_errors_are_collected() {
        let s = Scratch::new("many");
        let text = r#"port = 0
bind = "nope"
workers = 0
root = "../missing"
index = ["a/b"]
not_found_page = "../html/missing.html"
keepalive_timeout = "10"
max_connections = 0
[mime_types]
md = "bad"
[log]
access = "OFF"
"#;
        let errors = s.errors(text);
        let positions: Vec<&str> = errors
            .iter()
            .map(|e| e.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            positions,
            [
                "srvd.toml:1:8",
                "srvd.toml:2:8",
                "srvd.toml:3:11",
                "srvd.toml:4:8",
                "srvd.toml:5:10",
                "srvd.toml:6:18",
                "srvd.toml:7:21",
                "srvd.toml:8:19",
                "srvd.toml:10:6",
                "srvd.toml:12:10",
            ],
            "{errors:#?}"
        );
        // Display puts one error per line, in file order.
        let joined = s.parse(text).unwrap_err().to_string();
        assert_eq!(joined.lines().count(), 10);
        assert!(joined
            .lines()
            .next()
            .unwrap()
            .ends_with("invalid port 0: must be between 1 and 65535"));
    }

    #[test]
    fn load_reports_io_and_encoding_errors() {
        let s = Scratch::new("load");
        let missing = s.dir.join("conf/absent.toml");
        let err = Config::load(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: cannot read config file: no such file or directory",
                missing.display()
            )
        );
        let bad = s.config_path();
        fs::write(&bad, b"root = \"../html\"\nbind = \"\xff\"\n").unwrap();
        assert_eq!(
            Config::load(&bad).unwrap_err().to_string(),
            format!("{}:2:9: invalid utf-8", bad.display())
        );
        fs::write(&bad, MINIMAL).unwrap();
        let config = Config::load(&bad).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.path, bad);
    }

    #[test]
    fn line_col_counts_characters() {
        let text = "ab\n\u{e9}\u{e9}x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 2), (1, 3));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (2, 3));
        // Not on a character boundary, or past the end: clamped, no panic.
        assert_eq!(line_col(text, 4), (2, 1));
        assert_eq!(line_col(text, 1000), (3, 1));
    }
}
