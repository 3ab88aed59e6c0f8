//! Directory listings (the `listing` site key; off by default): read a directory that has
//! no index file, order it from the query string, and render it as HTML or JSON.
//!
//! Reading never leaves the directory: entries are stat'ed with `fstatat` relative to its
//! descriptor without following symlinks, and a symlink is listed only when the caller's
//! `follow` (which resolves it beneath the site root) says where it leads. Hidden names,
//! names that are not UTF-8, sockets, FIFOs and devices are never listed. The work per
//! request is bounded: at most `max` entries are kept and at most [`scan_limit`]`(max)`
//! directory entries are looked at.
//!
//! Rendering writes into one `Vec` with no allocation per entry. In HTML every name is
//! escaped for text and percent-encoded for its link, so no name can inject markup, become
//! a scheme (`javascript:`) or a fragment/query, or point anywhere but the entry itself.

use std::cmp::Ordering;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

/// One listed entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    /// Bytes for a file; 0 for a directory (a directory's `st_size` depends on the file
    /// system and says nothing useful).
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
}

/// How to order a listing (from the query string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Name,
    Size,
    Mtime,
}

/// A sort key and direction; the default is by name, ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    pub key: SortKey,
    pub descending: bool,
}

/// Parses `sort=name|size|mtime` and `order=asc|desc` out of a raw query string (the part
/// after '?', possibly absent); unknown keys/values are ignored (defaults: name,
/// ascending). Matching is exact (no percent-decoding, case-sensitive); the last valid
/// value of a key wins.
pub fn parse_order(query: Option<&str>) -> Order {
    let mut order = Order::default();
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (key, value) {
            ("sort", "name") => order.key = SortKey::Name,
            ("sort", "size") => order.key = SortKey::Size,
            ("sort", "mtime") => order.key = SortKey::Mtime,
            ("order", "asc") => order.descending = false,
            ("order", "desc") => order.descending = true,
            _ => {}
        }
    }
    order
}

/// How many directory entries [`read_dir`] looks at, hidden and skipped ones included, before
/// it stops and reports the listing truncated: a directory of a million dotfiles costs no
/// more than this.
pub fn scan_limit(max: usize) -> usize {
    max.saturating_mul(4).saturating_add(64)
}

/// Reads the entries of an open directory `dir` (an `std::fs::File` opened on a directory
/// with O_RDONLY|O_DIRECTORY). Skips "." and "..", names starting with '.', and names that
/// are not valid UTF-8. Uses `fstatat` relative to the directory fd with
/// AT_SYMLINK_NOFOLLOW. For a symlink entry, calls `follow(name)`, which returns
/// `Some((is_dir, size, mtime))` only when the link resolves beneath the site root (and to
/// a file or directory), and skips the entry when it returns None. Sockets, FIFOs and
/// devices are skipped, and so is an entry that vanished before it could be stat'ed. At
/// most `max` entries are returned; when more exist (or [`scan_limit`] entries were looked
/// at), what was read is returned with `truncated = true`.
///
/// The directory is read through a new open file description (`openat(dir, ".")`), so the
/// caller's descriptor and its offset are left alone. Errors: the reopen, or readdir itself.
pub fn read_dir(
    dir: &File,
    max: usize,
    mut follow: impl FnMut(&str) -> Option<(bool, u64, i64)>,
) -> io::Result<(Vec<Entry>, bool)> {
    let mut stream = Dir::openat(
        Some(dir.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let fd = stream.as_raw_fd();
    let limit = scan_limit(max);
    let mut entries = Vec::new();
    let mut scanned = 0usize;
    for dirent in stream.iter() {
        let dirent = dirent?;
        scanned += 1;
        if scanned > limit {
            return Ok((entries, true));
        }
        let Some(entry) = examine(fd, dirent.file_name(), &mut follow) else {
            continue;
        };
        if entries.len() >= max {
            return Ok((entries, true));
        }
        entries.push(entry);
    }
    Ok((entries, false))
}

/// The listed form of one directory entry, or None when it is not listed.
fn examine(
    fd: RawFd,
    raw: &std::ffi::CStr,
    follow: &mut impl FnMut(&str) -> Option<(bool, u64, i64)>,
) -> Option<Entry> {
    // Hidden names, "." and ".." all start with '.'.
    if raw.to_bytes().first().is_none_or(|&b| b == b'.') {
        return None;
    }
    let name = std::str::from_utf8(raw.to_bytes()).ok()?;
    let st = fstatat(Some(fd), raw, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let (is_dir, size, mtime) = if kind == SFlag::S_IFREG {
        (false, u64::try_from(st.st_size).unwrap_or(0), st.st_mtime)
    } else if kind == SFlag::S_IFDIR {
        (true, 0, st.st_mtime)
    } else if kind == SFlag::S_IFLNK {
        follow(name)?
    } else {
        return None;
    };
    Some(Entry {
        name: name.to_owned(),
        is_dir,
        size: if is_dir { 0 } else { size },
        mtime,
    })
}

/// Sorts in place: directories always first (under every key and order), then by the key,
/// ties broken by name (ascending, whatever the order). Name order is the byte order of the
/// name; `descending` reverses the key.
pub fn sort(entries: &mut [Entry], order: Order) {
    entries.sort_by(|a, b| {
        let key = match order.key {
            SortKey::Name => Ordering::Equal,
            SortKey::Size => a.size.cmp(&b.size),
            SortKey::Mtime => a.mtime.cmp(&b.mtime),
        };
        let name = a.name.as_bytes().cmp(b.name.as_bytes());
        let (key, name) = match (order.key, order.descending) {
            (SortKey::Name, true) => (key, name.reverse()),
            (_, true) => (key.reverse(), name),
            (_, false) => (key, name),
        };
        b.is_dir.cmp(&a.is_dir).then(key).then(name)
    });
}

/// The inline style of the HTML page (no external resources).
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em}\
table{border-collapse:collapse}th,td{padding:.2em 1em;text-align:left}\
td.s{text-align:right}th a,td a{text-decoration:none}tr:hover td{background:#f2f2f2}";

/// The HTML page for directory `url_path` (the decoded, normalised request path, ending in
/// '/'): a table with Name / Size / Modified headers that link to the other order, a "../"
/// row unless at "/", one row per entry. Names are HTML-escaped in the text and
/// percent-encoded in the relative href (everything but `A-Za-z0-9-._~`); directories get a
/// trailing '/'. Sizes are human readable (`1.5 KiB`) with the exact count in
/// `title="1536 bytes"`; directories show `-`. Times are `2026-12-01 10:00` UTC. The
/// header links use `&amp;`: `href="?sort=size&amp;order=desc"`.
pub fn render_html(url_path: &str, entries: &[Entry], order: Order, truncated: bool) -> Vec<u8> {
    let names: usize = entries.iter().map(|e| e.name.len()).sum();
    let mut out = Vec::with_capacity(1024 + 2 * url_path.len() + entries.len() * 150 + names * 3);
    out.extend_from_slice(b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
    out.extend_from_slice(
        b"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Index of ",
    );
    push_html(&mut out, url_path);
    out.extend_from_slice(b"</title><style>");
    out.extend_from_slice(STYLE.as_bytes());
    out.extend_from_slice(b"</style></head>\n<body>\n<h1>Index of ");
    push_html(&mut out, url_path);
    out.extend_from_slice(b"</h1>\n<table>\n<thead><tr>");
    for (key, label) in [
        (SortKey::Name, "Name"),
        (SortKey::Size, "Size"),
        (SortKey::Mtime, "Modified"),
    ] {
        push_header(&mut out, key, label, order);
    }
    out.extend_from_slice(b"</tr></thead>\n<tbody>\n");
    if url_path != "/" {
        out.extend_from_slice(
            b"<tr><td><a href=\"../\">../</a></td><td class=\"s\">-</td><td>-</td></tr>\n",
        );
    }
    for e in entries {
        // Never link to the directory itself, its parent, or nothing at all.
        if matches!(e.name.as_str(), "" | "." | "..") {
            continue;
        }
        out.extend_from_slice(b"<tr><td><a href=\"");
        push_href(&mut out, &e.name);
        if e.is_dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"\">");
        push_html(&mut out, &e.name);
        if e.is_dir {
            out.extend_from_slice(b"/</a></td><td class=\"s\">-</td><td>");
        } else {
            out.extend_from_slice(b"</a></td><td class=\"s\" title=\"");
            push_u64(&mut out, e.size);
            out.extend_from_slice(b" bytes\">");
            push_human_size(&mut out, e.size);
            out.extend_from_slice(b"</td><td>");
        }
        push_time(&mut out, e.mtime, false);
        out.extend_from_slice(b"</td></tr>\n");
    }
    out.extend_from_slice(b"</tbody>\n</table>\n");
    if truncated {
        out.extend_from_slice(
            b"<p>This directory has more entries than can be listed: only the first ",
        );
        push_u64(&mut out, entries.len() as u64);
        out.extend_from_slice(b" are shown.</p>\n");
    }
    out.extend_from_slice(b"</body></html>\n");
    out
}

/// One column header: a link to this column ascending, or descending when it is already
/// the ascending sort.
fn push_header(out: &mut Vec<u8>, key: SortKey, label: &str, order: Order) {
    let current = order.key == key;
    out.extend_from_slice(b"<th");
    if current {
        out.extend_from_slice(if order.descending {
            b" aria-sort=\"descending\""
        } else {
            b" aria-sort=\"ascending\""
        });
    }
    out.extend_from_slice(b"><a href=\"?sort=");
    out.extend_from_slice(match key {
        SortKey::Name => b"name",
        SortKey::Size => b"size",
        SortKey::Mtime => b"mtime",
    });
    let next_desc = current && !order.descending;
    out.extend_from_slice(if next_desc {
        b"&amp;order=desc\">"
    } else {
        b"&amp;order=asc\">"
    });
    out.extend_from_slice(label.as_bytes());
    if current {
        out.extend_from_slice(if order.descending {
            " \u{25bc}".as_bytes()
        } else {
            " \u{25b2}".as_bytes()
        });
    }
    out.extend_from_slice(b"</a></th>");
}

/// JSON: an array of `{"name":…,"type":"file"|"dir","size":n,"mtime":"2026-12-01T10:00:00Z"}`
/// in the given order, compact, no trailing newline. Strings are escaped (`"`, `\`, control
/// characters as `\u00xx`); numbers are integers; times are RFC 3339 UTC.
pub fn render_json(entries: &[Entry]) -> Vec<u8> {
    let names: usize = entries.iter().map(|e| e.name.len()).sum();
    let mut out = Vec::with_capacity(2 + entries.len() * 80 + names * 2);
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":\"");
        push_json_str(&mut out, &e.name);
        out.extend_from_slice(if e.is_dir {
            b"\",\"type\":\"dir\",\"size\":"
        } else {
            b"\",\"type\":\"file\",\"size\":"
        });
        push_u64(&mut out, e.size);
        out.extend_from_slice(b",\"mtime\":\"");
        push_time(&mut out, e.mtime, true);
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
    out
}

/// Appends `s` escaped for HTML text and attribute values.
fn push_html(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\'' => b"&#39;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// Appends `name` as one relative path segment: every byte but the RFC 3986 unreserved
/// ones is percent-encoded, so `#`, `?`, `%`, `:`, `/`, `\`, quotes, spaces, controls and
/// non-ASCII can neither end the segment nor be read as markup or a scheme.
fn push_href(out: &mut Vec<u8>, name: &str) {
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(b >> 4)],
                HEX_UPPER[usize::from(b & 15)],
            ]);
        }
    }
}

/// Appends `s` escaped for the inside of a JSON string.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'"' && b != b'\\' && b >= 0x20 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX_LOWER[usize::from(b >> 4)],
                HEX_LOWER[usize::from(b & 15)],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `n` bytes as `512 B`, `1.5 KiB`, … `16.0 EiB` (one decimal, rounded half up).
fn push_human_size(out: &mut Vec<u8>, n: u64) {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        push_u64(out, n);
        out.extend_from_slice(b" B");
        return;
    }
    let mut unit = 1024u128;
    let mut i = 0;
    // Tenths of the unit, rounded; move up when rounding reaches 1024.0 of this unit.
    let mut tenths = (u128::from(n) * 20 + unit) / (2 * unit);
    while tenths >= 10_240 && i + 1 < UNITS.len() {
        unit *= 1024;
        i += 1;
        tenths = (u128::from(n) * 20 + unit) / (2 * unit);
    }
    // At most u64::MAX / 2^60 * 10 + 1 = 161: fits.
    let tenths = u64::try_from(tenths).unwrap_or(u64::MAX);
    push_u64(out, tenths / 10);
    out.push(b'.');
    out.push(b'0' + (tenths % 10) as u8);
    out.push(b' ');
    out.extend_from_slice(UNITS[i].as_bytes());
}

/// Latest time printed: 9999-12-31T23:59:59Z, so the year always has four digits.
const MAX_SECS: i64 = 253_402_300_799;

/// Appends `mtime` (UTC, clamped to years 1970..=9999) as `2026-12-01 10:00`, or as
/// `2026-12-01T10:00:00Z` when `rfc3339`.
fn push_time(out: &mut Vec<u8>, mtime: i64, rfc3339: bool) {
    let secs = mtime.clamp(0, MAX_SECS) as u64;
    let (y, mo, d, h, mi, s) = crate::log::civil(secs);
    let y = y as u32; // 1970..=9999 after the clamp
    push_digits(out, y / 100);
    push_digits(out, y % 100);
    out.push(b'-');
    push_digits(out, mo);
    out.push(b'-');
    push_digits(out, d);
    out.push(if rfc3339 { b'T' } else { b' ' });
    push_digits(out, h);
    out.push(b':');
    push_digits(out, mi);
    if rfc3339 {
        out.push(b':');
        push_digits(out, s);
        out.push(b'Z');
    }
}

/// Two decimal digits of `n` (0..=99).
fn push_digits(out: &mut Vec<u8>, n: u32) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::PathBuf;

    fn e(name: &str, is_dir: bool, size: u64, mtime: i64) -> Entry {
        Entry {
            name: name.to_owned(),
            is_dir,
            size,
            mtime,
        }
    }

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    fn html(url_path: &str, entries: &[Entry]) -> String {
        String::from_utf8(render_html(url_path, entries, Order::default(), false)).unwrap()
    }

    #[test]
    fn parse_order_cases() {
        let o = |key, descending| Order { key, descending };
        for (query, want) in [
            (None, o(SortKey::Name, false)),
            (Some(""), o(SortKey::Name, false)),
            (Some("sort=size"), o(SortKey::Size, false)),
            (Some("sort=mtime&order=desc"), o(SortKey::Mtime, true)),
            (Some("order=desc&sort=name"), o(SortKey::Name, true)),
            (Some("order=desc"), o(SortKey::Name, true)),
            (Some("order=asc"), o(SortKey::Name, false)),
            // unknown keys and values, case, no value, encoded values: ignored
            (Some("sort=SIZE&order=DESC"), o(SortKey::Name, false)),
            (Some("sort=bogus&order=up&x=1"), o(SortKey::Name, false)),
            (Some("sort&order"), o(SortKey::Name, false)),
            (Some("sort=%73ize"), o(SortKey::Name, false)),
            (Some("sort=size=1"), o(SortKey::Name, false)),
            (Some("&&sort=size&&"), o(SortKey::Size, false)),
            // the last valid value wins; an invalid one does not reset
            (Some("sort=size&sort=mtime"), o(SortKey::Mtime, false)),
            (Some("sort=size&sort=nope"), o(SortKey::Size, false)),
            (Some("order=desc&order=asc"), o(SortKey::Name, false)),
        ] {
            assert_eq!(parse_order(query), want, "{query:?}");
        }
    }

    #[test]
    fn sort_puts_directories_first_under_every_order() {
        let base = vec![
            e("b.txt", false, 10, 300),
            e("zdir", true, 0, 100),
            e("a.txt", false, 30, 100),
            e("adir", true, 0, 200),
            e("c.txt", false, 20, 200),
        ];
        let want = [
            (
                SortKey::Name,
                false,
                ["adir", "zdir", "a.txt", "b.txt", "c.txt"],
            ),
            (
                SortKey::Name,
                true,
                ["zdir", "adir", "c.txt", "b.txt", "a.txt"],
            ),
            (
                SortKey::Size,
                false,
                ["adir", "zdir", "b.txt", "c.txt", "a.txt"],
            ),
            (
                SortKey::Size,
                true,
                ["adir", "zdir", "a.txt", "c.txt", "b.txt"],
            ),
            (
                SortKey::Mtime,
                false,
                ["zdir", "adir", "a.txt", "c.txt", "b.txt"],
            ),
            (
                SortKey::Mtime,
                true,
                ["adir", "zdir", "b.txt", "c.txt", "a.txt"],
            ),
        ];
        for (key, descending, expect) in want {
            let mut v = base.clone();
            sort(&mut v, Order { key, descending });
            assert_eq!(names(&v), expect, "{key:?} desc={descending}");
        }
    }

    #[test]
    fn sort_ties_by_name_in_byte_order() {
        let base = vec![
            e("b", false, 5, 7),
            e("B", false, 5, 7),
            e("\u{e9}", false, 5, 7),
            e("a", false, 5, 7),
            e("Z", false, 5, 7),
        ];
        // Byte order: uppercase before lowercase, non-ASCII last.
        for key in [SortKey::Size, SortKey::Mtime] {
            for descending in [false, true] {
                let mut v = base.clone();
                sort(&mut v, Order { key, descending });
                assert_eq!(
                    names(&v),
                    ["B", "Z", "a", "b", "\u{e9}"],
                    "{key:?} {descending}"
                );
            }
        }
        let mut v = base.clone();
        sort(&mut v, Order::default());
        assert_eq!(names(&v), ["B", "Z", "a", "b", "\u{e9}"]);
    }

    #[test]
    fn html_escapes_names_and_encodes_hrefs() {
        let page = html(
            "/d/",
            &[
                e("<script>.txt", false, 1, 0),
                e("a&b", false, 1, 0),
                e("say \"hi\" 'x'", false, 1, 0),
            ],
        );
        assert!(
            page.contains("<a href=\"%3Cscript%3E.txt\">&lt;script&gt;.txt</a>"),
            "{page}"
        );
        assert!(page.contains("<a href=\"a%26b\">a&amp;b</a>"), "{page}");
        assert!(
            page.contains(
                "<a href=\"say%20%22hi%22%20%27x%27\">say &quot;hi&quot; &#39;x&#39;</a>"
            ),
            "{page}"
        );
        assert!(!page.contains("<script>"));
        assert!(!page.contains("a&b"));
    }

    #[test]
    fn hrefs_link_to_the_entry_itself() {
        let page = html(
            "/d/",
            &[
                e("a#b", false, 1, 0),
                e("what?.txt", false, 1, 0),
                e("100%", false, 1, 0),
                e("my file", false, 1, 0),
                e("caf\u{e9} \u{65e5}", false, 1, 0),
                e("javascript:alert(1)", false, 1, 0),
                e("sub dir", true, 0, 0),
            ],
        );
        for want in [
            "href=\"a%23b\">a#b<",
            "href=\"what%3F.txt\">what?.txt<",
            "href=\"100%25\">100%<",
            "href=\"my%20file\">my file<",
            "href=\"caf%C3%A9%20%E6%97%A5\">caf\u{e9} \u{65e5}<",
            "href=\"javascript%3Aalert%281%29\">",
            "href=\"sub%20dir/\">sub dir/</a>",
        ] {
            assert!(page.contains(want), "missing {want} in {page}");
        }
    }

    #[test]
    fn html_page_shape() {
        let page = html(
            "/a&b/<x>/",
            &[
                e("dir", true, 0, 1_796_119_200),
                e("f", false, 1536, 1_796_119_200),
            ],
        );
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<meta charset=\"utf-8\">"));
        assert!(
            page.contains("<title>Index of /a&amp;b/&lt;x&gt;/</title>"),
            "{page}"
        );
        assert!(page.contains("<h1>Index of /a&amp;b/&lt;x&gt;/</h1>"));
        assert!(page.contains("<a href=\"../\">../</a>"));
        // 1_796_119_200 = 2026-12-01T10:00:00Z
        assert!(page.contains(
            "<a href=\"dir/\">dir/</a></td><td class=\"s\">-</td><td>2026-12-01 10:00</td>"
        ));
        assert!(page.contains("title=\"1536 bytes\">1.5 KiB</td><td>2026-12-01 10:00</td>"));
        assert!(page.find("dir/").unwrap() < page.find(">f<").unwrap());
        assert!(!page.contains("truncated") && !page.contains("more entries"));
        assert!(page.ends_with("</html>\n"));
    }

    #[test]
    fn no_parent_row_at_the_root() {
        assert!(!html("/", &[e("a", false, 1, 0)]).contains("../"));
        assert!(html("/x/", &[]).contains("href=\"../\""));
    }

    #[test]
    fn header_links_toggle_the_order() {
        let page = |key, descending| {
            String::from_utf8(render_html("/", &[], Order { key, descending }, false)).unwrap()
        };
        let p = page(SortKey::Name, false);
        assert!(p.contains("href=\"?sort=name&amp;order=desc\">Name"), "{p}");
        assert!(p.contains("href=\"?sort=size&amp;order=asc\">Size"));
        assert!(p.contains("href=\"?sort=mtime&amp;order=asc\">Modified"));
        let p = page(SortKey::Size, true);
        assert!(p.contains("href=\"?sort=name&amp;order=asc\">Name"));
        assert!(
            p.contains("<th aria-sort=\"descending\"><a href=\"?sort=size&amp;order=asc\">Size")
        );
        let p = page(SortKey::Mtime, false);
        assert!(p.contains("href=\"?sort=mtime&amp;order=desc\">Modified"));
    }

    #[test]
    fn html_notes_truncation() {
        let entries = [e("a", false, 1, 0), e("b", false, 1, 0)];
        let page = String::from_utf8(render_html("/", &entries, Order::default(), true)).unwrap();
        assert!(page.contains("only the first 2 are shown"), "{page}");
    }

    #[test]
    fn html_skips_names_that_would_link_elsewhere() {
        let page = html(
            "/d/",
            &[e("..", true, 0, 0), e(".", true, 0, 0), e("", false, 0, 0)],
        );
        assert_eq!(
            page.matches("<a href=\"").count(),
            3 + 1,
            "headers + ../ only: {page}"
        );
    }

    #[test]
    fn human_sizes() {
        for (n, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (1024 * 1024 - 1, "1.0 MiB"),
            (10 * 1024 * 1024 + 512 * 1024, "10.5 MiB"),
            (5 << 30, "5.0 GiB"),
            (u64::MAX, "16.0 EiB"),
        ] {
            let mut out = Vec::new();
            push_human_size(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{n}");
        }
    }

    #[test]
    fn times_are_utc_and_clamped() {
        let t = |mtime, rfc| {
            let mut out = Vec::new();
            push_time(&mut out, mtime, rfc);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(t(1_796_119_200, false), "2026-12-01 10:00");
        assert_eq!(t(1_796_119_259, true), "2026-12-01T10:00:59Z");
        assert_eq!(t(-5, true), "1970-01-01T00:00:00Z");
        assert_eq!(t(i64::MAX, true), "9999-12-31T23:59:59Z");
        assert_eq!(t(951_782_400, false), "2000-02-29 00:00");
    }

    #[test]
    fn json_shape_and_escaping() {
        let entries = [
            e("dir", true, 0, 1_796_119_200),
            e("a\"b\\c\n\u{1}\u{1f}\u{7f}\u{e9}</script>", false, 42, -1),
        ];
        let json = String::from_utf8(render_json(&entries)).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"[{"name":"dir","type":"dir","size":0,"mtime":"2026-12-01T10:00:00Z"},"#,
                r#"{"name":"a\"b\\c\u000a\u0001\u001f"#,
                "\u{7f}\u{e9}</script>",
                r#"","type":"file","size":42,"mtime":"1970-01-01T00:00:00Z"}]"#,
            )
        );
        assert_eq!(render_json(&[]), b"[]");
    }

    #[test]
    fn json_keeps_the_given_order() {
        let entries = [e("z", false, 1, 0), e("a", false, 2, 0)];
        let json = String::from_utf8(render_json(&entries)).unwrap();
        assert!(json.find("\"z\"").unwrap() < json.find("\"a\"").unwrap());
        assert!(json.contains("\"size\":2,"));
    }

    /// A fresh directory under the system temp dir.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("srvd-listing-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn open_dir(path: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
            .unwrap()
    }

    #[test]
    fn read_dir_lists_files_dirs_and_followed_links_only() {
        let dir = temp_dir("kinds");
        std::fs::write(dir.join("file.txt"), b"hello").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join(".hidden"), b"x").unwrap();
        std::fs::create_dir(dir.join(".git")).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo"), Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
        std::fs::write(dir.join(std::ffi::OsStr::from_bytes(b"bad\xff")), b"x").unwrap();
        std::os::unix::fs::symlink("file.txt", dir.join("inside")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("outside")).unwrap();
        std::os::unix::fs::symlink("sub", dir.join("subdir-link")).unwrap();

        let mut asked = Vec::new();
        let (mut entries, truncated) = read_dir(&open_dir(&dir), 100, |name| {
            asked.push(name.to_owned());
            match name {
                "inside" => Some((false, 5, 1234)),
                "subdir-link" => Some((true, 4096, 99)),
                _ => None,
            }
        })
        .unwrap();
        assert!(!truncated);
        asked.sort();
        assert_eq!(
            asked,
            ["inside", "outside", "subdir-link"],
            "follow is for symlinks only"
        );
        sort(&mut entries, Order::default());
        assert_eq!(
            names(&entries),
            ["sub", "subdir-link", "file.txt", "inside"]
        );
        let by = |n: &str| entries.iter().find(|e| e.name == n).unwrap().clone();
        let f = by("file.txt");
        assert!(!f.is_dir && f.size == 5);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (now - f.mtime).abs() < 600,
            "mtime {} vs now {now}",
            f.mtime
        );
        let s = by("sub");
        assert!(s.is_dir && s.size == 0);
        let l = by("inside");
        assert!(!l.is_dir && l.size == 5 && l.mtime == 1234);
        let l = by("subdir-link");
        assert!(l.is_dir && l.size == 0 && l.mtime == 99);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_dir_stops_at_max() {
        let dir = temp_dir("max");
        for i in 0..5 {
            std::fs::write(dir.join(format!("f{i}")), b"").unwrap();
        }
        std::fs::write(dir.join(".dot"), b"").unwrap();
        let d = open_dir(&dir);
        let (entries, truncated) = read_dir(&d, 3, |_| None).unwrap();
        assert_eq!((entries.len(), truncated), (3, true));
        // Exactly as many as allowed: not truncated.
        let (entries, truncated) = read_dir(&d, 5, |_| None).unwrap();
        assert_eq!((entries.len(), truncated), (5, false));
        // Reading again through the same descriptor gives the same result (own offset).
        let (entries, truncated) = read_dir(&d, 5, |_| None).unwrap();
        assert_eq!((entries.len(), truncated), (5, false));
        let (entries, truncated) = read_dir(&d, 0, |_| None).unwrap();
        assert_eq!((entries.len(), truncated), (0, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_dir_bounds_the_scan_of_hidden_entries() {
        let dir = temp_dir("scan");
        for i in 0..scan_limit(1) + 5 {
            std::fs::write(dir.join(format!(".h{i}")), b"").unwrap();
        }
        let d = open_dir(&dir);
        let (entries, truncated) = read_dir(&d, 1, |_| None).unwrap();
        assert!(entries.is_empty() && truncated);
        let (entries, truncated) = read_dir(&d, 100, |_| None).unwrap();
        assert!(entries.is_empty() && !truncated);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_dir_of_a_non_directory_fails() {
        let dir = temp_dir("notdir");
        std::fs::write(dir.join("f"), b"").unwrap();
        let f = File::open(dir.join("f")).unwrap();
        assert!(read_dir(&f, 10, |_| None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
