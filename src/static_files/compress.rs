//! Content encoders for on-the-fly compression (gzip, br, zstd) and the rule for which
//! media types are worth encoding. Pure: bytes in, bytes out, no I/O.
//!
//! The output is cached (in memory and in the optional cache directory,
//! [`super::disk_cache`]), so a file is compressed once; but that once runs inside a
//! worker's event loop, so the [`Encoder`] takes its input in bounded slices across loop
//! iterations and the default levels are the best ratio that still compresses text at
//! 10 MB/s or more (see [`default_level`]).
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

/// The default level per coding: **br 8, zstd 12, gzip 9**, chosen by measurement. The
/// output is cached, so the ratio is worth paying for, but a cold miss compresses inside a
/// worker's loop: each default is the highest level that still encodes typical text at
/// 10 MB/s or more (a 64 KiB asset in about 5 ms of slices), at 1 MiB and at 64 KiB.
///
/// - br 9 falls off a cliff on small files (1.7-3.1 MB/s at 64 KiB), 10 and 11 run at
///   0.4-2.6 MB/s at any size for 8-14 % smaller output; br 8 is 1.5-3.7 % smaller than 6.
/// - zstd 13-15 (binary-tree search) run at 4-13 MB/s at 1 MiB for 1-2 % smaller output,
///   16-22 at 2-7.5 MB/s for 5-8.5 %. zstd 12 gives the output of 11 at 1 MiB.
/// - gzip 9 is 1-4 % smaller than 6 (7 % on a 64 KiB page) at 27-55 MB/s.
///
/// Measured with a throwaway program on the 2-core development VM: release build, one
/// thread, these encoders as configured here (flate2 on zlib-rs), best of at least 5 runs
/// over two sessions; ratio = input / output. 1 MiB inputs made of real assets (the
/// Rust documentation): HTML = mdbook pages, JS = ace, highlight.js and rustdoc's scripts,
/// JSON = mdbook search indexes. Defaults in bold.
///
/// | coding | level | HTML ratio | HTML MB/s | JS ratio | JS MB/s | JSON ratio | JSON MB/s |
/// |--------|------:|-----------:|----------:|---------:|--------:|-----------:|----------:|
/// | br | 0 | 7.13 | 284 | 3.46 | 217 | 2.99 | 180 |
/// | br | 1 | 7.82 | 262 | 3.66 | 151 | 3.30 | 123 |
/// | br | 2 | 8.92 | 176 | 4.00 | 92.0 | 3.52 | 79.3 |
/// | br | 3 | 9.22 | 159 | 4.06 | 85.3 | 3.56 | 71.8 |
/// | br | 4 | 9.73 | 62.8 | 4.10 | 49.5 | 3.82 | 40.5 |
/// | br | 5 | 10.32 | 62.8 | 4.51 | 32.2 | 3.93 | 28.0 |
/// | br | 6 | 10.52 | 39.6 | 4.57 | 24.4 | 4.03 | 20.7 |
/// | br | 7 | 10.68 | 38.5 | 4.62 | 16.7 | 4.12 | 14.3 |
/// | br | **8** | 10.77 | 24.9 | 4.64 | 13.0 | 4.18 | 10.6 |
/// | br | 9 | 10.82 | 13.4 | 4.66 | 7.4 | 4.22 | 6.7 |
/// | br | 10 | 11.72 | 2.6 | 5.00 | 1.2 | 4.51 | 0.8 |
/// | br | 11 | 11.96 | 1.2 | 5.09 | 0.6 | 4.61 | 0.5 |
/// | zstd | 1 | 8.66 | 575 | 3.68 | 304 | 3.28 | 260 |
/// | zstd | 2 | 8.88 | 527 | 3.84 | 255 | 3.45 | 218 |
/// | zstd | 3 | 9.37 | 439 | 4.04 | 202 | 3.66 | 172 |
/// | zstd | 4 | 9.39 | 413 | 4.05 | 194 | 3.68 | 165 |
/// | zstd | 5 | 9.88 | 205 | 4.25 | 97.0 | 3.84 | 69.8 |
/// | zstd | 6 | 10.19 | 159 | 4.39 | 81.4 | 3.97 | 61.8 |
/// | zstd | 7 | 10.30 | 122 | 4.43 | 63.7 | 4.03 | 50.5 |
/// | zstd | 8 | 10.38 | 103 | 4.47 | 52.8 | 4.06 | 40.5 |
/// | zstd | 9 | 10.38 | 87.8 | 4.47 | 44.8 | 4.07 | 35.9 |
/// | zstd | 10 | 10.44 | 73.9 | 4.49 | 40.1 | 4.11 | 30.2 |
/// | zstd | 11 | 10.48 | 55.6 | 4.51 | 28.2 | 4.13 | 19.8 |
/// | zstd | **12** | 10.48 | 44.1 | 4.51 | 30.1 | 4.13 | 20.8 |
/// | zstd | 13 | 10.57 | 7.3 | 4.54 | 12.7 | 4.18 | 6.2 |
/// | zstd | 14 | 10.61 | 6.2 | 4.55 | 11.8 | 4.20 | 4.6 |
/// | zstd | 15 | 10.62 | 4.5 | 4.55 | 9.9 | 4.20 | 3.7 |
/// | zstd | 16 | 10.98 | 6.8 | 4.72 | 4.9 | 4.42 | 2.9 |
/// | zstd | 17 | 11.07 | 7.5 | 4.79 | 4.7 | 4.44 | 2.5 |
/// | zstd | 18 | 11.14 | 5.0 | 4.83 | 2.4 | 4.47 | 2.0 |
/// | zstd | 19 | 11.17 | 4.3 | 4.85 | 2.6 | 4.48 | 2.0 |
/// | zstd | 20 | 11.17 | 5.0 | 4.85 | 2.4 | 4.48 | 1.9 |
/// | zstd | 21 | 11.17 | 4.4 | 4.85 | 2.5 | 4.48 | 1.8 |
/// | zstd | 22 | 11.18 | 2.0 | 4.85 | 2.2 | 4.48 | 1.9 |
/// | gzip | 1 | 3.35 | 259 | 2.86 | 218 | 2.32 | 193 |
/// | gzip | 2 | 4.35 | 174 | 3.57 | 147 | 3.13 | 136 |
/// | gzip | 3 | 4.66 | 141 | 3.87 | 116 | 3.42 | 93.5 |
/// | gzip | 4 | 4.80 | 120 | 3.98 | 91.7 | 3.53 | 68.2 |
/// | gzip | 5 | 4.96 | 112 | 4.07 | 84.8 | 3.59 | 69.1 |
/// | gzip | 6 | 4.96 | 100 | 4.09 | 67.9 | 3.60 | 55.9 |
/// | gzip | 7 | 5.12 | 70.3 | 4.14 | 44.2 | 3.63 | 36.1 |
/// | gzip | 8 | 5.13 | 55.4 | 4.15 | 33.8 | 3.64 | 32.7 |
/// | gzip | **9** | 5.14 | 54.9 | 4.16 | 41.0 | 3.64 | 26.7 |
pub fn default_level(coding: Coding) -> u32 {
    match coding {
        Coding::Br => 8,
        Coding::Zstd => 12,
        Coding::Gzip => 9,
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
