//! Content encoders for on-the-fly compression (gzip, br, zstd) and the rule for which
//! media types are worth encoding. Pure: bytes in, bytes out, no I/O.
//!
//! The output is cached (in memory and in the optional cache directory,
//! [`super::disk_cache`]), so a file is compressed once; but that once runs inside a
//! worker's event loop, so the [`Encoder`] takes its input in bounded slices across loop
//! iterations and the default levels are the best ratio that still compresses text at
//! several MB/s (see [`default_level`]).
//!
//! The streams are the standard ones a browser decodes: gzip is an RFC 1952 member
//! (flate2), br an RFC 7932 stream (brotli), zstd an RFC 8878 frame with the content size
//! and a checksum, and a window of at most 8 MiB (RFC 9659 §3).

use std::io::{self, Write};
use std::ops::RangeInclusive;

use flate2::write::GzEncoder;

use crate::http::coding::Coding;

/// The largest brotli window, log2: 4 MiB, the brotli tool's default. Smaller inputs get
/// the smallest window that holds them (less memory, the same output).
const BR_MAX_LGWIN: u32 = 22;
/// The smallest window brotli allows, log2.
const BR_MIN_LGWIN: u32 = 10;
/// The largest zstd window, log2: 8 MiB, the most a client must accept for the `zstd`
/// content coding (RFC 9659 §3; Chromium rejects larger). Only levels 20 and up would
/// pick a larger one.
const ZSTD_MAX_WINDOW_LOG: u32 = 23;
/// Brotli's output buffer, and the initial capacity floor of every output.
const OUT_BUFFER: usize = 16 * 1024;

/// An incremental encoder: the worker feeds it bounded slices across loop iterations so a
/// large file never stalls the loop.
///
/// `input_len` given to [`Encoder::new`] must be the exact number of bytes that will be
/// written (the file's size): zstd records it in the frame header and sizes its tables
/// by it, brotli its window. [`Encoder::finish`] fails if the input was longer or shorter,
/// for every coding, which also catches a file that changed size while it was read.
pub struct Encoder {
    state: State,
    input_len: u64,
    written: u64,
}

enum State {
    Gzip(GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    /// Setting up the encoder failed (zstd could not allocate or take a parameter);
    /// reported by the first `write` or `finish`.
    Failed(io::Error),
}

impl Encoder {
    /// An encoder for `coding` at `level` (clamped into [`levels`]) for an input of
    /// exactly `input_len` bytes. Never fails itself: an error setting up the encoder is
    /// returned by the first [`Encoder::write`] or by [`Encoder::finish`].
    pub fn new(coding: Coding, level: u32, input_len: usize) -> Encoder {
        let range = levels(coding);
        let level = level.clamp(*range.start(), *range.end());
        // Text shrinks 3-8x; a quarter of the input avoids most regrowth.
        let capacity = (input_len / 4)
            .max(OUT_BUFFER)
            .min(input_len.saturating_add(64));
        let out = Vec::with_capacity(capacity);
        let state = match coding {
            Coding::Gzip => State::Gzip(GzEncoder::new(out, flate2::Compression::new(level))),
            Coding::Br => State::Br(Box::new(br_writer(out, level, input_len))),
            Coding::Zstd => match zstd_writer(out, level, input_len) {
                Ok(writer) => State::Zstd(writer),
                Err(e) => State::Failed(e),
            },
        };
        Encoder {
            state,
            input_len: input_len as u64,
            written: 0,
        }
    }

    /// Compresses `input`, the next bytes of the content.
    pub fn write(&mut self, input: &[u8]) -> io::Result<()> {
        self.written += input.len() as u64;
        if self.written > self.input_len {
            return Err(length_mismatch());
        }
        match &mut self.state {
            State::Gzip(w) => w.write_all(input),
            State::Br(w) => w.write_all(input),
            State::Zstd(w) => w.write_all(input),
            State::Failed(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// Ends the stream and returns the whole encoded content.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        if self.written != self.input_len {
            return Err(length_mismatch());
        }
        match self.state {
            State::Gzip(w) => w.finish(),
            // `into_inner` ends the stream and would drop an error, but the only errors
            // are the output's, and a Vec cannot fail to take bytes.
            State::Br(w) => Ok(w.into_inner()),
            State::Zstd(w) => w.finish(),
            State::Failed(e) => Err(e),
        }
    }
}

fn length_mismatch() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "input length differs from the length the encoder was made for",
    )
}

/// Brotli with the smallest window that holds the input (at most [`BR_MAX_LGWIN`]).
fn br_writer(out: Vec<u8>, level: u32, input_len: usize) -> brotli::CompressorWriter<Vec<u8>> {
    let mut lgwin = BR_MIN_LGWIN;
    // A window of 2^lgwin holds 2^lgwin - 16 bytes.
    while lgwin < BR_MAX_LGWIN && (1usize << lgwin) - 16 < input_len {
        lgwin += 1;
    }
    let mut params = brotli::enc::BrotliEncoderInitParams();
    params.quality = level as i32;
    params.lgwin = lgwin as i32;
    params.size_hint = input_len;
    brotli::CompressorWriter::with_params(out, OUT_BUFFER, &params)
}

/// A zstd frame with the content size (pledged, which also sizes the tables to the
/// input) and a checksum.
fn zstd_writer(
    out: Vec<u8>,
    level: u32,
    input_len: usize,
) -> io::Result<zstd::stream::write::Encoder<'static, Vec<u8>>> {
    let mut w = zstd::stream::write::Encoder::new(out, level as i32)?;
    w.include_checksum(true)?;
    w.include_contentsize(true)?;
    w.set_pledged_src_size(Some(input_len as u64))?;
    if level > 19 {
        w.window_log(ZSTD_MAX_WINDOW_LOG)?;
    }
    Ok(w)
}

/// One-shot: `input` encoded whole.
pub fn compress(coding: Coding, level: u32, input: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = Encoder::new(coding, level, input.len());
    encoder.write(input)?;
    encoder.finish()
}

/// Valid levels per coding: gzip 1..=9, br 0..=11, zstd 1..=22.
pub fn levels(coding: Coding) -> RangeInclusive<u32> {
    match coding {
        Coding::Gzip => 1..=9,
        Coding::Br => 0..=11,
        Coding::Zstd => 1..=22,
    }
}

/// The default level per coding: br 0, zstd 0, gzip 0 (placeholder until measured).
pub fn default_level(coding: Coding) -> u32 {
    match coding {
        Coding::Br => 5,
        Coding::Zstd => 12,
        Coding::Gzip => 6,
    }
}

/// Whether a Content-Type (as srvd sends it, e.g. "text/css; charset=utf-8") is worth
/// encoding. Yes: `text/*`; any `+json`, `+xml` or `+yaml` type (JSON-LD, web manifests,
/// SVG, Atom, RSS, XHTML); JavaScript, JSON, XML, YAML, TOML, wasm, uncompressed fonts
/// (TrueType, OpenType, EOT) and a few other text formats under `application/`. No:
/// everything else, in particular images other than SVG, audio, video, archives, WOFF and
/// WOFF2 (compressed already) and `application/octet-stream`.
///
/// `extra` are types added by config: the part before `;` of each is compared with the
/// part before `;` of `content_type`, ASCII case-insensitively, and a match is encoded
/// whatever the built-in list says.
pub fn compressible(content_type: &str, extra: &[String]) -> bool {
    let essence = essence(content_type);
    if extra
        .iter()
        .any(|t| essence.eq_ignore_ascii_case(self::essence(t)))
    {
        return true;
    }
    let Some((top, sub)) = essence.split_once('/') else {
        return false;
    };
    if top.eq_ignore_ascii_case("text") {
        return !sub.is_empty();
    }
    if let Some((_, suffix)) = sub.rsplit_once('+') {
        if ["json", "xml", "yaml"]
            .iter()
            .any(|s| suffix.eq_ignore_ascii_case(s))
        {
            return true;
        }
    }
    let list: &[&str] = if top.eq_ignore_ascii_case("application") {
        &[
            "javascript",
            "x-javascript",
            "ecmascript",
            "json",
            "x-ndjson",
            "xml",
            "yaml",
            "x-yaml",
            "toml",
            "wasm",
            "vnd.ms-fontobject",
            "x-font-ttf",
            "x-font-otf",
            "x-font-truetype",
            "x-font-opentype",
            "rtf",
            "postscript",
            "x-sh",
            "sql",
            "graphql",
            "vnd.apple.mpegurl",
            "x-mpegurl",
        ]
    } else if top.eq_ignore_ascii_case("font") {
        &["ttf", "otf", "sfnt", "collection"]
    } else {
        &[]
    };
    list.iter().any(|s| sub.eq_ignore_ascii_case(s))
}

/// The media type without its parameters: the part before `;`, trimmed.
fn essence(content_type: &str) -> &str {
    let end = content_type.find(';').unwrap_or(content_type.len());
    content_type[..end].trim_matches([' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .expect("valid gzip");
            }
            Coding::Br => {
                brotli::Decompressor::new(bytes, 4096)
                    .read_to_end(&mut out)
                    .expect("valid brotli");
            }
            Coding::Zstd => out = zstd::decode_all(bytes).expect("valid zstd"),
        }
        out
    }

    /// Text-like content that compresses, but not trivially: words drawn by a small LCG.
    fn text(len: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "function",
            "return",
            "const",
            "<div class=\"item\">",
            "</div>\n",
            "{\"id\":",
            "\"name\":",
            "margin: 0 auto;",
            "var",
            "=",
            "(",
            ")",
            ";\n",
            "srvd",
            "compress",
            "0",
            "1",
            "42",
            "null",
            "true",
            "width",
            "height",
            "\t",
        ];
        let mut out = Vec::with_capacity(len + 32);
        let mut x: u32 = 12345;
        while out.len() < len {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            out.extend_from_slice(WORDS[(x >> 16) as usize % WORDS.len()].as_bytes());
            out.push(b' ');
        }
        out.truncate(len);
        out
    }

    const SIZES: [usize; 4] = [0, 1, 64 * 1024, 1024 * 1024];

    #[test]
    fn one_shot_round_trips_every_coding_and_size() {
        for coding in Coding::ALL {
            for len in SIZES {
                let input = text(len);
                let encoded = compress(coding, default_level(coding), &input).unwrap();
                assert!(!encoded.is_empty(), "{coding:?} {len}");
                assert_eq!(decode(coding, &encoded), input, "{coding:?} {len}");
                if len >= 64 * 1024 {
                    assert!(
                        encoded.len() < len / 2,
                        "{coding:?} {len}: {}",
                        encoded.len()
                    );
                }
            }
        }
    }

    #[test]
    fn output_has_each_codings_own_format() {
        let input = text(1000);
        let gz = compress(Coding::Gzip, 6, &input).unwrap();
        assert_eq!(gz[..3], [0x1f, 0x8b, 8], "gzip magic and deflate method");
        let zst = compress(Coding::Zstd, 3, &input).unwrap();
        assert_eq!(zst[..4], [0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&zst).ok(),
            Some(Some(1000)),
            "content size in the frame header"
        );
        let br = compress(Coding::Br, 5, &input).unwrap();
        assert_ne!(br[..], gz[..]);
        assert_eq!(decode(Coding::Br, &br), input);
    }

    #[test]
    fn slices_of_16_kib_decode_like_one_shot() {
        for coding in Coding::ALL {
            for len in SIZES {
                let input = text(len);
                let mut encoder = Encoder::new(coding, default_level(coding), len);
                for slice in input.chunks(16 * 1024) {
                    encoder.write(slice).unwrap();
                }
                let sliced = encoder.finish().unwrap();
                let whole = compress(coding, default_level(coding), &input).unwrap();
                assert_eq!(decode(coding, &sliced), input, "{coding:?} {len}");
                assert_eq!(decode(coding, &sliced), decode(coding, &whole));
            }
        }
    }

    #[test]
    fn every_level_round_trips() {
        let input = text(20_000);
        for coding in Coding::ALL {
            for level in levels(coding) {
                let encoded = compress(coding, level, &input).unwrap();
                assert_eq!(decode(coding, &encoded), input, "{coding:?} {level}");
            }
        }
    }

    #[test]
    fn levels_out_of_range_are_clamped() {
        let input = text(5000);
        for coding in Coding::ALL {
            let top = *levels(coding).end();
            let over = compress(coding, top + 100, &input).unwrap();
            assert_eq!(over, compress(coding, top, &input).unwrap(), "{coding:?}");
        }
        let under = compress(Coding::Gzip, 0, &input).unwrap();
        assert_eq!(under, compress(Coding::Gzip, 1, &input).unwrap());
    }

    #[test]
    fn higher_levels_compress_smaller() {
        let input = text(256 * 1024);
        for coding in Coding::ALL {
            let low = compress(coding, *levels(coding).start(), &input).unwrap();
            let default = compress(coding, default_level(coding), &input).unwrap();
            assert!(default.len() < low.len(), "{coding:?}");
        }
    }

    #[test]
    fn zstd_window_stays_within_8_mib_at_ultra_levels() {
        // Long runs keep level 22 quick; with the content size pledged, zstd would pick a
        // 16 MiB window for 9 MiB without the cap.
        let mut input = vec![0u8; 9 << 20];
        input[..1000].copy_from_slice(&text(1000));
        let encoded = compress(Coding::Zstd, 22, &input).unwrap();
        let mut decoder = zstd::stream::read::Decoder::new(&encoded[..]).unwrap();
        decoder.window_log_max(ZSTD_MAX_WINDOW_LOG).unwrap();
        let mut out = Vec::new();
        decoder.read_to_end(&mut out).expect("window <= 8 MiB");
        assert_eq!(out, input);
    }

    #[test]
    fn input_of_another_length_fails() {
        for coding in Coding::ALL {
            let mut short = Encoder::new(coding, 1, 10);
            short.write(b"12345").unwrap();
            let err = short.finish().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{coding:?}");

            let mut long = Encoder::new(coding, 1, 4);
            assert!(long.write(b"12345").is_err(), "{coding:?}");
        }
    }

    #[test]
    fn levels_and_defaults() {
        assert_eq!(levels(Coding::Gzip), 1..=9);
        assert_eq!(levels(Coding::Br), 0..=11);
        assert_eq!(levels(Coding::Zstd), 1..=22);
        for coding in Coding::ALL {
            assert!(
                levels(coding).contains(&default_level(coding)),
                "{coding:?}"
            );
        }
    }

    #[test]
    fn compressible_table() {
        let none: &[String] = &[];
        let table: &[(&str, bool)] = &[
            ("text/html; charset=utf-8", true),
            ("text/css; charset=utf-8", true),
            ("text/javascript; charset=utf-8", true),
            ("text/plain", true),
            ("text/markdown; charset=utf-8", true),
            ("text/csv; charset=utf-8", true),
            ("TEXT/HTML", true),
            (" text/html ;charset=utf-8", true),
            ("application/javascript", true),
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("application/ld+json; charset=utf-8", true),
            ("application/manifest+json; charset=utf-8", true),
            ("application/vnd.api+json", true),
            ("application/xml; charset=utf-8", true),
            ("application/atom+xml; charset=utf-8", true),
            ("application/rss+xml; charset=utf-8", true),
            ("application/xhtml+xml; charset=utf-8", true),
            ("application/yaml", true),
            ("application/toml; charset=utf-8", true),
            ("image/svg+xml; charset=utf-8", true),
            ("image/svg+xml", true),
            ("application/wasm", true),
            ("font/ttf", true),
            ("font/otf", true),
            ("application/vnd.ms-fontobject", true),
            ("font/woff", false),
            ("font/woff2", false),
            ("image/png", false),
            ("image/jpeg", false),
            ("image/webp", false),
            ("image/avif", false),
            ("image/gif", false),
            ("image/x-icon", false),
            ("video/mp4", false),
            ("audio/mpeg", false),
            ("application/zip", false),
            ("application/gzip", false),
            ("application/x-tar", false),
            ("application/pdf", false),
            ("application/epub+zip", false),
            ("application/octet-stream", false),
            ("application/jsonx", false),
            ("text", false),
            ("text/", false),
            ("", false),
            ("json", false),
        ];
        for &(content_type, expected) in table {
            assert_eq!(
                compressible(content_type, none),
                expected,
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn compressible_takes_types_from_config() {
        let extra = vec![
            "application/x-data".to_owned(),
            "Image/X-Icon; charset=binary".to_owned(),
        ];
        assert!(compressible("application/x-data", &extra));
        assert!(compressible("application/X-DATA; charset=utf-8", &extra));
        assert!(compressible("image/x-icon", &extra));
        assert!(!compressible("application/x-data", &[]));
        assert!(!compressible("application/x-data2", &extra));
        assert!(!compressible("application/x-dat", &extra));
        assert!(!compressible("image/png", &extra));
    }
}
