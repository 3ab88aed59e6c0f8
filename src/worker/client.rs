//! The client side of a connection: the socket, and on a TLS listener the TLS session over
//! it. Everything a connection (and a proxy session) reads from or sends to its client goes
//! through [`Client`], so the state machines above do not care which it is.
//!
//! Plain: `read`/`send`/`sendfile` on the socket, as before. TLS ([`crate::tls::stream`]):
//! - `read` drives the handshake and returns plaintext; `WouldBlock` until there is some;
//! - `send` encrypts into a bounded buffer of records and flushes what the socket takes
//!   (a full buffer is `WouldBlock`); records still waiting make [`Client::wants_write`]
//!   true, which the worker adds to the epoll interest, and every later call flushes first;
//! - file bodies are read and encrypted in slices of at most 64 KiB per call (never read
//!   whole; no sendfile, since the kernel's TLS offload is absent here);
//! - a plain HTTP request on the TLS port makes `read` fail with [`PLAIN_HTTP`]; from then
//!   on `send` writes in clear text, for the one 400 the connection answers before it
//!   closes (nginx's "plain HTTP request sent to HTTPS port").

use std::fs::File;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;

use crate::sys::socket::send;
use crate::tls::stream::{Progress, TlsConn, TlsError};

/// The error `read` gives for a plain HTTP request on a TLS listener.
pub const PLAIN_HTTP: &str = "plain HTTP request on a TLS port";

/// A connection's client: its socket, and its TLS session when it came to a TLS listener.
pub struct Client {
    pub stream: TcpStream,
    tls: Option<Box<TlsConn>>,
    /// The TLS port got plain HTTP: `send` goes to the socket in clear text.
    clear: bool,
    /// The TLS session failed (garbage, a bad record): what is left is read raw and
    /// dropped while lingering, so the close is a FIN, not a reset.
    failed: bool,
    /// close_notify is queued but not all out: shut the write side once it is.
    fin_pending: bool,
}

impl Client {
    pub fn plain(stream: TcpStream) -> Client {
        Client {
            stream,
            tls: None,
            clear: false,
            failed: false,
            fin_pending: false,
        }
    }

    /// A client of a TLS listener; the handshake happens in the first `read`s.
    pub fn tls(stream: TcpStream, config: &Arc<rustls::ServerConfig>) -> io::Result<Client> {
        let tls = TlsConn::new(config).map_err(io::Error::other)?;
        Ok(Client {
            stream,
            tls: Some(Box::new(tls)),
            clear: false,
            failed: false,
            fin_pending: false,
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Still in the TLS handshake (counts toward the worker's cap).
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// The SNI name the client sent, once its ClientHello was read.
    pub fn sni(&self) -> Option<&str> {
        self.tls.as_ref().and_then(|t| t.sni())
    }

    /// The TLS session broke: no more TLS on this connection, only a clean close.
    pub fn tls_failed(&self) -> bool {
        self.failed
    }

    /// A plain HTTP request came to this TLS listener (its answer goes out in clear text).
    pub fn got_plain_http(&self) -> bool {
        self.clear
    }

    /// TLS records wait for the socket to take them: wait for writability too.
    #[inline]
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write()) && !self.failed && !self.clear
    }

    /// Sends waiting TLS records; `Ok(true)` when none are left (always, for plain).
    #[inline]
    pub fn flush(&mut self) -> io::Result<bool> {
        let done = match &mut self.tls {
            Some(t) => t.flush_to_socket(&self.stream)?,
            None => true,
        };
        if done && self.fin_pending {
            self.fin_pending = false;
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        Ok(done)
    }

    /// Reads request bytes: `Ok(0)` when the client closed.
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut().filter(|_| !self.clear && !self.failed) else {
            return (&self.stream).read(buf);
        };
        loop {
            match tls.read_plain(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // rustls may have queued handshake records or an alert: out first.
            if tls.wants_write() && !tls.flush_to_socket(&self.stream)? {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match tls.read_tls_from_socket(&self.stream) {
                Ok(Progress::Read) => {}
                Ok(Progress::WouldBlock) => {
                    let _ = tls.flush_to_socket(&self.stream);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(Progress::Closed) => {
                    // What is left, then the end.
                    return match tls.read_plain(buf) {
                        Ok(n) => Ok(n),
                        Err(_) => Ok(0),
                    };
                }
                Err(TlsError::PlainHttp) => {
                    self.clear = true;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, PLAIN_HTTP));
                }
                Err(e) => {
                    // An alert may be queued: one best-effort flush, then the close.
                    let _ = tls.flush_to_socket(&self.stream);
                    self.failed = true;
                    return Err(io::Error::other(e.to_string()));
                }
            }
        }
    }

    /// Sends response bytes (`more`: MSG_MORE, a body follows); how many were taken.
    #[inline]
    pub fn send(&mut self, buf: &[u8], more: bool) -> io::Result<usize> {
        let tls = match &mut self.tls {
            Some(t) if !self.clear => t,
            _ => return send(&self.stream, buf, more),
        };
        if tls.wants_write() && !tls.flush_to_socket(&self.stream)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.write_plain(buf);
        if !more || n < buf.len() {
            tls.flush_to_socket(&self.stream)?;
        }
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Sends up to `count` bytes of `file` from `offset`: sendfile for plain, read and
    /// encrypt a slice for TLS. `Ok(0)` when the file ended early (it shrank).
    #[inline]
    pub fn send_file(&mut self, file: &File, offset: u64, count: usize) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut().filter(|_| !self.clear) else {
            let mut off = offset as i64;
            return nix::sys::sendfile::sendfile64(
                self.stream.as_fd(),
                file.as_fd(),
                Some(&mut off),
                count,
            )
            .map_err(io::Error::from);
        };
        if tls.wants_write() && !tls.flush_to_socket(&self.stream)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = match tls.encrypt_file_slice(file, offset, count as u64) {
            Ok(n) => n,
            Err(TlsError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        tls.flush_to_socket(&self.stream)?;
        if n == 0 && count > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// The end of the response stream: close_notify for TLS (flushed as far as the socket
    /// takes it), then the socket's write side.
    pub fn shutdown_write(&mut self) {
        if let Some(tls) = self.tls.as_mut().filter(|_| !self.clear && !self.failed) {
            tls.send_close_notify();
            if !matches!(tls.flush_to_socket(&self.stream), Ok(true)) {
                // Records still wait: the FIN follows once they went (see `flush`).
                self.fin_pending = true;
                return;
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// The connection is being closed (timeout, drain, the end of a response): a TLS
    /// session still open says close_notify first (RFC 8446 §6.1), flushed once, best
    /// effort, since the socket closes right after.
    pub fn goodbye(&mut self) {
        // A handshake that never finished (a stalled or silent client) is just closed.
        let open = |t: &&mut Box<TlsConn>| t.is_open();
        if let Some(tls) = self
            .tls
            .as_mut()
            .filter(|_| !self.clear && !self.failed)
            .filter(open)
        {
            tls.send_close_notify();
            let _ = tls.flush_to_socket(&self.stream);
        }
    }

    /// The connection went idle: give back per-connection buffers.
    pub fn idle(&mut self) {
        if let Some(t) = &mut self.tls {
            t.release_buffers();
        }
    }
}
