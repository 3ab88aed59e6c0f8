//! Content codings srvd can send (RFC 9110 §8.4.1): the names on the wire, the sidecar
//! file suffixes and the ETag suffixes of their variants, in one table.

/// A content coding other than identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    /// Every coding, in srvd's default preference order.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The token in Accept-Encoding and Content-Encoding.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of a precompressed sidecar file (`style.css.br`).
    pub fn file_suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    /// Appended inside the quotes of the identity ETag for this coding's variant.
    pub fn etag_suffix(self) -> &'static str {
        match self {
            Coding::Br => "-br",
            Coding::Zstd => "-zst",
            Coding::Gzip => "-gz",
        }
    }

    /// The coding a config or header token names (case-insensitive; `x-gzip` is gzip,
    /// RFC 9110 §8.4.1.3).
    pub fn from_token(token: &[u8]) -> Option<Coding> {
        if token.eq_ignore_ascii_case(b"br") {
            Some(Coding::Br)
        } else if token.eq_ignore_ascii_case(b"zstd") {
            Some(Coding::Zstd)
        } else if token.eq_ignore_ascii_case(b"gzip") || token.eq_ignore_ascii_case(b"x-gzip") {
            Some(Coding::Gzip)
        } else {
            None
        }
    }

    /// Index into per-coding arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}
