//! Kernel TLS: a probe only. srvd encrypts in user space ([`super::stream`]); this tells whether
//! the kernel could take over record encryption, so the choice can be logged.
//!
//! **Here it is absent**: the kernel has no `tls` upper-layer protocol
//! (`/proc/sys/net/ipv4/tcp_available_ulp` lists only `mptcp`, and there are no modules to load),
//! so `setsockopt(TCP_ULP, "tls")` fails with ENOENT and the user-space path, pread + encrypt
//! in [`FILE_SLICE`](super::stream::FILE_SLICE) slices, is the one used.
//!
//! **What enabling it would take** (not done):
//! 1. build the `ServerConfig` with `enable_secret_extraction = true`;
//! 2. after the handshake, with rustls's send buffer flushed, take the traffic secrets with
//!    `ServerConnection::dangerous_extract_secrets()` (this consumes the connection: later
//!    alerts, close_notify and TLS 1.3 key updates are then the kernel's or srvd's to handle,
//!    and NewSessionTicket messages must already be out);
//! 3. `setsockopt(SOL_TCP, TCP_ULP, "tls")`, then `setsockopt(SOL_TLS, TLS_TX, &crypto_info)` and
//!    likewise `TLS_RX`, with the `tls12_crypto_info_aes_gcm_128` / `_aes_gcm_256` /
//!    `_chacha20_poly1305` struct for the negotiated suite (version, cipher type, key, IV or
//!    salt, record sequence number), which needs raw `libc::setsockopt` in `src/sys/`;
//! 4. send file bodies with plain `sendfile(2)` again (the kernel encrypts), and read records
//!    with `recvmsg` to see non-data records through the `TLS_GET_RECORD_TYPE` cmsg.

use std::net::{Ipv4Addr, TcpListener, TcpStream};

use nix::sys::socket::{setsockopt, sockopt::TcpUlp};

/// Whether this kernel accepts the `tls` upper-layer protocol on a TCP socket. Probes a
/// throwaway loopback connection (the option needs an established socket); any failure, the
/// probe's own included, is `false`.
pub fn ktls_available() -> bool {
    let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let Ok(addr) = listener.local_addr() else {
        return false;
    };
    let Ok(stream) = TcpStream::connect(addr) else {
        return false;
    };
    setsockopt(&stream, TcpUlp::default(), b"tls").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ktls_probe_returns() {
        let available = ktls_available();
        eprintln!("kernel TLS available: {available}");
        if available {
            // The probe loaded or found the module, so the kernel now lists it.
            let ulps = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp");
            assert!(ulps.map_or(true, |u| u.contains("tls")));
        }
    }
}
