//! Test certificates, made per run with rcgen (no key is ever committed): a CA and leaves
//! it signs, written as PEM files for srvd's `tls = { cert, key }`.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, KeyPair};

pub struct Ca {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn new() -> Ca {
        Ca::named("srvd test CA")
    }

    /// A CA with its own subject name (two CAs in one bundle must differ in it).
    pub fn named(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `names` valid from two days ago for `days` more: its PEM chain (leaf,
    /// then this CA) and its key.
    pub fn leaf(&self, names: &[&str], days: i64) -> (String, KeyPair) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(2);
        params.not_after = now + time::Duration::days(days);
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (leaf.pem() + &self.cert.pem(), key)
    }

    /// Writes `<stem>.pem` (leaf + CA) and `<stem>.key` for `names`, valid for `days`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str], days: i64) -> (PathBuf, PathBuf) {
        let (chain, key) = self.leaf(names, days);
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, chain).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// Writes the CA certificate (for `curl --cacert`, Python's `cafile`) as `ca.pem`.
    pub fn write_root(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, self.cert.pem()).unwrap();
        p
    }
}
