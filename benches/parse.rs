//! Micro-benchmarks of the per-request pure functions: request-head parsing and
//! request-target normalisation. `cargo bench --bench parse`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use srvd::http::request;
use srvd::static_files::path;

/// A typical browser request head (Firefox-like, 12 fields).
const BROWSER_HEAD: &[u8] = b"GET /assets/css/site.min.css?v=20240101 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/css,*/*;q=0.1\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/blog/2024/01/hello-world.html\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
Sec-Fetch-Dest: style\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\
If-None-Match: \"5d8c72a5edda8d6a\"\r\n\
\r\n";

/// What a load generator sends (wrk): the smallest realistic head.
const MINIMAL_HEAD: &[u8] = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("request::parse");
    for (name, head) in [("browser", BROWSER_HEAD), ("minimal", MINIMAL_HEAD)] {
        let req = request::parse(head)
            .expect("valid head")
            .expect("complete head");
        assert_eq!(req.head_len, head.len());
        g.throughput(Throughput::Bytes(head.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = request::parse(black_box(head));
                black_box(r.map(|r| r.map(|r| r.head_len)))
            })
        });
    }
    g.finish();
}

fn bench_normalize(c: &mut Criterion) {
    let mut g = c.benchmark_group("path::normalize");
    let cases = [
        ("plain", "/assets/css/site.min.css?v=20240101"),
        ("short", "/1k.bin"),
        (
            "escaped_dots",
            "/docs/./a//b/../%E2%82%AC%20price%20list.html",
        ),
    ];
    for (name, target) in cases {
        path::normalize(target).expect("valid target");
        g.bench_function(name, |b| {
            b.iter(|| black_box(path::normalize(black_box(target)).map(|t| t.path.len())))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_parse, bench_normalize);
criterion_main!(benches);
