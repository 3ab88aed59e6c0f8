//! Skipping request bodies. srvd never uses a body, but it must consume one to find where
//! the next pipelined request starts (RFC 9112 §6.3).
//!
//! [`BodySkipper::skip`] eats body bytes from the front of a buffer and says how many it
//! ate; it is fed again as more bytes arrive. Chunked bodies (RFC 9112 §7.1) are walked
//! chunk by chunk: `size[;ext] CRLF data CRLF ... 0 CRLF [trailers] CRLF`. The total is
//! bounded by the caller's limit, so a client cannot keep a connection busy forever.

use crate::http::request::ParseError;

/// The longest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 4096;

/// What is left of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySkipper {
    /// Nothing (left) to skip.
    Done,
    /// This many bytes of a Content-Length body.
    Length(u64),
    /// Somewhere in a chunked body; `seen` counts chunk data so far.
    Chunked { phase: Phase, seen: u64 },
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data: this many bytes, then CRLF.
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

impl BodySkipper {
    /// A chunked body from its start.
    pub fn chunked() -> BodySkipper {
        BodySkipper::Chunked {
            phase: Phase::Size,
            seen: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, BodySkipper::Done)
    }

    /// Consumes body bytes at the front of `buf`; returns how many. A malformed chunked
    /// body, or one whose data exceeds `limit`, is an error (the connection must close).
    pub fn skip(&mut self, buf: &[u8], limit: u64) -> Result<usize, ParseError> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match self {
                BodySkipper::Done => return Ok(used),
                BodySkipper::Length(n) => {
                    let take = (*n).min(rest.len() as u64);
                    *n -= take;
                    used += take as usize;
                    if *n == 0 {
                        *self = BodySkipper::Done;
                    }
                    return Ok(used);
                }
                BodySkipper::Chunked { phase, seen } => match *phase {
                    Phase::Size => match httparse::parse_chunk_size(rest) {
                        Ok(httparse::Status::Complete((n, size))) => {
                            used += n;
                            *seen = seen.saturating_add(size);
                            if *seen > limit {
                                return Err(ParseError::Malformed);
                            }
                            *phase = if size == 0 {
                                Phase::Trailers
                            } else {
                                Phase::Data(size)
                            };
                        }
                        Ok(httparse::Status::Partial) if rest.len() <= MAX_LINE => return Ok(used),
                        _ => return Err(ParseError::Malformed),
                    },
                    Phase::Data(left) => {
                        let take = left.min(rest.len() as u64);
                        used += take as usize;
                        *phase = if take == left {
                            Phase::DataEnd
                        } else {
                            Phase::Data(left - take)
                        };
                        if take < left {
                            return Ok(used);
                        }
                    }
                    Phase::DataEnd => match rest {
                        [b'\r', b'\n', ..] => {
                            used += 2;
                            *phase = Phase::Size;
                        }
                        [b'\n', ..] => {
                            used += 1;
                            *phase = Phase::Size;
                        }
                        [] | [b'\r'] => return Ok(used),
                        _ => return Err(ParseError::Malformed),
                    },
                    Phase::Trailers => match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            used += i + 1;
                            // An empty line (CRLF or LF) ends the body.
                            if i == 0 || (i == 1 && rest[0] == b'\r') {
                                *self = BodySkipper::Done;
                            }
                        }
                        None if rest.len() <= MAX_LINE => return Ok(used),
                        None => return Err(ParseError::Malformed),
                    },
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<(usize, bool), ParseError>;

    /// Feeds `input` in pieces of `step` bytes; returns (bytes consumed, done?).
    fn run(mut s: BodySkipper, input: &[u8], step: usize) -> Outcome {
        let mut buf = Vec::new();
        let mut consumed = 0;
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            let n = s.skip(&buf, 1 << 20)?;
            consumed += n;
            buf.drain(..n);
        }
        Ok((consumed, s.is_done()))
    }

    #[test]
    fn table() {
        let cases: &[(&[u8], Outcome)] = &[
            (b"0\r\n\r\n", Ok((5, true))),
            (b"5\r\nhello\r\n0\r\n\r\nGET", Ok((15, true))),
            (b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", Ok((29, true))),
            (b"a\r\n0123456789\r\n0\r\n\r\n", Ok((20, true))),
            (b"5\r\nhel", Ok((6, false))),
            // Bare LF after a chunk size: RFC 9112 allows but does not require accepting it.
            (b"5\nhello\n0\n\n", Err(ParseError::Malformed)),
            (b"zz\r\n", Err(ParseError::Malformed)),
            (b"5\r\nhelloXX0\r\n\r\n", Err(ParseError::Malformed)),
        ];
        for (input, want) in cases {
            for step in [1, 2, 3, 64] {
                assert_eq!(
                    &run(BodySkipper::chunked(), input, step),
                    want,
                    "{:?} step {step}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn length_bodies_and_limits() {
        let mut s = BodySkipper::Length(5);
        assert_eq!(s.skip(b"abc", 10), Ok(3));
        assert_eq!(s.skip(b"deGET", 10), Ok(2));
        assert!(s.is_done());
        let mut s = BodySkipper::chunked();
        assert_eq!(s.skip(b"ff\r\n", 10), Err(ParseError::Malformed));
    }
}
