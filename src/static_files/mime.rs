//! Content-Type selection: the extension -> media type table (built-in
//! entries merged with the config's `[mime_types]`), the hot-path lookup
//! used for every response, and the syntax checks for media types and
//! extensions that the config loader applies before inserting entries.

use std::collections::HashMap;

/// Longest extension the table accepts from the config. It also sizes the
/// stack buffer `lookup` lowercases into, so the common case never
/// allocates.
pub const MAX_EXTENSION_LEN: usize = 32;

/// Type sent when nothing matches and the config does not override it:
/// an opaque byte stream makes browsers download instead of guessing.
pub const DEFAULT_TYPE: &str = "application/octet-stream";

/// The built-in table. Textual types carry `charset=utf-8` so browsers do
/// not have to sniff the encoding; JavaScript uses `text/javascript` as
/// RFC 9239 recommends.
const BUILTIN: &[(&str, &str)] = &[
    // Documents and code.
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("xhtml", "application/xhtml+xml; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json; charset=utf-8"),
    ("jsonld", "application/ld+json; charset=utf-8"),
    ("map", "application/json; charset=utf-8"),
    ("xml", "application/xml; charset=utf-8"),
    ("txt", "text/plain; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("yaml", "application/yaml; charset=utf-8"),
    ("yml", "application/yaml; charset=utf-8"),
    ("toml", "application/toml; charset=utf-8"),
    ("ics", "text/calendar; charset=utf-8"),
    ("rss", "application/rss+xml; charset=utf-8"),
    ("atom", "application/atom+xml; charset=utf-8"),
    ("webmanifest", "application/manifest+json; charset=utf-8"),
    ("manifest", "text/cache-manifest; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("pdf", "application/pdf"),
    // Images.
    ("svg", "image/svg+xml; charset=utf-8"),
    ("png", "image/png"),
    ("apng", "image/apng"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("ico", "image/x-icon"),
    ("bmp", "image/bmp"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    // Fonts.
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("eot", "application/vnd.ms-fontobject"),
    // Archives.
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tar", "application/x-tar"),
    // Audio and video.
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    ("oga", "audio/ogg"),
    ("opus", "audio/opus"),
    ("flac", "audio/flac"),
    ("wav", "audio/wav"),
    ("m4a", "audio/mp4"),
    ("mp4", "video/mp4"),
    ("m4v", "video/mp4"),
    ("ogv", "video/ogg"),
    ("webm", "video/webm"),
    ("mov", "video/quicktime"),
    ("avi", "video/x-msvideo"),
    ("mpeg", "video/mpeg"),
    ("mpg", "video/mpeg"),
];

/// Maps lowercase file extensions to Content-Type values, with a fallback
/// for files whose extension is unknown or absent.
#[derive(Clone, Debug)]
pub struct MimeTable {
    /// Keys are lowercase so lookups only need to fold the request side.
    by_ext: HashMap<Box<str>, Box<str>>,
    default: Box<str>,
}

impl MimeTable {
    /// The built-in table with `application/octet-stream` as the fallback.
    pub fn builtin() -> MimeTable {
        let by_ext = BUILTIN
            .iter()
            .map(|&(ext, value)| (Box::from(ext), Box::from(value)))
            .collect();
        MimeTable {
            by_ext,
            default: Box::from(DEFAULT_TYPE),
        }
    }

    /// Adds or replaces the entry for `ext` (given without the dot; case is
    /// ignored). The caller is expected to have checked both strings with
    /// [`is_valid_extension`] and [`check_media_type`].
    pub fn insert(&mut self, ext: &str, value: &str) {
        self.by_ext
            .insert(ext.to_ascii_lowercase().into_boxed_str(), Box::from(value));
    }

    /// Replaces the type used when no extension matches.
    pub fn set_default(&mut self, value: &str) {
        self.default = Box::from(value);
    }

    /// The entry for one extension (without the dot, any case), if present.
    pub fn get(&self, ext: &str) -> Option<&str> {
        if ext.is_empty() {
            return None;
        }
        if !ext.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.by_ext.get(ext).map(|v| &**v);
        }
        if ext.len() <= MAX_EXTENSION_LEN {
            // Fold into a stack buffer: request paths with upper-case
            // extensions ("PHOTO.JPG") are common enough to avoid a heap
            // allocation per response.
            let mut buf = [0u8; MAX_EXTENSION_LEN];
            let folded = &mut buf[..ext.len()];
            folded.copy_from_slice(ext.as_bytes());
            folded.make_ascii_lowercase();
            // ASCII case folding keeps UTF-8 valid, so this cannot fail;
            // treat a failure as "no entry" rather than panicking anyway.
            let key = std::str::from_utf8(folded).ok()?;
            return self.by_ext.get(key).map(|v| &**v);
        }
        self.by_ext
            .get(ext.to_ascii_lowercase().as_str())
            .map(|v| &**v)
    }

    /// The Content-Type for a request or file path. The extension is the
    /// text after the last '.' of the last '/'-separated segment; a segment
    /// that starts with its only dot (".bashrc") or has none ("Makefile")
    /// has no extension and gets the default type.
    pub fn lookup(&self, path: &str) -> &str {
        // Byte scans: '/' and '.' are ASCII, so the indices are char boundaries.
        let bytes = path.as_bytes();
        let name = match bytes.iter().rposition(|&b| b == b'/') {
            Some(slash) => &path[slash + 1..],
            None => path,
        };
        match name.as_bytes().iter().rposition(|&b| b == b'.') {
            Some(dot) if dot > 0 => self.get(&name[dot + 1..]).unwrap_or(&self.default),
            _ => &self.default,
        }
    }
}

/// Whether `ext` may appear as a `[mime_types]` key: 1 to
/// [`MAX_EXTENSION_LEN`] characters of `[A-Za-z0-9_+-]`. The dot is
/// excluded because lookups only ever see the text after the last dot.
pub fn is_valid_extension(ext: &str) -> bool {
    !ext.is_empty()
        && ext.len() <= MAX_EXTENSION_LEN
        && ext
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
}

/// RFC 9110 `tchar`: the characters allowed in a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Length of the token at the start of `bytes`.
fn token_len(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| is_tchar(b)).count()
}

/// Checks that `value` is a media type as RFC 9110 section 8.3.1 defines it
/// (`type/subtype` followed by optional `; name=value` parameters, values
/// being tokens or quoted strings), restricted to printable ASCII because
/// it is copied verbatim into a response header. Returns the reason on
/// failure.
pub fn check_media_type(value: &str) -> Result<(), &'static str> {
    let bytes = value.as_bytes();
    if bytes.iter().any(|b| !b.is_ascii()) {
        return Err("must be ASCII");
    }
    // This also rules out tabs, which RFC 9110 would allow as whitespace:
    // one header-safe rule is simpler than tracking where tabs may go.
    if bytes.iter().any(|b| b.is_ascii_control()) {
        return Err("must not contain control characters");
    }
    let mut i = token_len(bytes);
    if i == 0 || bytes.get(i) != Some(&b'/') {
        return Err("expected type/subtype");
    }
    i += 1;
    let subtype = token_len(&bytes[i..]);
    if subtype == 0 {
        return Err("expected type/subtype");
    }
    i += subtype;
    loop {
        let ows = bytes[i..].iter().take_while(|&&b| b == b' ').count();
        i += ows;
        if i == bytes.len() {
            return if ows > 0 {
                Err("must not end with whitespace")
            } else {
                Ok(())
            };
        }
        if bytes[i] != b';' {
            return Err("expected ';' before a parameter");
        }
        i += 1;
        i += bytes[i..].iter().take_while(|&&b| b == b' ').count();
        // RFC 9110 allows empty parameters ("text/plain;;a=b" or a trailing
        // ';'), so only parse one when something other than ';' follows.
        if i == bytes.len() || bytes[i] == b';' {
            continue;
        }
        let name = token_len(&bytes[i..]);
        if name == 0 {
            return Err("invalid parameter name");
        }
        i += name;
        if bytes.get(i) != Some(&b'=') {
            return Err("expected '=' after a parameter name");
        }
        i += 1;
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err("unterminated quoted string"),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        // quoted-pair: any printable character (controls
                        // and non-ASCII were rejected above).
                        if i + 1 >= bytes.len() {
                            return Err("unterminated quoted string");
                        }
                        i += 2;
                    }
                    Some(_) => i += 1,
                }
            }
        } else {
            let value = token_len(&bytes[i..]);
            if value == 0 {
                return Err("invalid parameter value");
            }
            i += value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_covers_required_extensions() {
        let table = MimeTable::builtin();
        for ext in [
            "html",
            "htm",
            "css",
            "js",
            "mjs",
            "json",
            "map",
            "xml",
            "txt",
            "csv",
            "md",
            "svg",
            "png",
            "jpg",
            "jpeg",
            "gif",
            "webp",
            "avif",
            "ico",
            "bmp",
            "tif",
            "tiff",
            "wasm",
            "woff",
            "woff2",
            "ttf",
            "otf",
            "eot",
            "pdf",
            "zip",
            "gz",
            "tar",
            "mp3",
            "ogg",
            "wav",
            "m4a",
            "mp4",
            "webm",
            "mov",
            "avi",
            "mpeg",
            "webmanifest",
            "manifest",
            "rss",
            "atom",
            "yaml",
            "yml",
            "toml",
            "ics",
        ] {
            assert!(table.get(ext).is_some(), "missing builtin {ext}");
        }
    }

    #[test]
    fn builtin_entries_are_valid_and_text_has_charset() {
        for &(ext, value) in BUILTIN {
            assert!(is_valid_extension(ext), "{ext}");
            assert_eq!(check_media_type(value), Ok(()), "{ext}: {value}");
            let essence = value.split(';').next().unwrap_or(value);
            let textual = essence.starts_with("text/")
                || essence.ends_with("+json")
                || essence.ends_with("+xml")
                || [
                    "application/json",
                    "application/xml",
                    "application/yaml",
                    "application/toml",
                ]
                .contains(&essence);
            assert_eq!(
                textual,
                value.ends_with("; charset=utf-8"),
                "{ext}: {value}"
            );
        }
        assert_eq!(check_media_type(DEFAULT_TYPE), Ok(()));
    }

    #[test]
    fn lookup_rules() {
        let t = MimeTable::builtin();
        assert_eq!(t.lookup("/index.html"), "text/html; charset=utf-8");
        assert_eq!(t.lookup("/a/b/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(t.lookup("photo.JPG"), "image/jpeg");
        assert_eq!(t.lookup("/x/archive.tar.gz"), "application/gzip");
        assert_eq!(t.lookup("/home/.bashrc"), DEFAULT_TYPE);
        assert_eq!(t.lookup("Makefile"), DEFAULT_TYPE);
        assert_eq!(t.lookup("/dir.html/Makefile"), DEFAULT_TYPE);
        assert_eq!(t.lookup("/trailing."), DEFAULT_TYPE);
        assert_eq!(t.lookup("/dir/"), DEFAULT_TYPE);
        assert_eq!(t.lookup(""), DEFAULT_TYPE);
        assert_eq!(t.lookup("."), DEFAULT_TYPE);
        assert_eq!(t.lookup("/x.unknownext"), DEFAULT_TYPE);
        assert_eq!(t.lookup("/x.\u{e9}\u{c9}"), DEFAULT_TYPE);
        let long = format!("/x.{}", "A".repeat(MAX_EXTENSION_LEN + 5));
        assert_eq!(t.lookup(&long), DEFAULT_TYPE);
    }

    #[test]
    fn insert_and_default_are_case_insensitive() {
        let mut t = MimeTable::builtin();
        t.insert("MD", "text/x-md");
        t.insert("Data", "application/x-data");
        t.set_default("text/plain");
        assert_eq!(t.lookup("README.md"), "text/x-md");
        assert_eq!(t.lookup("README.Md"), "text/x-md");
        assert_eq!(t.lookup("f.DATA"), "application/x-data");
        assert_eq!(t.lookup("noext"), "text/plain");
        let long = "Q".repeat(MAX_EXTENSION_LEN + 1);
        t.insert(&long, "application/x-long");
        assert_eq!(t.lookup(&format!("f.{long}")), "application/x-long");
    }

    #[test]
    fn extension_syntax() {
        for ok in ["md", "tar-gz", "c++", "x_1", &"a".repeat(MAX_EXTENSION_LEN)] {
            assert!(is_valid_extension(ok), "{ok}");
        }
        for bad in [
            "",
            "tar.gz",
            ".md",
            "a b",
            "é",
            &"a".repeat(MAX_EXTENSION_LEN + 1),
        ] {
            assert!(!is_valid_extension(bad), "{bad}");
        }
    }

    #[test]
    fn media_type_syntax() {
        for ok in [
            "text/plain",
            "text/markdown; charset=utf-8",
            "text/plain;charset=utf-8",
            "multipart/mixed; boundary=\"a b;c\\\"d\"",
            "application/vnd.api+json; a=1 ; b=2",
            "text/plain;",
            "text/plain;;a=b",
        ] {
            assert_eq!(check_media_type(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "text",
            "text/",
            "/plain",
            " text/plain",
            "text/plain ",
            "text/pl ain",
            "text/plain; charset",
            "text/plain; =utf-8",
            "text/plain; charset=",
            "text/plain; a=\"open",
            "text/plain; a=\"x\\",
            "text/plain\r\nX-Evil: 1",
            "text/plain\t",
            "text/pl\u{e9}in",
            "text/plain, text/html",
            "text(x)/plain",
        ] {
            assert!(check_media_type(bad).is_err(), "{bad:?}");
        }
    }
}
