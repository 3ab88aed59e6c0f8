//! Sites: which site a request is for, and which route of that site handles it.
//!
//! ```text
//! Conn ─▶ Sites::select(req)       host → &Site (exact name, longest *.suffix, unknown_host)
//!      ─▶ respond(site, ..)        OPTIONS, path normalised, then the route table:
//!           site.config.routes     first match wins: Redirect | (later: Proxy)
//!           static_files::handle   the default handler when no route matches
//! ```
//!
//! The host is the absolute-form target's authority when there is one (RFC 9112 §3.2.2:
//! the Host header is then ignored), else the Host header; it is normalised once into a
//! stack buffer (ASCII lowercase, port and one trailing dot dropped), with no allocation.
//! Exact names are one hash lookup; wildcards one lookup per label of the host, longest
//! suffix first.

pub mod glob;
pub mod headers;

use std::io;

use rustc_hash::FxHashMap;

use std::sync::Arc;

use crate::config::route::Proxy;
use crate::config::site::{Redirect, Route, SiteConfig};
use crate::config::{Config, UnknownHost};
use crate::http::response::Connection;
use crate::http::{Method, Request, Status};
use crate::static_files::{self, path, Files, Outcome};
use crate::sys::fs::RootDir;

/// Longest host name looked up; longer ones match no site.
const MAX_HOST: usize = 255;

/// One site of a generation, as a worker serves it.
pub struct Site {
    pub config: SiteConfig,
    /// The document root, opened once; every file is opened beneath it.
    pub root: RootDir,
    /// Index of the site in its [`Sites`] (its partition of the file cache).
    pub id: usize,
    /// Index of its access log in the worker's list of logs.
    pub log: usize,
    /// Its metrics label index (assigned by the master, `metrics::labels`).
    pub label: u8,
    /// Some route is a proxy (else requests skip the proxy check).
    pub has_proxy: bool,
}

/// The sites of one generation and the lookup tables over their names.
pub struct Sites {
    list: Vec<Site>,
    names: HostIndex,
    unknown: UnknownHost,
}

/// Host names → an index: exact names, and wildcards by suffix with its leading dot
/// ("*.example.org" → ".example.org"). The one matching rule for `Host` and for the TLS
/// SNI name (`tls::server`): exact first, then the longest suffix, one or more labels.
#[derive(Default)]
pub struct HostIndex {
    exact: FxHashMap<Box<[u8]>, usize>,
    wildcard: FxHashMap<Box<[u8]>, usize>,
}

impl HostIndex {
    /// Adds a configured name (already lower-case, validated); a name given twice keeps
    /// its first index (config validation refuses duplicates anyway).
    pub fn insert(&mut self, host: &str, index: usize) {
        match host.strip_prefix('*') {
            Some(suffix) => self.wildcard.entry(suffix.as_bytes().into()),
            None => self.exact.entry(host.as_bytes().into()),
        }
        .or_insert(index);
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index for a normalised (lower-case, no trailing dot) host.
    pub fn lookup(&self, host: &[u8]) -> Option<usize> {
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Suffixes from the longest (all but the first label) to the shortest.
        let mut from = 0;
        while let Some(dot) = host[from..].iter().position(|&b| b == b'.') {
            let at = from + dot;
            if let Some(&i) = self.wildcard.get(&host[at..]) {
                return Some(i);
            }
            from = at + 1;
        }
        None
    }
}

/// Where a request goes.
pub enum Selected<'s> {
    Site(&'s Site),
    /// No site claims the host and `unknown_host = "misdirected"`: 421 (answered by the
    /// default site's error pages).
    Misdirected(&'s Site),
    /// No site claims the host and `unknown_host = "close"`.
    Close,
}

impl Sites {
    /// Opens every site's root; `log_of(i)` names the access log of site `i`, `labels[i]`
    /// its metrics label (sites past the end of `labels` count as "other").
    pub fn open(
        config: &Config,
        log_of: impl Fn(usize) -> usize,
        labels: &[u8],
    ) -> io::Result<Sites> {
        let mut list = Vec::with_capacity(config.sites.len());
        for (id, site) in config.sites.iter().enumerate() {
            let root = RootDir::open(&site.root).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open root {}: {e}", site.root.display()),
                )
            })?;
            list.push(Site {
                has_proxy: site.routes.iter().any(|r| matches!(r, Route::Proxy(_))),
                config: site.clone(),
                root,
                id,
                log: log_of(id),
                label: labels.get(id).copied().unwrap_or(crate::metrics::OTHER),
            });
        }
        let mut names = HostIndex::default();
        for site in &list {
            for host in &site.config.hosts {
                names.insert(host, site.id);
            }
        }
        Ok(Sites {
            list,
            names,
            unknown: config.unknown_host,
        })
    }

    /// The top-level site: it answers requests not tied to a site (malformed ones).
    pub fn default_site(&self) -> &Site {
        &self.list[0]
    }

    pub fn all(&self) -> &[Site] {
        &self.list
    }

    /// The site for `req`.
    pub fn select(&self, req: &Request) -> Selected<'_> {
        if self.list.len() == 1 && self.unknown == UnknownHost::Default {
            // One site that takes every host: nothing to look up.
            return Selected::Site(&self.list[0]);
        }
        let mut buf = [0u8; MAX_HOST];
        let found = authority(req)
            .and_then(|a| normalise(a, &mut buf))
            .and_then(|host| self.lookup(host));
        match (found, self.unknown) {
            (Some(i), _) => Selected::Site(&self.list[i]),
            (None, UnknownHost::Default) => Selected::Site(&self.list[0]),
            (None, UnknownHost::Misdirected) => Selected::Misdirected(&self.list[0]),
            (None, UnknownHost::Close) => Selected::Close,
        }
    }

    fn lookup(&self, host: &[u8]) -> Option<usize> {
        self.names.lookup(host)
    }
}

/// The authority a request names: the absolute-form target's, else the Host header's.
pub fn authority<'b>(req: &Request<'b>) -> Option<&'b [u8]> {
    let target = req.target.as_bytes();
    if target.first() != Some(&b'/') {
        for scheme in [&b"http://"[..], b"https://"] {
            if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
                let rest = &target[scheme.len()..];
                let end = rest
                    .iter()
                    .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                    .unwrap_or(rest.len());
                return Some(&rest[..end]);
            }
        }
    }
    req.host
}

/// `authority` as a site name: port dropped, ASCII lowercase, one trailing dot dropped.
/// `None` when it cannot name any site (too long).
pub fn normalise<'a>(authority: &[u8], buf: &'a mut [u8; MAX_HOST]) -> Option<&'a [u8]> {
    let name = if authority.first() == Some(&b'[') {
        match authority.iter().position(|&b| b == b']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match authority.iter().position(|&b| b == b':') {
            Some(colon) => &authority[..colon],
            None => authority,
        }
    };
    let name = name.strip_suffix(b".").unwrap_or(name);
    let out = buf.get_mut(..name.len())?;
    for (o, &b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

/// The proxy route that takes `req`, if the first route matching its path is one (checked
/// before the request body is looked at: a proxied body is the app's, not discarded).
pub fn proxy_route(site: &Site, req: &Request) -> Option<Arc<Proxy>> {
    if !site.has_proxy {
        return None;
    }
    let target = path::normalize(req.target).ok()?;
    match find_route(site, req, &target.path)? {
        Route::Proxy(p) => Some(Arc::clone(p)),
        Route::Redirect(_) => None,
    }
}

/// Answers `req` for `site`: the route table, then the static files. (Proxy routes were
/// taken by [`proxy_route`] before the body was looked at.)
pub fn respond(
    site: &Site,
    files: &mut Files,
    req: &Request,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Outcome {
    let is_head = req.method == Method::Head;
    match req.method {
        Method::Options => return static_files::options(date, conn, out),
        // Unknown methods close the connection before anything else looks at them.
        Method::Unknown => {
            return static_files::error_reply(
                site,
                None,
                Status::NotImplemented,
                is_head,
                date,
                conn,
                out,
            )
        }
        _ => {}
    }
    let Ok(target) = path::normalize(req.target) else {
        return static_files::error_reply(site, None, Status::BadRequest, is_head, date, conn, out);
    };
    match find_route(site, req, &target.path) {
        Some(Route::Redirect(r)) => redirect(site, r, &target, date, conn, out),
        // Taken before by proxy_route, with the same path: not reached.
        Some(Route::Proxy(_)) => static_files::error_reply(
            site,
            None,
            Status::InternalServerError,
            is_head,
            date,
            conn,
            out,
        ),
        None => static_files::handle(site, files, req, &target, date, conn, out),
    }
}

/// The one place routes are matched: the first whose path (and hosts, if it has any)
/// matches.
fn find_route<'s>(site: &'s Site, req: &Request, path: &str) -> Option<&'s Route> {
    let routes = &site.config.routes;
    if routes.is_empty() {
        return None;
    }
    let mut buf = [0u8; MAX_HOST];
    let host = authority(req).and_then(|a| normalise(a, &mut buf));
    routes.iter().find(|route| match route {
        Route::Redirect(r) => {
            (r.hosts.is_empty() || host.is_some_and(|h| r.hosts.iter().any(|n| n.as_bytes() == h)))
                && r.from.is_match(path)
        }
        Route::Proxy(p) => p.path.matches(path),
    })
}

/// `https_redirect = true` on a plain listener: a 308 to the same host (without its port)
/// and request target over HTTPS, on `port` (left out when 443). `None` without a usable
/// Host (an HTTP/1.0 request without one is then served as it is).
pub fn https_redirect(
    site: &Site,
    req: &Request,
    port: u16,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    let mut buf = [0u8; MAX_HOST];
    let host = normalise(authority(req)?, &mut buf)?;
    let target = req.target.as_bytes();
    // Origin form as sent; for an absolute-form request, its path and query.
    let origin = if target.first() == Some(&b'/') {
        target
    } else {
        let after_scheme = target.iter().position(|&b| b == b'/').map_or(0, |i| i + 2);
        let rest = target.get(after_scheme..).unwrap_or(b"");
        rest.iter()
            .position(|&b| b == b'/')
            .map_or(&b"/"[..], |i| &rest[i..])
    };
    let mut location = String::with_capacity(16 + host.len() + origin.len());
    location.push_str("https://");
    location.push_str(std::str::from_utf8(host).ok()?);
    if port != 443 {
        location.push(':');
        location.push_str(&port.to_string());
    }
    location.push_str(std::str::from_utf8(origin).ok()?);
    let path = std::str::from_utf8(origin).ok()?;
    let path = path.split('?').next().unwrap_or("/");
    Some(static_files::redirect_reply(
        site,
        path,
        Status::PermanentRedirect,
        &location,
        date,
        conn,
        out,
    ))
}

/// A redirect route's answer: the Location from its template, the query kept unless the
/// template has its own.
fn redirect(
    site: &Site,
    r: &Redirect,
    target: &path::Target,
    date: &[u8],
    conn: Connection,
    out: &mut Vec<u8>,
) -> Outcome {
    let mut captures = Vec::new();
    r.from.captures(&target.path, &mut captures);
    let mut location = r.to.render(&captures, &target.path);
    if let (Some(q), false) = (target.query, r.to.has_query) {
        location.push('?');
        location.push_str(&path::encode_query(q));
    }
    // Belt and braces: the template starts with one '/' or a scheme, and holes are
    // percent-encoded, but a Location must never read as "//host".
    while location.starts_with("//") || location.starts_with("/\\") {
        location.remove(0);
    }
    static_files::redirect_reply(site, &target.path, r.status, &location, date, conn, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_hosts() {
        let mut buf = [0u8; MAX_HOST];
        assert_eq!(
            normalise(b"Example.COM:8080", &mut buf).unwrap(),
            b"example.com"
        );
        assert_eq!(
            normalise(b"example.com.", &mut buf).unwrap(),
            b"example.com"
        );
        assert_eq!(
            normalise(b"example.com.:80", &mut buf).unwrap(),
            b"example.com"
        );
        assert_eq!(normalise(b"[::1]:8080", &mut buf).unwrap(), b"[::1]");
        assert_eq!(normalise(b"[::1]", &mut buf).unwrap(), b"[::1]");
        let long = vec![b'a'; 300];
        assert!(normalise(&long, &mut buf).is_none());
    }
}
