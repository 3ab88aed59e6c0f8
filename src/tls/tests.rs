//! Tests of the TLS modules together: certificates generated with rcgen (and openssl, when it
//! is installed, for the PKCS#1 and SEC1 forms it writes), and real handshakes between a rustls
//! client and [`TlsConn`] over a non-blocking loopback TCP pair, both sides driven by hand.
//! No key is committed: every test makes its own.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, KeyPair};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ProtocolVersion, RootCertStore};

use super::certs::{format_utc, CertError, KeyFormat, LoadedCert};
use super::server::{server_config, SiteTls, SniResolver, UnknownName};
use super::stream::{Progress, TlsConn, TlsError, TlsState, FILE_SLICE, SEND_BUFFER};
use super::tickets::{TicketKeys, ROTATION};

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

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
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

// ---- handshakes ----

/// Certificates for three sites: 0 the default ("default.example"), 1 "a.example.org",
/// 2 "*.b.example.org".
struct Sites {
    ca: Ca,
    default: Arc<LoadedCert>,
    a: Arc<LoadedCert>,
    b: Arc<LoadedCert>,
    _dir: TempDir,
}

impl Sites {
    fn new() -> Sites {
        let dir = TempDir::new();
        let ca = Ca::new();
        let load = |name: &str, names: &[&str]| {
            let key = KeyPair::generate().unwrap();
            let cert = dir.write(&format!("{name}.pem"), ca.fullchain(names, &key));
            let key = dir.write(&format!("{name}.key"), key.serialize_pem());
            Arc::new(LoadedCert::load(&cert, &key, SystemTime::now()).unwrap())
        };
        let default = load("default", &["default.example"]);
        let a = load("a", &["a.example.org"]);
        let b = load("b", &["*.b.example.org"]);
        Sites {
            ca,
            default,
            a,
            b,
            _dir: dir,
        }
    }

    fn list(&self) -> Vec<SiteTls> {
        vec![
            SiteTls {
                site: 0,
                hosts: vec![],
                cert: Some(Arc::clone(&self.default)),
            },
            SiteTls {
                site: 1,
                hosts: vec!["a.example.org".into()],
                cert: Some(Arc::clone(&self.a)),
            },
            SiteTls {
                site: 2,
                hosts: vec!["*.b.example.org".into()],
                cert: Some(Arc::clone(&self.b)),
            },
            SiteTls {
                site: 3,
                hosts: vec!["plain.example.org".into()],
                cert: None,
            },
        ]
    }

    fn resolver(&self, unknown: UnknownName) -> Arc<SniResolver> {
        Arc::new(SniResolver::new(&self.list(), unknown))
    }

    /// A worker's server configuration; `seed` stands for the generation's ticket keys.
    fn server(&self, seed: u8) -> Arc<rustls::ServerConfig> {
        let keys = TicketKeys::from_seed(&[seed; 32], ROTATION, SystemTime::now());
        server_config(
            self.resolver(UnknownName::Default(Arc::clone(&self.default))),
            Arc::new(keys),
        )
        .unwrap()
    }

    fn client(&self, version: &'static rustls::SupportedProtocolVersion) -> ClientConfig {
        let mut config = ClientConfig::builder_with_provider(super::provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(self.ca.roots())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_nonblocking(true).unwrap();
    server.set_nonblocking(true).unwrap();
    (client, server)
}

/// Both ends of one TLS connection over loopback.
struct Link {
    server: TlsConn,
    ssock: TcpStream,
    client: ClientConnection,
    csock: TcpStream,
    /// Plaintext each side received.
    at_server: Vec<u8>,
    at_client: Vec<u8>,
}

impl Link {
    fn new(server: &Arc<rustls::ServerConfig>, client: &Arc<ClientConfig>, name: &str) -> Link {
        let (csock, ssock) = tcp_pair();
        Link {
            server: TlsConn::new(server).unwrap(),
            ssock,
            client: ClientConnection::new(
                Arc::clone(client),
                ServerName::try_from(name.to_owned()).unwrap(),
            )
            .unwrap(),
            csock,
            at_server: Vec::new(),
            at_client: Vec::new(),
        }
    }

    /// One round of both sides, as two epoll loops would do it. `Err` names the side.
    fn step(&mut self) -> Result<(), String> {
        // The server: read and process, take plaintext, flush.
        if self.server.wants_read() {
            match self.server.read_tls_from_socket(&self.ssock) {
                Ok(_) => {}
                Err(e) => {
                    let _ = self.server.flush_to_socket(&self.ssock);
                    return Err(format!("server: {e}"));
                }
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.server.read_plain(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.at_server.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        self.server
            .flush_to_socket(&self.ssock)
            .map_err(|e| format!("server: {e}"))?;
        // The client.
        while self.client.wants_write() {
            match self.client.write_tls(&mut &self.csock) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("client: {e}")),
            }
        }
        if self.client.wants_read() {
            match self.client.read_tls(&mut &self.csock) {
                Ok(_) => {
                    self.client
                        .process_new_packets()
                        .map_err(|e| format!("client: {e}"))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("client: {e}")),
            }
        }
        loop {
            match self.client.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.at_client.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Steps until `done`, for at most ten seconds.
    fn until(&mut self, what: &str, done: impl Fn(&Link) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(self) {
            self.step()?;
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    fn handshake(&mut self) -> Result<(), String> {
        self.until("the handshake", |l| {
            l.server.is_open() && !l.client.is_handshaking()
        })
    }

    /// A request from the client and a response whose body is `file`, sent in slices.
    fn exchange(&mut self, file: &fs::File, len: u64) -> Result<(), String> {
        let request = b"GET /big HTTP/1.1\r\nHost: a.example.org\r\n\r\n";
        self.client.writer().write_all(request).unwrap();
        self.until("the request", |l| l.at_server.ends_with(b"\r\n\r\n"))?;
        assert_eq!(self.at_server, request);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
        assert_eq!(self.server.write_plain(head.as_bytes()), head.len());
        let mut offset = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while offset < len {
            // One writable event: flush, encrypt the next slice, flush.
            if self.server.flush_to_socket(&self.ssock).unwrap() {
                let n = self
                    .server
                    .encrypt_file_slice(file, offset, len - offset)
                    .unwrap();
                assert!(n <= FILE_SLICE);
                offset += n as u64;
            }
            self.step()?;
            assert!(Instant::now() < deadline, "timed out sending the body");
        }
        let want = head.len() + len as usize;
        self.until("the response", |l| l.at_client.len() >= want)?;
        assert_eq!(self.at_client.len(), want);
        assert_eq!(&self.at_client[..head.len()], head.as_bytes());
        Ok(())
    }
}

/// A file of `len` bytes in a pattern that shows misplaced slices.
fn body_file(dir: &TempDir, len: usize) -> (fs::File, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let path = dir.write("body.bin", &bytes);
    (fs::File::open(path).unwrap(), bytes)
}

fn serves_a_request_over(
    version: &'static rustls::SupportedProtocolVersion,
    want: ProtocolVersion,
) {
    let sites = Sites::new();
    let server = sites.server(1);
    let client = Arc::new(sites.client(version));
    let mut link = Link::new(&server, &client, "a.example.org");
    link.handshake().unwrap();
    assert_eq!(link.server.protocol_version(), Some(want));
    assert_eq!(link.server.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(link.client.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(link.server.sni(), Some("a.example.org"));
    assert_eq!(link.server.handshake_kind(), Some(HandshakeKind::Full));
    let leaf = &link.client.peer_certificates().unwrap()[0];
    assert_eq!(leaf, &sites.a.chain()[0]);

    let dir = TempDir::new();
    let len = 5 * FILE_SLICE + 12_345;
    let (file, bytes) = body_file(&dir, len);
    link.exchange(&file, len as u64).unwrap();
    assert_eq!(&link.at_client[link.at_client.len() - len..], &bytes[..]);

    // A clean close: close_notify flushed, the client sees the end of the stream.
    link.server.send_close_notify();
    assert_eq!(link.server.state(), TlsState::Closing);
    assert!(link.server.flush_to_socket(&link.ssock).unwrap());
    assert_eq!(link.server.state(), TlsState::Closed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match link.client.read_tls(&mut &link.csock) {
            Ok(_) => {
                let io = link.client.process_new_packets().unwrap();
                if io.peer_has_closed() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("client: {e}"),
        }
        assert!(Instant::now() < deadline, "no close_notify");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(link.client.reader().read(&mut [0; 16]).unwrap(), 0);
}

#[test]
fn tls13_handshake_serves_a_request_with_alpn_http11() {
    serves_a_request_over(&rustls::version::TLS13, ProtocolVersion::TLSv1_3);
}

#[test]
fn tls12_handshake_serves_a_request_with_alpn_http11() {
    serves_a_request_over(&rustls::version::TLS12, ProtocolVersion::TLSv1_2);
}

/// A full handshake with `first`, then one with `second`; the second's kind.
fn second_handshake_kind(
    first: &Arc<rustls::ServerConfig>,
    second: &Arc<rustls::ServerConfig>,
    client: &Arc<ClientConfig>,
) -> HandshakeKind {
    let mut link = Link::new(first, client, "a.example.org");
    link.handshake().unwrap();
    assert_eq!(link.server.handshake_kind(), Some(HandshakeKind::Full));
    // TLS 1.3 tickets come after the handshake: let the client read them.
    link.client
        .writer()
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    link.until("the request", |l| !l.at_server.is_empty())
        .unwrap();
    link.server.write_plain(b"HTTP/1.1 204 No Content\r\n\r\n");
    link.until("the response", |l| !l.at_client.is_empty())
        .unwrap();

    let mut link = Link::new(second, client, "a.example.org");
    link.handshake().unwrap();
    let kind = link.server.handshake_kind().unwrap();
    assert_eq!(link.client.handshake_kind(), Some(kind));
    kind
}

#[test]
fn tickets_resume_on_another_worker_of_the_generation_tls13_and_tls12() {
    let sites = Sites::new();
    // Two workers forked from one master hold the same ticket keys (same seed); a worker of
    // another generation holds others.
    let worker_a = sites.server(1);
    let worker_b = sites.server(1);
    let stranger = sites.server(2);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = Arc::new(sites.client(version));
        assert_eq!(
            second_handshake_kind(&worker_a, &worker_b, &client),
            HandshakeKind::Resumed,
            "{version:?}"
        );
        let client = Arc::new(sites.client(version));
        assert_eq!(
            second_handshake_kind(&worker_a, &stranger, &client),
            HandshakeKind::Full,
            "{version:?}"
        );
    }
}

#[test]
fn tls12_session_ids_resume_on_the_same_worker() {
    let sites = Sites::new();
    let worker = sites.server(1);
    let other = sites.server(1);
    let mut config = sites.client(&rustls::version::TLS12);
    config.resumption = Resumption::in_memory_sessions(16)
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    let client = Arc::new(config);
    assert_eq!(
        second_handshake_kind(&worker, &worker, &client),
        HandshakeKind::Resumed
    );
    // The id cache is per worker: another worker does a full handshake.
    let mut config = sites.client(&rustls::version::TLS12);
    config.resumption = Resumption::in_memory_sessions(16)
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    let client = Arc::new(config);
    assert_eq!(
        second_handshake_kind(&worker, &other, &client),
        HandshakeKind::Full
    );
}

#[test]
fn sni_selects_exact_wildcard_and_default_certificates() {
    let sites = Sites::new();
    let resolver = sites.resolver(UnknownName::Default(Arc::clone(&sites.default)));
    let same = |got: Option<Arc<rustls::sign::CertifiedKey>>, want: &LoadedCert| {
        got.is_some_and(|k| Arc::ptr_eq(&k, &want.key))
    };
    assert!(same(resolver.select(Some("a.example.org")), &sites.a));
    assert!(same(resolver.select(Some("A.Example.Org")), &sites.a));
    assert!(same(resolver.select(Some("x.b.example.org")), &sites.b));
    assert!(same(resolver.select(Some("x.y.b.example.org")), &sites.b));
    assert!(same(resolver.select(Some("b.example.org")), &sites.default));
    assert!(same(
        resolver.select(Some("unknown.example")),
        &sites.default
    ));
    // A site without a certificate, and no SNI at all: the default.
    assert!(same(
        resolver.select(Some("plain.example.org")),
        &sites.default
    ));
    assert!(same(resolver.select(None), &sites.default));
    assert_eq!(resolver.site_for_sni("x.b.example.org"), Some(2));
    assert_eq!(resolver.site_for_sni("plain.example.org"), Some(3));
    assert_eq!(resolver.site_for_sni("unknown.example"), None);

    let refusing = sites.resolver(UnknownName::Refuse);
    assert!(same(refusing.select(Some("a.example.org")), &sites.a));
    assert!(refusing.select(Some("unknown.example")).is_none());
    assert!(refusing.select(Some("plain.example.org")).is_none());
    assert!(refusing.select(None).is_none());

    // Over the wire: the wildcard site's certificate, and the default for a client
    // without SNI (it checks the name it was given, which the default covers).
    let server = sites.server(1);
    let client = Arc::new(sites.client(&rustls::version::TLS13));
    let mut link = Link::new(&server, &client, "www.b.example.org");
    link.handshake().unwrap();
    assert_eq!(
        link.client.peer_certificates().unwrap()[0],
        sites.b.chain()[0]
    );

    let mut config = sites.client(&rustls::version::TLS13);
    config.enable_sni = false;
    let mut link = Link::new(&server, &Arc::new(config), "default.example");
    link.handshake().unwrap();
    assert_eq!(link.server.sni(), None);
    assert_eq!(
        link.client.peer_certificates().unwrap()[0],
        sites.default.chain()[0]
    );
}

#[test]
fn an_unknown_name_is_refused_without_a_default() {
    let sites = Sites::new();
    let keys = Arc::new(TicketKeys::new(ROTATION).unwrap());
    let server = server_config(sites.resolver(UnknownName::Refuse), keys).unwrap();
    let client = Arc::new(sites.client(&rustls::version::TLS13));
    let mut link = Link::new(&server, &client, "unknown.example");
    let err = link.handshake().unwrap_err();
    assert!(
        err.starts_with("server: tls: ") && err.contains("no server certificate chain resolved"),
        "{err}"
    );
    assert_eq!(
        link.server.state(),
        TlsState::Closed,
        "the alert was flushed"
    );
    // The client got the alert.
    let deadline = Instant::now() + Duration::from_secs(10);
    let client_err = loop {
        if let Ok(n) = link.client.read_tls(&mut &link.csock) {
            if let Err(e) = link.client.process_new_packets() {
                break e;
            }
            assert!(n > 0, "closed without an alert");
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(
        client_err,
        rustls::Error::AlertReceived(rustls::AlertDescription::AccessDenied)
    );
}

#[test]
fn a_client_offering_only_h2_is_refused() {
    let sites = Sites::new();
    let server = sites.server(1);
    let mut config = sites.client(&rustls::version::TLS13);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let mut link = Link::new(&server, &Arc::new(config), "a.example.org");
    let err = link.handshake().unwrap_err();
    assert!(
        err.contains("server: tls: peer doesn't support any known protocol"),
        "{err}"
    );
}

#[test]
fn advance_handshake_completes_and_the_send_buffer_is_bounded() {
    let sites = Sites::new();
    let server = sites.server(1);
    let client = Arc::new(sites.client(&rustls::version::TLS13));
    let mut link = Link::new(&server, &client, "a.example.org");
    assert!(link.server.is_handshaking());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !link.server.advance_handshake(&link.ssock).unwrap() {
        // Only the client's half of step(): the server is driven by advance_handshake.
        while link.client.wants_write() {
            if link.client.write_tls(&mut &link.csock).is_err() {
                break;
            }
        }
        if let Ok(n) = link.client.read_tls(&mut &link.csock) {
            assert!(n > 0);
            link.client.process_new_packets().unwrap();
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(link.server.is_open());

    // Nothing flushed: the buffer takes at most SEND_BUFFER, then nothing.
    let taken = link.server.write_plain(&vec![b'x'; 4 * SEND_BUFFER]);
    assert!(taken > 0 && taken <= SEND_BUFFER, "{taken}");
    assert_eq!(link.server.write_plain(b"more"), 0);
    let dir = TempDir::new();
    let (file, _) = body_file(&dir, 1000);
    assert_eq!(link.server.encrypt_file_slice(&file, 0, 1000).unwrap(), 0);
    assert!(link.server.wants_write());
    // A file shorter than promised is an error, not a short body.
    let mut other = Link::new(&server, &client, "a.example.org");
    other.handshake().unwrap();
    let err = other
        .server
        .encrypt_file_slice(&file, 1000, 10)
        .unwrap_err();
    assert!(matches!(err, TlsError::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof));
}

// ---- not TLS ----

/// A server-side connection whose client writes `parts` raw, one read after each.
fn raw_first_flight(parts: &[&[u8]]) -> (Result<Progress, TlsError>, TlsConn) {
    let sites = Sites::new();
    let server = sites.server(1);
    let (mut csock, ssock) = tcp_pair();
    let mut conn = TlsConn::new(&server).unwrap();
    let mut last = Ok(Progress::WouldBlock);
    for part in parts {
        csock.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        last = conn.read_tls_from_socket(&ssock);
        if let Ok(Progress::WouldBlock) = last {
            // Too few bytes to tell, and all of them taken: level-triggered epoll does not
            // spin on them.
            let err = ssock.peek(&mut [0u8; 1]).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        }
    }
    (last, conn)
}

#[test]
fn plain_http_on_the_tls_port_is_recognised() {
    let (res, conn) = raw_first_flight(&[b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"]);
    assert!(matches!(res, Err(TlsError::PlainHttp)), "{res:?}");
    assert_eq!(conn.state(), TlsState::Closed);
    // Sent a byte at a time at first: no spinning on unread bytes, then recognised.
    let (res, _) = raw_first_flight(&[b"G", b"E", b"T / HTTP/1.1\r\n\r\n"]);
    assert!(matches!(res, Err(TlsError::PlainHttp)), "{res:?}");
}

#[test]
fn garbage_on_the_tls_port_is_a_clean_error() {
    let (res, conn) = raw_first_flight(&[b"\x00\xffhello there, not tls"]);
    assert!(matches!(res, Err(TlsError::NotTls)), "{res:?}");
    assert_eq!(conn.state(), TlsState::Closed);
    // A handshake record header with nonsense inside: rustls's error, an alert queued.
    let (res, conn) = raw_first_flight(&[b"\x16\x03\x01\x00\x05hello"]);
    assert!(matches!(res, Err(TlsError::Tls(_))), "{res:?}");
    assert_eq!(conn.state(), TlsState::Closing);
    assert!(!conn.wants_read());
}

#[test]
fn a_client_closing_during_the_handshake_is_an_error() {
    let sites = Sites::new();
    let server = sites.server(1);
    let (csock, ssock) = tcp_pair();
    let mut conn = TlsConn::new(&server).unwrap();
    drop(csock);
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match conn.advance_handshake(&ssock) {
            Err(e) => break e,
            Ok(done) => assert!(!done),
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(matches!(err, TlsError::HandshakeEof), "{err}");
    assert_eq!(conn.state(), TlsState::Closed);
}
