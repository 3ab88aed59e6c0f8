//! `[[proxy]]` routes: which paths of a site go to an application server, where it is,
//! and the limits and timeouts of the conversation with it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::compression::parse_size;
use super::raw::{RawProxy, RawUpstreams};
use super::Validator;
use crate::site::glob::Glob;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_PROXY_SEND_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_BODY: u64 = 10 << 20;
pub const DEFAULT_MAX_RESPONSE_HEAD: usize = 32 << 10;
pub const DEFAULT_KEEPALIVE: usize = 32;
/// Below gunicorn's 2 s keep-alive, so srvd never reuses a connection the app is closing.
pub const DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an application server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Upstream {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Tcp(a) => write!(f, "{a}"),
            Upstream::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Which paths a proxy route takes.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// `match = "/api"`: `/api` and `/api/...`; `"/api/"`: only below it.
    Prefix(String),
    /// `suffix = ".py"`.
    Suffix(String),
    Glob(Glob),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) if p.ends_with('/') => path.starts_with(p.as_str()),
            PathMatch::Prefix(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            PathMatch::Suffix(s) => path.ends_with(s.as_str()),
            PathMatch::Glob(g) => g.is_match(path),
        }
    }
}

/// One `[[proxy]]` route.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub path: PathMatch,
    /// Tried round robin; a failed connect moves to the next.
    pub upstreams: Vec<Upstream>,
    /// Send the path without the `match` prefix, and the prefix in X-Forwarded-Prefix.
    pub strip_prefix: bool,
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    /// Idle time allowed between bytes from the upstream.
    pub read_timeout: Duration,
    /// Whole exchange, off by default.
    pub timeout: Option<Duration>,
    pub max_body: u64,
    pub max_response_head: usize,
    /// Idle connections kept per upstream per worker.
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    /// How long a server whose connect failed is skipped.
    pub fail_timeout: Duration,
}

impl Proxy {
    /// The prefix stripped from paths, when `strip_prefix` is set on a `match` route.
    pub fn prefix(&self) -> Option<&str> {
        match (&self.path, self.strip_prefix) {
            (PathMatch::Prefix(p), true) => Some(p.trim_end_matches('/')),
            _ => None,
        }
    }
}

/// Parses "127.0.0.1:8000", "[::1]:8000", "localhost:8000" (no: names are not resolved
/// here, an IP is required) or "unix:/run/app.sock".
pub fn parse_upstream(text: &str, base: &std::path::Path) -> Result<Upstream, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() || path.contains('\0') {
            return Err("expected unix:/path/to/socket".to_owned());
        }
        return Ok(Upstream::Unix(base.join(path)));
    }
    text.parse::<SocketAddr>().map(Upstream::Tcp).map_err(|_| {
        "expected an IP address and port such as \"127.0.0.1:8000\", or \"unix:/path\"".to_owned()
    })
}

impl Validator<'_> {
    pub(super) fn proxy(&mut self, raw: Spanned<RawProxy>) -> Option<Proxy> {
        let at = raw.span();
        let raw = raw.into_inner();
        let mut ok = true;
        let path = match (raw.prefix, raw.suffix, raw.glob) {
            (Some(p), None, None) => {
                let text = p.get_ref();
                if !text.starts_with('/') || text.contains(['*', '?']) {
                    let message = format!(
                        "invalid [[proxy]] match {text:?}: expected a path prefix such as \"/api\" (use glob for wildcards)"
                    );
                    self.error_at(p.span(), message);
                    ok = false;
                }
                Some(PathMatch::Prefix(p.into_inner()))
            }
            (None, Some(s), None) => {
                if s.get_ref().is_empty() || s.get_ref().contains('/') {
                    let message = format!(
                        "invalid [[proxy]] suffix {:?}: expected the end of a file name such as \".py\"",
                        s.get_ref()
                    );
                    self.error_at(s.span(), message);
                    ok = false;
                }
                Some(PathMatch::Suffix(s.into_inner()))
            }
            (None, None, Some(g)) => self.glob("[[proxy]] glob", &g).map(PathMatch::Glob),
            _ => {
                self.error_at(
                    at.clone(),
                    "a [[proxy]] needs exactly one of match, suffix or glob".to_owned(),
                );
                None
            }
        };
        let mut upstreams = Vec::new();
        match raw.upstream {
            None => {
                self.error_at(
                    at.clone(),
                    "a [[proxy]] needs upstream = \"host:port\" or \"unix:/path\"".to_owned(),
                );
                ok = false;
            }
            Some(u) => {
                let span = u.span();
                let list = match u.into_inner() {
                    RawUpstreams::One(one) => vec![one],
                    RawUpstreams::Many(many) => many,
                };
                if list.is_empty() {
                    self.error_at(
                        span.clone(),
                        "invalid [[proxy]] upstream: an empty list".to_owned(),
                    );
                    ok = false;
                }
                for text in list {
                    match parse_upstream(&text, &self.base) {
                        Ok(up) => upstreams.push(up),
                        Err(problem) => {
                            self.error_at(
                                span.clone(),
                                format!("invalid [[proxy]] upstream {text:?}: {problem}"),
                            );
                            ok = false;
                        }
                    }
                }
            }
        }
        let strip_prefix = raw.strip_prefix.map(Spanned::into_inner).unwrap_or(false);
        if strip_prefix && !matches!(path, Some(PathMatch::Prefix(_))) {
            self.error_at(at, "invalid [[proxy]] strip_prefix: only a match = \"/prefix\" route has a prefix to strip".to_owned());
            ok = false;
        }
        let connect_timeout = self.duration(
            "[[proxy]] connect_timeout",
            raw.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        );
        let send_timeout = self.duration(
            "[[proxy]] send_timeout",
            raw.send_timeout,
            DEFAULT_PROXY_SEND_TIMEOUT,
        );
        let read_timeout = self.duration(
            "[[proxy]] read_timeout",
            raw.read_timeout,
            DEFAULT_READ_TIMEOUT,
        );
        let timeout = raw
            .timeout
            .map(|t| self.duration("[[proxy]] timeout", Some(t), DEFAULT_READ_TIMEOUT));
        let keepalive_timeout = self.duration(
            "[[proxy]] keepalive_timeout",
            raw.keepalive_timeout,
            DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT,
        );
        let fail_timeout = self.duration(
            "[[proxy]] fail_timeout",
            raw.fail_timeout,
            DEFAULT_FAIL_TIMEOUT,
        );
        let mut size = |key: &str, v: Option<Spanned<super::raw::RawSize>>, default: u64| match v {
            None => default,
            Some(v) => match parse_size(v.get_ref()) {
                Ok(n) => n,
                Err(problem) => {
                    self.error_at(v.span(), format!("invalid [[proxy]] {key}: {problem}"));
                    default
                }
            },
        };
        let max_body = size("max_body", raw.max_body, DEFAULT_MAX_BODY);
        let max_response_head = size(
            "max_response_head",
            raw.max_response_head,
            DEFAULT_MAX_RESPONSE_HEAD as u64,
        )
        .clamp(1024, 1 << 20) as usize;
        let keepalive = match raw.keepalive {
            None => DEFAULT_KEEPALIVE,
            Some(k) => match usize::try_from(*k.get_ref()) {
                Ok(n) if n <= 4096 => n,
                _ => {
                    let message = format!(
                        "invalid [[proxy]] keepalive {}: must be 0 to 4096",
                        k.get_ref()
                    );
                    self.error_at(k.span(), message);
                    ok = false;
                    DEFAULT_KEEPALIVE
                }
            },
        };
        Some(Proxy {
            path: path?,
            upstreams,
            strip_prefix,
            connect_timeout,
            send_timeout,
            read_timeout,
            timeout,
            max_body,
            max_response_head,
            keepalive,
            keepalive_timeout,
            fail_timeout,
        })
        .filter(|_| ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matching() {
        let api = PathMatch::Prefix("/api".into());
        assert!(api.matches("/api"));
        assert!(api.matches("/api/users"));
        assert!(!api.matches("/apix"));
        let below = PathMatch::Prefix("/api/".into());
        assert!(!below.matches("/api"));
        assert!(below.matches("/api/x"));
        let py = PathMatch::Suffix(".py".into());
        assert!(py.matches("/login.py"));
        assert!(!py.matches("/login.pyc"));
    }

    #[test]
    fn upstream_addresses() {
        let base = std::path::Path::new("/etc/srvd");
        assert_eq!(
            parse_upstream("127.0.0.1:8000", base),
            Ok(Upstream::Tcp("127.0.0.1:8000".parse().unwrap()))
        );
        assert_eq!(
            parse_upstream("unix:app.sock", base),
            Ok(Upstream::Unix("/etc/srvd/app.sock".into()))
        );
        assert_eq!(
            parse_upstream("unix:/run/a.sock", base),
            Ok(Upstream::Unix("/run/a.sock".into()))
        );
        assert!(parse_upstream("localhost:8000", base).is_err());
        assert!(parse_upstream("unix:", base).is_err());
    }
}
