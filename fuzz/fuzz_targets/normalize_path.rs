//! Fuzzes request-target normalisation and the Location encoder: no panics, and whatever
//! `normalize` accepts is an absolute path without `..` segments, NUL or backslash, whose
//! Location encoding starts with exactly one `/` and has no raw control bytes or spaces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srvd::static_files::path::{encode_for_location, is_hidden, normalize};

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    // The encoder must be safe on any input, not only on normalised paths.
    check_location(&encode_for_location(target));
    let _ = is_hidden(target);
    if let Ok(t) = normalize(target) {
        let p = &t.path;
        assert!(p.starts_with('/'), "not absolute: {p:?}");
        assert!(
            !p.split('/').any(|s| s == ".." || s == "."),
            "dot segment left: {p:?}"
        );
        assert!(!p.contains("//"), "empty segment left: {p:?}");
        assert!(
            !p.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\'),
            "unsafe byte: {p:?}"
        );
        let _ = is_hidden(p);
        check_location(&encode_for_location(p));
    }
});

fn check_location(loc: &str) {
    assert!(loc.starts_with('/'), "location {loc:?}");
    assert!(!loc.starts_with("//"), "network-path location {loc:?}");
    assert!(
        loc.bytes().all(|b| b.is_ascii_graphic()),
        "raw byte in location {loc:?}"
    );
}
