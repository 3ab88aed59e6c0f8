#!/usr/bin/env bash
# Compression (issue 10): srvd against nginx on loopback, same CPU budget.
#
#   bench/compression.sh           full run: BENCH_SECONDS (10) per load, BENCH_ROUNDS (3) rounds
#   bench/compression.sh --smoke   1 s per load (5 s for j), 1 round: checks that everything runs
#
# Scenarios (docroot bench/out/compression/root, generated once, HTML/JS-like text):
#   h  GET /h/page.html, 64 KiB HTML with a page.html.gz sidecar (gzip -9 -k), 50
#      keep-alive connections, Accept-Encoding: gzip. srvd (precompressed, the default)
#      against nginx `gzip_static on`. Checked first: both answer Content-Encoding: gzip
#      with the sidecar's length, and the body gunzips to the original.
#      Target: server CPU per request <= 0.8 x nginx.
#   i  GET /i/page.html, the same file without a sidecar, on the fly. srvd serves its
#      cached variant (warmed and checked first: the GET is repeated until Content-Encoding:
#      gzip appears) at its default gzip level; nginx `gzip on` (text/html is always in
#      gzip_types) at its default gzip_comp_level 1, which compresses on every request.
#      Target: CPU per request <= 0.33 x nginx, srvd's compressed size <= nginx's.
#   j  cold cache, one srvd worker with [compression] cache_size = "8MiB": 1000 distinct
#      64 KiB text files (/cold/c0000.html .. c0999.js, HTML and JS) requested once each
#      with Accept-Encoding: br by 4 keep-alive clients (a Python client, embedded below),
#      while 10 other wrk connections GET /small.html (1 KiB, no Accept-Encoding) in a
#      loop for the whole load; the cold client starts 20% into the load. Reported: the
#      small-file latency distribution (p99 target < 50 ms, and max), srvd's VmRSS
#      (master + worker) before and after (once the encoding queue has drained) and its
#      peak (VmHWM).
#      srvd is started fresh every round, so every round is cold. References in the same
#      rounds: srvd with cache_size = "64MiB" (the budget does not bind; a HEAD with br
#      for each of the 1000 after the RSS reading shows what their variants take), srvd
#      with on_the_fly = [] (the same cold requests, nothing encoded: what the cold misses
#      cost without the encodings), srvd8 with the small-file load alone (before its cold
#      load), and nginx with the cold clients sending Accept-Encoding: gzip (nginx has no
#      brotli here; it gzips at level 1 on every request): a reference, not like for like.
#
# Fairness as in run.sh: servers pinned to CPU 0 (taskset), wrk and the Python client to
# CPU 1; srvd workers = 1, nginx worker_processes 1; access logs off; sendfile on;
# keep-alive 60 s without a request cap. Server CPU = user+system ticks of all the
# server's processes (/proc/PID/stat) over the load / requests. Rounds interleaved
# (h: srvd nginx, i: srvd nginx, j: srvd8 srvd64 srvd0 nginx; the order rotates every
# round),
# medians over rounds.
#
# Knobs: BENCH_SECONDS, BENCH_ROUNDS, BENCH_PORT_BASE (18080; this script uses +40..+44),
# BENCH_NO_INSTALL=1, BENCH_SRVD_BIN (measure this srvd binary instead of building the
# working tree, e.g. a build of `git archive` of a commit while the tree is being
# changed) with BENCH_SRVD_REV (the commit it was built from, for the report).
# Output: bench/out/compression/results.md (raw numbers: raw.tsv, wrk and client output
# beside it).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

parse_smoke_arg "$0" "$@"

CDIR="$OUT/compression"
CROOT="$CDIR/root"
PORT_BASE="${BENCH_PORT_BASE:-18080}"
CLK_TCK="$(getconf CLK_TCK)"
if [ "$SMOKE" = 1 ]; then
  SECS=1
  ROUNDS=1
else
  SECS="${BENCH_SECONDS:-10}"
  ROUNDS="${BENCH_ROUNDS:-3}"
fi
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a whole number of seconds >= 1"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be >= 1"
# The cold scenario needs time for the 1000 requests and the encodings they queue.
J_SECS=$((SECS < 5 ? 5 : SECS))
COLD_FILES=1000
COLD_CONNS=4
SMALL_CONNS=10
HI_CONNS=50

trap bench_cleanup EXIT
trap 'exit 130' INT TERM
raise_nofile
mkdir -p "$CDIR"

# ---------------------------------------------------------------- tools
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=("$(nginx_package)")
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v gzip >/dev/null 2>&1 || missing+=(gzip)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
for t in wrk nginx curl gzip; do
  command -v "$t" >/dev/null 2>&1 || die "$t is missing and could not be installed"
done
curl -V | grep -qi brotli || die "this curl cannot decode br (curl -V lists no brotli)"

SERVER_PIN=()
CLIENT_PIN=()
PIN_NOTE="not pinned (fewer than 2 CPUs or no taskset): servers and load share the CPUs"
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 0)
  CLIENT_PIN=(taskset -c 1)
  PIN_NOTE="servers pinned to CPU 0, wrk and the Python client to CPU 1"
fi

# ---------------------------------------------------------------- helpers (Python)
# Text like a site's HTML and JS: markup, class names, identifiers and words repeating
# as they do in real pages, deterministic per seed (gzip -6 shrinks it about 3.5-4.7x).
cat >"$CDIR/gentext.py" <<'EOF'
import os, random, sys

WORDS = ("the of and to in is for on with as by at from that this be are it an or "
         "page site user menu item list nav header footer content main section article aside "
         "button input form label value data config option select table row cell image link "
         "title text style script module export import function return const let var if else "
         "for while new class extends async await promise then catch error event window document "
         "element node query selector render update state props component layout grid flex card "
         "modal dialog tooltip dropdown search filter sort page size count total index key name").split()
TAGS = ["div", "span", "p", "li", "a", "section", "article", "td", "h2", "h3", "button"]
CLASSES = ["container", "row", "col-md-4", "col-sm-6", "card", "card-body", "btn btn-primary",
           "nav-item", "nav-link", "text-muted", "list-group-item", "d-flex",
           "justify-content-between", "mb-3", "mt-2", "px-4", "table-striped",
           "badge bg-secondary", "form-control", "alert alert-info"]


def words(r, n):
    return " ".join(r.choice(WORDS) for _ in range(n))


def html(r, size):
    out = ['<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>%s</title>\n'
           '<link rel="stylesheet" href="/assets/site.css">\n</head>\n<body>\n' % words(r, 4)]
    n = len(out[0])
    while n < size:
        t, c = r.choice(TAGS), r.choice(CLASSES)
        if r.random() < 0.3:
            s = '<%s class="%s" id="%s-%d"><a href="/%s/%s/%d.html">%s</a></%s>\n' % (
                t, c, r.choice(WORDS), r.randrange(10000), r.choice(WORDS), r.choice(WORDS),
                r.randrange(1000), words(r, r.randrange(2, 6)), t)
        else:
            s = '<%s class="%s">%s</%s>\n' % (t, c, words(r, r.randrange(5, 25)), t)
        out.append(s)
        n += len(s)
    return "".join(out)


def js(r, size):
    out = ['"use strict";\n']
    n = len(out[0])
    while n < size:
        a, b, c = r.choice(WORDS), r.choice(WORDS), r.choice(WORDS)
        k = r.random()
        if k < 0.3:
            s = ('export function %s%s(%s, options = {}) {\n  const %s = options.%s ?? %d;\n'
                 '  if (!%s) {\n    throw new Error("%s");\n  }\n  return %s.map((x) => x.%s + %s);\n}\n\n') % (
                a, b.capitalize(), c, b, a, r.randrange(100), c, words(r, 5), c, a, b)
        elif k < 0.6:
            s = '  %s: { %s: %d, %s: "%s", %s: [%s] },\n' % (
                a, b, r.randrange(100000), c, words(r, 3), a,
                ", ".join(str(r.randrange(1000)) for _ in range(r.randrange(1, 6))))
        else:
            s = ('document.querySelectorAll(".%s").forEach((el) => el.addEventListener("%s", () => '
                 '%s(el.dataset.%s)));\n') % (r.choice(CLASSES).split()[0], a, b, c)
        out.append(s)
        n += len(s)
    return "".join(out)


def write(path, text, size):
    data = text.encode()[:size]
    assert len(data) == size
    with open(path, "wb") as f:
        f.write(data)


root, nfiles, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(os.path.join(root, "h"), exist_ok=True)
os.makedirs(os.path.join(root, "i"), exist_ok=True)
os.makedirs(os.path.join(root, "cold"), exist_ok=True)
write(os.path.join(root, "h", "page.html"), html(random.Random(0), 65536), 65536)
write(os.path.join(root, "check.html"), html(random.Random(1), 65536), 65536)
write(os.path.join(root, "small.html"), html(random.Random(2), 1024), 1024)
with open(paths, "w") as out:
    for k in range(nfiles):
        name = "c%04d.%s" % (k, "html" if k % 2 == 0 else "js")
        gen = html if k % 2 == 0 else js
        write(os.path.join(root, "cold", name), gen(random.Random(1000 + k), 65536), 65536)
        out.write("/cold/%s\n" % name)
EOF

# Cold client: CONNS keep-alive connections take the paths of PATHS_FILE in turn, each
# path requested once (METHOD GET or HEAD, with Accept-Encoding: AE), every answer read
# to its end (Content-Length or chunked) and counted by status and Content-Encoding.
# Prints one COLD line: counts, bytes, duration, latency p50/p99/max.
cat >"$CDIR/coldclient.py" <<'EOF'
import math, socket, sys, threading, time

port, paths_file, conns, ae, method = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
paths = [l.strip() for l in open(paths_file) if l.strip()]
lock = threading.Lock()
state = {"next": 0}
lat, stats = [], {"errors": 0, "non200": 0, "identity": 0, "encoded": 0, "other_coding": 0,
                  "enc_len": 0, "body": 0}


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def fill(self):
        c = self.s.recv(262144)
        if not c:
            raise ConnectionError("closed mid-response")
        self.buf += c

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        l, _, self.buf = self.buf.partition(b"\r\n")
        return l

    def response(self, head_only):
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        h = {}
        for l in lines[1:]:
            k, _, v = l.partition(b":")
            h[k.strip().lower().decode()] = v.strip().decode()
        n = 0
        if head_only or status in (204, 304):
            pass
        elif "chunked" in h.get("transfer-encoding", "").lower():
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line() != b"":
                        pass
                    break
                n += len(self.take(size))
                self.take(2)
        else:
            n = len(self.take(int(h.get("content-length", "0"))))
        return status, h, n


def run():
    c = None
    while True:
        with lock:
            k = state["next"]
            if k >= len(paths):
                return
            state["next"] = k + 1
        req = (f"{method} {paths[k]} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: srvd-bench\r\n"
               f"Accept: */*\r\nAccept-Encoding: {ae}\r\n\r\n").encode()
        t0 = time.monotonic()
        try:
            if c is None:
                c = Conn()
            c.s.sendall(req)
            status, h, n = c.response(method == "HEAD")
        except (OSError, ValueError) as e:
            with lock:
                stats["errors"] += 1
            c = None
            continue
        dt = time.monotonic() - t0
        enc = h.get("content-encoding", "")
        with lock:
            lat.append(dt)
            stats["body"] += n
            if status != 200:
                stats["non200"] += 1
            elif enc == "":
                stats["identity"] += 1
            elif enc == ae:
                stats["encoded"] += 1
                stats["enc_len"] += int(h.get("content-length", n) or n)
            else:
                stats["other_coding"] += 1


t0 = time.monotonic()
threads = [threading.Thread(target=run) for _ in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
secs = time.monotonic() - t0
lat.sort()
pct = lambda p: lat[max(0, math.ceil(p / 100 * len(lat)) - 1)] * 1000 if lat else 0
print(f"COLD requests={len(lat)} errors={stats['errors']} non200={stats['non200']} "
      f"identity={stats['identity']} encoded={stats['encoded']} other_coding={stats['other_coding']} "
      f"enc_len={stats['enc_len']} body={stats['body']} seconds={secs:.3f} "
      f"p50_ms={pct(50):.3f} p99_ms={pct(99):.3f} max_ms={pct(100):.3f}")
EOF

# ---------------------------------------------------------------- docroot
gen_comp_root() {
  local stamp="$CROOT/.complete"
  [ -f "$stamp" ] && return 0
  log "generating the compression docroot in $CROOT"
  rm -rf "$CROOT"
  mkdir -p "$CROOT"
  "$PY" "$CDIR/gentext.py" "$CROOT" "$COLD_FILES" "$CDIR/cold.paths" || die "docroot generation failed"
  # gzip -k keeps the original, and gives the .gz the original's mtime: not older.
  gzip -9 -k "$CROOT/h/page.html"
  cp -p "$CROOT/h/page.html" "$CROOT/i/page.html"
  [ "$(find "$CROOT/cold" -type f | wc -l)" = "$COLD_FILES" ] || die "docroot generation failed"
  touch "$stamp"
}

# ---------------------------------------------------------------- configs
# write_srvd_comp_conf FILE PORT [CACHE_SIZE [ON_THE_FLY]]: lib.sh's srvd config
# (workers = 1, access log off) over the compression docroot; compression at its
# defaults but for cache_size (and on_the_fly) when given.
write_srvd_comp_conf() {
  ROOT="$CROOT" write_srvd_conf "$1" "$2" 1
  if [ -n "${3:-}" ]; then
    printf '\n[compression]\ncache_size = "%s"\n' "$3" >>"$1"
    [ -z "${4:-}" ] || printf 'on_the_fly = %s\n' "$4" >>"$1"
  fi
}

# write_nginx_comp_conf FILE PORT DIR: the settings of lib.sh's write_nginx_conf, plus
# gzip_static under /h/ and gzip on elsewhere (text/html is always in gzip_types; the
# JavaScript type is added for the cold files), at nginx's default gzip_comp_level (1).
write_nginx_comp_conf() {
  local file="$1" port="$2" dir="$3"
  mkdir -p "$dir"
  cat >"$file" <<EOF
# Generated by bench/compression.sh: nginx, one worker, sendfile on, access log off.
$(nginx_head "$dir" on 32768)
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_body_temp_path $dir/body;
    types {
        text/html html;
        text/javascript js;
    }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port backlog=4096;
        server_name localhost;
        root $CROOT;
        location /h/ {
            gzip_static on;
        }
        location / {
            gzip on;
            gzip_types text/javascript;
        }
    }
}
EOF
}

# ---------------------------------------------------------------- servers
declare -A PORT PID
NOTES=()

# start_server NAME: srvd (default compression), srvd8 / srvd64 (cache_size 8 / 64 MiB),
# srvd0 (8 MiB, on_the_fly = []) or nginx, on its own port; registers its pid for
# bench_cleanup.
start_server() {
  local name="$1" dir="$CDIR/$1" port
  case "$name" in
    srvd) port=$((PORT_BASE + 40)) ;;
    nginx) port=$((PORT_BASE + 41)) ;;
    srvd8) port=$((PORT_BASE + 42)) ;;
    srvd64) port=$((PORT_BASE + 43)) ;;
    srvd0) port=$((PORT_BASE + 44)) ;;
  esac
  mkdir -p "$dir"
  port_open "$port" && die "$name: port $port already in use (another benchmark running?)"
  case "$name" in
    srvd | srvd8 | srvd64 | srvd0)
      case "$name" in
        srvd) write_srvd_comp_conf "$dir/srvd.toml" "$port" ;;
        srvd8) write_srvd_comp_conf "$dir/srvd.toml" "$port" 8MiB ;;
        srvd64) write_srvd_comp_conf "$dir/srvd.toml" "$port" 64MiB ;;
        srvd0) write_srvd_comp_conf "$dir/srvd.toml" "$port" 8MiB '[]' ;;
      esac
      "$SRVD_BIN" --check -c "$dir/srvd.toml" >"$dir/check.log" 2>&1 ||
        die "$name: srvd --check rejects the config: $(head -5 "$dir/check.log")"
      "${SERVER_PIN[@]}" "$SRVD_BIN" -c "$dir/srvd.toml" >"$dir/stderr.log" 2>&1 &
      ;;
    nginx)
      write_nginx_comp_conf "$dir/nginx.conf" "$port" "$dir"
      "${SERVER_PIN[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$dir/stderr.log" 2>&1 &
      ;;
  esac
  local pid=$!
  BENCH_PIDS+=("$pid")
  wait_port "$port" 20 "$pid" || die "$name did not start (see $dir/stderr.log)"
  PORT[$name]="$port"
  PID[$name]="$pid"
}

# stop_server NAME: SIGTERM, SIGKILL after 5 s, and forgets it.
stop_server() {
  local pid="${PID[$1]}" kids i keep=() p
  kids="$(child_pids "$pid")"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -KILL "$pid" $kids 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
  unset "PID[$1]"
}

# vm_kib FIELD PIDS...: /proc/PID/status FIELD (VmRSS, VmHWM) in KiB, summed.
vm_kib() {
  local field="$1" total=0 p r
  shift
  for p in "$@"; do
    r="$(awk -v f="$field:" '$1 == f {print $2}' /proc/"$p"/status 2>/dev/null)" || continue
    total=$((total + ${r:-0}))
  done
  echo "$total"
}

# ---------------------------------------------------------------- checks
# fetch NAME PATH AE OUTFILE: raw GET (no decoding); sets C_STATUS, C_ENC, C_LEN (body
# bytes received).
fetch() {
  local hdr="$CDIR/fetch.headers" out
  out="$(curl -sS --max-time 10 -H "Accept-Encoding: $3" -D "$hdr" -o "$4" \
    -w '%{http_code} %{size_download}' "http://127.0.0.1:${PORT[$1]}$2")" || die "$1 $2: curl failed"
  C_STATUS="${out% *}"
  C_LEN="${out#* }"
  C_ENC="$(tr -d '\r' <"$hdr" | awk -F': *' 'tolower($1) == "content-encoding" {print $2}')"
}

# expect_coding NAME PATH CODING ORIGINAL: the raw body is CODING (polled for up to 10 s:
# srvd's on-the-fly variant appears once encoded), and decodes to ORIGINAL. Sets C_LEN.
expect_coding() {
  local name="$1" path="$2" coding="$3" orig="$4" body="$CDIR/check.body" i
  for i in $(seq 100); do
    fetch "$name" "$path" "$coding" "$body"
    [ "$C_STATUS" = 200 ] || die "$name $path: status $C_STATUS"
    [ "$C_ENC" = "$coding" ] && break
    sleep 0.1
  done
  [ "$C_ENC" = "$coding" ] || die "$name $path: no Content-Encoding: $coding after 10 s (got '${C_ENC}')"
  curl -sS --max-time 10 --compressed -H "Accept-Encoding: $coding" -o "$CDIR/check.decoded" \
    "http://127.0.0.1:${PORT[$name]}$path" || die "$name $path: curl --compressed failed"
  cmp -s "$CDIR/check.decoded" "$orig" || die "$name $path: the $coding body does not decode to the file"
}

# ---------------------------------------------------------------- loads
RAW="$CDIR/raw.tsv"
: >"$RAW"
ROUND=0
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" "$4" >>"$RAW"; }

# parse_bench FILE: W_* variables from wrk's BENCH line (latency.lua).
parse_bench() {
  local line
  line="$(grep '^BENCH ' "$1" || true)"
  [ -n "$line" ] || die "no result from wrk: $(tail -3 "$1" | tr '\n' ' ')"
  eval "$(echo "$line" | sed 's/^BENCH //' | tr ' ' '\n' | sed 's/^/W_/')"
  [ "$W_requests" -gt 0 ] || die "wrk: no request completed ($1)"
}

# run_hi SCEN(h|i) SERVER: 50 keep-alive connections, Accept-Encoding: gzip, SECS seconds.
run_hi() {
  local scen="$1" server="$2" pids t0 t1 wpid res="$CDIR/wrk-$1-$2-$ROUND.txt"
  pids=($(server_pids "${PID[$server]}"))
  t0="$(cpu_ticks "${pids[@]}")"
  "${CLIENT_PIN[@]}" timeout -k 5 $((SECS + 30)) wrk -t1 -c"$HI_CONNS" -d"${SECS}s" --timeout 5s \
    --latency -H "Accept-Encoding: gzip" -s "$BENCH_DIR/wrk/latency.lua" \
    "http://127.0.0.1:${PORT[$server]}/$scen/page.html" >"$res" 2>&1 &
  wpid=$!
  BENCH_BG+=("$wpid")
  wait "$wpid" || log "wrk exited non-zero for $server/$scen (see $res)"
  bg_done "$wpid"
  t1="$(cpu_ticks "${pids[@]}")"
  parse_bench "$res"
  local per_resp errs
  per_resp="$(awk "BEGIN { print $W_bytes / $W_requests }")"
  errs=$((W_err_connect + W_err_read + W_err_write + W_err_timeout + W_err_status))
  record "$scen" "$server" tput "$(awk "BEGIN { print $W_requests / ($W_duration_us / 1e6) }")"
  record "$scen" "$server" cpu_us_req "$(awk "BEGIN { print ($t1 - $t0) * 1e6 / $CLK_TCK / $W_requests }")"
  record "$scen" "$server" p99_us "$W_p99_us"
  record "$scen" "$server" bytes_resp "$per_resp"
  record "$scen" "$server" errors "$errs"
  # 64 KiB identity responses would be about 65.8 KB each on the wire.
  awk "BEGIN { exit !($per_resp > 40000) }" &&
    NOTES+=("$scen/$server round $ROUND: $per_resp bytes per response: not compressed under load?")
  log "$server/$scen: $W_requests requests, $((t1 - t0)) CPU ticks, $per_resp B/resp, errors $errs"
}

# wait_idle PIDS...: until the processes use no CPU for 0.5 s (the encoding queue has
# drained), at most 60 s; prints the seconds waited.
wait_idle() {
  local prev cur waited=0 i
  prev="$(cpu_ticks "$@")"
  for i in $(seq 120); do
    sleep 0.5
    cur="$(cpu_ticks "$@")"
    [ "$cur" = "$prev" ] && break
    prev="$cur"
    waited=$((waited + 1))
  done
  awk "BEGIN { print $waited / 2 }"
}

# run_j SERVER(srvd8|srvd64|srvd0|nginx) [baseline]: the small-file load for J_SECS, with the
# cold client (1000 paths once each) started 20% in, unless baseline.
run_j() {
  local server="$1" mode="${2:-cold}" label pids rss0 rss1 hwm t0 t1 wpid cpid drain
  local res="$CDIR/wrk-j-$server-$mode-$ROUND.txt" cold="$CDIR/cold-$server-$ROUND.txt"
  local ae=br
  [ "$server" = nginx ] && ae=gzip
  label="$server"
  [ "$mode" = baseline ] && label="${server}_alone"
  pids=($(server_pids "${PID[$server]}"))
  rss0="$(vm_kib VmRSS "${pids[@]}")"
  t0="$(cpu_ticks "${pids[@]}")"
  "${CLIENT_PIN[@]}" timeout -k 5 $((J_SECS + 30)) wrk -t1 -c"$SMALL_CONNS" -d"${J_SECS}s" \
    --timeout 5s --latency -s "$BENCH_DIR/wrk/latency.lua" \
    "http://127.0.0.1:${PORT[$server]}/small.html" >"$res" 2>&1 &
  wpid=$!
  BENCH_BG+=("$wpid")
  if [ "$mode" = cold ]; then
    sleep "$(awk "BEGIN { print $J_SECS * 0.2 }")"
    "${CLIENT_PIN[@]}" timeout -k 5 120 "$PY" "$CDIR/coldclient.py" "${PORT[$server]}" \
      "$CDIR/cold.paths" "$COLD_CONNS" "$ae" GET >"$cold" 2>&1 &
    cpid=$!
    BENCH_BG+=("$cpid")
    wait "$cpid" || log "the cold client exited non-zero for $server (see $cold)"
    bg_done "$cpid"
    kill -0 "$wpid" 2>/dev/null ||
      NOTES+=("j/$server round $ROUND: the cold requests outlasted the small-file load")
  fi
  wait "$wpid" || log "wrk exited non-zero for $label/j (see $res)"
  bg_done "$wpid"
  t1="$(cpu_ticks "${pids[@]}")"
  parse_bench "$res"
  local errs=$((W_err_connect + W_err_read + W_err_write + W_err_timeout + W_err_status))
  record j "$label" small_tput "$(awk "BEGIN { print $W_requests / ($W_duration_us / 1e6) }")"
  record j "$label" small_p50_us "$W_p50_us"
  record j "$label" small_p99_us "$W_p99_us"
  record j "$label" small_p999_us "$W_p999_us"
  record j "$label" small_max_us "$W_max_us"
  record j "$label" small_errors "$errs"
  record j "$label" cpu_s "$(awk "BEGIN { print ($t1 - $t0) / $CLK_TCK }")"
  log "$label/j: small-file $W_requests requests, p99 ${W_p99_us} µs, max ${W_max_us} µs, errors $errs"
  [ "$mode" = cold ] || return 0

  local line
  line="$(grep '^COLD ' "$cold" || true)"
  [ -n "$line" ] || die "no result from the cold client for $server: $(tail -3 "$cold" | tr '\n' ' ')"
  eval "$(echo "$line" | sed 's/^COLD //' | tr ' ' '\n' | sed 's/^/K_/')"
  [ "$K_requests" = "$COLD_FILES" ] && [ "$K_errors" = 0 ] && [ "$K_non200" = 0 ] ||
    NOTES+=("j/$server round $ROUND: cold client: $line")
  record j "$label" cold_seconds "$K_seconds"
  record j "$label" cold_p99_ms "$K_p99_ms"
  record j "$label" cold_max_ms "$K_max_ms"
  record j "$label" cold_identity "$K_identity"
  record j "$label" cold_encoded "$K_encoded"
  # After the load: let the encoding queue drain, then read the memory.
  drain="$(wait_idle "${pids[@]}")"
  rss1="$(vm_kib VmRSS "${pids[@]}")"
  hwm="$(vm_kib VmHWM "${pids[@]}")"
  record j "$label" drain_s "$drain"
  record j "$label" rss0_kib "$rss0"
  record j "$label" rss1_kib "$rss1"
  record j "$label" hwm_kib "$hwm"
  log "$label/j: cold $K_requests requests in $K_seconds s (identity $K_identity, $ae $K_encoded), idle after $drain s, RSS $rss0 -> $rss1 KiB, peak $hwm KiB"
  # What the 1000 br variants take: a HEAD with br on each, where the budget does not
  # bind (with 8 MiB the probe would disturb what it measures: each HEAD of an evicted
  # file queues it again, and its encoding can empty the cache before the probe ends).
  [ "$server" = srvd64 ] || return 0
  line="$("${CLIENT_PIN[@]}" timeout -k 5 120 "$PY" "$CDIR/coldclient.py" "${PORT[$server]}" \
    "$CDIR/cold.paths" 1 br HEAD | grep '^COLD ' || true)"
  [ -n "$line" ] || die "the HEAD probe failed for $server"
  eval "$(echo "$line" | sed 's/^COLD //' | tr ' ' '\n' | sed 's/^/K_/')"
  record j "$label" mem_variants "$K_encoded"
  record j "$label" mem_variant_kib "$(awk "BEGIN { print $K_enc_len / 1024 }")"
  log "$label/j: $K_encoded br variants in memory after the run, $K_enc_len bytes"
}

# ---------------------------------------------------------------- setup
if [ -n "${BENCH_SRVD_BIN:-}" ]; then
  [ -x "$BENCH_SRVD_BIN" ] || die "BENCH_SRVD_BIN=$BENCH_SRVD_BIN is not an executable"
  SRVD_BIN="$BENCH_SRVD_BIN"
  SRVD_LABEL="${BENCH_SRVD_REV:-unknown commit} ($SRVD_BIN)"
else
  build_srvd
  SRVD_LABEL="$(srvd_version)"
fi
gen_comp_root
cat "$CROOT"/h/* "$CROOT"/i/* "$CROOT"/*.html "$CROOT"/cold/* >/dev/null
PAGE="$CROOT/h/page.html"
GZ_LEN="$(stat -c %s "$PAGE.gz")"

start_server srvd
start_server nginx
log "srvd on 127.0.0.1:${PORT[srvd]} (pid ${PID[srvd]}), nginx on 127.0.0.1:${PORT[nginx]} (pid ${PID[nginx]})"

# (h): both send the sidecar.
for s in srvd nginx; do
  expect_coding "$s" /h/page.html gzip "$PAGE"
  [ "$C_LEN" = "$GZ_LEN" ] || die "$s /h/page.html: $C_LEN gzip bytes, the sidecar has $GZ_LEN"
  record h "$s" size "$C_LEN"
done
log "h: srvd and nginx both send the $GZ_LEN-byte sidecar with Content-Encoding: gzip"
# (i): srvd's cached variant (polled until it appears), nginx's per-request gzip.
for s in srvd nginx; do
  expect_coding "$s" /i/page.html gzip "$CROOT/i/page.html"
  record i "$s" size "$C_LEN"
  log "i: $s sends $C_LEN gzip bytes for the 65536-byte page"
done
# (j): the small file, and an encoded variant of a 64 KiB file not among the 1000.
fetch nginx /small.html identity "$CDIR/check.body"
[ "$C_STATUS" = 200 ] && [ "$C_LEN" = 1024 ] || die "nginx /small.html: status $C_STATUS, $C_LEN bytes"
expect_coding nginx /check.html gzip "$CROOT/check.html"

check_j_srvd() {
  fetch "$1" /small.html identity "$CDIR/check.body"
  [ "$C_STATUS" = 200 ] && [ "$C_LEN" = 1024 ] || die "$1 /small.html: status $C_STATUS, $C_LEN bytes"
  if [ "$1" = srvd0 ]; then
    sleep 0.5
    fetch "$1" /check.html br "$CDIR/check.body"
    [ "$C_STATUS" = 200 ] && [ -z "$C_ENC" ] || die "srvd0 /check.html: status $C_STATUS, Content-Encoding '$C_ENC' (on_the_fly = [])"
  else
    expect_coding "$1" /check.html br "$CROOT/check.html"
  fi
}

if [ "$SMOKE" = 0 ]; then
  log "warm-up: 1 s of h and i per server"
  for s in srvd nginx; do
    for scen in h i; do
      "${CLIENT_PIN[@]}" timeout 20 wrk -t1 -c"$HI_CONNS" -d1s -H "Accept-Encoding: gzip" \
        "http://127.0.0.1:${PORT[$s]}/$scen/page.html" >/dev/null 2>&1 || true
    done
  done
fi

LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
for ROUND in $(seq "$ROUNDS"); do
  for scen in h i; do
    order=(srvd nginx)
    [ $((ROUND % 2)) = 0 ] && order=(nginx srvd)
    for s in "${order[@]}"; do
      log "round $ROUND/$ROUNDS, $scen, $s"
      run_hi "$scen" "$s"
    done
  done
  jservers=(srvd8 srvd64 srvd0 nginx)
  n=${#jservers[@]}
  for k in $(seq 0 $((n - 1))); do
    s="${jservers[$(((k + ROUND - 1) % n))]}"
    log "round $ROUND/$ROUNDS, j, $s"
    if [ "$s" = nginx ]; then
      run_j nginx
    else
      start_server "$s"
      check_j_srvd "$s"
      if [ "$s" = srvd8 ]; then
        log "round $ROUND/$ROUNDS, j, srvd8 small-file load alone"
        run_j srvd8 baseline
      fi
      run_j "$s"
      stop_server "$s"
    fi
  done
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
{
  if [ "$SMOKE" = 1 ]; then echo "# srvd compression benchmark (smoke pass: short loads, 1 round; not a measurement)"; else echo "# srvd compression benchmark"; fi
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
  echo "- srvd $SRVD_LABEL, $( (nginx -v 2>&1 || true) | sed 's/.*: //'), wrk $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')"
  echo "- $PIN_NOTE; srvd workers = 1, nginx worker_processes 1; access logs off"
  echo "- h, i: ${SECS} s per load, $HI_CONNS keep-alive connections, wrk -t1, Accept-Encoding: gzip; j: ${J_SECS} s per load, $SMALL_CONNS small-file connections + $COLD_CONNS cold connections"
  echo "- $ROUNDS round(s) interleaved, medians; $ELAPSED s in all; load average before the loads $LOADAVG"
  echo "- CPU: server user+system from /proc/PID/stat (all its processes) over the load ÷ requests; RSS: VmRSS (peak: VmHWM) summed over master + worker"
  for n in "${NOTES[@]}"; do echo "- **$n**"; done
  echo
  "$PY" - "$RAW" "$COLD_FILES" <<'EOF'
import statistics, sys
from collections import defaultdict
data = defaultdict(list)
for line in open(sys.argv[1]):
    rnd, scen, server, key, value = line.rstrip("\n").split("\t")
    data[(scen, server, key)].append(float(value))
nfiles = int(sys.argv[2])
med = lambda *k: statistics.median(data[k]) if data.get(k) else None
def cell(v, fmt):
    return "–" if v is None else fmt(v)
verdict = lambda ok: "PASS" if ok else "FAIL"

for scen, title, target in (("h", "(h) 64 KiB HTML, `.gz` sidecar: srvd vs nginx `gzip_static on`", 0.8),
                            ("i", "(i) 64 KiB HTML, on the fly: srvd's cached variant vs nginx `gzip on` (level 1)", 0.33)):
    print(f"## {title}")
    print()
    print("| metric | srvd | nginx | srvd ÷ nginx |")
    print("|---|---|---|---|")
    rows = [("req/s", "tput", lambda v: f"{v:,.0f}"),
            ("server CPU (µs/req)", "cpu_us_req", lambda v: f"{v:.2f}"),
            ("p99 latency (ms)", "p99_us", lambda v: f"{v / 1000:.2f}"),
            ("bytes per response (wrk)", "bytes_resp", lambda v: f"{v:,.0f}"),
            ("gzip body (bytes)", "size", lambda v: f"{v:,.0f}"),
            ("errors (socket + non-2xx)", "errors", lambda v: f"{v:.0f}")]
    for label, key, fmt in rows:
        a, b = med(scen, "srvd", key), med(scen, "nginx", key)
        r = f"{a / b:.2f}" if a is not None and b and key != "errors" else "–"
        if key == "cpu_us_req" and r != "–":
            r = f"**{r}**"
        print(f"| {label} | {cell(a, fmt)} | {cell(b, fmt)} | {r} |")
    print()
    print("Server CPU µs/req per round: " + "; ".join(
        f"{s} " + " ".join(f"{v:.2f}" for v in data[(scen, s, 'cpu_us_req')]) for s in ("srvd", "nginx")))
    print()
    a, b = med(scen, "srvd", "cpu_us_req"), med(scen, "nginx", "cpu_us_req")
    if a and b:
        print(f"- CPU per request, srvd ÷ nginx: **{a / b:.3f}** (target ≤ {target}: {verdict(a / b <= target)})")
    if scen == "i":
        a, b = med("i", "srvd", "size"), med("i", "nginx", "size")
        if a and b:
            print(f"- compressed size, srvd ÷ nginx: {a / b:.3f} ({a:.0f} vs {b:.0f} bytes of a 65536-byte page; target ≤ 1: {verdict(a <= b)})")
    print()

print("## (j) cold cache: 1000 distinct 64 KiB files once each, one worker, small-file clients beside them")
print()
cols = [("srvd8", "srvd, cache_size 8MiB, cold clients br"),
        ("srvd64", "srvd, cache_size 64MiB, cold clients br"),
        ("srvd0", "srvd, on_the_fly = [], cold clients br"),
        ("srvd8_alone", "srvd 8MiB, small-file load alone"),
        ("nginx", "nginx reference, cold clients gzip (level 1 per request)")]
print("| metric | " + " | ".join(c[1] for c in cols) + " |")
print("|---|" + "---|" * len(cols))
ms = lambda v: f"{v / 1000:.2f}"
rows = [("small file: p50 (ms)", "small_p50_us", ms),
        ("small file: **p99 (ms)**", "small_p99_us", ms),
        ("small file: p99.9 (ms)", "small_p999_us", ms),
        ("small file: max (ms)", "small_max_us", ms),
        ("small file: req/s", "small_tput", lambda v: f"{v:,.0f}"),
        ("small file: errors", "small_errors", lambda v: f"{v:.0f}"),
        ("cold: seconds for the 1000", "cold_seconds", lambda v: f"{v:.2f}"),
        ("cold: p99 / max (ms)", None, None),
        ("cold: answered identity / encoded", None, None),
        ("server CPU over the load (s)", "cpu_s", lambda v: f"{v:.2f}"),
        ("busy after the load (s)", "drain_s", lambda v: f"{v:.1f}"),
        ("RSS before (MiB)", "rss0_kib", lambda v: f"{v / 1024:.1f}"),
        ("RSS after, queue drained (MiB)", "rss1_kib", lambda v: f"{v / 1024:.1f}"),
        ("RSS peak, VmHWM (MiB)", "hwm_kib", lambda v: f"{v / 1024:.1f}"),
        ("br variants in memory after (HEAD probe)", "mem_variants", lambda v: f"{v:.0f} of {nfiles}"),
        ("their bytes (MiB)", "mem_variant_kib", lambda v: f"{v / 1024:.2f}")]
for label, key, fmt in rows:
    cells = []
    for c, _ in cols:
        if key is None and label.startswith("cold: p99"):
            a, b = med("j", c, "cold_p99_ms"), med("j", c, "cold_max_ms")
            cells.append("–" if a is None else f"{a:.2f} / {b:.2f}")
        elif key is None:
            a, b = med("j", c, "cold_identity"), med("j", c, "cold_encoded")
            cells.append("–" if a is None else f"{a:.0f} / {b:.0f}")
        else:
            cells.append(cell(med("j", c, key), fmt))
    print(f"| {label} | " + " | ".join(cells) + " |")
print()
print("Small-file p99 / max (ms) per round: " + "; ".join(
    f"{c} " + " ".join(f"{p / 1000:.2f}/{m / 1000:.2f}" for p, m in zip(data[('j', c, 'small_p99_us')], data[('j', c, 'small_max_us')]))
    for c, _ in cols))
print()
p = med("j", "srvd8", "small_p99_us")
if p is not None:
    print(f"- srvd small-file p99 beside the cold load: **{p / 1000:.2f} ms** (target < 50 ms: {verdict(p < 50000)}); max {med('j', 'srvd8', 'small_max_us') / 1000:.2f} ms")
mib = lambda c, k: med("j", c, k) / 1024 if med("j", c, k) is not None else float("nan")
w = med("j", "srvd64", "mem_variant_kib")
if w is not None:
    print(f"- the 1000 br variants take {w / 1024:.2f} MiB (srvd64's probe), so cache_size 8MiB binds: "
          f"{'yes' if w > 8192 else 'NO'}")
for c in ("srvd8", "srvd64", "srvd0"):
    if med("j", c, "rss1_kib") is not None:
        print(f"- {c}: RSS {mib(c, 'rss0_kib'):.1f} MiB before, {mib(c, 'rss1_kib'):.1f} MiB after, "
              f"peak {mib(c, 'hwm_kib'):.1f} MiB (+{mib(c, 'hwm_kib') - mib(c, 'rss0_kib'):.1f} MiB)")
a, b = med("j", "srvd8", "hwm_kib"), med("j", "srvd8", "rss0_kib")
if a is not None:
    print(f"- srvd8 peak RSS growth within cache_size (8 MiB): {verdict(a - b <= 8192)}")
EOF
} >"$CDIR/results.md"
cat "$CDIR/results.md"
log "saved $CDIR/results.md (raw numbers: $RAW)"
