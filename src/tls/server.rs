//! One rustls [`ServerConfig`] per generation: the certificate chosen by SNI, ALPN, session
//! resumption.
//!
//! - **Protocols and suites**: rustls's safe defaults with the *ring* provider: TLS 1.3 and
//!   TLS 1.2, the latter only with ECDHE key exchange and AEAD suites; TLS 1.0 and 1.1 are not
//!   implemented by rustls, so such a client gets a `protocol_version` alert. No 0-RTT
//!   (`max_early_data_size` stays 0: early data is replayable).
//! - **ALPN**: `http/1.1` only ([`ALPN`]); a client that offers ALPN without `http/1.1` (only
//!   `h2`, say) is refused with `no_application_protocol` (RFC 7301 §3.2), one without ALPN is
//!   served HTTP/1.1. Adding `h2` later is one more entry in [`ALPN`].
//! - **Certificates** ([`SniResolver`]): the SNI name selects a site the way a `Host` does in
//!   [`crate::site`] (exact name, then the longest `*.suffix` wildcard, one or more labels), and
//!   the site's certificate answers. A name no site claims, a site without a certificate, and a
//!   client that sends no SNI (IP-address URLs) get the default certificate, or, with
//!   [`UnknownName::Refuse`], the handshake is refused (rustls sends an `access_denied` alert
//!   and the connection errs with "no server certificate chain resolved").
//! - **Resumption**: TLS 1.3 and TLS 1.2 stateless tickets sealed by the generation's shared
//!   [`TicketKeys`], so a ticket issued by one worker resumes on
//!   any other; TLS 1.2 clients that do not do tickets resume by session id from a bounded
//!   per-worker cache ([`SESSION_CACHE`]), which only helps when they come back to the same
//!   worker.

use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::certs::LoadedCert;
use super::tickets::TicketKeys;

/// The ALPN protocols offered, in preference order.
pub const ALPN: &[&[u8]] = &[b"http/1.1"];

/// TLS 1.2 sessions remembered by id, per worker. An entry is about 200 bytes, so this bounds
/// the cache near 1 MiB; it only serves clients without ticket support that return to the same
/// worker, so a large one buys little.
pub const SESSION_CACHE: usize = 4096;

/// Longest SNI name looked up; longer ones match no site (DNS names are at most 253).
const MAX_NAME: usize = 255;

/// One site as the certificate resolver sees it.
#[derive(Debug, Clone)]
pub struct SiteTls {
    /// The site's index in the generation's site list (`Config::sites`).
    pub site: usize,
    /// The site's normalised host names (`SiteConfig::hosts`: lowercase, no trailing dot,
    /// wildcards as `*.suffix`).
    pub hosts: Vec<String>,
    /// Its `tls = { cert, key }`, if it has one.
    pub cert: Option<Arc<LoadedCert>>,
}

/// What a client gets whose SNI name selects no site with a certificate (or that sends none).
#[derive(Debug, Clone)]
pub enum UnknownName {
    /// This certificate (the default site's, or one configured for the purpose).
    Default(Arc<LoadedCert>),
    /// The handshake is refused.
    Refuse,
}

/// Picks the certificate by SNI; also tells which site an SNI name selected (for 421).
pub struct SniResolver {
    /// Per entry: the site index and its certificate.
    entries: Vec<(usize, Option<Arc<CertifiedKey>>)>,
    /// Site names (exact, `*.suffix`) → entry, matched like `Host`.
    names: crate::site::HostIndex,
    fallback: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// A resolver over `sites` (a name claimed twice goes to the first site claiming it, as
    /// config validation already refuses duplicates).
    pub fn new(sites: &[SiteTls], unknown: UnknownName) -> SniResolver {
        let mut names = crate::site::HostIndex::default();
        let mut entries = Vec::with_capacity(sites.len());
        for (i, site) in sites.iter().enumerate() {
            entries.push((site.site, site.cert.as_ref().map(|c| Arc::clone(&c.key))));
            for host in &site.hosts {
                names.insert(host, i);
            }
        }
        SniResolver {
            entries,
            names,
            fallback: match unknown {
                UnknownName::Default(cert) => Some(Arc::clone(&cert.key)),
                UnknownName::Refuse => None,
            },
        }
    }

    /// The site an SNI name selects, by the same rules as `Host`: `None` when no site claims
    /// it. A request on a connection whose SNI selected site `a` and whose `Host` selects
    /// another site is answered 421 ([`is_misdirected`]).
    pub fn site_for_sni(&self, sni: &str) -> Option<usize> {
        self.entry(sni).map(|i| self.entries[i].0)
    }

    /// The certificate for a ClientHello naming `sni` (`None` when it sent no SNI): the
    /// selected site's, else the default, else `None` (refuse the handshake).
    pub fn select(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        sni.and_then(|name| self.entry(name))
            .and_then(|i| self.entries[i].1.clone())
            .or_else(|| self.fallback.clone())
    }

    fn entry(&self, sni: &str) -> Option<usize> {
        let mut buf = [0u8; MAX_NAME];
        let name = sni.strip_suffix('.').unwrap_or(sni).as_bytes();
        let host = buf.get_mut(..name.len())?;
        for (o, &b) in host.iter_mut().zip(name) {
            *o = b.to_ascii_lowercase();
        }
        self.names.lookup(host)
    }
}

/// Whether a request must get 421 Misdirected Request (RFC 9110 §15.5.20): its connection's
/// SNI name selected a site (`sni_site`, from [`SniResolver::site_for_sni`]) and its `Host`
/// selects another one. A connection without SNI, or whose SNI no site claims, was served the
/// default certificate and constrains nothing.
pub fn is_misdirected(sni_site: Option<usize>, host_site: usize) -> bool {
    sni_site.is_some_and(|s| s != host_site)
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.select(hello.server_name())
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("sites", &self.entries.len())
            .field("names", &self.names.len())
            .field("default", &self.fallback.is_some())
            .finish()
    }
}

/// The generation's server configuration: call once in the master (after the certificates
/// loaded, before fork); every worker shares it through the `Arc`. `tickets` is the shared key
/// ring (module docs of [`super::tickets`]).
pub fn server_config(
    resolver: Arc<SniResolver>,
    tickets: Arc<TicketKeys>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.ticketer = tickets;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misdirected_only_when_sni_chose_another_site() {
        assert!(!is_misdirected(None, 3));
        assert!(!is_misdirected(Some(3), 3));
        assert!(is_misdirected(Some(1), 3));
    }

    #[test]
    fn sni_names_select_sites_like_hosts() {
        let sites = [
            SiteTls {
                site: 0,
                hosts: vec![],
                cert: None,
            },
            SiteTls {
                site: 1,
                hosts: vec!["example.org".into(), "*.example.org".into()],
                cert: None,
            },
            SiteTls {
                site: 2,
                hosts: vec!["*.api.example.org".into(), "static.example.net".into()],
                cert: None,
            },
        ];
        let r = SniResolver::new(&sites, UnknownName::Refuse);
        let table = [
            ("example.org", Some(1)),
            ("EXAMPLE.org.", Some(1)),
            ("www.example.org", Some(1)),
            ("a.b.example.org", Some(1)),
            ("v1.api.example.org", Some(2)),
            ("api.example.org", Some(1)),
            ("static.example.net", Some(2)),
            ("example.net", None),
            ("xexample.org", None),
            ("", None),
        ];
        for (name, want) in table {
            assert_eq!(r.site_for_sni(name), want, "{name}");
        }
        assert_eq!(r.site_for_sni(&"a".repeat(300)), None);
        // No certificates and no default: every handshake is refused.
        assert!(r.select(Some("example.org")).is_none());
        assert!(r.select(None).is_none());
    }
}
