//! A site's certificate: the chain and private key read from PEM files, checked, and turned into
//! the rustls [`CertifiedKey`] the handshake signs with.
//!
//! [`LoadedCert::load`] reads both files once (the master does it before dropping privileges, so
//! workers never need the key file) and checks, each failure its own [`CertError`] naming the
//! file:
//! 1. the certificate file holds at least one `CERTIFICATE` section and every certificate of the
//!    chain parses as X.509;
//! 2. the key file holds a private key in one of the accepted forms: PKCS#8 (`PRIVATE KEY`),
//!    PKCS#1 RSA (`RSA PRIVATE KEY`) or SEC1 EC (`EC PRIVATE KEY`); RSA, ECDSA P-256/P-384 and
//!    Ed25519 keys are usable;
//! 3. the key matches the leaf (the first certificate of the file): the public key derived from
//!    the private key equals the leaf's SubjectPublicKeyInfo ([`CertifiedKey::keys_match`]);
//! 4. the leaf has not expired (notAfter ≥ now).
//!
//! A leaf that expires within [`EXPIRY_WARNING`] loads, with a warning
//! ([`LoadedCert::expiry_warning`]) that names the file and the date.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys};

/// A certificate that expires within this is warned about at load (and by `srvd --check`):
/// two weeks leaves time to notice a renewal job that stopped working, as certbot's
/// 30-day renewal window and Let's Encrypt's 20-day expiry mails intend.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// Which PEM form the private key was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `-----BEGIN PRIVATE KEY-----`
    Pkcs8,
    /// `-----BEGIN RSA PRIVATE KEY-----`
    Pkcs1,
    /// `-----BEGIN EC PRIVATE KEY-----`
    Sec1,
}

/// A checked certificate chain with its key, ready for the handshake.
#[derive(Debug)]
pub struct LoadedCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The chain (leaf first, as in the file) and the signing key; the handshake sends
    /// `key.cert` and signs with `key.key`.
    pub key: Arc<CertifiedKey>,
    pub key_format: KeyFormat,
    /// The leaf's validity period.
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf's subjectAltName DNS names, lowercase (wildcards as `*.example.org`).
    pub names: Vec<String>,
}

/// Why a certificate or key could not be loaded; each names the file and the check that failed.
#[derive(thiserror::Error, Debug)]
pub enum CertError {
    #[error("{}: cannot read certificate file: {reason}", .path.display())]
    ReadCert { path: PathBuf, reason: String },
    #[error("{}: cannot read key file: {reason}", .path.display())]
    ReadKey { path: PathBuf, reason: String },
    #[error("{}: invalid PEM: {reason}", .path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{}: no certificate in the file (expected a \"BEGIN CERTIFICATE\" section)", .path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: certificate {index} of the chain does not parse: {reason}", .path.display())]
    BadCertificate {
        path: PathBuf,
        /// 1-based position in the file.
        index: usize,
        reason: String,
    },
    #[error("{}: no private key in the file (expected PKCS#8 \"PRIVATE KEY\", PKCS#1 \"RSA PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\")", .path.display())]
    NoKey { path: PathBuf },
    #[error("{}: encrypted private keys are not supported (decrypt it, e.g. with openssl pkey)", .path.display())]
    EncryptedKey { path: PathBuf },
    #[error("{}: unusable private key: {reason}", .path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: the private key does not match the certificate in {} (its first certificate must be the server's own)", .key.display(), .cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: certificate expired on {}", .path.display(), format_utc(*.not_after))]
    Expired {
        path: PathBuf,
        not_after: SystemTime,
    },
}

impl LoadedCert {
    /// Reads and checks `cert_path` (the chain, leaf first) and `key_path` (its private key);
    /// `now` decides expiry.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        now: SystemTime,
    ) -> Result<LoadedCert, CertError> {
        let cert_pem = fs::read(cert_path).map_err(|e| CertError::ReadCert {
            path: cert_path.to_path_buf(),
            reason: io_reason(&e),
        })?;
        let key_pem = fs::read(key_path).map_err(|e| CertError::ReadKey {
            path: key_path.to_path_buf(),
            reason: io_reason(&e),
        })?;
        LoadedCert::from_pem(cert_path, &cert_pem, key_path, &key_pem, now)
    }

    /// [`LoadedCert::load`] on file contents already read; the paths are for messages.
    pub fn from_pem(
        cert_path: &Path,
        cert_pem: &[u8],
        key_path: &Path,
        key_pem: &[u8],
        now: SystemTime,
    ) -> Result<LoadedCert, CertError> {
        // 1. The chain.
        let pem_error = |path: &Path, e: pem::Error| CertError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(cert_path, e))?;
        if chain.is_empty() {
            return Err(CertError::NoCertificate {
                path: cert_path.to_path_buf(),
            });
        }
        let mut leaf = None;
        for (i, der) in chain.iter().enumerate() {
            let parsed = parse_x509(der).map_err(|reason| CertError::BadCertificate {
                path: cert_path.to_path_buf(),
                index: i + 1,
                reason,
            })?;
            if i == 0 {
                leaf = Some(parsed);
            }
        }
        let leaf = leaf.expect("the chain is not empty");

        // 2. The key.
        let key = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(key) => key,
            Err(pem::Error::NoItemsFound) => {
                return Err(if contains(key_pem, b"ENCRYPTED PRIVATE KEY") {
                    CertError::EncryptedKey {
                        path: key_path.to_path_buf(),
                    }
                } else {
                    CertError::NoKey {
                        path: key_path.to_path_buf(),
                    }
                })
            }
            Err(e) => return Err(pem_error(key_path, e)),
        };
        let key_format = match key {
            PrivateKeyDer::Pkcs8(_) => KeyFormat::Pkcs8,
            PrivateKeyDer::Pkcs1(_) => KeyFormat::Pkcs1,
            PrivateKeyDer::Sec1(_) => KeyFormat::Sec1,
            _ => {
                return Err(CertError::NoKey {
                    path: key_path.to_path_buf(),
                })
            }
        };
        let signing_key = super::provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| CertError::BadKey {
                path: key_path.to_path_buf(),
                reason: rustls_reason(&e),
            })?;

        // 3. Key and leaf match.
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return Err(CertError::KeyMismatch {
                    cert: cert_path.to_path_buf(),
                    key: key_path.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(CertError::BadCertificate {
                    path: cert_path.to_path_buf(),
                    index: 1,
                    reason: rustls_reason(&e),
                })
            }
        }

        // 4. Expiry.
        if leaf.not_after < now {
            return Err(CertError::Expired {
                path: cert_path.to_path_buf(),
                not_after: leaf.not_after,
            });
        }
        Ok(LoadedCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            key: Arc::new(certified),
            key_format,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            names: leaf.names,
        })
    }

    /// The chain as sent in the handshake, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    /// A warning when the leaf expires within [`EXPIRY_WARNING`] of `now` or is not valid yet,
    /// naming the file and the date.
    pub fn expiry_warning(&self, now: SystemTime) -> Option<String> {
        let path = self.cert_path.display();
        if self.not_before > now {
            return Some(format!(
                "{path}: certificate is not valid before {}",
                format_utc(self.not_before)
            ));
        }
        let left = self.not_after.duration_since(now).unwrap_or_default();
        if left < EXPIRY_WARNING {
            let days = left.as_secs() / (24 * 60 * 60);
            return Some(format!(
                "{path}: certificate expires on {} (in {days} day{})",
                format_utc(self.not_after),
                if days == 1 { "" } else { "s" }
            ));
        }
        None
    }

    /// The line `srvd --check` prints for this certificate: file, names, expiry date.
    pub fn summary(&self) -> String {
        format!(
            "{}: certificate for {} valid until {}",
            self.cert_path.display(),
            if self.names.is_empty() {
                "(no DNS names)".to_owned()
            } else {
                self.names.join(", ")
            },
            format_utc(self.not_after)
        )
    }

    /// Whether the leaf names `host` (lowercase, no trailing dot): an exact subjectAltName, or
    /// a `*.suffix` name standing for exactly one label (RFC 6125 §6.4.3, as browsers do).
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|name| match name.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => name == host,
        })
    }
}

/// What srvd needs from the leaf.
struct Leaf {
    not_before: SystemTime,
    not_after: SystemTime,
    names: Vec<String>,
}

/// Parses one DER certificate; `Err` is the reason, lowercase.
fn parse_x509(der: &[u8]) -> Result<Leaf, String> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the certificate", rest.len()));
    }
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| format!("invalid subjectAltName: {e}"))?
    {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    Ok(Leaf {
        not_before: from_unix(validity.not_before.timestamp()),
        not_after: from_unix(validity.not_after.timestamp()),
        names,
    })
}

fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// `2026-11-20 12:00:00 UTC`: a date an operator reads without converting.
pub fn format_utc(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    // The calendar repeats every 400 years (146,097 days): a date before 1970 (an X.509
    // time may be) is shifted into range for `log::civil` and the years shifted back.
    const ERA: i64 = 146_097 * 86_400;
    let eras = if secs < 0 {
        (-secs).div_euclid(ERA) + 1
    } else {
        0
    };
    let (y, m, d, hh, mm, ss) = crate::log::civil((secs + eras * ERA) as u64);
    let y = y - 400 * eras;
    let mut out = String::with_capacity(23);
    let _ = write!(out, "{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC");
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An I/O error as a message: lowercase, without the "(os error N)" tail.
fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error ").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn rustls_reason(e: &RustlsError) -> String {
    match e {
        RustlsError::General(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_format_as_calendar_dates() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(1_795_000_000)),
            "2026-11-18 11:06:40 UTC"
        );
        assert_eq!(
            format_utc(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31 23:59:59 UTC"
        );
    }

    #[test]
    fn io_reasons_lose_the_os_error_tail() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_reason(&e), "no such file or directory");
    }
}
