//! A TLS connection driven by the worker's epoll loop: a rustls [`ServerConnection`] plus the
//! explicit states and the bounded buffers of a non-blocking server.
//!
//! ```text
//!              handshake done                send_close_notify / TLS error (alert queued)
//! Handshaking ───────────────▶ Open ───────────────────────────────▶ Closing ──▶ Closed
//!      │  not TLS, plain HTTP, socket error, EOF                       flushed
//!      └──────────────────────────────────────────────────────────────────────────▶ Closed
//! ```
//!
//! The adaptor does not own the socket: every call that does I/O borrows the connection's
//! `TcpStream`, which stays in the worker's `Conn` (registered in epoll, shut down, lingered on
//! as today). Each call does what the socket allows now and returns; nothing blocks.
//!
//! - **In**: [`TlsConn::read_tls_from_socket`] reads records and processes them right away
//!   (rustls must process what it buffered before it can take more), stopping at `WouldBlock`,
//!   at EOF, or when decrypted plaintext waits to be taken with [`TlsConn::read_plain`] (rustls
//!   holds at most 16 KiB of it: that is the back-pressure).
//! - **Out**: [`TlsConn::write_plain`] and [`TlsConn::encrypt_file_slice`] encrypt into a
//!   buffer bounded by [`SEND_BUFFER`], which [`TlsConn::flush_to_socket`] writes out (with
//!   MSG_NOSIGNAL). A file body is read with `pread` in slices of at most [`FILE_SLICE`], only
//!   when the buffer has room, so it is never read whole into memory; per writable event the
//!   worker flushes, then encrypts the next slice, then flushes again.
//! - **Interest**: register EPOLLIN while [`TlsConn::wants_read`], EPOLLOUT while
//!   [`TlsConn::wants_write`].
//!
//! **Not TLS.** The first bytes of a connection are looked at before rustls sees them
//! ([`sniff_first_flight`]): a TLS handshake record starts with 0x16. A request line (`GET `,
//! `POST `…) is [`TlsError::PlainHttp`]: the worker answers `400` in clear text on the raw
//! socket and closes, which is nginx's choice (its 497 "The plain HTTP request was sent to HTTPS
//! port", sent as 400). Anything else is [`TlsError::NotTls`] and the connection is closed
//! without a word. Malformed TLS is a rustls error ([`TlsError::Tls`]) with an alert queued: one
//! best-effort [`TlsConn::flush_to_socket`], then close.

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustls::{HandshakeKind, IoState, ProtocolVersion, ServerConfig, ServerConnection};
use socket2::SockRef;

/// Largest slice of a file read and encrypted at once. 64 KiB is four full TLS records: large
/// enough that the per-call cost (a pread, four seals) is amortised, small enough that 4096
/// connections sending files at once hold at most 256 MiB of slices.
pub const FILE_SLICE: usize = 64 * 1024;

/// Most TLS bytes (and, before the handshake completes, plaintext) a connection buffers for
/// the socket; past it [`TlsConn::write_plain`] takes less than offered. One file slice.
pub const SEND_BUFFER: usize = FILE_SLICE;

/// Bytes looked at to tell a TLS handshake from a plain HTTP request: the longest method
/// recognised plus its space (`PROPPATCH ` is 10).
const FIRST_BYTES: usize = 16;

/// TLS record content type `handshake` (RFC 8446 §5.1): the first byte of every ClientHello.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Where a TLS connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsState {
    Handshaking,
    /// Application data flows both ways.
    Open,
    /// close_notify (or an alert after an error) is queued: flush, then close.
    Closing,
    /// Nothing more to send or read; drop the connection (or linger on the raw socket).
    Closed,
}

/// What a read from the socket achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Records were read and processed: the handshake moved, or plaintext waits for
    /// [`TlsConn::read_plain`]; flush, since rustls may have queued an answer.
    Read,
    /// Nothing to read now: the socket would block, or rustls first wants its output
    /// flushed or its plaintext taken.
    WouldBlock,
    /// The peer closed (close_notify or TCP EOF), or this side is closing: take what
    /// [`TlsConn::read_plain`] still has, then close.
    Closed,
}

/// What the first bytes of a connection on the TLS port are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstFlight {
    /// A TLS handshake record: give it to rustls.
    Tls,
    /// An HTTP request line: answer 400 in clear text and close.
    PlainHttp,
    /// Neither: close.
    Garbage,
    /// Too few bytes to tell.
    NeedMore,
}

/// Why a TLS connection failed. All are the client's doing except `Io` (and even that is
/// mostly a reset): log at debug and close.
#[derive(thiserror::Error, Debug)]
pub enum TlsError {
    #[error("plain HTTP request on the TLS port")]
    PlainHttp,
    #[error("not a TLS handshake")]
    NotTls,
    #[error("connection closed during the TLS handshake")]
    HandshakeEof,
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Classifies the first bytes a client sent to the TLS port. An HTTP request line is a method
/// (an uppercase letter, then token characters, RFC 9110 §9.1) followed by one space.
pub fn sniff_first_flight(first: &[u8]) -> FirstFlight {
    match first.first() {
        None => FirstFlight::NeedMore,
        Some(&HANDSHAKE_RECORD) => match first.get(1) {
            // The record's legacy version is 0x03XX; anything else is not a ClientHello.
            Some(&v) if v != 0x03 => FirstFlight::Garbage,
            _ => FirstFlight::Tls,
        },
        Some(b) if b.is_ascii_uppercase() => {
            let limit = first.len().min(FIRST_BYTES);
            for &b in &first[1..limit] {
                if b == b' ' {
                    return FirstFlight::PlainHttp;
                }
                if !is_tchar(b) {
                    return FirstFlight::Garbage;
                }
            }
            if limit < FIRST_BYTES {
                FirstFlight::NeedMore
            } else {
                FirstFlight::Garbage
            }
        }
        Some(_) => FirstFlight::Garbage,
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One TLS connection (module docs).
pub struct TlsConn {
    conn: ServerConnection,
    state: TlsState,
    /// The first bytes, kept until they tell TLS from plain HTTP; `None` once they did.
    first: Option<([u8; FIRST_BYTES], usize)>,
    /// File slices are read into this; allocated on the first file body, freed by
    /// [`TlsConn::release_buffers`].
    scratch: Vec<u8>,
}

impl TlsConn {
    /// A connection waiting for its ClientHello, with the generation's configuration.
    pub fn new(config: &Arc<ServerConfig>) -> Result<TlsConn, rustls::Error> {
        let mut conn = ServerConnection::new(Arc::clone(config))?;
        conn.set_buffer_limit(Some(SEND_BUFFER));
        Ok(TlsConn {
            conn,
            state: TlsState::Handshaking,
            first: Some(([0; FIRST_BYTES], 0)),
            scratch: Vec::new(),
        })
    }

    pub fn state(&self) -> TlsState {
        self.state
    }

    /// Counts toward the worker's cap on concurrent handshakes while true.
    pub fn is_handshaking(&self) -> bool {
        matches!(self.state, TlsState::Handshaking)
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, TlsState::Open)
    }

    /// Register for EPOLLIN.
    pub fn wants_read(&self) -> bool {
        match self.state {
            TlsState::Handshaking => self.first.is_some() || self.conn.wants_read(),
            TlsState::Open => self.conn.wants_read(),
            TlsState::Closing | TlsState::Closed => false,
        }
    }

    /// Register for EPOLLOUT: records wait for the socket.
    pub fn wants_write(&self) -> bool {
        self.state != TlsState::Closed && self.conn.wants_write()
    }

    /// The SNI name the client sent (lowercase), once the ClientHello was read.
    pub fn sni(&self) -> Option<&str> {
        self.conn.server_name()
    }

    /// The ALPN protocol agreed on (`b"http/1.1"`), or `None` when the client offered none.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// Full or resumed, once the handshake is done.
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.conn.handshake_kind()
    }

    /// Reads TLS records from `sock` and processes them, until the socket would block, the peer
    /// closed, or plaintext waits to be taken (module docs). A TLS error leaves an alert queued
    /// (state `Closing`): flush it once if the socket takes it, then close.
    pub fn read_tls_from_socket(&mut self, sock: &TcpStream) -> Result<Progress, TlsError> {
        if matches!(self.state, TlsState::Closing | TlsState::Closed) {
            return Ok(Progress::Closed);
        }
        let mut progressed = false;
        if self.first.is_some() {
            match self.read_first_bytes(sock)? {
                Progress::Read => progressed = true,
                other => return Ok(other),
            }
        }
        loop {
            if !self.conn.wants_read() {
                return Ok(if progressed {
                    Progress::Read
                } else {
                    Progress::WouldBlock
                });
            }
            match self.conn.read_tls(&mut SockIo(sock)) {
                Ok(0) => {
                    self.process()?;
                    if self.is_handshaking() {
                        self.state = TlsState::Closed;
                    }
                    return Ok(Progress::Closed);
                }
                Ok(_) => {
                    progressed = true;
                    if self.process()?.peer_has_closed() {
                        return Ok(Progress::Closed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(if progressed {
                        Progress::Read
                    } else {
                        Progress::WouldBlock
                    });
                }
                Err(e) => {
                    self.state = TlsState::Closed;
                    return Err(TlsError::Io(e));
                }
            }
        }
    }

    /// Reads up to [`FIRST_BYTES`] before rustls sees anything, and decides what they are.
    fn read_first_bytes(&mut self, sock: &TcpStream) -> Result<Progress, TlsError> {
        let (buf, len) = self.first.as_mut().expect("called while sniffing");
        loop {
            match (&*sock).read(&mut buf[*len..]) {
                Ok(0) => {
                    self.state = TlsState::Closed;
                    return Ok(Progress::Closed);
                }
                Ok(n) => {
                    *len += n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Progress::WouldBlock),
                Err(e) => {
                    self.state = TlsState::Closed;
                    return Err(TlsError::Io(e));
                }
            }
        }
        match sniff_first_flight(&buf[..*len]) {
            // What was read is consumed, so level-triggered epoll does not spin on it.
            FirstFlight::NeedMore => Ok(Progress::WouldBlock),
            FirstFlight::PlainHttp => {
                self.state = TlsState::Closed;
                Err(TlsError::PlainHttp)
            }
            FirstFlight::Garbage => {
                self.state = TlsState::Closed;
                Err(TlsError::NotTls)
            }
            FirstFlight::Tls => {
                let (buf, len) = self.first.take().expect("called while sniffing");
                let mut rest = &buf[..len];
                while !rest.is_empty() {
                    // rustls's buffer is empty and far larger than FIRST_BYTES: one call takes
                    // it all; a zero would mean it took nothing, which cannot repeat.
                    if self.conn.read_tls(&mut rest)? == 0 {
                        break;
                    }
                }
                self.process()?;
                Ok(Progress::Read)
            }
        }
    }

    /// Processes buffered records and moves the state along.
    fn process(&mut self) -> Result<IoState, TlsError> {
        match self.conn.process_new_packets() {
            Ok(io) => {
                if self.state == TlsState::Handshaking && !self.conn.is_handshaking() {
                    self.state = TlsState::Open;
                }
                Ok(io)
            }
            Err(e) => {
                // rustls queued the alert that describes `e`.
                self.state = TlsState::Closing;
                Err(TlsError::Tls(e))
            }
        }
    }

    /// Drives the handshake as far as the socket allows: flush, read, process, repeat.
    /// `Ok(true)` once the connection is open (the handshake's last records may still wait in
    /// the buffer: keep `wants_write` in the interest); `Ok(false)` while it waits for the socket.
    pub fn advance_handshake(&mut self, sock: &TcpStream) -> Result<bool, TlsError> {
        loop {
            if !self.flush_to_socket(sock)? {
                return Ok(false);
            }
            match self.state {
                TlsState::Handshaking => {}
                TlsState::Open => return Ok(true),
                TlsState::Closing | TlsState::Closed => return Err(TlsError::HandshakeEof),
            }
            match self.read_tls_from_socket(sock)? {
                Progress::Read => {}
                Progress::WouldBlock => return Ok(false),
                Progress::Closed => {
                    self.state = TlsState::Closed;
                    return Err(TlsError::HandshakeEof);
                }
            }
        }
    }

    /// Takes decrypted plaintext. `Ok(0)`: the peer sent close_notify and everything was taken;
    /// `WouldBlock`: nothing yet; `UnexpectedEof`: TCP closed without close_notify.
    pub fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.conn.reader().read(buf)
    }

    /// Encrypts as much of `data` as the send buffer has room for; returns how much it took
    /// (0 when full or closing: flush first). Before the handshake completes it is buffered as
    /// plaintext and sent once it does.
    pub fn write_plain(&mut self, data: &[u8]) -> usize {
        if matches!(self.state, TlsState::Closing | TlsState::Closed) {
            return 0;
        }
        self.conn.writer().write(data).unwrap_or(0)
    }

    /// Reads at most `max` (and at most [`FILE_SLICE`]) bytes of `file` at `offset` with pread
    /// and encrypts them, limited to the room left in the send buffer. Returns how many bytes
    /// of the file were taken: advance the offset by that; 0 means the buffer is full (flush
    /// first) or `max` was 0. A file that ends before `offset + max` is `UnexpectedEof` (it
    /// shrank under a response whose length is already promised).
    pub fn encrypt_file_slice(
        &mut self,
        file: &File,
        offset: u64,
        max: u64,
    ) -> Result<usize, TlsError> {
        if self.state != TlsState::Open {
            return Err(TlsError::Io(io::ErrorKind::NotConnected.into()));
        }
        let pending = self.process()?.tls_bytes_to_write();
        let want = SEND_BUFFER
            .saturating_sub(pending)
            .min(FILE_SLICE)
            .min(usize::try_from(max).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        if self.scratch.len() < FILE_SLICE {
            self.scratch = vec![0; FILE_SLICE];
        }
        let n = loop {
            match file.read_at(&mut self.scratch[..want], offset) {
                Ok(0) => return Err(TlsError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TlsError::Io(e)),
            }
        };
        // The room was measured against the same limit, so rustls takes all `n`.
        Ok(self.conn.writer().write(&self.scratch[..n]).unwrap_or(0))
    }

    /// Writes buffered records to `sock`. `Ok(true)` when everything went out (a `Closing`
    /// connection is then `Closed`); `Ok(false)` when the socket would block.
    pub fn flush_to_socket(&mut self, sock: &TcpStream) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut SockIo(sock)) {
                Ok(0) => {
                    self.state = TlsState::Closed;
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => {
                    self.state = TlsState::Closed;
                    return Err(e);
                }
            }
        }
        if self.state == TlsState::Closing {
            self.state = TlsState::Closed;
        }
        Ok(true)
    }

    /// Queues close_notify: the clean end of the TLS session. Flush, then shut the socket's
    /// write side (and linger on the raw socket as for plain HTTP, so unread input does not
    /// turn the FIN into a reset before the client read the last response).
    pub fn send_close_notify(&mut self) {
        if matches!(self.state, TlsState::Handshaking | TlsState::Open) {
            self.conn.send_close_notify();
            self.state = TlsState::Closing;
        }
    }

    /// Frees the file-slice buffer (call when the connection goes idle).
    pub fn release_buffers(&mut self) {
        self.scratch = Vec::new();
    }
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("state", &self.state)
            .field("sni", &self.sni())
            .finish_non_exhaustive()
    }
}

/// The socket as rustls's reader and writer: sends carry MSG_NOSIGNAL, so a vanished client
/// is an EPIPE, never a SIGPIPE (rustls writes with `write_vectored`, which std maps to
/// writev(2) without that flag).
struct SockIo<'a>(&'a TcpStream);

impl Read for SockIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for SockIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        SockRef::from(self.0).send_with_flags(buf, libc::MSG_NOSIGNAL)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        SockRef::from(self.0).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_flights_are_told_apart() {
        use FirstFlight::*;
        let table: &[(&[u8], FirstFlight)] = &[
            (b"", NeedMore),
            (b"\x16", Tls),
            (b"\x16\x03\x01\x02\x00", Tls),
            (b"\x16\x00", Garbage),
            (b"GET / HTTP/1.1\r\n", PlainHttp),
            (b"POST /x HTTP/1.1", PlainHttp),
            (b"PROPPATCH / HTTP", PlainHttp),
            (b"PRI * HTTP/2.0\r\n", PlainHttp),
            (b"G", NeedMore),
            (b"GE", NeedMore),
            (b"GET", NeedMore),
            (b"GET/ HTTP/1.1", Garbage),
            (b"get / HTTP/1.1", Garbage),
            (b"ABCDEFGHIJKLMNOP ", Garbage),
            (b"\x80\x2e\x01\x03\x01", Garbage),
            (b"\x00\x00\x00\x00", Garbage),
            (b"\r\nGET / HTTP/1.1", Garbage),
            (b"SSH-2.0-OpenSSH_9", Garbage),
        ];
        for &(bytes, want) in table {
            assert_eq!(
                sniff_first_flight(bytes),
                want,
                "{:?}",
                bytes.escape_ascii()
            );
        }
    }
}
