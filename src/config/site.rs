//! The per-site half of the config: what a site is ([`SiteConfig`]), how its keys are
//! validated, and how a `[[site]]` inherits what it does not set from the top level, the
//! default site. Inheritance is written once, in [`Validator::site`]:
//! - plain keys (`root`, `index`, `default_type`, `fallback`, ...): the site's value, else
//!   the parent's;
//! - `[mime_types]`: the site's entries over the parent's table;
//! - `error_pages` (and `not_found_page`, its 404 entry): merged by status, the site's
//!   entry winning;
//! - `[[headers]]`: the parent's rules, then the site's (later rules win per header);
//! - `[[redirect]]`: the site's routes, then the parent's (first match wins).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawConfig, RawHeaderRule, RawListing, RawRedirect};
use super::{read_page, AccessLog, Validator};
use crate::http::Status;
use crate::site::glob::Glob;
use crate::site::headers::{self, HeaderRules, Op, Rule, MAX_RULES};
use crate::static_files::mime::MimeTable;

/// `cache_max_age` when absent.
pub const DEFAULT_CACHE_MAX_AGE: Duration = Duration::from_secs(3600);

/// One site, validated, with everything inherited already resolved.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// For logs and messages: the first host name, or "default" for the top-level site.
    pub name: String,
    /// Normalised host names (lowercase, no trailing dot); wildcards as `*.suffix`.
    pub hosts: Vec<String>,
    /// Canonical path of the document root, an existing directory.
    pub root: PathBuf,
    /// File names tried, in order, for directory requests; plain names.
    pub index: Vec<String>,
    pub error_pages: ErrorPages,
    /// Content-Type for unknown extensions (also the table's fallback).
    pub default_type: String,
    pub mime: MimeTable,
    pub headers: HeaderRules,
    /// The route table, matched in order (the site's own routes before inherited ones);
    /// a request no route takes goes to the static files.
    pub routes: Vec<Route>,
    /// SPA fallback: a path beneath the root, starting with '/'.
    pub fallback: Option<String>,
    /// The certificate for this site's names over TLS (its own, else the top level's).
    pub tls: Option<Arc<crate::tls::certs::LoadedCert>>,
    /// On a plain listener: 308 to `https://` (the first TLS listener's port).
    pub https_redirect: bool,
    /// `Strict-Transport-Security` value, sent on every response over TLS.
    pub hsts: Option<String>,
    pub clean_urls: bool,
    pub trailing_slash: TrailingSlash,
    pub listing: Listing,
    pub cache: CachePreset,
    pub compression: super::compression::Compression,
    /// `cache_max_age` (kept for inheritance; the preset holds it formatted).
    pub cache_max_age: Duration,
    pub access_log: AccessLog,
    pub log_format: LogFormat,
}

/// A page sent with an error status.
#[derive(Debug)]
pub struct Page {
    pub path: PathBuf,
    pub body: Vec<u8>,
    pub content_type: String,
}

/// `error_pages`: exact statuses, then the 4xx and 5xx classes.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    exact: BTreeMap<u16, Arc<Page>>,
    class: [Option<Arc<Page>>; 2],
}

impl ErrorPages {
    /// The page for `code`, if one is configured.
    pub fn get(&self, code: u16) -> Option<&Page> {
        self.exact
            .get(&code)
            .or_else(|| match code / 100 {
                4 => self.class[0].as_ref(),
                5 => self.class[1].as_ref(),
                _ => None,
            })
            .map(|p| &**p)
    }

    /// Every configured page, for checks.
    pub fn pages(&self) -> impl Iterator<Item = &Page> {
        self.exact
            .values()
            .chain(self.class.iter().flatten())
            .map(|p| &**p)
    }
}

/// `trailing_slash`: what a directory requested without its slash gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailingSlash {
    /// 301 to the path with the slash (relative links then resolve).
    Redirect,
    /// The index is served at the slash-less path.
    Ignore,
}

/// `listing`: where directories without an index are listed.
#[derive(Debug, Clone)]
pub enum Listing {
    Off,
    All,
    Paths(Vec<Glob>),
}

impl Listing {
    /// Whether the directory at `path` (ending in '/') may be listed.
    pub fn allows(&self, path: &str) -> bool {
        match self {
            Listing::Off => false,
            Listing::All => true,
            Listing::Paths(globs) => globs.iter().any(|g| g.is_match(path)),
        }
    }
}

/// `cache`: a Cache-Control preset for successful responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachePreset {
    Off,
    /// HTML `no-cache`, content-hashed names immutable for a year, the rest
    /// `public, max-age=N` (the value, preformatted).
    StaticSite {
        other: String,
    },
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Combined,
    VhostCombined,
    Json,
}

/// A route: a handler for the paths it matches, other than the static files.
#[derive(Debug, Clone)]
pub enum Route {
    Redirect(Redirect),
    /// Hand the request to an application server.
    Proxy(std::sync::Arc<super::route::Proxy>),
}

/// One `[[redirect]]` route.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub from: Glob,
    pub to: Template,
    pub status: Status,
    /// Only for these normalised request hosts (empty: any).
    pub hosts: Vec<String>,
}

/// A redirect target with `{N}` and `{path}` holes.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
    /// The target has its own query: the request's is dropped.
    pub has_query: bool,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Capture(usize),
    Path,
}

impl Template {
    /// Fills the holes: captures and the path percent-encoded for a Location.
    pub fn render(&self, captures: &[&str], path: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Capture(n) => out.push_str(&crate::static_files::path::encode_piece(
                    captures.get(n - 1).copied().unwrap_or(""),
                )),
                Part::Path => out.push_str(&crate::static_files::path::encode_for_location(path)),
            }
        }
        out
    }
}

/// Keys of the top level that a `[[site]]` may not set, with their values' spans.
fn process_wide(raw: &RawConfig) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let mut found = Vec::new();
    let mut note = |key, span: Option<std::ops::Range<usize>>| {
        if let Some(span) = span {
            found.push((key, span));
        }
    };
    note("port", raw.port.as_ref().map(Spanned::span));
    note("bind", raw.bind.as_ref().map(Spanned::span));
    note("listen", raw.listen.as_ref().map(Spanned::span));
    note("workers", raw.workers.as_ref().map(Spanned::span));
    note(
        "keepalive_timeout",
        raw.keepalive_timeout.as_ref().map(Spanned::span),
    );
    note(
        "header_timeout",
        raw.header_timeout.as_ref().map(Spanned::span),
    );
    note("send_timeout", raw.send_timeout.as_ref().map(Spanned::span));
    note(
        "shutdown_timeout",
        raw.shutdown_timeout.as_ref().map(Spanned::span),
    );
    note(
        "max_connections",
        raw.max_connections.as_ref().map(Spanned::span),
    );
    note("user", raw.user.as_ref().map(Spanned::span));
    note("group", raw.group.as_ref().map(Spanned::span));
    note("pid_file", raw.pid_file.as_ref().map(Spanned::span));
    note("admin", raw.admin.as_ref().map(Spanned::span));
    note("unknown_host", raw.unknown_host.as_ref().map(Spanned::span));
    note(
        "trusted_proxies",
        raw.trusted_proxies
            .as_ref()
            .and_then(|t| t.first())
            .map(Spanned::span),
    );
    found
}

impl Validator<'_> {
    /// Validates the per-site keys of `raw`: the top level when `parent` is `None`, else a
    /// `[[site]]` inheriting from `parent`. `at` is where the site's table starts.
    pub(super) fn site(
        &mut self,
        raw: &mut RawConfig,
        parent: Option<&SiteConfig>,
        at: std::ops::Range<usize>,
    ) -> SiteConfig {
        if parent.is_some() {
            for (key, span) in process_wide(raw) {
                let span = self.key_span(span, key);
                self.error_at(
                    span,
                    format!("{key} is process-wide: set it at the top level, not in a [[site]]"),
                );
            }
            if let Some(nested) = &raw.site {
                let span = nested.first().map_or(at.clone(), Spanned::span);
                self.error_at(span, "a [[site]] cannot contain sites".to_owned());
            }
        }
        let hosts = self.hosts(raw.hosts.take(), parent.is_some(), at);
        let root = match (raw.root.take(), parent) {
            (Some(root), _) => self.root(Some(root)),
            (None, Some(p)) => p.root.clone(),
            (None, None) => self.root(None),
        };
        let index = match (raw.index.take(), parent) {
            (None, Some(p)) => p.index.clone(),
            (index, _) => self.index(index),
        };
        let default_type = match (raw.default_type.take(), parent) {
            (None, Some(p)) => p.default_type.clone(),
            (value, _) => self.default_type(value),
        };
        let mut mime = match parent {
            Some(p) => p.mime.clone(),
            None => MimeTable::builtin(),
        };
        mime.set_default(&default_type);
        if let Some(entries) = raw.mime_types.take() {
            self.mime_types(entries, &mut mime);
        }
        let mut error_pages = parent.map(|p| p.error_pages.clone()).unwrap_or_default();
        if let Some(page) = raw.not_found_page.take() {
            if let Some(page) = self.page("not_found_page", &page, &mime) {
                error_pages.exact.insert(404, page);
            }
        }
        if let Some(pages) = raw.error_pages.take() {
            self.error_pages(pages, &mime, &mut error_pages);
        }
        let mut rules: Vec<Rule> = parent
            .map(|p| p.headers.rules().to_vec())
            .unwrap_or_default();
        for rule in raw.headers.take().unwrap_or_default() {
            if let Some(rule) = self.header_rule(rule, rules.len()) {
                rules.push(rule);
            }
        }
        let headers = HeaderRules::new(rules);
        // The site's own routes in file order (redirects and proxies interleaved as
        // written), then the inherited ones.
        let mut own: Vec<(usize, Route)> = Vec::new();
        for redirect in raw.redirect.take().unwrap_or_default() {
            let at = redirect.span().start;
            if let Some(r) = self.redirect(redirect) {
                own.push((at, Route::Redirect(r)));
            }
        }
        for proxy in raw.proxy.take().unwrap_or_default() {
            let at = proxy.span().start;
            if let Some(p) = self.proxy(proxy) {
                own.push((at, Route::Proxy(std::sync::Arc::new(p))));
            }
        }
        own.sort_by_key(|(at, _)| *at);
        let mut routes: Vec<Route> = own.into_iter().map(|(_, r)| r).collect();
        if let Some(p) = parent {
            routes.extend(p.routes.iter().cloned());
        }
        let fallback = match (raw.fallback.take(), parent) {
            (None, Some(p)) => p.fallback.clone(),
            (None, None) => None,
            (Some(value), _) => self.fallback(value),
        };
        let tls = match (raw.tls.take(), parent) {
            (Some(value), _) => self.tls_cert(value),
            (None, Some(p)) => p.tls.clone(),
            (None, None) => None,
        };
        let https_redirect = match (raw.https_redirect.take(), parent) {
            (Some(v), _) => v.into_inner(),
            (None, Some(p)) => p.https_redirect,
            (None, None) => false,
        };
        let hsts = match (raw.hsts.take(), parent) {
            (Some(v), _) => self.hsts(v),
            (None, Some(p)) => p.hsts.clone(),
            (None, None) => None,
        };
        let clean_urls = match (raw.clean_urls.take(), parent) {
            (Some(v), _) => v.into_inner(),
            (None, Some(p)) => p.clean_urls,
            (None, None) => false,
        };
        let trailing_slash = match (raw.trailing_slash.take(), parent) {
            (Some(v), _) => self.choice(
                "trailing_slash",
                &v,
                &[
                    ("redirect", TrailingSlash::Redirect),
                    ("ignore", TrailingSlash::Ignore),
                ],
            ),
            (None, Some(p)) => Some(p.trailing_slash),
            (None, None) => None,
        }
        .unwrap_or(TrailingSlash::Redirect);
        let listing = match (raw.listing.take(), parent) {
            (Some(v), _) => self.listing(v),
            (None, Some(p)) => p.listing.clone(),
            (None, None) => Listing::Off,
        };
        let cache_max_age = match (raw.cache_max_age.take(), parent) {
            (None, Some(p)) => p.cache_max_age,
            (value, _) => self.duration("cache_max_age", value, DEFAULT_CACHE_MAX_AGE),
        };
        let max_age = format!("public, max-age={}", cache_max_age.as_secs());
        let cache = match (raw.cache.take(), parent) {
            (Some(v), _) => self.choice("cache", &v, &[("off", false), ("static-site", true)]),
            (None, Some(p)) => Some(p.cache != CachePreset::Off),
            (None, None) => None,
        };
        let cache = if cache == Some(true) {
            CachePreset::StaticSite { other: max_age }
        } else {
            CachePreset::Off
        };
        let compression = self.compression(raw.compression.take(), parent.map(|p| &p.compression));
        let log = raw.log.take();
        let format = log.as_ref().and_then(|l| l.format.clone());
        let access = log.filter(|l| l.access.is_some());
        let access_log = match (access, parent) {
            (None, Some(p)) => p.access_log.clone(),
            (log, _) => self.access_log(log),
        };
        let log_format = match (format, parent) {
            (Some(v), _) => self.choice(
                "[log] format",
                &v,
                &[
                    ("combined", LogFormat::Combined),
                    ("vhost_combined", LogFormat::VhostCombined),
                    ("json", LogFormat::Json),
                ],
            ),
            (None, Some(p)) => Some(p.log_format),
            (None, None) => None,
        }
        .unwrap_or(LogFormat::Combined);
        SiteConfig {
            name: hosts
                .first()
                .cloned()
                .unwrap_or_else(|| "default".to_owned()),
            hosts,
            root,
            index,
            error_pages,
            default_type,
            mime,
            headers,
            routes,
            fallback,
            tls,
            https_redirect,
            hsts,
            clean_urls,
            trailing_slash,
            listing,
            cache,
            compression,
            cache_max_age,
            access_log,
            log_format,
        }
    }

    /// The span of `key` itself, found on the line before its value, so messages about a
    /// misplaced key point at the key (falls back to the value).
    fn key_span(&self, value: std::ops::Range<usize>, key: &str) -> std::ops::Range<usize> {
        let before = &self.text[..value.start.min(self.text.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        if let Some(i) = before[line_start..].find(key) {
            return line_start + i..line_start + i + key.len();
        }
        // A table written as a header (`[site.admin]`): its span starts at the bracket, the
        // key is inside the header.
        let after = &self.text[value.start.min(self.text.len())..];
        let header = &after[..after.find('\n').unwrap_or(after.len())];
        match header.starts_with('[').then(|| header.rfind(key)).flatten() {
            Some(i) => value.start + i..value.start + i + key.len(),
            None => value,
        }
    }

    /// One of a fixed set of words.
    pub(super) fn choice<T: Copy>(
        &mut self,
        key: &str,
        value: &Spanned<String>,
        words: &[(&str, T)],
    ) -> Option<T> {
        let text = value.get_ref();
        if let Some(&(_, v)) = words.iter().find(|(w, _)| w == text) {
            return Some(v);
        }
        let list: Vec<String> = words.iter().map(|(w, _)| format!("{w:?}")).collect();
        self.error_at(
            value.span(),
            format!(
                "invalid {key} {text:?}: expected one of {}",
                list.join(", ")
            ),
        );
        None
    }

    fn hosts(
        &mut self,
        value: Option<Spanned<Vec<Spanned<String>>>>,
        required: bool,
        at: std::ops::Range<usize>,
    ) -> Vec<String> {
        let Some(values) = value else {
            if required {
                self.error_at(at, "a [[site]] needs hosts = [\"name\", ...]".to_owned());
            }
            return Vec::new();
        };
        if values.get_ref().is_empty() && required {
            let span = self.key_span(values.span(), "hosts");
            self.error_at(
                span,
                "a [[site]] needs at least one name in hosts".to_owned(),
            );
        }
        let values = values.into_inner();
        let mut hosts = Vec::new();
        for value in values {
            match normalise_host_name(value.get_ref()) {
                Ok(name) => {
                    if let Some(line) = self.claimed.get(&name) {
                        let message = format!(
                            "invalid hosts entry {:?}: {name:?} is already claimed at line {line}",
                            value.get_ref()
                        );
                        self.error_at(value.span(), message);
                    } else {
                        let (line, _) = super::line_col(self.text, value.span().start);
                        self.claimed.insert(name.clone(), line);
                        hosts.push(name);
                    }
                }
                Err(problem) => {
                    let message = format!("invalid hosts entry {:?}: {problem}", value.get_ref());
                    self.error_at(value.span(), message);
                }
            }
        }
        hosts
    }

    /// Reads an error page; its type comes from its extension.
    fn page(&mut self, key: &str, value: &Spanned<String>, mime: &MimeTable) -> Option<Arc<Page>> {
        let text = self.path_text(key, value)?;
        match read_page(&self.base.join(text)) {
            Ok((path, body)) => {
                let content_type = mime.lookup(&path.to_string_lossy()).to_owned();
                Some(Arc::new(Page {
                    path,
                    body,
                    content_type,
                }))
            }
            Err(problem) => {
                self.error_at(value.span(), format!("invalid {key} {text:?}: {problem}"));
                None
            }
        }
    }

    fn error_pages(
        &mut self,
        pages: BTreeMap<Spanned<String>, Spanned<String>>,
        mime: &MimeTable,
        into: &mut ErrorPages,
    ) {
        let mut pages: Vec<_> = pages.into_iter().collect();
        pages.sort_by_key(|(k, _)| k.span().start);
        for (key, value) in pages {
            let k = key.get_ref().as_str();
            enum Slot {
                Exact(u16),
                Class(usize),
            }
            let slot = match k {
                "4xx" => Slot::Class(0),
                "5xx" => Slot::Class(1),
                _ => match k.parse::<u16>() {
                    Ok(code) if (400..=599).contains(&code) && k.len() == 3 => Slot::Exact(code),
                    _ => {
                        self.error_at(
                            key.span(),
                            format!("invalid error_pages status {k:?}: expected a status 400 to 599, \"4xx\" or \"5xx\""),
                        );
                        continue;
                    }
                },
            };
            let Some(page) = self.page(&format!("error_pages {k}"), &value, mime) else {
                continue;
            };
            match slot {
                Slot::Exact(code) => {
                    into.exact.insert(code, page);
                }
                Slot::Class(i) => into.class[i] = Some(page),
            }
        }
    }

    pub(super) fn glob(&mut self, key: &str, value: &Spanned<String>) -> Option<Glob> {
        match Glob::new(value.get_ref()) {
            Ok(glob) => Some(glob),
            Err(problem) => {
                let message = format!("invalid {key} {:?}: {problem}", value.get_ref());
                self.error_at(value.span(), message);
                None
            }
        }
    }

    fn header_rule(&mut self, raw: Spanned<RawHeaderRule>, before: usize) -> Option<Rule> {
        let at = raw.span();
        let raw = raw.into_inner();
        let Some(pattern) = raw.pattern else {
            self.error_at(
                at,
                "a [[headers]] rule needs match = \"<path glob>\"".to_owned(),
            );
            return None;
        };
        let glob = self.glob("[[headers]] match", &pattern);
        let success_only = match &raw.on {
            Some(on) => self.choice(
                "[[headers]] on",
                on,
                &[("always", false), ("success", true)],
            ),
            None => Some(false),
        };
        let mut ops = Vec::new();
        let mut ok = true;
        let mut sets: Vec<_> = raw.set.unwrap_or_default().into_iter().collect();
        sets.sort_by_key(|(k, _)| k.span().start);
        for (name, value) in sets {
            ok &= self.header_name(&name);
            if let Some(problem) = headers::value_problem(value.get_ref()) {
                let message = format!(
                    "invalid [[headers]] value {:?} for {:?}: {problem}",
                    value.get_ref(),
                    name.get_ref()
                );
                self.error_at(value.span(), message);
                ok = false;
            }
            ops.push(Op::set(name.into_inner(), value.into_inner()));
        }
        for name in raw.remove.unwrap_or_default() {
            ok &= self.header_name(&name);
            ops.push(Op::remove(name.into_inner()));
        }
        if before >= MAX_RULES {
            self.error_at(
                pattern.span(),
                format!("too many [[headers]] rules: at most {MAX_RULES} per site, inherited ones included"),
            );
            ok = false;
        }
        Some(Rule {
            glob: glob?,
            success_only: success_only?,
            ops,
        })
        .filter(|_| ok)
    }

    fn header_name(&mut self, name: &Spanned<String>) -> bool {
        let text = name.get_ref();
        let problem = if !headers::valid_name(text) {
            "must be a token (letters, digits and !#$%&'*+-.^_`|~)"
        } else if headers::FORBIDDEN
            .iter()
            .any(|f| f.eq_ignore_ascii_case(text))
        {
            "is set by srvd for framing and cannot be changed"
        } else {
            return true;
        };
        self.error_at(
            name.span(),
            format!("invalid header name {text:?}: {problem}"),
        );
        false
    }

    fn redirect(&mut self, raw: Spanned<RawRedirect>) -> Option<Redirect> {
        let at = raw.span();
        let raw = raw.into_inner();
        let (Some(from), Some(to)) = (raw.from, raw.to) else {
            self.error_at(at, "a [[redirect]] needs from and to".to_owned());
            return None;
        };
        let glob = self.glob("[[redirect]] from", &from);
        let status = match raw.status {
            None => Some(Status::PermanentRedirect),
            Some(s) => {
                match *s.get_ref() {
                    301 => Some(Status::MovedPermanently),
                    302 => Some(Status::Found),
                    303 => Some(Status::SeeOther),
                    307 => Some(Status::TemporaryRedirect),
                    308 => Some(Status::PermanentRedirect),
                    n => {
                        self.error_at(
                        s.span(),
                        format!("invalid [[redirect]] status {n}: expected 301, 302, 303, 307 or 308"),
                    );
                        None
                    }
                }
            }
        };
        let captures = glob.as_ref().map_or(usize::MAX, Glob::captures_len);
        let template = match parse_template(to.get_ref(), captures) {
            Ok(t) => Some(t),
            Err(problem) => {
                let message = format!("invalid [[redirect]] to {:?}: {problem}", to.get_ref());
                self.error_at(to.span(), message);
                None
            }
        };
        let mut hosts = Vec::new();
        for h in raw.hosts.unwrap_or_default() {
            match normalise_host_name(h.get_ref()) {
                Ok(name) => hosts.push(name),
                Err(problem) => {
                    let message = format!(
                        "invalid [[redirect]] hosts entry {:?}: {problem}",
                        h.get_ref()
                    );
                    self.error_at(h.span(), message);
                }
            }
        }
        Some(Redirect {
            from: glob?,
            to: template?,
            status: status?,
            hosts,
        })
    }

    fn fallback(&mut self, value: Spanned<String>) -> Option<String> {
        let text = value.get_ref();
        let normal = crate::static_files::path::normalize(text)
            .ok()
            .filter(|t| t.query.is_none() && !t.path.ends_with('/') && t.path == text.as_str());
        if normal.is_none() {
            let message = format!(
                "invalid fallback {text:?}: expected a file path beneath the root such as \"/index.html\""
            );
            self.error_at(value.span(), message);
            return None;
        }
        Some(value.into_inner())
    }

    fn listing(&mut self, value: Spanned<RawListing>) -> Listing {
        let span = value.span();
        match value.into_inner() {
            RawListing::Switch(true) => Listing::All,
            RawListing::Switch(false) => Listing::Off,
            RawListing::Paths(paths) => {
                let mut globs = Vec::new();
                for p in paths {
                    match Glob::new(&p) {
                        Ok(g) => globs.push(g),
                        Err(problem) => self.error_at(
                            span.clone(),
                            format!("invalid listing path {p:?}: {problem}"),
                        ),
                    }
                }
                Listing::Paths(globs)
            }
        }
    }
}

/// `hosts` entries: lowercase, one trailing dot dropped; an exact name (reg-name or IP
/// literal, no port) or `*.` and a name.
pub fn normalise_host_name(text: &str) -> Result<String, &'static str> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let bare = name.strip_prefix("*.").unwrap_or(&name);
    if bare.is_empty() {
        return Err("must not be empty");
    }
    if bare.contains('*') {
        return Err("a wildcard is written \"*.example.com\" (only as the first label)");
    }
    if bare.len() > 253 {
        return Err("longer than 253 characters");
    }
    let literal = bare.starts_with('[');
    if (!literal && bare.contains(':')) || (literal && !bare.ends_with(']')) {
        return Err("a host name without a port");
    }
    if !crate::http::host::valid(bare.as_bytes()) || bare.ends_with('.') {
        return Err("not a valid host name");
    }
    Ok(name)
}

/// Parses a redirect target; `captures` is how many the `from` glob has.
fn parse_template(text: &str, captures: usize) -> Result<Template, String> {
    let absolute = ["http://", "https://"]
        .iter()
        .find(|s| text.len() >= s.len() && text[..s.len()].eq_ignore_ascii_case(s));
    match absolute {
        Some(scheme) => {
            // Holes only in the path: a capture in the authority could name another host.
            let rest = &text[scheme.len()..];
            // `{path}` always starts with '/', so it may follow the host directly.
            let end = rest
                .find(['/', '?', '#'])
                .into_iter()
                .chain(rest.find("{path}"))
                .min()
                .unwrap_or(rest.len());
            if end == 0 || rest[..end].contains(['{', '}', '@']) {
                return Err(
                    "an absolute URL needs a plain host (no {..} or '@') before its path".into(),
                );
            }
        }
        None if text.starts_with("//") || text.starts_with("/\\") => {
            return Err("must not start with \"//\" (that names another host)".into())
        }
        None if !text.starts_with('/') => {
            return Err("expected a path starting with '/' or an http(s):// URL".into())
        }
        None => {}
    }
    if let Some(b) = text
        .bytes()
        .find(|&b| !url_char(b) && b != b'{' && b != b'}')
    {
        return Err(format!(
            "character {:?} must be percent-encoded",
            char::from(b).escape_default().to_string()
        ));
    }
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').ok_or("an unclosed '{'")? + open;
        let hole = &rest[open + 1..close];
        parts.push(match hole {
            "path" => Part::Path,
            _ => match hole.parse::<usize>() {
                Ok(n) if n >= 1 && n <= captures => Part::Capture(n),
                Ok(n) if n >= 1 => {
                    return Err(format!("{{{n}}} but from has only {captures} wildcard(s)"))
                }
                _ => {
                    return Err(format!(
                        "unknown placeholder {{{hole}}} (use {{1}}, {{2}}, ... or {{path}})"
                    ))
                }
            },
        });
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err("a '}' without '{'".into());
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    Ok(Template {
        parts,
        has_query: text.contains('?'),
    })
}

/// Characters a Location may carry as written: RFC 3986 unreserved, reserved and '%'.
fn url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

impl Validator<'_> {
    /// `tls = { cert, key }`: both files read and checked now (by the master, before it
    /// drops privileges): the chain parses, the key matches the leaf, the leaf has not
    /// expired; one expiring within 14 days is a warning naming the file and the date.
    fn tls_cert(
        &mut self,
        value: Spanned<super::raw::RawTls>,
    ) -> Option<Arc<crate::tls::certs::LoadedCert>> {
        let at = value.span();
        let raw = value.into_inner();
        let (Some(cert), Some(key)) = (raw.cert, raw.key) else {
            self.error_at(at, "tls needs both cert and key: tls = { cert = \"fullchain.pem\", key = \"privkey.pem\" }".to_owned());
            return None;
        };
        let cert_text = self.path_text("tls cert", &cert)?.to_owned();
        let key_text = self.path_text("tls key", &key)?.to_owned();
        let (cert_path, key_path) = (self.base.join(cert_text), self.base.join(key_text));
        let now = std::time::SystemTime::now();
        match crate::tls::certs::LoadedCert::load(&cert_path, &key_path, now) {
            Ok(loaded) => {
                if let Some(w) = loaded.expiry_warning(now) {
                    self.warnings.push(w);
                }
                self.notes.push(loaded.summary());
                Some(Arc::new(loaded))
            }
            Err(e) => {
                self.error_at(at, format!("tls: {e}"));
                None
            }
        }
    }

    /// `hsts = "max-age=31536000; includeSubDomains"`: a max-age directive is required,
    /// and the value must be a valid header value.
    fn hsts(&mut self, value: Spanned<String>) -> Option<String> {
        let text = value.get_ref().trim();
        let ok = text.split(';').any(|d| {
            d.trim()
                .strip_prefix("max-age=")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }) && text
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        if ok {
            return Some(text.to_owned());
        }
        self.error_at(
            value.span(),
            format!("invalid hsts {text:?}: expected \"max-age=SECONDS\" and optional directives such as \"; includeSubDomains\""),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(normalise_host_name("Example.COM.").unwrap(), "example.com");
        assert_eq!(
            normalise_host_name("*.Example.org").unwrap(),
            "*.example.org"
        );
        assert_eq!(normalise_host_name("[::1]").unwrap(), "[::1]");
        assert!(normalise_host_name("example.com:80").is_err());
        assert!(normalise_host_name("*").is_err());
        assert!(normalise_host_name("a.*.b").is_err());
        assert!(normalise_host_name("bad host").is_err());
        assert!(normalise_host_name("").is_err());
        assert!(normalise_host_name("a..").is_err());
    }

    #[test]
    fn templates() {
        let t = parse_template("/new/{1}?x={2}", 2).unwrap();
        assert!(t.has_query);
        assert_eq!(t.render(&["a b", "c"], "/p"), "/new/a%20b?x=c");
        let t = parse_template("https://example.com{path}", 0).unwrap();
        assert_eq!(t.render(&[], "/x y"), "https://example.com/x%20y");
        assert!(parse_template("https://{1}.example.com/", 1).is_err());
        assert!(parse_template("https://example.com@{1}/", 1).is_err());
        assert!(parse_template("//evil.example/", 0).is_err());
        assert!(parse_template("/a\r\nX: y", 0).is_err());
        assert!(parse_template("/{3}", 2).is_err());
        assert!(parse_template("/{name}", 2).is_err());
        assert!(parse_template("evil.example", 0).is_err());
        assert!(parse_template("/a{1", 1).is_err());
    }
}
