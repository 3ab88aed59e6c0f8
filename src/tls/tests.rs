//! Tests of the TLS modules together: certificates generated with rcgen (and openssl, when it
//! is installed, for the PKCS#1 and SEC1 forms it writes). No key is committed: every test
//! makes its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, KeyPair};

use super::certs::{format_utc, CertError, KeyFormat, LoadedCert};

// ---- files and certificates ----

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "srvd-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "srvd test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `names` with `key`'s public key, valid until `not_after`; PEM.
    fn leaf_until(&self, names: &[&str], key: &KeyPair, not_after: time::OffsetDateTime) -> String {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        params.not_after = not_after;
        params.signed_by(key, &self.cert, &self.key).unwrap().pem()
    }

    /// A leaf valid for a year, followed by the CA (a fullchain file).
    fn fullchain(&self, names: &[&str], key: &KeyPair) -> String {
        let leaf = self.leaf_until(
            names,
            key,
            time::OffsetDateTime::now_utc() + time::Duration::days(365),
        );
        leaf + &self.cert.pem()
    }
}

fn load(dir: &TempDir, cert_pem: &str, key_pem: &str) -> Result<LoadedCert, CertError> {
    let cert = dir.write("fullchain.pem", cert_pem);
    let key = dir.write("privkey.pem", key_pem);
    LoadedCert::load(&cert, &key, SystemTime::now())
}

/// A minimal DER reader: (tag, contents, rest).
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = match input[1] {
        n if n < 0x80 => (n as usize, 2),
        n => {
            let count = (n & 0x7f) as usize;
            let len = input[2..2 + count]
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | b as usize);
            (len, 2 + count)
        }
    };
    (tag, &input[header..header + len], &input[header + len..])
}

/// The SEC1 `ECPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (RFC 5208 §5: version,
/// algorithm, then the key as an OCTET STRING), as an "EC PRIVATE KEY" PEM.
fn pkcs8_to_sec1_pem(pkcs8: &[u8]) -> String {
    let (_, info, _) = der_tlv(pkcs8);
    let (_, _version, rest) = der_tlv(info);
    let (_, _algorithm, rest) = der_tlv(rest);
    let (tag, sec1, _) = der_tlv(rest);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    pem("EC PRIVATE KEY", sec1)
}

fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out + &format!("-----END {label}-----\n")
}

/// Runs openssl with `args`; `None` when it is not installed.
fn openssl(args: &[&str]) -> Option<()> {
    match Command::new("openssl").args(args).output() {
        Ok(out) if out.status.success() => Some(()),
        Ok(out) => panic!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => None,
    }
}

// ---- certificate loading ----

#[test]
fn a_pkcs8_ecdsa_key_and_fullchain_load() {
    let dir = TempDir::new();
    let ca = Ca::new();
    let key = KeyPair::generate().unwrap();
    let cert = load(
        &dir,
        &ca.fullchain(&["example.org", "*.example.org"], &key),
        &key.serialize_pem(),
    )
    .unwrap();
    assert_eq!(cert.key_format, KeyFormat::Pkcs8);
    assert_eq!(cert.chain().len(), 2);
    assert_eq!(cert.names, ["example.org", "*.example.org"]);
    let left = cert
        .not_after
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((364 * 86_400..=365 * 86_400).contains(&left), "{left}");
    assert_eq!(cert.expiry_warning(SystemTime::now()), None);
    assert!(cert
        .summary()
        .contains("example.org, *.example.org valid until"));
    assert!(cert.covers("example.org"));
    assert!(cert.covers("www.example.org"));
    assert!(!cert.covers("a.b.example.org"));
    assert!(!cert.covers("example.net"));
}

#[test]
fn sec1_and_ed25519_keys_load() {
    let dir = TempDir::new();
    let ca = Ca::new();
    let key = KeyPair::generate().unwrap();
    let sec1 = pkcs8_to_sec1_pem(&key.serialize_der());
    assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let cert = load(&dir, &ca.fullchain(&["ec.example"], &key), &sec1).unwrap();
    assert_eq!(cert.key_format, KeyFormat::Sec1);

    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = load(
        &dir,
        &ca.fullchain(&["ed.example"], &key),
        &key.serialize_pem(),
    )
    .unwrap();
    assert_eq!(cert.key_format, KeyFormat::Pkcs8);
}

#[test]
fn keys_written_by_openssl_load_pkcs1_rsa_and_sec1_ec() {
    let dir = TempDir::new();
    let path = |name: &str| dir.0.join(name).to_str().unwrap().to_owned();
    if openssl(&["version"]).is_none() {
        eprintln!("openssl not installed: skipping its PKCS#1 and SEC1 keys");
        return;
    }
    let ca = Ca::new();
    // RSA: PKCS#8 for rcgen (to put its public key in the leaf), PKCS#1 for srvd.
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &path("rsa8.pem"),
    ])
    .unwrap();
    openssl(&[
        "rsa",
        "-in",
        &path("rsa8.pem"),
        "-traditional",
        "-out",
        &path("rsa1.pem"),
    ])
    .unwrap();
    let rsa8 = fs::read_to_string(path("rsa8.pem")).unwrap();
    let rsa1 = fs::read_to_string(path("rsa1.pem")).unwrap();
    assert!(rsa1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let key = KeyPair::from_pem(&rsa8).unwrap();
    let cert = load(&dir, &ca.fullchain(&["rsa.example"], &key), &rsa1).unwrap();
    assert_eq!(cert.key_format, KeyFormat::Pkcs1);
    assert!(load(&dir, &ca.fullchain(&["rsa.example"], &key), &rsa8).is_ok());

    // EC: openssl's SEC1 carries the curve as parameters (rcgen's PKCS#8 does not).
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &path("ec1.pem"),
    ])
    .unwrap();
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &path("ec1.pem"),
        "-out",
        &path("ec8.pem"),
    ])
    .unwrap();
    let ec1 = fs::read_to_string(path("ec1.pem")).unwrap();
    assert!(ec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let key = KeyPair::from_pem(&fs::read_to_string(path("ec8.pem")).unwrap()).unwrap();
    let cert = load(&dir, &ca.fullchain(&["ec.example"], &key), &ec1).unwrap();
    assert_eq!(cert.key_format, KeyFormat::Sec1);
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_both_files() {
    let dir = TempDir::new();
    let ca = Ca::new();
    let key = KeyPair::generate().unwrap();
    let other = KeyPair::generate().unwrap();
    let err = load(
        &dir,
        &ca.fullchain(&["a.example"], &key),
        &other.serialize_pem(),
    )
    .unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("privkey.pem: the private key does not match the certificate in"));
    assert!(text.contains("fullchain.pem"));
    // The CA's key matches the CA certificate, not the leaf the file starts with.
    let err = load(
        &dir,
        &ca.fullchain(&["a.example"], &key),
        &ca.key.serialize_pem(),
    )
    .unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
}

#[test]
fn an_expired_certificate_is_an_error_with_its_date() {
    let dir = TempDir::new();
    let ca = Ca::new();
    let key = KeyPair::generate().unwrap();
    let expired = rcgen::date_time_ymd(2024, 3, 1);
    let err = load(
        &dir,
        &ca.leaf_until(&["old.example"], &key, expired),
        &key.serialize_pem(),
    )
    .unwrap_err();
    assert!(matches!(err, CertError::Expired { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("fullchain.pem: certificate expired on 2024-03-01 00:00:00 UTC"));
}

#[test]
fn a_certificate_expiring_in_five_days_loads_with_a_warning() {
    let dir = TempDir::new();
    let ca = Ca::new();
    let key = KeyPair::generate().unwrap();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(5) + time::Duration::hours(1);
    let cert = load(
        &dir,
        &ca.leaf_until(&["soon.example"], &key, soon),
        &key.serialize_pem(),
    )
    .unwrap();
    let warning = cert.expiry_warning(SystemTime::now()).unwrap();
    let date = format_utc(cert.not_after);
    assert!(warning.starts_with(&dir.0.join("fullchain.pem").display().to_string()));
    assert!(
        warning.ends_with(&format!(": certificate expires on {date} (in 5 days)")),
        "{warning}"
    );
    // Fifteen days is outside the window.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(15);
    let cert = load(
        &dir,
        &ca.leaf_until(&["later.example"], &key, later),
        &key.serialize_pem(),
    )
    .unwrap();
    assert_eq!(cert.expiry_warning(SystemTime::now()), None);
}

#[test]
fn unreadable_and_malformed_files_say_which_file_and_what() {
    let dir = TempDir::new();
    let ca = Ca::new();
    let key = KeyPair::generate().unwrap();
    let chain = ca.fullchain(&["a.example"], &key);
    let cert_path = dir.write("fullchain.pem", &chain);
    let key_path = dir.write("privkey.pem", key.serialize_pem());
    let now = SystemTime::now();
    let key_pem = key.serialize_pem();
    let not_x509 = pem("CERTIFICATE", b"\x30\x03\x02\x01\x00");
    let broken_chain = ca.fullchain(&["a.example"], &key) + &pem("CERTIFICATE", b"\x30\x00");
    let not_a_key = pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00");

    let missing = dir.0.join("missing.pem");
    let err = LoadedCert::load(&missing, &key_path, now).unwrap_err();
    assert!(err
        .to_string()
        .ends_with("missing.pem: cannot read certificate file: no such file or directory"));
    let err = LoadedCert::load(&cert_path, &missing, now).unwrap_err();
    assert!(err
        .to_string()
        .ends_with("missing.pem: cannot read key file: no such file or directory"));

    let cases: &[(&str, &[u8], &[u8], &str)] = &[
        (
            "no certificate",
            b"hello\n",
            key_pem.as_bytes(),
            "fullchain.pem: no certificate in the file",
        ),
        (
            "a key where the chain should be",
            key_pem.as_bytes(),
            key_pem.as_bytes(),
            "fullchain.pem: no certificate in the file",
        ),
        (
            "bad base64",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            key_pem.as_bytes(),
            "fullchain.pem: invalid PEM: base64 decode error",
        ),
        (
            "a certificate that is not X.509",
            not_x509.as_bytes(),
            key_pem.as_bytes(),
            "fullchain.pem: certificate 1 of the chain does not parse",
        ),
        (
            "a chain whose second certificate is broken",
            broken_chain.as_bytes(),
            key_pem.as_bytes(),
            "fullchain.pem: certificate 3 of the chain does not parse",
        ),
        (
            "no key",
            chain.as_bytes(),
            chain.as_bytes(),
            "privkey.pem: no private key in the file",
        ),
        (
            "an encrypted key",
            chain.as_bytes(),
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "privkey.pem: encrypted private keys are not supported",
        ),
        (
            "a key that is not a key",
            chain.as_bytes(),
            not_a_key.as_bytes(),
            "privkey.pem: unusable private key",
        ),
    ];
    for &(what, cert_pem, key_pem, want) in cases {
        let err = LoadedCert::from_pem(
            Path::new("fullchain.pem"),
            cert_pem,
            Path::new("privkey.pem"),
            key_pem,
            now,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with(want), "{what}: {err}");
    }
}
