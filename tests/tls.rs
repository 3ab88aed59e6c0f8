//! HTTPS from the real binary, checked with real clients: curl (`--cacert`) and Python's
//! `ssl` module. Certificates are made by the test with rcgen (a CA and leaves per run);
//! no key is committed.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::certs::Ca;
use common::*;
use rcgen::{CertificateParams, KeyPair};

/// A srvd with a plain and a TLS listener, the default site (`localhost`'s certificate)
/// and site `b.test` (its own certificate, `https_redirect`).
struct Tls {
    s: Srvd,
    ca: PathBuf,
    tls_port: u16,
}

fn start(name: &str, extra_top: &str, extra_site_b: &str) -> Tls {
    let mut s = Srvd::prepare(name, "");
    let ca = Ca::new();
    ca.issue(&s.dir, "default", &["localhost"], 365);
    ca.issue(&s.dir, "b", &["b.test"], 365);
    let ca_path = ca.write_root(&s.dir);
    std::fs::create_dir_all(s.dir.join("b")).unwrap();
    std::fs::write(s.dir.join("b/index.html"), "site b\n").unwrap();
    let plain = s.port;
    let tls_port = free_port();
    let text = format!(
        "listen = [\"127.0.0.1:{plain}\", \"127.0.0.1:{tls_port} tls\"]\nworkers = 1\nroot = \"root\"\n\
         pid_file = \"srvd.pid\"\ntls = {{ cert = \"default.pem\", key = \"default.key\" }}\n{extra_top}\n\
         [[site]]\nhosts = [\"b.test\"]\nroot = \"b\"\ntls = {{ cert = \"b.pem\", key = \"b.key\" }}\n{extra_site_b}\n"
    );
    std::fs::write(&s.config_path, text).unwrap();
    s.workers_expected = 1;
    s.port = plain;
    Tls {
        s: s.start_prepared(),
        ca: ca_path,
        tls_port,
    }
}

/// One request by Python's ssl: prints JSON with the TLS version, ALPN, the peer
/// certificate's names, the status line, the headers and the body's SHA-256.
const PY_CLIENT: &str = r#"
import hashlib, json, socket, ssl, sys
port, sni, host, path, ca, version = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
if version != "any":
    v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3, "1.1": ssl.TLSVersion.TLSv1_1}[version]
    if version == "1.1":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.load_verify_locations(ca); ctx.check_hostname = False
    ctx.minimum_version = v; ctx.maximum_version = v
ctx.set_alpn_protocols(["http/1.1"])
out = {}
try:
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=(sni or None)) as t:
            out["version"] = t.version()
            out["alpn"] = t.selected_alpn_protocol()
            peer = t.getpeercert()
            out["names"] = [v for k, v in peer.get("subjectAltName", ()) if k == "DNS"]
            out["not_after"] = peer.get("notAfter", "")
            t.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode())
            data = b""
            while True:
                d = t.recv(65536)
                if not d:
                    break
                data += d
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    out["status"] = lines[0]
    out["headers"] = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    out["sha256"] = hashlib.sha256(body).hexdigest()
    out["body"] = body[:64].decode("latin-1")
except Exception as e:
    out["error"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
"#;

#[derive(Debug)]
struct PyOut {
    json: String,
}

impl PyOut {
    fn get(&self, key: &str) -> String {
        // Tiny extraction for flat string fields: "key": "value".
        let needle = format!("\"{key}\": ");
        let Some(at) = self.json.find(&needle) else {
            return String::new();
        };
        let rest = &self.json[at + needle.len()..];
        if let Some(stripped) = rest.strip_prefix('"') {
            stripped.split('"').next().unwrap_or("").to_owned()
        } else {
            rest.split([',', '}'])
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        }
    }
}

fn py(t: &Tls, sni: &str, host: &str, path: &str, version: &str) -> PyOut {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY_CLIENT)
        .args([
            &t.tls_port.to_string(),
            sni,
            host,
            path,
            t.ca.to_str().unwrap(),
            version,
        ])
        .output()
        .expect("python3");
    PyOut {
        json: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl (apt-get install curl)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn curl_gets_a_page_over_tls_1_3_with_alpn_http_1_1() {
    let t = start("tls-curl", "", "");
    let url = format!("https://localhost:{}/", t.tls_port);
    let (code, body, err) = curl(&["-v", "--cacert", t.ca.to_str().unwrap(), &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, "hello\n");
    assert!(err.contains("TLSv1.3"), "{err}");
    assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
}

#[test]
fn python_ssl_speaks_tls_1_2_and_1_3_and_tls_1_1_is_refused() {
    let t = start("tls-versions", "", "");
    for v in ["1.2", "1.3"] {
        let r = py(&t, "localhost", "localhost", "/", v);
        assert_eq!(r.get("version"), format!("TLSv{v}"), "{r:?}");
        assert_eq!(r.get("alpn"), "http/1.1", "{r:?}");
        assert!(r.get("status").contains("200"), "{r:?}");
        assert_eq!(r.get("body"), "hello\\n", "{r:?}");
    }
    let old = py(&t, "localhost", "localhost", "/", "1.1");
    assert!(
        old.get("error").starts_with("SSLError"),
        "TLS 1.1 must be refused: {old:?}"
    );
}

#[test]
fn sni_selects_each_sites_certificate_and_unknown_names_get_the_default() {
    let t = start("tls-sni", "", "");
    let b = py(&t, "b.test", "b.test", "/", "any");
    assert!(b.json.contains("\"names\": [\"b.test\"]"), "{b:?}");
    assert_eq!(b.get("body"), "site b\\n");
    let d = py(&t, "localhost", "localhost", "/", "any");
    assert!(d.json.contains("\"names\": [\"localhost\"]"), "{d:?}");
    let unknown = py(&t, "nobody.test", "nobody.test", "/", "any");
    assert!(
        unknown.json.contains("\"names\": [\"localhost\"]"),
        "{unknown:?}"
    );
    let no_sni = py(&t, "", "localhost", "/", "any");
    assert!(
        no_sni.json.contains("\"names\": [\"localhost\"]"),
        "{no_sni:?}"
    );
}

#[test]
fn without_a_top_level_certificate_an_unknown_name_is_refused_in_the_handshake() {
    let mut s = Srvd::prepare("tls-refuse", "");
    let ca = Ca::new();
    ca.issue(&s.dir, "b", &["b.test"], 365);
    let ca_path = ca.write_root(&s.dir);
    let tls_port = free_port();
    std::fs::write(
        &s.config_path,
        format!(
            "listen = [\"127.0.0.1:{}\", \"127.0.0.1:{tls_port} tls\"]\nworkers = 1\nroot = \"root\"\n\
             [[site]]\nhosts = [\"b.test\"]\nroot = \"root\"\ntls = {{ cert = \"b.pem\", key = \"b.key\" }}\n",
            s.port
        ),
    )
    .unwrap();
    s.workers_expected = 1;
    let t = Tls {
        s: s.start_prepared(),
        ca: ca_path,
        tls_port,
    };
    assert!(py(&t, "b.test", "b.test", "/", "any")
        .get("status")
        .contains("200"));
    let r = py(&t, "other.test", "other.test", "/", "any");
    assert!(r.get("error").starts_with("SSLError"), "{r:?}");
}

#[test]
fn a_host_for_another_site_than_the_sni_is_421() {
    let t = start("tls-421", "", "");
    let r = py(&t, "b.test", "localhost", "/", "any");
    assert!(r.get("status").contains("421"), "{r:?}");
    // Without SNI, Host decides.
    let r = py(&t, "", "b.test", "/", "any");
    assert!(r.get("status").contains("200"), "{r:?}");
    assert_eq!(r.get("body"), "site b\\n");
}

#[test]
fn https_redirect_is_a_308_with_the_tls_port_and_hsts_only_goes_over_tls() {
    let t = start(
        "tls-redirect",
        "hsts = \"max-age=600\"",
        "https_redirect = true",
    );
    let plain = format!("http://127.0.0.1:{}/a/b?x=1", t.s.port);
    let (_, head, _) = curl(&["-D", "-", "-o", "/dev/null", "-H", "Host: b.test", &plain]);
    assert!(head.starts_with("HTTP/1.1 308"), "{head}");
    assert!(
        head.contains(&format!("Location: https://b.test:{}/a/b?x=1", t.tls_port)),
        "{head}"
    );
    assert!(!head.contains("Strict-Transport-Security"), "{head}");
    // The default site has no https_redirect: served in clear, and no HSTS there.
    let (_, head, _) = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{}/", t.s.port),
    ]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("Strict-Transport-Security"), "{head}");
    // Over TLS: on a page and on an error (b.test inherits the top level's hsts).
    for path in ["/", "/missing"] {
        let r = py(&t, "b.test", "b.test", path, "any");
        assert!(
            r.json
                .contains("\"strict-transport-security\": \"max-age=600\""),
            "{path}: {r:?}"
        );
    }
}

#[test]
fn plain_http_on_the_tls_port_gets_a_400_in_clear_text() {
    let t = start("tls-plain", "", "");
    let (_, head, _) = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{}/", t.tls_port),
    ]);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    // Garbage is closed without an answer; the server still serves.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", t.tls_port)).unwrap();
    std::io::Write::write_all(&mut c, &[0xff; 64]).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(read_until_eof(&mut c).is_some(), "garbage is closed");
    assert!(py(&t, "localhost", "localhost", "/", "any")
        .get("status")
        .contains("200"));
}

#[test]
fn a_client_that_stalls_in_the_handshake_is_cut_at_the_header_timeout() {
    let t = start("tls-stall", "header_timeout = \"1s\"", "");
    let mut c = std::net::TcpStream::connect(("127.0.0.1", t.tls_port)).unwrap();
    // The start of a ClientHello record, then nothing.
    std::io::Write::write_all(&mut c, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let started = std::time::Instant::now();
    assert!(read_until_eof(&mut c).is_some(), "closed by the server");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_16_mib_file_arrives_intact_over_tls() {
    let t = start("tls-big", "", "");
    let body: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(t.s.root.join("big.bin"), &body).unwrap();
    let want = {
        let out = Command::new("sha256sum")
            .arg(t.s.root.join("big.bin"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let r = py(&t, "localhost", "localhost", "/big.bin", "any");
    assert_eq!(r.get("sha256"), want, "{r:?}");
    let url = format!("https://localhost:{}/big.bin", t.tls_port);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -s --max-time 30 --cacert {} {url} | sha256sum",
            t.ca.display()
        ))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&want));
}

#[test]
fn check_validates_certificates_and_warns_before_expiry() {
    let dir = temp_dir("tls-check");
    std::fs::create_dir_all(dir.join("root")).unwrap();
    let ca = Ca::new();
    ca.issue(&dir, "good", &["localhost"], 365);
    ca.issue(&dir, "soon", &["localhost"], 5);
    ca.issue(&dir, "other", &["localhost"], 365);
    let conf = |cert: &str, key: &str| {
        format!(
            "listen = [\"127.0.0.1:1 tls\"]\nroot = \"root\"\ntls = {{ cert = \"{cert}\", key = \"{key}\" }}\n"
        )
    };
    let run = |text: String| {
        std::fs::write(dir.join("srvd.toml"), text).unwrap();
        run_cli(&dir, &["--check", "--config", "srvd.toml"])
    };
    let ok = run(conf("good.pem", "good.key"));
    assert_eq!(ok.code, Some(0), "{ok:?}");
    assert!(
        ok.stdout.contains("certificate for localhost valid until"),
        "{ok:?}"
    );
    let soon = run(conf("soon.pem", "soon.key"));
    assert_eq!(soon.code, Some(0), "{soon:?}");
    assert!(
        soon.stderr.contains("soon.pem") && soon.stderr.contains("expires"),
        "{soon:?}"
    );
    let mismatch = run(conf("good.pem", "other.key"));
    assert_eq!(mismatch.code, Some(1), "{mismatch:?}");
    assert!(
        mismatch.stderr.contains("srvd.toml:3:7: tls:"),
        "{mismatch:?}"
    );
    assert!(mismatch.stderr.contains("other.key"), "{mismatch:?}");
    let missing = run(conf("nope.pem", "good.key"));
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("nope.pem"), "{missing:?}");
    let none = run("listen = [\"127.0.0.1:1 tls\"]\nroot = \"root\"\n".to_owned());
    assert_eq!(none.code, Some(1));
    assert!(
        none.stderr.contains("a TLS listener needs a certificate"),
        "{none:?}"
    );
}

#[test]
fn an_expired_certificate_is_a_config_error() {
    let dir = temp_dir("tls-expired");
    std::fs::create_dir_all(dir.join("root")).unwrap();
    let ca = Ca::new();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let key = KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    std::fs::write(dir.join("old.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("old.key"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.join("srvd.toml"),
        "listen = [\"127.0.0.1:1 tls\"]\nroot = \"root\"\ntls = { cert = \"old.pem\", key = \"old.key\" }\n",
    )
    .unwrap();
    let out = run_cli(&dir, &["--check", "--config", "srvd.toml"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("old.pem") && out.stderr.contains("expired"),
        "{out:?}"
    );
}

#[test]
fn a_reload_picks_up_a_renewed_certificate_with_no_failed_request() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    let t = start("tls-renew", "", "");
    let before = py(&t, "localhost", "localhost", "/", "any");
    assert!(before.get("status").contains("200"), "{before:?}");
    // Load: new TLS connections (full handshakes) until told to stop, bounded.
    let port = t.tls_port;
    let ca = t.ca.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU32::new(0));
    let load = {
        let (stop, ok) = (Arc::clone(&stop), Arc::clone(&ok));
        std::thread::spawn(move || {
            let mut failed = Vec::new();
            let started = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(20)
                && ok.load(Ordering::Relaxed) < 2000
            {
                let url = format!("https://localhost:{port}/");
                let (code, body, err) = curl(&["--cacert", ca.to_str().unwrap(), &url]);
                if code == 0 && body == "hello\n" {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.push(format!("{code} {body:?} {err}"));
                }
            }
            failed
        })
    };
    wait_for("the load to run", || {
        (ok.load(Ordering::Relaxed) >= 5).then_some(())
    });
    // Renew (the certbot way): new files for the same name, then the reload.
    let ca_dir = t.s.dir.join("ca2");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let again = Ca::named("srvd test CA 2");
    let (cert, key) = again.issue(&ca_dir, "default", &["localhost"], 90);
    let old_ca = std::fs::read_to_string(&t.ca).unwrap();
    std::fs::write(&t.ca, format!("{old_ca}{}", again.cert.pem())).unwrap();
    std::fs::copy(&cert, t.s.dir.join("default.pem")).unwrap();
    std::fs::copy(&key, t.s.dir.join("default.key")).unwrap();
    let out = run_cli(
        &t.s.dir,
        &["reload", "--config", t.s.config_path.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let after_reload = ok.load(Ordering::Relaxed);
    wait_for("requests after the reload", || {
        (ok.load(Ordering::Relaxed) >= after_reload + 5).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let failed = load.join().unwrap();
    let total = ok.load(Ordering::Relaxed);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        total as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    // New connections show the renewed certificate.
    let after = py(&t, "localhost", "localhost", "/", "any");
    assert!(after.get("status").contains("200"), "{after:?}");
    assert_ne!(
        after.get("not_after"),
        before.get("not_after"),
        "{before:?} {after:?}"
    );
}
