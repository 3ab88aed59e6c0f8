#!/usr/bin/env bash
# Virtual hosts (issue 9): srvd with 100 sites against nginx with 100 server blocks, and
# srvd with one site, on loopback, same CPU budget.
#
#   bench/sites.sh                      full run: BENCH_SECONDS (10) per load, BENCH_ROUNDS (3) rounds
#   bench/sites.sh --smoke              1 s, 1 round: checks that everything runs
#   bench/sites.sh --callgrind          instructions per request under callgrind (see below)
#   bench/sites.sh --callgrind --smoke  the same with 2000 requests per run
#
# Sites: site1.test .. site100.test, each with its own root holding a 1 KiB f1k.html
# (naming its site) and the same three header rules: X-Frame-Options DENY and
# X-Content-Type-Options nosniff on "/**", Cache-Control no-cache on "*.html".
#   srvd100   srvd, 100 [[site]] tables (hosts = ["site{i}.test"]) with [[site.headers]]
#   nginx100  nginx, 100 server blocks (server_name site{i}.test), the same roots, the
#             same headers with `add_header ... always` (in `location /` and, for the
#             Cache-Control one, `location ~ \.html$`, which repeats the other two since
#             nginx's add_header replaces the inherited ones)
#   srvd1     srvd, one [[site]] (site1.test), the same file and rules
# Both servers also keep a default site (the bench docroot) for unknown hosts.
# Load: wrk -t1 -c50, GET /f1k.html keep-alive, bench/wrk/sites.lua rotating the Host
# over site1..site100 request by request (srvd1: always site1.test, same script).
# Every host of every server is checked with curl first (status, body, headers).
#
# Fairness as in run.sh: each server pinned to CPU 0, wrk to CPU 1; one worker each
# (srvd workers = 1, nginx worker_processes 1); access logs off; sendfile on; keep-alive
# 60 s without a request cap. Server CPU = user+system ticks of all the server's
# processes (/proc/PID/stat) over the load ÷ requests. Rounds interleaved (srvd100 nginx100
# srvd1, then the next round in rotated order), medians over rounds.
# Targets (issue 9): srvd100 CPU/req ≤ 0.8 × nginx100, and ≤ 1.05 × srvd1.
#
# --callgrind: srvd only, under `valgrind --tool=callgrind --trace-children=yes` like
# bench/callgrind.sh; Ir per request = (Ir of the worker - Ir of an idle run of the same
# config) / requests, CG_KA_REQUESTS (20000) GETs of /f1k.html over one keep-alive
# connection:
#   rules0    one site (site1.test), no header rule
#   rules10   the same site, 10 top-level [[headers]] rules (inherited by the site),
#             globs matching and not matching /f1k.html: target ≤ 1.10 × rules0
#   sites1    srvd1's config, Host site1.test
#   sites100  srvd100's config, Host rotating over the 100 sites: the deterministic view of
#             the 5% target
#
# Knobs: BENCH_SECONDS, BENCH_ROUNDS, BENCH_SERVERS (subset of: srvd100 nginx100 srvd1),
# BENCH_PORT_BASE (18080; this script uses +20..+22, +25 under --callgrind),
# BENCH_NO_INSTALL=1, CG_KA_REQUESTS, CG_IDLE_SECONDS (5).
# Output: bench/out/sites/results.md (raw numbers: raw.tsv), bench/out/sites/callgrind/.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

CALLGRIND=0
rest=()
for a in "$@"; do
  if [ "$a" = --callgrind ]; then CALLGRIND=1; else rest+=("$a"); fi
done
[ ${#rest[@]} -le 1 ] || die "too many arguments: ${rest[*]} (try --help)"
parse_smoke_arg "$0" "${rest[@]}"

NSITES=100
SDIR="$OUT/sites"
SROOT="$SDIR/root"
PORT_BASE="${BENCH_PORT_BASE:-18080}"
CLK_TCK="$(getconf CLK_TCK)"
if [ "$SMOKE" = 1 ]; then
  SECS=1
  ROUNDS=1
  CG_KA="${CG_KA_REQUESTS:-2000}"
  CG_IDLE="${CG_IDLE_SECONDS:-2}"
else
  SECS="${BENCH_SECONDS:-10}"
  ROUNDS="${BENCH_ROUNDS:-3}"
  CG_KA="${CG_KA_REQUESTS:-20000}"
  CG_IDLE="${CG_IDLE_SECONDS:-5}"
fi
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a whole number of seconds >= 1"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be >= 1"
[[ "$CG_KA" =~ ^[1-9][0-9]*$ ]] || die "CG_KA_REQUESTS must be >= 1"

trap bench_cleanup EXIT
trap 'exit 130' INT TERM
raise_nofile
mkdir -p "$SDIR"

# ---------------------------------------------------------------- docroots
# $SROOT/site{i}/f1k.html: 1024 bytes of HTML naming its site, so a check can tell that
# a request reached the right root.
gen_site_roots() {
  local stamp="$SROOT/.complete" i
  [ -f "$stamp" ] && return 0
  log "generating $NSITES site roots in $SROOT"
  rm -rf "$SROOT"
  for i in $(seq "$NSITES"); do
    mkdir -p "$SROOT/site$i"
    "$PY" -c '
import sys
head = "<!DOCTYPE html><title>site%s</title>\n<p>" % sys.argv[1]
tail = "</p>\n"
sys.stdout.write(head + "x" * (1024 - len(head) - len(tail)) + tail)
' "$i" >"$SROOT/site$i/f1k.html"
    [ "$(stat -c %s "$SROOT/site$i/f1k.html")" = 1024 ] || die "site$i/f1k.html is not 1024 bytes"
  done
  touch "$stamp"
}

# ---------------------------------------------------------------- configs
# The three header rules of every site, as [[site.headers]] entries of the site above.
srvd_site_rules() {
  cat <<'EOF'

[[site.headers]]
match = "/**"
set = { "X-Frame-Options" = "DENY", "X-Content-Type-Options" = "nosniff" }

[[site.headers]]
match = "*.html"
set = { "Cache-Control" = "no-cache" }
EOF
}

# write_srvd_sites_conf FILE PORT N: lib.sh's srvd config (default site = bench docroot,
# access log off, workers = 1) plus sites site1..siteN, each with the three rules.
write_srvd_sites_conf() {
  local file="$1" port="$2" n="$3" i
  write_srvd_conf "$file" "$port" 1
  for i in $(seq "$n"); do
    printf '\n[[site]]\nhosts = ["site%d.test"]\nroot = "%s/site%d"\n' "$i" "$SROOT" "$i" >>"$file"
    srvd_site_rules >>"$file"
  done
}

# write_srvd_rules_conf FILE PORT NRULES(0|10): one site, site1.test, no rule of its own;
# with 10, ten top-level [[headers]] rules the site inherits. Against /f1k.html these
# match: 1, 2, 3, 7, 10; do not match: 4, 5, 6, 8, 9.
write_srvd_rules_conf() {
  local file="$1" port="$2" nrules="$3"
  write_srvd_conf "$file" "$port" 1
  if [ "$nrules" = 10 ]; then
    cat >>"$file" <<'EOF'

[[headers]]
match = "/**"
set = { "X-Frame-Options" = "DENY" }

[[headers]]
match = "/**"
set = { "X-Content-Type-Options" = "nosniff" }

[[headers]]
match = "*.html"
set = { "Cache-Control" = "no-cache" }

[[headers]]
match = "/assets/**"
set = { "Cache-Control" = "public, max-age=31536000, immutable" }

[[headers]]
match = "*.woff2"
set = { "Access-Control-Allow-Origin" = "*" }

[[headers]]
match = "/api/*"
set = { "X-Robots-Tag" = "noindex" }

[[headers]]
match = "/*.html"
set = { "Referrer-Policy" = "strict-origin-when-cross-origin" }

[[headers]]
match = "/downloads/**"
set = { "Content-Disposition" = "attachment" }

[[headers]]
match = "*.js"
remove = ["Server"]

[[headers]]
match = "/**"
on = "success"
set = { "Permissions-Policy" = "interest-cohort=()" }
EOF
  fi
  printf '\n[[site]]\nhosts = ["site1.test"]\nroot = "%s/site1"\n' "$SROOT" >>"$file"
}

# write_nginx_sites_conf FILE PORT DIR N: the http settings of lib.sh's write_nginx_conf
# (one worker, sendfile, access log off, keep-alive without a cap), a default server
# on the bench docroot, and N server blocks with the three headers.
write_nginx_sites_conf() {
  local file="$1" port="$2" dir="$3" n="$4" i
  mkdir -p "$dir"
  cat >"$file" <<EOF
# Generated by bench/sites.sh: nginx, one worker, sendfile on, access log off, $n sites.
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
        application/octet-stream bin;
    }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port default_server backlog=4096;
        server_name localhost;
        root $ROOT;
    }
EOF
  for i in $(seq "$n"); do
    cat >>"$file" <<EOF
    server {
        listen 127.0.0.1:$port;
        server_name site$i.test;
        root $SROOT/site$i;
        location / {
            add_header X-Frame-Options "DENY" always;
            add_header X-Content-Type-Options "nosniff" always;
        }
        location ~ \.html\$ {
            add_header X-Frame-Options "DENY" always;
            add_header X-Content-Type-Options "nosniff" always;
            add_header Cache-Control "no-cache" always;
        }
    }
EOF
  done
  echo "}" >>"$file"
}

# ---------------------------------------------------------------- checks
# check_site PORT HOST MARKER: GET /f1k.html with that Host answers 200 with the site's
# file and each of the three headers exactly once, and GET /missing.html answers 404
# with them too (rules apply to errors; nginx: `always`).
check_site() {
  local port="$1" host="$2" marker="$3" hdr="$SDIR/check.headers" body="$SDIR/check.body"
  local status h
  status="$(curl -sS --max-time 5 -H "Host: $host" -D "$hdr" -o "$body" -w '%{http_code}' \
    "http://127.0.0.1:$port/f1k.html")" || { log "curl failed for $host"; return 1; }
  [ "$status" = 200 ] || { log "$host /f1k.html: status $status"; return 1; }
  [ "$(stat -c %s "$body")" = 1024 ] && grep -q "<title>$marker</title>" "$body" ||
    { log "$host /f1k.html: not $marker's file"; return 1; }
  for h in 'x-frame-options: DENY' 'x-content-type-options: nosniff' 'cache-control: no-cache'; do
    [ "$(tr -d '\r' <"$hdr" | grep -ci "^$h\$")" = 1 ] || { log "$host /f1k.html: not once: $h"; return 1; }
  done
  status="$(curl -sS --max-time 5 -H "Host: $host" -D "$hdr" -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$port/missing.html")" || return 1
  [ "$status" = 404 ] || { log "$host /missing.html: status $status"; return 1; }
  for h in 'x-frame-options: DENY' 'x-content-type-options: nosniff'; do
    [ "$(tr -d '\r' <"$hdr" | grep -ci "^$h\$")" = 1 ] || { log "$host /missing.html: not once: $h"; return 1; }
  done
}

# check_server PORT N: every site answers as check_site says, and an unknown host
# reaches the default site (no f1k.html there: 404).
check_server() {
  local port="$1" n="$2" i status
  for i in $(seq "$n"); do
    check_site "$port" "site$i.test" "site$i" || return 1
  done
  status="$(curl -sS --max-time 5 -H "Host: unknown.test" -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$port/f1k.html")" || return 1
  [ "$status" = 404 ] || { log "unknown.test /f1k.html: status $status, expected the default site's 404"; return 1; }
}

# ================================================================ --callgrind
if [ "$CALLGRIND" = 1 ]; then
  CGDIR="$SDIR/callgrind"
  CGPORT=$((PORT_BASE + 25))
  command -v valgrind >/dev/null 2>&1 || apt_install valgrind
  command -v valgrind >/dev/null 2>&1 || die "valgrind is missing and could not be installed"
  command -v curl >/dev/null 2>&1 || apt_install curl
  build_srvd
  gen_root
  gen_site_roots
  rm -rf "$CGDIR"
  mkdir -p "$CGDIR"

  # Keep-alive client: N sequential GETs on one connection, Host rotating over
  # site1..siteH, each answer checked (status, Content-Length framing).
  cat >"$CGDIR/kaclient.py" <<'EOF'
import socket, sys, time
port, path, n, hosts = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
reqs = [(f"GET {path} HTTP/1.1\r\nHost: site{i}.test\r\nUser-Agent: srvd-bench\r\n"
         "Accept: */*\r\n\r\n").encode() for i in range(1, hosts + 1)]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""
t0 = time.monotonic()
for k in range(n):
    s.sendall(reqs[k % hosts])
    while b"\r\n\r\n" not in buf:
        c = s.recv(65536)
        if not c:
            sys.exit(f"closed after {k} responses")
        buf += c
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if lines[0].split()[1] != b"200":
        sys.exit(f"status {lines[0]!r} at request {k}")
    length = next(int(l.split(b":", 1)[1]) for l in lines[1:] if l.lower().startswith(b"content-length:"))
    while len(buf) < length:
        c = s.recv(65536)
        if not c:
            sys.exit("closed mid-body")
        buf += c
    buf = buf[length:]
s.close()
print(f"requests={n} hosts={hosts} seconds={time.monotonic() - t0:.3f}")
EOF

  ir_of() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }

  # cg_run CONFIG MODE(idle|ka) HOSTS: one valgrind run of srvd; RESULT = Ir of the worker.
  # (Not in a $(...) subshell: the EXIT trap must see the server's pid.)
  cg_run() {
    local cfg="$1" mode="$2" hosts="$3" pid i f file
    local prefix="$CGDIR/$cfg-$mode"
    port_open "$CGPORT" && die "port $CGPORT already in use"
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$prefix.%p.out" \
      "$SRVD_BIN" -c "$CGDIR/$cfg.toml" >"$prefix.log" 2>&1 &
    pid=$!
    BENCH_PIDS+=("$pid")
    wait_port "$CGPORT" 120 "$pid" || die "srvd ($cfg) did not start under valgrind (see $prefix.log)"
    case "$mode" in
      idle) sleep "$CG_IDLE" ;;
      ka)
        timeout 900 "$PY" "$CGDIR/kaclient.py" "$CGPORT" /f1k.html "$CG_KA" "$hosts" >"$prefix.client" ||
          die "$cfg: the client failed: $(cat "$prefix.client")"
        ;;
    esac
    kill -INT "$pid"
    for i in $(seq 600); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "srvd ($cfg) did not stop within 60 s"
    wait "$pid" 2>/dev/null || true
    BENCH_PIDS=()
    file=""
    for f in "$prefix".*.out; do
      [ "$f" != "$prefix.$pid.out" ] && file="$f"
    done
    [ -n "$file" ] && [ -f "$file" ] || die "no callgrind output of the worker for $cfg/$mode"
    ln -sf "$(basename "$file")" "$prefix.out"
    RESULT="$(ir_of "$file")"
    [ -n "$RESULT" ] || die "no instruction total in $file"
  }

  write_srvd_rules_conf "$CGDIR/rules0.toml" "$CGPORT" 0
  write_srvd_rules_conf "$CGDIR/rules10.toml" "$CGPORT" 10
  write_srvd_sites_conf "$CGDIR/sites1.toml" "$CGPORT" 1
  write_srvd_sites_conf "$CGDIR/sites100.toml" "$CGPORT" "$NSITES"
  for cfg in rules0 rules10 sites1 sites100; do
    "$SRVD_BIN" --check -c "$CGDIR/$cfg.toml" >"$CGDIR/$cfg.check" 2>&1 ||
      die "srvd --check rejects $cfg.toml (does this srvd have [[site]] and [[headers]]?): $(head -5 "$CGDIR/$cfg.check")"
  done

  # Outside valgrind, once: each config answers as expected.
  for cfg in rules10 sites1 sites100; do
    "$SRVD_BIN" -c "$CGDIR/$cfg.toml" >"$CGDIR/$cfg.stderr" 2>&1 &
    pid=$!
    BENCH_PIDS+=("$pid")
    wait_port "$CGPORT" 20 "$pid" || die "srvd ($cfg) did not start (see $CGDIR/$cfg.stderr)"
    case "$cfg" in
      rules10)
        check_site "$CGPORT" site1.test site1 || die "rules10: wrong answer"
        hdr="$(curl -sS --max-time 5 -H 'Host: site1.test' -D - -o /dev/null "http://127.0.0.1:$CGPORT/f1k.html" | tr -d '\r')"
        for h in 'referrer-policy: strict-origin-when-cross-origin' 'permissions-policy: interest-cohort=()'; do
          echo "$hdr" | grep -qi "^$h\$" || die "rules10: no '$h' on /f1k.html"
        done
        for h in x-robots-tag content-disposition access-control-allow-origin; do
          echo "$hdr" | grep -qi "^$h:" && die "rules10: '$h' on /f1k.html, its rule should not match"
        done
        ;;
      sites1) check_server "$CGPORT" 1 || die "sites1: wrong answers" ;;
      sites100) check_server "$CGPORT" "$NSITES" || die "sites100: wrong answers" ;;
    esac
    bench_cleanup
  done

  declare -A IR
  declare -A HOSTS=([rules0]=1 [rules10]=1 [sites1]=1 [sites100]=$NSITES)
  for cfg in rules0 rules10 sites1 sites100; do
    for mode in idle ka; do
      log "callgrind: $cfg $mode"
      cg_run "$cfg" "$mode" "${HOSTS[$cfg]}"
      IR[$cfg/$mode]="$RESULT"
      log "callgrind: $cfg/$mode: Ir $RESULT"
    done
  done
  per_req() { awk "BEGIN { printf \"%.0f\", (${IR[$1/ka]} - ${IR[$1/idle]}) / $CG_KA }"; }
  ratio() { awk "BEGIN { printf \"%.3f\", $(per_req "$1") / $(per_req "$2") }"; }
  verdict() { awk "BEGIN { print ($1 <= $2) ? \"PASS\" : \"FAIL\" }"; }
  r_rules="$(ratio rules10 rules0)"
  r_sites="$(ratio sites100 sites1)"
  {
    if [ "$SMOKE" = 1 ]; then echo "# srvd sites, callgrind (smoke pass: $CG_KA requests; not a measurement)"; else echo "# srvd sites, callgrind"; fi
    echo
    echo "- srvd $(srvd_version); $(date -u '+%Y-%m-%d %H:%M UTC'); GET /f1k.html (1 KiB), $CG_KA keep-alive requests over 1 connection"
    echo "- Ir per request = (Ir of the worker - Ir of an idle run of the same config, ${CG_IDLE} s) / requests"
    echo
    echo "| config | Host | Ir/req |"
    echo "|---|---|---|"
    echo "| one site, 0 header rules | site1.test | $(per_req rules0) |"
    echo "| one site, 10 header rules (5 match /f1k.html) | site1.test | $(per_req rules10) |"
    echo "| 1 site, 3 rules (srvd1) | site1.test | $(per_req sites1) |"
    echo "| 100 sites, 3 rules each (srvd100) | site1..site100 rotating | $(per_req sites100) |"
    echo
    echo "- 10 rules ÷ 0 rules: **$r_rules** (target ≤ 1.10: $(verdict "$r_rules" 1.10))"
    echo "- 100 sites ÷ 1 site: **$r_sites** (target for CPU per request ≤ 1.05: $(verdict "$r_sites" 1.05))"
  } >"$CGDIR/results.md"
  for cfg in rules0 rules10 sites1 sites100; do
    for mode in idle ka; do
      callgrind_annotate --inclusive=no --threshold=100 --auto=no "$CGDIR/$cfg-$mode.out" >"$CGDIR/$cfg-$mode.self.txt" 2>/dev/null || true
    done
    {
      echo
      echo "## $cfg: instructions per request by function (own, minus the idle run)"
      echo
      echo '```'
      "$PY" "$BENCH_DIR/cg_top.py" "$CGDIR/$cfg-ka.self.txt" "$CGDIR/$cfg-idle.self.txt" "$CG_KA" 25 || true
      echo '```'
    } >>"$CGDIR/profiles.md"
  done
  cat "$CGDIR/results.md"
  log "saved $CGDIR/results.md and profiles.md"
  exit 0
fi

# ================================================================ wrk run
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=("$(nginx_package)")
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
command -v wrk >/dev/null 2>&1 || die "wrk is missing and could not be installed"
command -v curl >/dev/null 2>&1 || die "curl is missing and could not be installed"

SERVER_PIN=()
CLIENT_PIN=()
PIN_NOTE="not pinned (fewer than 2 CPUs or no taskset): servers and load share the CPUs"
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 0)
  CLIENT_PIN=(taskset -c 1)
  PIN_NOTE="server pinned to CPU 0, load generator to CPU 1"
fi

build_srvd
gen_root
gen_site_roots
cat "$BENCH_DIR/wrk/sites.lua" "$BENCH_DIR/wrk/report.lua" >"$SDIR/sites.lua"
cat "$SROOT"/site*/f1k.html >/dev/null

declare -A PORT PID NHOSTS
SERVERS=()
NOTES=()

# start_server NAME PORT: starts, checks every host, registers.
start_server() {
  local name="$1" port="$2" dir="$SDIR/$1" n
  rm -rf "$dir"
  mkdir -p "$dir"
  port_open "$port" && die "$name: port $port already in use (another benchmark running?)"
  case "$name" in
    srvd100 | srvd1)
      n="${name#srvd}"
      write_srvd_sites_conf "$dir/srvd.toml" "$port" "$n"
      "$SRVD_BIN" --check -c "$dir/srvd.toml" >"$dir/check.log" 2>&1 ||
        die "$name: srvd --check rejects the config (does this srvd have [[site]] and [[headers]]?): $(head -5 "$dir/check.log")"
      "${SERVER_PIN[@]}" "$SRVD_BIN" -c "$dir/srvd.toml" >"$dir/stderr.log" 2>&1 &
      ;;
    nginx100)
      n=100
      write_nginx_sites_conf "$dir/nginx.conf" "$port" "$dir" "$n"
      "${SERVER_PIN[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$dir/stderr.log" 2>&1 &
      ;;
  esac
  local pid=$!
  BENCH_PIDS+=("$pid")
  wait_port "$port" 20 "$pid" || die "$name did not start (see $dir/stderr.log)"
  check_server "$port" "$n" || die "$name: wrong answers to the checks"
  PORT[$name]="$port"
  PID[$name]="$pid"
  NHOSTS[$name]="$n"
  SERVERS+=("$name")
  log "$name serving on 127.0.0.1:$port (pid $pid), $n site(s) checked"
}

WANT_SERVERS="${BENCH_SERVERS:-srvd100 nginx100 srvd1}"
i=0
for name in srvd100 nginx100 srvd1; do
  port=$((PORT_BASE + 20 + i))
  i=$((i + 1))
  case " $WANT_SERVERS " in *" $name "*) ;; *) continue ;; esac
  [ "$name" != nginx100 ] || command -v nginx >/dev/null 2>&1 || die "nginx is missing and could not be installed"
  start_server "$name" "$port"
done
[ ${#SERVERS[@]} -gt 0 ] || die "BENCH_SERVERS names none of: srvd100 nginx100 srvd1"
[ ${#SERVERS[@]} -eq 3 ] || NOTES+=("only ${SERVERS[*]} measured (BENCH_SERVERS)")

RAW="$SDIR/raw.tsv"
: >"$RAW"
record() { printf '%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" >>"$RAW"; }

# run_wrk SERVER: one bounded load, GET /f1k.html, 50 keep-alive connections.
run_wrk() {
  local server="$1" port="${PORT[$1]}" pid="${PID[$1]}" pids t0 t1 wpid line
  local res="$SDIR/wrk-$server-$ROUND.txt"
  pids=($(server_pids "$pid"))
  t0="$(cpu_ticks "${pids[@]}")"
  "${CLIENT_PIN[@]}" timeout -k 5 $((SECS + 30)) wrk -t1 -c50 -d"${SECS}s" --timeout 5s \
    -s "$SDIR/sites.lua" "http://127.0.0.1:$port/f1k.html" -- "${NHOSTS[$server]}" >"$res" 2>&1 &
  wpid=$!
  BENCH_BG+=("$wpid")
  wait "$wpid" || log "wrk exited non-zero for $server (see $res)"
  bg_done "$wpid"
  t1="$(cpu_ticks "${pids[@]}")"
  line="$(grep '^BENCH ' "$res" || true)"
  [ -n "$line" ] || die "no result from wrk for $server: $(tail -3 "$res" | tr '\n' ' ')"
  eval "$(echo "$line" | sed 's/^BENCH //' | tr ' ' '\n' | sed 's/^/local W_/')"
  [ "$W_requests" -gt 0 ] || die "$server: no request completed"
  record "$server" tput "$(awk "BEGIN { print $W_requests / ($W_duration_us / 1e6) }")"
  record "$server" cpu_us_req "$(awk "BEGIN { print ($t1 - $t0) * 1e6 / $CLK_TCK / $W_requests }")"
  record "$server" p99_us "$W_p99_us"
  record "$server" bytes_req "$(awk "BEGIN { print $W_bytes / $W_requests }")"
  record "$server" errors "$((W_err_connect + W_err_read + W_err_write + W_err_timeout + W_err_status))"
  log "$server: $W_requests requests, $((t1 - t0)) CPU ticks, p99 ${W_p99_us} µs, non-2xx $W_err_status"
}

if [ "$SMOKE" = 0 ]; then
  log "warm-up: 1 s per server"
  for s in "${SERVERS[@]}"; do
    "${CLIENT_PIN[@]}" timeout 20 wrk -t1 -c50 -d1s -s "$SDIR/sites.lua" \
      "http://127.0.0.1:${PORT[$s]}/f1k.html" -- "${NHOSTS[$s]}" >/dev/null 2>&1 || true
  done
fi

LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
for ROUND in $(seq "$ROUNDS"); do
  n=${#SERVERS[@]}
  for k in $(seq 0 $((n - 1))); do
    s="${SERVERS[$(((k + ROUND - 1) % n))]}"
    log "round $ROUND/$ROUNDS, $s"
    run_wrk "$s"
  done
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
{
  if [ "$SMOKE" = 1 ]; then echo "# srvd sites benchmark (smoke pass: 1 s, 1 round; not a measurement)"; else echo "# srvd sites benchmark"; fi
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
  echo "- srvd $(srvd_version), $( (nginx -v 2>&1 || true) | sed 's/.*: //'), wrk $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')"
  echo "- $PIN_NOTE; srvd workers = 1, nginx worker_processes 1; access logs off"
  echo "- GET /f1k.html (1 KiB), 50 keep-alive connections, wrk -t1, Host rotating per request over the server's sites (bench/wrk/sites.lua)"
  echo "- ${SECS} s per load, $ROUNDS round(s) interleaved, medians; $ELAPSED s in all; load average before the loads $LOADAVG (other work on the machine adds noise)"
  echo "- CPU: server user+system from /proc/PID/stat (all its processes) over the load ÷ requests"
  for n in "${NOTES[@]}"; do echo "- **$n**"; done
  echo
  "$PY" - "$RAW" <<'EOF'
import statistics, sys
from collections import defaultdict
data = defaultdict(list)
for line in open(sys.argv[1]):
    rnd, server, key, value = line.rstrip("\n").split("\t")
    data[(server, key)].append(float(value))
med = lambda s, k: statistics.median(data[(s, k)]) if data.get((s, k)) else None
servers = ["srvd100", "nginx100", "srvd1"]
rows = [
    ("req/s", "tput", lambda v: f"{v:,.0f}"),
    ("server CPU (µs/req)", "cpu_us_req", lambda v: f"{v:.2f}"),
    ("p99 latency (ms)", "p99_us", lambda v: f"{v / 1000:.2f}"),
    ("bytes per response", "bytes_req", lambda v: f"{v:.0f}"),
    ("errors (socket + non-2xx)", "errors", lambda v: f"{v:.0f}"),
]
print("| metric | srvd, 100 sites | nginx, 100 sites | srvd, 1 site | srvd100 ÷ nginx100 | srvd100 ÷ srvd1 |")
print("|---|---|---|---|---|---|")
for label, key, fmt in rows:
    m = {s: med(s, key) for s in servers}
    cells = [fmt(m[s]) if m[s] is not None else "–" for s in servers]
    def r(a, b):
        if key == "errors" or m[a] is None or not m[b]:
            return "–"
        return f"{m[a] / m[b]:.2f}"
    print(f"| {label} | " + " | ".join(cells) + f" | {r('srvd100', 'nginx100')} | {r('srvd100', 'srvd1')} |")
print()
print("Server CPU µs/req per round: " + "; ".join(
    f"{s} " + " ".join(f"{v:.2f}" for v in data[(s, 'cpu_us_req')]) for s in servers))
print()
c = {s: med(s, "cpu_us_req") for s in servers}
if all(c.values()):
    a, b = c["srvd100"] / c["nginx100"], c["srvd100"] / c["srvd1"]
    print(f"- CPU per request, srvd 100 sites ÷ nginx 100 sites: **{a:.3f}** (target ≤ 0.80: {'PASS' if a <= 0.80 else 'FAIL'})")
    print(f"- CPU per request, srvd 100 sites ÷ srvd 1 site: **{b:.3f}** (target ≤ 1.05: {'PASS' if b <= 1.05 else 'FAIL'})")
EOF
} >"$SDIR/results.md"
cat "$SDIR/results.md"
log "saved $SDIR/results.md (raw numbers: $RAW)"
