//! Fuzzes the request-head parser: any byte string must give `Ok(None)`, a request, or a
//! `ParseError`, never a panic; a parsed head must lie inside the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srvd::http::request::{self, BodyFraming, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    match request::parse(data) {
        Ok(Some(req)) => {
            assert!(req.head_len <= data.len(), "head_len past the buffer");
            assert!(req.minor <= 1, "only HTTP/1.0 and 1.1 are accepted");
            assert!(!req.target.is_empty());
            if let BodyFraming::Length(n) = req.body {
                assert!(n > 0);
            }
            let _ = req.keep_alive();
        }
        Ok(None) => {
            // An incomplete head never exceeds what a connection buffers (MAX_HEAD + 1),
            // leading empty lines (skipped by the parser) aside.
            let rest = skip_empty_lines(data);
            assert!(
                rest.len() <= MAX_HEAD + 1,
                "incomplete head of {} bytes",
                rest.len()
            );
        }
        Err(e) => {
            let _ = e.status();
        }
    }
});

fn skip_empty_lines(mut b: &[u8]) -> &[u8] {
    loop {
        b = match b {
            [b'\n', rest @ ..] | [b'\r', b'\n', rest @ ..] => rest,
            _ => return b,
        };
    }
}
