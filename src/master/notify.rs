//! sd_notify: tell systemd about readiness, reloads and stops when `NOTIFY_SOCKET` is set.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to systemd's notification socket, or nothing outside systemd.
pub struct Notify {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notify {
    /// Reads `NOTIFY_SOCKET` ("/path" or "@abstract"); absent or unusable means silent.
    pub fn from_env() -> Notify {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_str()?.to_owned();
            let addr = if let Some(name) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&path).ok()?
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        Notify { socket }
    }

    /// Sends one notification (several `KEY=value` lines); failures are ignored, as
    /// libsystemd's `sd_notify` does.
    pub fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.socket {
            let _ = socket.send_to_addr(message.as_bytes(), addr);
        }
    }

    /// `MONOTONIC_USEC=` for `RELOADING=1`: CLOCK_MONOTONIC now, in microseconds.
    pub fn monotonic_usec() -> u128 {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| Duration::from(t).as_micros())
            .unwrap_or(0)
    }
}
