//! The chunked transfer coding (RFC 9112 §7.1), both ways: [`Decoder`] reads a chunked body
//! fed in arbitrary pieces (a client's request body, an upstream's response body), and
//! [`encode_chunk`] / [`LAST_CHUNK`] re-chunk data for a client.
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size   = 1*HEXDIG
//! chunk-ext    = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! The decoder is strict, because a body it accepts is re-framed and sent on with a
//! Content-Length: what it reads must be what the sender meant, whoever reads the bytes next.
//! Every line ends in CRLF; a bare LF is refused (RFC 9112 §2.2 allows a recipient to accept
//! one, but two parsers disagreeing about line ends is how requests are smuggled). The
//! chunk-size is 1 to 16 hex digits (so it fits a u64) with nothing around it except BWS before
//! an extension; extensions must follow the grammar above and are ignored; chunk data is
//! followed by exactly CRLF; trailer fields must be valid field lines and are ignored. Each
//! line's length is bounded, so no input makes the decoder read forever without progress.

/// Longest chunk-size line accepted (size, extensions and CRLF), in bytes. Extensions are
/// ignored, so this only stops a sender from streaming an endless line; 4 KiB is the bound
/// the body skipper uses too.
pub const MAX_SIZE_LINE: usize = 4096;

/// Most trailer-field bytes accepted after the last chunk (the field lines with their CRLFs,
/// not the final empty line). Trailers are ignored; 8 KiB is generous for what they carry
/// (checksums, signatures).
pub const MAX_TRAILERS: usize = 8 * 1024;

/// The last chunk with no trailers: `0\r\n\r\n`.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Why a chunked body was refused. Either way the message cannot be delimited any more and
/// the connection it came on must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Bad chunk-size line (not hex, more than 16 digits, bad extension, too long, bare LF),
    /// missing CRLF after chunk data, bad or too large trailer section.
    Malformed,
    /// More than the decoder's `max` bytes of data in total (counted from the chunk-size,
    /// before the data arrives).
    TooLarge,
}

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first hex digit of a chunk-size.
    SizeStart,
    /// After at least one hex digit: more digits, BWS, `;` or CR.
    Size,
    /// BWS after the chunk-size: more BWS or `;`.
    SizeBws,
    /// In the chunk extensions.
    Ext(Ext),
    /// The LF ending the chunk-size line.
    SizeLf,
    /// Inside chunk data: this many bytes left.
    Data(u64),
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// After the last chunk, at the start of a line: a trailer field or the final CRLF.
    TrailerStart,
    /// In a trailer field name, up to the colon.
    TrailerName,
    /// In a trailer field value, up to CR.
    TrailerValue,
    /// The LF ending a trailer field line.
    TrailerLf,
    /// The LF of the final CRLF.
    EndLf,
    /// The whole body has been read.
    Done,
    /// An error was returned; it is returned again.
    Failed(DecodeError),
}

/// Where the decoder is in the chunk extensions (after a `;`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// BWS before an ext-name.
    BeforeName,
    /// In an ext-name.
    Name,
    /// BWS after an ext-name: `=` or the next `;`.
    AfterName,
    /// BWS after `=`: a token or a quoted-string.
    BeforeValue,
    /// In a token ext-val.
    Value,
    /// In a quoted-string ext-val.
    Quoted,
    /// Right after the closing quote: `;`, BWS or CR.
    QuoteEnd,
    /// After a backslash in a quoted-string.
    QuotedEscape,
    /// BWS after an ext-val: more BWS or the next `;`.
    AfterValue,
}

/// Decodes a chunked body fed in arbitrary pieces (a request body from a client, or an
/// upstream response body).
///
/// All state, including a partly received line, is kept inside: until the body ends,
/// [`Decoder::decode`] consumes all of its input, so the caller never has to keep bytes back.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    max: u64,
    decoded: u64,
    /// The chunk-size being read.
    size: u64,
    /// Hex digits in `size`.
    digits: u8,
    /// Bytes of the current chunk-size line so far.
    line: usize,
    /// Bytes of trailer fields so far.
    trailers: usize,
}

impl Decoder {
    /// A decoder at the start of a body. `max`: most decoded bytes accepted in total
    /// (`u64::MAX` for none).
    pub fn new(max: u64) -> Decoder {
        Decoder {
            state: State::SizeStart,
            max,
            decoded: 0,
            size: 0,
            digits: 0,
            line: 0,
            trailers: 0,
        }
    }

    /// Consumes a prefix of `input`, appending decoded data to `out`, and returns the number
    /// of input bytes consumed. Until the body ends that is all of `input`. When the last
    /// chunk and the trailer section (ignored, but bounded: at most [`MAX_TRAILERS`] bytes of
    /// trailer fields, each a valid field line) are complete, [`Decoder::is_done`] becomes
    /// true and the rest of `input` is not consumed: it belongs to the next message. Once
    /// done, every call consumes nothing.
    ///
    /// On an error, `out` may have received the data of the chunks before it; the message
    /// must be abandoned, and every later call returns the same error.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, DecodeError> {
        match self.run(input, out) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.state = State::Failed(e);
                Err(e)
            }
        }
    }

    /// Whether the whole body, trailer section included, has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Total decoded bytes so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, DecodeError> {
        use DecodeError::Malformed;
        match self.state {
            State::Failed(e) => return Err(e),
            State::Done => return Ok(0),
            _ => {}
        }
        let mut i = 0;
        while i < input.len() {
            if let State::Data(left) = self.state {
                let take = left.min((input.len() - i) as u64) as usize;
                out.extend_from_slice(&input[i..i + take]);
                self.decoded += take as u64;
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            let b = input[i];
            i += 1;
            self.count(b)?;
            self.state = match (self.state, b) {
                (State::SizeStart | State::Size, _) if b.is_ascii_hexdigit() => {
                    if self.digits == 16 {
                        return Err(Malformed); // would overflow a u64
                    }
                    self.digits += 1;
                    self.size = (self.size << 4) | u64::from(hex_value(b));
                    State::Size
                }
                (State::Size, b'\r') => State::SizeLf,
                (State::Size | State::SizeBws, b' ' | b'\t') => State::SizeBws,
                (State::Size | State::SizeBws, b';') => State::Ext(Ext::BeforeName),
                (State::Ext(ext), _) => Decoder::extension(ext, b)?,
                (State::SizeLf, b'\n') => self.end_size_line()?,

                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::SizeStart,

                (State::TrailerStart, b'\r') => State::EndLf,
                (State::TrailerStart | State::TrailerName, _) if is_tchar(b) => State::TrailerName,
                (State::TrailerName, b':') => State::TrailerValue,
                (State::TrailerValue, b'\r') => State::TrailerLf,
                (State::TrailerValue, _) if is_field_char(b) => State::TrailerValue,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => State::Done,

                _ => return Err(Malformed),
            };
            if self.state == State::Done {
                return Ok(i);
            }
        }
        Ok(i)
    }

    /// One byte of the chunk extensions. The grammar has BWS around `;` and `=` but none
    /// before the CRLF: the line ends right after a name or a value.
    fn extension(ext: Ext, b: u8) -> Result<State, DecodeError> {
        let bws = b == b' ' || b == b'\t';
        let next = match ext {
            Ext::BeforeName if bws => Ext::BeforeName,
            Ext::BeforeName | Ext::Name if is_tchar(b) => Ext::Name,
            Ext::Name | Ext::AfterName if bws => Ext::AfterName,
            Ext::Name | Ext::AfterName if b == b'=' => Ext::BeforeValue,
            Ext::BeforeValue if bws => Ext::BeforeValue,
            Ext::BeforeValue | Ext::Value if is_tchar(b) => Ext::Value,
            Ext::BeforeValue if b == b'"' => Ext::Quoted,
            Ext::Quoted if b == b'"' => Ext::QuoteEnd,
            Ext::Quoted if b == b'\\' => Ext::QuotedEscape,
            Ext::Quoted if is_qdtext(b) => Ext::Quoted,
            Ext::QuotedEscape if is_field_char(b) => Ext::Quoted,
            Ext::Value | Ext::QuoteEnd | Ext::AfterValue if bws => Ext::AfterValue,
            Ext::Name | Ext::AfterName | Ext::Value | Ext::QuoteEnd | Ext::AfterValue
                if b == b';' =>
            {
                Ext::BeforeName
            }
            Ext::Name | Ext::Value | Ext::QuoteEnd if b == b'\r' => return Ok(State::SizeLf),
            _ => return Err(DecodeError::Malformed),
        };
        Ok(State::Ext(next))
    }

    /// Counts `b` against the bound of the line or section it belongs to.
    fn count(&mut self, b: u8) -> Result<(), DecodeError> {
        let (used, bound) = match self.state {
            State::SizeStart | State::Size | State::SizeBws | State::Ext(_) | State::SizeLf => {
                (&mut self.line, MAX_SIZE_LINE)
            }
            State::TrailerName | State::TrailerValue | State::TrailerLf => {
                (&mut self.trailers, MAX_TRAILERS)
            }
            State::TrailerStart if b != b'\r' => (&mut self.trailers, MAX_TRAILERS),
            _ => return Ok(()),
        };
        *used += 1;
        if *used > bound {
            return Err(DecodeError::Malformed);
        }
        Ok(())
    }

    /// A complete chunk-size line: the chunk's data, or the trailer section after the last.
    fn end_size_line(&mut self) -> Result<State, DecodeError> {
        let size = self.size;
        self.size = 0;
        self.digits = 0;
        self.line = 0;
        if size > self.max - self.decoded {
            return Err(DecodeError::TooLarge);
        }
        Ok(if size == 0 {
            State::TrailerStart
        } else {
            State::Data(size)
        })
    }
}

/// Appends one chunk (`len` in hex, CRLF, data, CRLF) for data being re-chunked to a client;
/// empty data appends nothing (an empty chunk would be the last one).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut start = hex.len();
    while n > 0 {
        start -= 1;
        hex[start] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    out.reserve(hex.len() - start + 2 + data.len() + 2);
    out.extend_from_slice(&hex[start..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §5.6.4 `qdtext`.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// A byte of a field value (RFC 9110 §5.5): VCHAR, obs-text, SP, HTAB.
fn is_field_char(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What feeding a whole input produced: the decoded data, the input bytes consumed, and
    /// whether the body ended; or the error.
    type Outcome = Result<(Vec<u8>, usize, bool), DecodeError>;

    /// Feeds `input` in pieces of `step` bytes the way a connection would: unconsumed bytes
    /// are kept and offered again with the next piece.
    fn feed(input: &[u8], step: usize, max: u64) -> Outcome {
        let mut d = Decoder::new(max);
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut consumed = 0;
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            let n = d.decode(&pending, &mut out)?;
            assert!(n <= pending.len());
            assert!(
                n == pending.len() || d.is_done(),
                "kept bytes back before the end"
            );
            consumed += n;
            pending.drain(..n);
        }
        assert_eq!(d.decoded(), out.len() as u64);
        Ok((out, consumed, d.is_done()))
    }

    fn ok(data: &str, consumed: usize, done: bool) -> Outcome {
        Ok((data.as_bytes().to_vec(), consumed, done))
    }

    #[test]
    fn table() {
        use DecodeError::{Malformed, TooLarge};
        let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(MAX_SIZE_LINE));
        let big_trailer = format!("0\r\nX-T: {}\r\n\r\n", "v".repeat(MAX_TRAILERS));
        let ok_trailer = format!("0\r\nX-T: {}\r\n\r\n", "v".repeat(MAX_TRAILERS - 7));
        let over_trailer = format!("0\r\nX-T: {}\r\n\r\n", "v".repeat(MAX_TRAILERS - 6));
        let cases: &[(&str, Outcome)] = &[
            ("0\r\n\r\n", ok("", 5, true)),
            ("000\r\n\r\n", ok("", 7, true)),
            ("5\r\nhello\r\n0\r\n\r\n", ok("hello", 15, true)),
            (
                "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                ok("hello world", 26, true),
            ),
            ("a\r\n0123456789\r\n0\r\n\r\n", ok("0123456789", 20, true)),
            ("A\r\n0123456789\r\n0\r\n\r\n", ok("0123456789", 20, true)),
            (
                "0010\r\n0123456789abcdef\r\n0\r\n\r\n",
                ok("0123456789abcdef", 29, true),
            ),
            // Leftover bytes after the end belong to the next message.
            ("0\r\n\r\nGET / HTTP/1.1\r\n", ok("", 5, true)),
            ("3\r\nabc\r\n0\r\n\r\n0\r\n\r\n", ok("abc", 13, true)),
            // Incomplete: everything consumed, not done.
            ("5\r\nhel", ok("hel", 6, false)),
            ("5", ok("", 1, false)),
            ("5\r\nhello\r\n0\r\n", ok("hello", 13, false)),
            ("", ok("", 0, false)),
            // Extensions: ignored, with BWS before `;` and around `=`.
            ("5;a\r\nhello\r\n0\r\n\r\n", ok("hello", 17, true)),
            ("5;a=1;b\r\nhello\r\n0;z\r\n\r\n", ok("hello", 23, true)),
            ("5 ;a = 1 ; b\r\nhello\r\n0\r\n\r\n", ok("hello", 26, true)),
            (
                "5\t; a=\"q \\\" ;\"\r\nhello\r\n0\r\n\r\n",
                ok("hello", 28, true),
            ),
            ("5;\r\nhello\r\n0\r\n\r\n", Err(Malformed)),
            ("5;=1\r\nhello\r\n0\r\n\r\n", Err(Malformed)),
            ("5;a=\r\nhello\r\n0\r\n\r\n", Err(Malformed)),
            ("5;a \r\nhello\r\n0\r\n\r\n", Err(Malformed)),
            ("5;a=\"x\r\nhello\r\n0\r\n\r\n", Err(Malformed)),
            ("5;a=\"x\" y\r\nhello\r\n0\r\n\r\n", Err(Malformed)),
            ("5;a\nb\r\nhello\r\n0\r\n\r\n", Err(Malformed)),
            (&long_ext, Err(Malformed)),
            // Trailers: valid field lines, ignored, bounded.
            ("0\r\nX-Sum: 1\r\n\r\n", ok("", 15, true)),
            ("1\r\na\r\n0\r\nA: 1\r\nB:\r\n\r\nX", ok("a", 21, true)),
            (&ok_trailer, ok("", ok_trailer.len(), true)),
            (&big_trailer, Err(Malformed)),
            (&over_trailer, Err(Malformed)),
            ("0\r\nX-Sum 1\r\n\r\n", Err(Malformed)),
            ("0\r\nX-Sum : 1\r\n\r\n", Err(Malformed)),
            ("0\r\n: 1\r\n\r\n", Err(Malformed)),
            ("0\r\nA: 1\r\n folded\r\n\r\n", Err(Malformed)),
            ("0\r\nA: 1\0\r\n\r\n", Err(Malformed)),
            ("0\r\nA: 1\n\r\n", Err(Malformed)),
            ("0\r\n\rX", Err(Malformed)),
            // The chunk-size: 1 to 16 hex digits, nothing else.
            ("ffffffffffffffffff\r\n", Err(Malformed)),
            ("00000000000000000\r\n\r\n", Err(Malformed)),
            ("0x10\r\n0123456789abcdef\r\n0\r\n\r\n", Err(Malformed)),
            ("-1\r\n\r\n", Err(Malformed)),
            ("+1\r\na\r\n0\r\n\r\n", Err(Malformed)),
            (" 5\r\nhello\r\n0\r\n\r\n", Err(Malformed)),
            ("5 \r\nhello\r\n0\r\n\r\n", Err(Malformed)),
            ("\r\n", Err(Malformed)),
            ("zz\r\n", Err(Malformed)),
            ("5\r\r\nhello\r\n0\r\n\r\n", Err(Malformed)),
            // Bare LF anywhere is refused.
            ("5\nhello\r\n0\r\n\r\n", Err(Malformed)),
            ("5\r\nhello\n0\r\n\r\n", Err(Malformed)),
            ("0\r\n\n", Err(Malformed)),
            ("0\r\nA: 1\n\n", Err(Malformed)),
            // Exactly CRLF after the data.
            ("5\r\nhelloXX0\r\n\r\n", Err(Malformed)),
            ("5\r\nhello0\r\n\r\n", Err(Malformed)),
            ("5\r\nhello\r0\r\n\r\n", Err(Malformed)),
            ("5\r\nhello \r\n0\r\n\r\n", Err(Malformed)),
            // The limit, counted from the declared size before the data arrives.
            ("ffffffffffffffff\r\n", Err(TooLarge)),
            ("400\r\n", ok("", 5, false)),
            ("401\r\n", Err(TooLarge)),
            ("200\r\n", ok("", 5, false)),
        ];
        for (input, want) in cases {
            let input = input.as_bytes();
            for step in [1, 2, 3, 7, input.len().max(1)] {
                assert_eq!(
                    &feed(input, step, 1024),
                    want,
                    "{:?} in pieces of {step}",
                    String::from_utf8_lossy(&input[..input.len().min(60)])
                );
            }
        }
    }

    #[test]
    fn max_counts_every_chunk() {
        let body = b"200\r\n";
        let mut d = Decoder::new(1024);
        let mut out = Vec::new();
        let data = vec![b'x'; 0x200];
        for _ in 0..2 {
            assert_eq!(d.decode(body, &mut out), Ok(body.len()));
            assert_eq!(d.decode(&data, &mut out), Ok(data.len()));
            assert_eq!(d.decode(b"\r\n", &mut out), Ok(2));
        }
        assert_eq!(d.decoded(), 1024);
        assert_eq!(d.decode(b"1\r\n", &mut out), Err(DecodeError::TooLarge));
        assert_eq!(d.decode(b"0\r\n\r\n", &mut out), Err(DecodeError::TooLarge));
        let mut d = Decoder::new(u64::MAX);
        assert_eq!(d.decode(b"ffffffffffffffff\r\nab", &mut out), Ok(20));
    }

    #[test]
    fn done_consumes_nothing_more() {
        let mut d = Decoder::new(u64::MAX);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"1\r\nx\r\n0\r\n\r\nrest", &mut out), Ok(11));
        assert!(d.is_done());
        assert_eq!(d.decode(b"1\r\ny\r\n", &mut out), Ok(0));
        assert_eq!(out, b"x");
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut wire = Vec::new();
        encode_chunk(b"", &mut wire);
        assert!(wire.is_empty());
        encode_chunk(b"hello", &mut wire);
        assert_eq!(wire, b"5\r\nhello\r\n");
        let big: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        encode_chunk(&big, &mut wire);
        assert!(wire[10..].starts_with(b"11170\r\n"));
        encode_chunk(b"!", &mut wire);
        wire.extend_from_slice(LAST_CHUNK);
        let mut want = b"hello".to_vec();
        want.extend_from_slice(&big);
        want.push(b'!');
        for step in [1, 1000, wire.len()] {
            assert_eq!(
                feed(&wire, step, u64::MAX),
                Ok((want.clone(), wire.len(), true))
            );
        }
    }
}
