//! TLS groundwork: certificates, the per-generation server configuration, shared session
//! ticket keys and a non-blocking connection adaptor for the epoll loop (docs/tls.md).
//!
//! ```text
//! master, before dropping privileges and forking a generation:
//!   certs::LoadedCert::load(cert, key)       PEM → chain + CertifiedKey, checked (--check too)
//!   tickets::TicketKeys::new(ROTATION)       one ratchet of ticket keys, copied into every worker by fork
//!   server::SniResolver::new(sites, unknown) SNI → site → its certificate (or the default, or refuse)
//!   server::server_config(resolver, keys)    ONE rustls ServerConfig for the generation
//! worker, per accepted TLS connection:
//!   stream::TlsConn::new(&config)            Handshaking → Open → Closing → Closed
//!     read_tls_from_socket / read_plain      socket → records → plaintext
//!     write_plain / encrypt_file_slice       plaintext → records (bounded, file bodies by slices)
//!     flush_to_socket                        records → socket
//! ```
//!
//! Nothing here blocks, spawns a thread or touches the worker loop: every call does what the
//! socket allows now and says what it waits for (`wants_read`, `wants_write`).
//!
//! The crypto is rustls with the *ring* provider ([`provider`]): no aws-lc-rs, so no cmake and no
//! C build beyond ring's own. Protocol versions and cipher suites are rustls's defaults: TLS 1.3
//! and TLS 1.2 (ECDHE with AEAD suites only); TLS 1.0 and 1.1 do not exist in rustls.
//! [`ktls`] probes for kernel TLS, which is not used yet.

pub mod certs;
pub mod ktls;
pub mod server;
pub mod stream;
pub mod tickets;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The crypto provider every TLS object of srvd uses: rustls's *ring* provider with its
/// default cipher suites and key exchange groups.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests;
