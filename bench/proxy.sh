#!/usr/bin/env bash
# Reverse proxy (issue 11): srvd's [[proxy]] routes against nginx's proxy_pass, on
# loopback, same CPU budget.
#
#   bench/proxy.sh           full run: BENCH_SECONDS (10) per load, BENCH_ROUNDS (3) rounds
#   bench/proxy.sh --smoke   1 s per load, 1 round, (r) with 10 clients at ~1 MB/s:
#                            checks that everything runs
#   bench/proxy.sh --syscalls  system calls per request of each proxy's worker
#                            (strace -c -f during a BENCH_SECONDS (3) wrk load of p and
#                            q); bench/out/proxy/syscalls.md. strace slows the servers:
#                            only the counts per request mean something.
#
# Proxies: srvd (workers = 1) and nginx (worker_processes 1), both pinned to CPU 0, access
# logs off, each with three routes to three upstreams, tried in this order:
#   *.py  -> gunicorn running examples/wsgi/app.py, 4 sync workers, unix socket   (q)
#   /r/   -> bench/proxy_r.py upstream, 127.0.0.1 (1 MiB answers, logs each conn)  (r)
#   /     -> a second nginx, `return 200` with a 1 KiB body, keep-alive            (p)
# srvd: [[proxy]] suffix = ".py" / match = "/r/" / match = "/" with the default route
# settings (keepalive = 32, keepalive_timeout = 1s). nginx: `upstream { server ...;
# keepalive 32; keepalive_requests 1000000; }`, `proxy_http_version 1.1;
# proxy_set_header Connection "";` and, so that both send the app the same headers,
# Host $http_host, X-Forwarded-For / -Proto / -Host and Via; proxy_buffering on (the
# default) with proxy_temp_path in bench/out/proxy/nginx.
#
# Scenarios:
#   p  GET /1k through each proxy to the fixed upstream, wrk -t1 -c50 --latency. The
#      upstream nginx has its own single worker pinned to CPU 1 with wrk, away from the
#      proxies. Reported: proxy CPU µs/request (target srvd <= 0.8 x nginx), req/s, p99,
#      and the upstream's CPU per request beside.
#   q  GET /time.py through each proxy to gunicorn (4 sync workers, unix socket),
#      wrk -t1 -c50. gunicorn is not pinned (BENCH_APP_CPUS pins it), so CPU the proxy
#      spends on CPU 0 is CPU the app does not get. Reported: req/s (target srvd >=
#      nginx), proxy and gunicorn CPU per request.
#   r  BENCH_R_CONNS (100) clients at once, each GET of a 1 MiB answer on its own
#      connection, reading 10 KiB every 100 ms (~100 KB/s, SO_RCVBUF 32 KiB), through
#      each proxy (proxy_buffering on for nginx, the default) to bench/proxy_r.py's
#      upstream, which produces the 1 MiB in 16 pieces over BENCH_R_PRODUCE_MS (50) ms,
#      answers `Connection: close` and measures, per connection, from accept to the
#      proxy's close ("held"; also to its last write, "sent"). The production time is
#      the upstream alone, 10 requests one at a time read by a fast client on CPU 0
#      ("direct-one"). References in the same rounds: the 100 connections straight to
#      the upstream at once, read as fast as possible from CPU 0 ("direct-fast"), and
#      read slowly ("direct-slow": what an unbuffered path costs the app). Target: held
#      <= 2 x the production time for both proxies (median and max reported). The
#      upstream and the slow clients run on CPU 1.
#
# Rounds are interleaved (p: srvd nginx, q: srvd nginx, r: direct-one, direct-fast,
# srvd, nginx, direct-slow; the proxy order alternates every round), medians over rounds for p and q;
# for r the held times of every connection of every round are pooled.
# Server CPU = user+system ticks of all the proxy's processes (/proc/PID/stat) over the
# load ÷ requests.
#
# Knobs: BENCH_SECONDS, BENCH_ROUNDS, BENCH_SCENARIOS (subset of: p q r), BENCH_CONNS (50,
# for p and q), BENCH_R_CONNS (100), BENCH_R_PRODUCE_MS (50), BENCH_APP_CPUS (unset:
# gunicorn not pinned), BENCH_PORT_BASE (18080; this script uses +60..+63),
# BENCH_NO_INSTALL=1. Output: bench/out/proxy/results.md (raw numbers: raw.tsv, r-*.json).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

SYSCALLS=0
rest=()
for a in "$@"; do
  if [ "$a" = --syscalls ]; then SYSCALLS=1; else rest+=("$a"); fi
done
[ ${#rest[@]} -le 1 ] || die "too many arguments: ${rest[*]} (try --help)"
parse_smoke_arg "$0" "${rest[@]}"

PDIR="$OUT/proxy"
PORT_BASE="${BENCH_PORT_BASE:-18080}"
CLK_TCK="$(getconf CLK_TCK)"
CONNS="${BENCH_CONNS:-50}"
R_PRODUCE_MS="${BENCH_R_PRODUCE_MS:-50}"
R_SIZE=$((1024 * 1024))
R_INTERVAL=0.1
if [ "$SMOKE" = 1 ]; then
  SECS=1
  ROUNDS=1
  R_CONNS="${BENCH_R_CONNS:-10}"
  R_ONE=3
  R_CHUNK=102400
else
  SECS="${BENCH_SECONDS:-10}"
  [ "$SYSCALLS" = 0 ] || SECS="${BENCH_SECONDS:-3}"
  ROUNDS="${BENCH_ROUNDS:-3}"
  R_CONNS="${BENCH_R_CONNS:-100}"
  R_ONE=10
  R_CHUNK=10240
fi
SCENARIOS="${BENCH_SCENARIOS:-p q r}"
[ "$SYSCALLS" = 0 ] || SCENARIOS="${BENCH_SCENARIOS:-p q}"
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a whole number of seconds >= 1"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be >= 1"
[[ "$CONNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNS must be >= 1"
[[ "$R_CONNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_R_CONNS must be >= 1"
for s in $SCENARIOS; do
  case "$s" in p | q | r) ;; *) die "unknown scenario: $s (BENCH_SCENARIOS: p q r)" ;; esac
done
has_scen() { case " $SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

SRVD_PORT=$((PORT_BASE + 60))
NGINX_PORT=$((PORT_BASE + 61))
FIXED_PORT=$((PORT_BASE + 62))
R_PORT=$((PORT_BASE + 63))
APP_SOCK="$PDIR/gunicorn.sock"

trap bench_cleanup EXIT
trap 'exit 130' INT TERM
raise_nofile
rm -rf "$PDIR"
mkdir -p "$PDIR"

# ---------------------------------------------------------------- tools
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=("$(nginx_package)")
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
for t in wrk nginx curl; do
  command -v "$t" >/dev/null 2>&1 || die "$t is missing and could not be installed"
done
if has_scen q; then
  [ -f "$REPO_DIR/examples/wsgi/app.py" ] || die "no examples/wsgi/app.py (scenario q needs it; BENCH_SCENARIOS='p r' skips it)"
  if ! "$PY" -c 'import gunicorn' 2>/dev/null && [ -z "${BENCH_NO_INSTALL:-}" ]; then
    log "installing gunicorn: $PY -m pip install -r .ci/python-requirements.txt"
    timeout 600 "$PY" -m pip install -q -r "$REPO_DIR/.ci/python-requirements.txt" >&2 || true
  fi
  "$PY" -c 'import gunicorn' 2>/dev/null || die "gunicorn is missing (python3 -m pip install -r .ci/python-requirements.txt)"
fi

SERVER_PIN=()
CLIENT_PIN=()
PIN_NOTE="not pinned (fewer than 2 CPUs or no taskset): proxies, upstreams and load share the CPUs"
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 0)
  CLIENT_PIN=(taskset -c 1)
  PIN_NOTE="proxies pinned to CPU 0; wrk, the fixed nginx upstream, the (r) upstream and the (r) slow clients to CPU 1 (the (r) fast readers of the upstream alone: CPU 0)"
fi
APP_PIN=()
APP_NOTE="gunicorn not pinned (both CPUs)"
if [ -n "${BENCH_APP_CPUS:-}" ] && command -v taskset >/dev/null 2>&1; then
  APP_PIN=(taskset -c "$BENCH_APP_CPUS")
  APP_NOTE="gunicorn pinned to CPU(s) $BENCH_APP_CPUS"
fi

build_srvd
# A private copy: a rebuild by someone else during the run cannot change what is measured.
SRVD="$PDIR/srvd"
cp "$SRVD_BIN" "$SRVD"
SRVD_VERSION="$(srvd_version)"
gen_root

# ---------------------------------------------------------------- configs
# The fixed upstream's body: 1024 bytes, letters only (no nginx escaping).
FIXED_BODY="$("$PY" -c 'import string; s = string.ascii_letters * 20; print(s[:1023])')"
printf '%s\n' "$FIXED_BODY" >"$PDIR/fixed.body"
[ "$(stat -c %s "$PDIR/fixed.body")" = 1024 ] || die "fixed body is not 1024 bytes"


# write_fixed_conf FILE PORT DIR: nginx as the fast fixed-response upstream of (p).
write_fixed_conf() {
  mkdir -p "$3"
  cat >"$1" <<EOF
# Generated by bench/proxy.sh: the fixed-response upstream, one worker, no access log.
$(nginx_head "$3" on 32768)
http {
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_body_temp_path $3/body;
    proxy_temp_path $3/proxy_temp;
    default_type text/plain;
    server {
        listen 127.0.0.1:$2 backlog=4096;
        server_name localhost;
        location / {
            return 200 "$FIXED_BODY\n";
        }
        # Connections accepted so far: upstream connections the proxy opened per request.
        location = /__status {
            stub_status;
        }
    }
}
EOF
}

# write_nginx_proxy_conf FILE PORT DIR: nginx as the proxy.
write_nginx_proxy_conf() {
  mkdir -p "$3"
  cat >"$1" <<EOF
# Generated by bench/proxy.sh: nginx reverse proxy, one worker, no access log.
$(nginx_head "$3" on 32768)
http {
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_body_temp_path $3/body;
    proxy_temp_path $3/proxy_temp;
    upstream fixed {
        server 127.0.0.1:$FIXED_PORT;
        keepalive 32;
        keepalive_requests 1000000;
    }
    upstream app {
        server unix:$APP_SOCK;
        keepalive 32;
    }
    upstream slow {
        server 127.0.0.1:$R_PORT;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$2 backlog=4096;
        server_name localhost;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host \$http_host;
        proxy_set_header X-Forwarded-For \$remote_addr;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_set_header X-Forwarded-Host \$http_host;
        proxy_set_header Via "1.1 nginx";
        location ~ \.py\$ {
            proxy_pass http://app;
        }
        location /r/ {
            proxy_pass http://slow;
        }
        location / {
            proxy_pass http://fixed;
        }
    }
}
EOF
}

# write_srvd_proxy_conf FILE PORT: lib.sh's srvd config plus the three routes.
write_srvd_proxy_conf() {
  write_srvd_conf "$1" "$2" 1
  cat >>"$1" <<EOF

[[proxy]]
suffix = ".py"
upstream = "unix:$APP_SOCK"

[[proxy]]
match = "/r/"
upstream = "127.0.0.1:$R_PORT"

[[proxy]]
match = "/"
upstream = "127.0.0.1:$FIXED_PORT"
EOF
}

# ---------------------------------------------------------------- processes
declare -A PID
# start_bg NAME PORT|"" CMD...: starts a long-lived process, registers it for cleanup.
start_bg() {
  local name="$1" port="$2"
  shift 2
  if [ -n "$port" ]; then
    port_open "$port" && die "$name: port $port already in use (another benchmark running?)"
  fi
  "$@" >"$PDIR/$name.stderr" 2>&1 &
  local pid=$!
  BENCH_PIDS+=("$pid")
  PID[$name]="$pid"
  if [ -n "$port" ]; then
    wait_port "$port" 20 "$pid" || die "$name did not start (see $PDIR/$name.stderr)"
  fi
  log "$name started (pid $pid${port:+, 127.0.0.1:$port})"
}

write_fixed_conf "$PDIR/fixed/nginx.conf" "$FIXED_PORT" "$PDIR/fixed"
write_nginx_proxy_conf "$PDIR/nginx/nginx.conf" "$NGINX_PORT" "$PDIR/nginx"
write_srvd_proxy_conf "$PDIR/srvd.toml" "$SRVD_PORT"
"$SRVD" --check -c "$PDIR/srvd.toml" >"$PDIR/srvd-check.log" 2>&1 ||
  die "srvd --check rejects the config (does this srvd have [[proxy]]?): $(head -5 "$PDIR/srvd-check.log")"

start_bg fixed "$FIXED_PORT" "${CLIENT_PIN[@]}" nginx -p "$PDIR/fixed" -e "$PDIR/fixed/error.log" -c "$PDIR/fixed/nginx.conf"
if has_scen r; then
  : >"$PDIR/r-upstream.log"
  start_bg r-upstream "$R_PORT" "${CLIENT_PIN[@]}" "$PY" "$BENCH_DIR/proxy_r.py" upstream \
    --port "$R_PORT" --size "$R_SIZE" --pieces 16 --produce-ms "$R_PRODUCE_MS" \
    --log "$PDIR/r-upstream.log" --max-seconds 3600
fi
if has_scen q; then
  rm -f "$APP_SOCK"
  SRVD_WSGI_DB="$PDIR/users.sqlite3" start_bg gunicorn "" "${APP_PIN[@]}" "$PY" -m gunicorn \
    --workers 4 --worker-class sync --bind "unix:$APP_SOCK" --chdir "$REPO_DIR/examples/wsgi" \
    --graceful-timeout 2 --log-level warning app:application
  for i in $(seq 200); do
    [ -S "$APP_SOCK" ] && curl -sf --max-time 2 --unix-socket "$APP_SOCK" -o /dev/null http://localhost/time.py && break
    kill -0 "${PID[gunicorn]}" 2>/dev/null || die "gunicorn exited (see $PDIR/gunicorn.stderr)"
    sleep 0.1
  done
  curl -sf --max-time 2 --unix-socket "$APP_SOCK" -o /dev/null http://localhost/time.py ||
    die "gunicorn does not answer /time.py on $APP_SOCK (see $PDIR/gunicorn.stderr)"
fi
start_bg srvd "$SRVD_PORT" "${SERVER_PIN[@]}" "$SRVD" -c "$PDIR/srvd.toml"
start_bg nginx "$NGINX_PORT" "${SERVER_PIN[@]}" nginx -p "$PDIR/nginx" -e "$PDIR/nginx/error.log" -c "$PDIR/nginx/nginx.conf"
declare -A PORT=([srvd]="$SRVD_PORT" [nginx]="$NGINX_PORT")

# ---------------------------------------------------------------- checks
# check PORT PATH: status 200 and the body the upstream would send.
fetch() { curl -sS --max-time 10 -o "$PDIR/check.body" -w '%{http_code} %{size_download}' "http://127.0.0.1:$1$2"; }
cmp_fixed() { cmp -s "$PDIR/check.body" "$PDIR/fixed.body"; }
[ "$(fetch "$FIXED_PORT" /1k)" = "200 1024" ] && cmp_fixed || die "the fixed upstream does not answer 200 with its 1 KiB body"
for s in srvd nginx; do
  p="${PORT[$s]}"
  if has_scen p; then
    r="$(fetch "$p" /1k)"
    [ "$r" = "200 1024" ] && cmp_fixed || die "$s: GET /1k through the proxy: '$r', expected 200 and the upstream's 1 KiB body"
  fi
  if has_scen q; then
    r="$(fetch "$p" /time.py)"
    [ "${r%% *}" = 200 ] && grep -q 'Server time' "$PDIR/check.body" ||
      die "$s: GET /time.py through the proxy: '$r', expected 200 and the app's time page"
  fi
  if has_scen r; then
    r="$(fetch "$p" /r/check)"
    [ "$r" = "200 $R_SIZE" ] || die "$s: GET /r/check through the proxy: '$r', expected 200 $R_SIZE"
  fi
  log "$s: the proxied routes answer as expected"
done
if has_scen q; then
  TIME_BYTES="$(curl -sS --max-time 10 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$SRVD_PORT/time.py")"
fi

# ---------------------------------------------------------------- loads
RAW="$PDIR/raw.tsv"
: >"$RAW"
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" "$4" >>"$RAW"; }
cp "$BENCH_DIR/wrk/report.lua" "$PDIR/report.lua"

# Connections the fixed upstream has accepted so far (stub_status).
fixed_accepts() {
  curl -sS --max-time 5 "http://127.0.0.1:$FIXED_PORT/__status" | awk 'NR == 3 { print $1 }'
}

# run_wrk SERVER SCEN PATH BACKEND_PID: one bounded wrk load through the proxy; records
# req/s, p99, the proxy's CPU per request and the backend's.
run_wrk() {
  local server="$1" scen="$2" path="$3" backend="$4" port="${PORT[$1]}" pids bpids t0 t1 b0 b1 wpid line
  local res="$PDIR/wrk-$scen-$server-$ROUND.txt" a0 a1
  pids=($(server_pids "${PID[$server]}"))
  if [ "$scen" = p ]; then a0="$(fixed_accepts)"; fi
  bpids=($(server_pids "$backend"))
  t0="$(cpu_ticks "${pids[@]}")"
  b0="$(cpu_ticks "${bpids[@]}")"
  "${CLIENT_PIN[@]}" timeout -k 5 $((SECS + 30)) wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 5s --latency \
    -s "$PDIR/report.lua" "http://127.0.0.1:$port$path" >"$res" 2>&1 &
  wpid=$!
  BENCH_BG+=("$wpid")
  wait "$wpid" || log "wrk exited non-zero for $server/$scen (see $res)"
  bg_done "$wpid"
  t1="$(cpu_ticks "${pids[@]}")"
  b1="$(cpu_ticks "${bpids[@]}")"
  if [ "$scen" = p ]; then a1="$(fixed_accepts)"; fi
  line="$(grep '^BENCH ' "$res" || true)"
  [ -n "$line" ] || die "no result from wrk for $server/$scen: $(tail -3 "$res" | tr '\n' ' ')"
  eval "$(echo "$line" | sed 's/^BENCH //' | tr ' ' '\n' | sed 's/^/local W_/')"
  [ "$W_requests" -gt 0 ] || die "$server/$scen: no request completed"
  record "$scen" "$server" tput "$(awk "BEGIN { print $W_requests / ($W_duration_us / 1e6) }")"
  record "$scen" "$server" cpu_us_req "$(awk "BEGIN { print ($t1 - $t0) * 1e6 / $CLK_TCK / $W_requests }")"
  record "$scen" "$server" backend_cpu_us_req "$(awk "BEGIN { print ($b1 - $b0) * 1e6 / $CLK_TCK / $W_requests }")"
  record "$scen" "$server" p99_us "$W_p99_us"
  # The status request itself is one accepted connection.
  if [ "$scen" = p ]; then
    record "$scen" "$server" upstream_conns_per_1k "$(awk "BEGIN { print ($a1 - $a0 - 1) * 1000 / $W_requests }")"
  fi
  record "$scen" "$server" p50_us "$W_p50_us"
  record "$scen" "$server" bytes_req "$(awk "BEGIN { print $W_bytes / $W_requests }")"
  record "$scen" "$server" errors "$((W_err_connect + W_err_read + W_err_write + W_err_timeout + W_err_status))"
  log "$server/$scen: $W_requests requests, proxy $((t1 - t0)) CPU ticks, backend $((b1 - b0)), p99 ${W_p99_us} µs, errors+non-2xx $((W_err_connect + W_err_read + W_err_write + W_err_timeout + W_err_status))"
}

# run_r ROW: the (r) clients; ROW is srvd, nginx, direct-one, direct-fast or direct-slow.
R_EXPECT_S="$(awk "BEGIN { print $R_SIZE / $R_CHUNK * $R_INTERVAL }")"
R_MAX_S="$(awk "BEGIN { printf \"%d\", $R_EXPECT_S * 3 + 20 }")"
run_r() {
  local row="$1" port slow=(--slow) pids=() t0 t1 prefix out cpid i n pin=("${CLIENT_PIN[@]}")
  local conns="$R_CONNS"
  case "$row" in
    srvd | nginx)
      port="${PORT[$row]}"
      pids=($(server_pids "${PID[$row]}"))
      ;;
    direct-fast)
      # Read as fast as a proxy would, from the proxies' CPU (idle meanwhile), so that
      # the reader does not take CPU 1 from the upstream.
      port="$R_PORT"
      slow=()
      pin=("${SERVER_PIN[@]}")
      ;;
    direct-one)
      # The production time with nothing else going on: R_ONE requests one at a time.
      port="$R_PORT"
      slow=(--sequential)
      pin=("${SERVER_PIN[@]}")
      conns="$R_ONE"
      ;;
    direct-slow) port="$R_PORT" ;;
  esac
  prefix="/r/$row-$ROUND"
  out="$PDIR/r-$row-$ROUND"
  t0="$(cpu_ticks "${pids[@]}")"
  "${pin[@]}" timeout -k 5 $((R_MAX_S + 15)) "$PY" "$BENCH_DIR/proxy_r.py" clients \
    --port "$port" --path "$prefix" --conns "$conns" --size "$R_SIZE" "${slow[@]}" \
    --chunk "$R_CHUNK" --interval "$R_INTERVAL" --rcvbuf 32768 --max-seconds "$R_MAX_S" \
    >"$out.clients.json" 2>"$out.clients.err" &
  cpid=$!
  BENCH_BG+=("$cpid")
  wait "$cpid" || log "$row: some clients failed: $(cat "$out.clients.json" "$out.clients.err" | head -3)"
  bg_done "$cpid"
  t1="$(cpu_ticks "${pids[@]}")"
  # Every upstream connection logs a line when it ends; wait (bounded) for all of them.
  for i in $(seq 300); do
    n="$(grep -c "\"path\": \"$prefix/" "$PDIR/r-upstream.log" || true)"
    [ "$n" -ge "$conns" ] && break
    sleep 0.1
  done
  "$PY" "$BENCH_DIR/proxy_r.py" summary --log "$PDIR/r-upstream.log" --prefix "$prefix" >"$out.json"
  "$PY" - "$out.json" "$out.clients.json" "$ROUND" "$row" "$RAW" "$((t1 - t0))" "$CLK_TCK" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
try:
    c = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
except (IndexError, ValueError):
    c = {"completed": 0, "errors": -1}
rnd, row, raw, ticks, tck = sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
with open(raw, "a") as f:
    def rec(k, v):
        if v is not None:
            f.write(f"{rnd}\tr\t{row}\t{k}\t{v}\n")
    rec("conns", s["conns"])
    rec("upstream_errors", s["errors"])
    rec("held_median_ms", s.get("held_median_ms"))
    rec("held_max_ms", s.get("held_max_ms"))
    rec("sent_median_ms", s.get("sent_median_ms"))
    rec("sent_max_ms", s.get("sent_max_ms"))
    rec("client_completed", c.get("completed"))
    rec("client_errors", c.get("errors"))
    rec("client_s_median", c.get("client_s_median"))
    rec("client_s_max", c.get("client_s_max"))
    if row in ("srvd", "nginx") and c.get("completed"):
        rec("cpu_ms_resp", ticks * 1000 / tck / c["completed"])
print(f"{row}: {s['conns']} upstream conns, held median {s.get('held_median_ms')} ms, max {s.get('held_max_ms')} ms; "
      f"clients {c.get('completed')} complete, {c.get('errors')} errors, median {c.get('client_s_median')} s", file=sys.stderr)
EOF
}

# ---------------------------------------------------------------- --syscalls
if [ "$SYSCALLS" = 1 ]; then
  command -v strace >/dev/null 2>&1 || apt_install strace
  command -v strace >/dev/null 2>&1 || die "strace is missing and could not be installed"
  : >"$PDIR/syscalls.tsv"
  for scen in p q; do
    has_scen "$scen" || continue
    path=/1k
    [ "$scen" = p ] || path=/time.py
    for s in srvd nginx; do
      workers=($(child_pids "${PID[$s]}"))
      [ ${#workers[@]} -gt 0 ] || die "$s: no worker process found"
      sargs=()
      for w in "${workers[@]}"; do sargs+=(-p "$w"); done
      trace="$PDIR/strace-$scen-$s.txt"
      timeout -k 5 $((SECS + 60)) strace -c -f -o "$trace" "${sargs[@]}" 2>"$PDIR/strace-$scen-$s.err" &
      spid=$!
      BENCH_BG+=("$spid")
      sleep 1
      res="$PDIR/wrk-syscalls-$scen-$s.txt"
      "${CLIENT_PIN[@]}" timeout -k 5 $((SECS + 30)) wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 5s \
        -s "$PDIR/report.lua" "http://127.0.0.1:${PORT[$s]}$path" >"$res" 2>&1 || true
      kill -INT "$spid" 2>/dev/null || true
      wait "$spid" || true
      bg_done "$spid"
      n="$(grep '^BENCH ' "$res" | sed 's/.*requests=\([0-9]*\).*/\1/')"
      [ -n "$n" ] && [ "$n" -gt 0 ] || die "$s/$scen: no request completed under strace (see $res)"
      [ -s "$trace" ] || die "$s/$scen: no strace summary (see $PDIR/strace-$scen-$s.err)"
      printf '%s\t%s\t%s\t%s\n' "$scen" "$s" "$n" "$trace" >>"$PDIR/syscalls.tsv"
      log "$s/$scen: $n requests under strace"
    done
  done
  {
    echo "# srvd proxy: system calls per request (strace -c -f on the worker)"
    echo
    echo "- srvd $SRVD_VERSION, $( (nginx -v 2>&1 || true) | sed 's/.*: //'); $(date -u '+%Y-%m-%d %H:%M UTC'); wrk -t1 -c$CONNS, ${SECS} s per load under strace"
    echo
    "$PY" - "$PDIR/syscalls.tsv" <<'EOF'
import sys
from collections import defaultdict
runs = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def parse(path):
    calls, errors = {}, {}
    for line in open(path):
        f = line.split()
        if len(f) < 5 or not f[0][0].isdigit() or f[-1] == "total":
            continue
        calls[f[-1]] = int(f[3])
        errors[f[-1]] = int(f[4]) if len(f) == 6 else 0
    return calls, errors
for scen in ("p", "q"):
    rs = {s: (int(n), parse(t)) for sc, s, n, t in runs if sc == scen}
    if not rs:
        continue
    title = "p: GET /1k via the fixed upstream" if scen == "p" else "q: GET /time.py via gunicorn"
    print(f"## {title}")
    print()
    print("| syscall | srvd calls/req (failed) | nginx calls/req (failed) |")
    print("|---|---|---|")
    names = sorted({k for n, (c, e) in rs.values() for k in c},
                   key=lambda k: -max(rs[s][1][0].get(k, 0) / rs[s][0] for s in rs))
    tot = defaultdict(float)
    for k in names:
        cells, big = [], False
        for s in ("srvd", "nginx"):
            if s not in rs:
                cells.append("–")
                continue
            n, (c, e) = rs[s]
            v = c.get(k, 0) / n
            tot[s] += v
            big = big or v >= 0.005
            cells.append(f"{v:.2f}" + (f" ({e[k] / n:.2f})" if e.get(k) else ""))
        if big:
            print(f"| {k} | " + " | ".join(cells) + " |")
    print("| **total** | " + " | ".join(f"**{tot[s]:.2f}**" if s in rs else "–" for s in ("srvd", "nginx")) + " |")
    print()
    print("Requests under strace: " + ", ".join(f"{s} {rs[s][0]}" for s in rs) + ".")
    print()
EOF
  } >"$PDIR/syscalls.md"
  cat "$PDIR/syscalls.md"
  log "saved $PDIR/syscalls.md"
  exit 0
fi

if [ "$SMOKE" = 0 ]; then
  log "warm-up: 1 s per proxy and route"
  for s in srvd nginx; do
    for path in /1k /time.py; do
      if [ "$path" = /1k ] && ! has_scen p; then continue; fi
      if [ "$path" = /time.py ] && ! has_scen q; then continue; fi
      "${CLIENT_PIN[@]}" timeout 20 wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:${PORT[$s]}$path" >/dev/null 2>&1 || true
    done
  done
fi

LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
for ROUND in $(seq "$ROUNDS"); do
  if [ $((ROUND % 2)) = 1 ]; then order=(srvd nginx); else order=(nginx srvd); fi
  if has_scen p; then
    for s in "${order[@]}"; do
      log "round $ROUND/$ROUNDS, p, $s"
      run_wrk "$s" p /1k "${PID[fixed]}"
    done
  fi
  if has_scen q; then
    for s in "${order[@]}"; do
      log "round $ROUND/$ROUNDS, q, $s"
      run_wrk "$s" q /time.py "${PID[gunicorn]}"
    done
  fi
  if has_scen r; then
    for s in direct-one direct-fast "${order[@]}" direct-slow; do
      log "round $ROUND/$ROUNDS, r, $s"
      run_r "$s"
    done
  fi
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
{
  if [ "$SMOKE" = 1 ]; then echo "# srvd proxy benchmark (smoke pass: 1 s, 1 round; not a measurement)"; else echo "# srvd proxy benchmark"; fi
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
  echo "- srvd $SRVD_VERSION, $( (nginx -v 2>&1 || true) | sed 's/.*: //'), wrk $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}'), gunicorn $("$PY" -c 'import gunicorn; print(gunicorn.__version__)' 2>/dev/null || echo -), $("$PY" -V 2>&1)"
  echo "- $PIN_NOTE; $APP_NOTE; srvd workers = 1, nginx worker_processes 1 (the fixed upstream: its own nginx, 1 worker); access logs off"
  echo "- p, q: wrk -t1 -c$CONNS --timeout 5s, ${SECS} s per load; r: $R_CONNS clients, $R_CHUNK bytes every ${R_INTERVAL} s, 1 MiB answers produced in ${R_PRODUCE_MS} ms (16 pieces)"
  echo "- $ROUNDS round(s) interleaved, medians over rounds (r: every connection of every round pooled); $ELAPSED s in all; load average before the loads $LOADAVG"
  echo "- CPU: user+system from /proc/PID/stat (all the process's processes) over the load ÷ requests"
  echo
  "$PY" - "$RAW" "$PDIR" "$ROUNDS" "$SCENARIOS" "${TIME_BYTES:-0}" <<'EOF'
import json, statistics, sys
from collections import defaultdict
raw, pdir, rounds, scens, time_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(), sys.argv[5]
data = defaultdict(list)
for line in open(raw):
    rnd, scen, server, key, value = line.rstrip("\n").split("\t")
    data[(scen, server, key)].append(float(value))
def med(sc, s, k):
    v = data.get((sc, s, k))
    return statistics.median(v) if v else None
def fmt(v, f):
    return "–" if v is None else f(v)
def ratio(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}"
def verdict(ok):
    return "PASS" if ok else "FAIL"
titles = {
    "p": "(p) fixed 1 KiB upstream (nginx `return 200`), GET /1k, keep-alive",
    "q": f"(q) gunicorn, 4 sync workers, unix socket, GET /time.py ({time_bytes} bytes)",
}
rows = [
    ("req/s", "tput", lambda v: f"{v:,.0f}"),
    ("proxy CPU (µs/req)", "cpu_us_req", lambda v: f"{v:.2f}"),
    ("upstream CPU (µs/req)", "backend_cpu_us_req", lambda v: f"{v:.1f}"),
    ("upstream connections opened per 1000 requests", "upstream_conns_per_1k", lambda v: f"{v:.1f}"),
    ("p50 latency (ms)", "p50_us", lambda v: f"{v / 1000:.2f}"),
    ("p99 latency (ms)", "p99_us", lambda v: f"{v / 1000:.2f}"),
    ("bytes per response", "bytes_req", lambda v: f"{v:.0f}"),
    ("errors (socket + non-2xx)", "errors", lambda v: f"{v:.0f}"),
]
for sc in ("p", "q"):
    if sc not in scens:
        continue
    print(f"## {titles[sc]}")
    print()
    print("| metric | srvd | nginx | srvd ÷ nginx |")
    print("|---|---|---|---|")
    for label, key, f in rows:
        a, b = med(sc, "srvd", key), med(sc, "nginx", key)
        r = "–" if key == "errors" else ratio(a, b)
        print(f"| {label} | {fmt(a, f)} | {fmt(b, f)} | {r} |")
    print()
    for key, label in (("cpu_us_req", "proxy CPU µs/req"), ("tput", "req/s")):
        print(f"{label} by round: " + "; ".join(
            f"{s} " + " ".join(f"{v:.2f}" if key == "cpu_us_req" else f"{v:.0f}" for v in data[(sc, s, key)])
            for s in ("srvd", "nginx")) + "; srvd ÷ nginx " + " ".join(
            f"{a / b:.2f}" for a, b in zip(data[(sc, "srvd", key)], data[(sc, "nginx", key)]) if b))
        print()
    if sc == "p":
        a, b = med("p", "srvd", "cpu_us_req"), med("p", "nginx", "cpu_us_req")
        if a and b:
            print(f"- proxy CPU per request, srvd ÷ nginx: **{a / b:.3f}** (target ≤ 0.80: {verdict(a / b <= 0.80)})")
    else:
        a, b = med("q", "srvd", "tput"), med("q", "nginx", "tput")
        if a and b:
            print(f"- req/s, srvd ÷ nginx: **{a / b:.3f}** (target ≥ 1.00: {verdict(a / b >= 1.0)})")
    print()

if "r" in scens:
    print("## (r) slow clients (~100 KB/s), 1 MiB answers: how long each upstream connection is held")
    print()
    pooled = {}
    for row in ("direct-one", "direct-fast", "srvd", "nginx", "direct-slow"):
        held = []
        for rnd in range(1, rounds + 1):
            try:
                held += json.load(open(f"{pdir}/r-{row}-{rnd}.json"))["held_ms"]
            except (OSError, ValueError, KeyError):
                pass
        pooled[row] = sorted(held)
    base = statistics.median(pooled["direct-one"]) if pooled["direct-one"] else None
    burst = statistics.median(pooled["direct-fast"]) if pooled["direct-fast"] else None
    labels = {
        "direct-one": "upstream alone, one request at a time, fast reader (**production time**)",
        "direct-fast": "upstream alone, all connections at once, fast readers",
        "srvd": "srvd, slow clients",
        "nginx": "nginx (proxy_buffering on), slow clients",
        "direct-slow": "upstream alone, slow readers (no proxy)",
    }
    print("| path | upstream conns | held median (ms) | held p90 (ms) | held max (ms) | median ÷ production | max ÷ production | app busy median (ms) | client s (median) | client errors | proxy CPU ms/response |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row, v in pooled.items():
        if not v:
            print(f"| {labels[row]} | 0 | – | – | – | – | – | – | – | – | – |")
            continue
        m, mx = statistics.median(v), v[-1]
        p90 = v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
        errs = sum(data.get(("r", row, "client_errors"), [])) + sum(data.get(("r", row, "upstream_errors"), []))
        cpu = med("r", row, "cpu_ms_resp")
        print(f"| {labels[row]} | {len(v)} | {m:.1f} | {p90:.1f} | {mx:.1f} | {ratio(m, base)} | {ratio(mx, base)} | "
              f"{fmt(med('r', row, 'sent_median_ms'), lambda x: f'{x:.1f}')} | {fmt(med('r', row, 'client_s_median'), lambda x: f'{x:.2f}')} | "
              f"{errs:.0f} | {fmt(cpu, lambda x: f'{x:.2f}')} |")
    print()
    if base:
        for row in ("srvd", "nginx"):
            v = pooled[row]
            if v:
                m, mx = statistics.median(v), v[-1]
                line = (f"- {row}: held median ÷ production **{m / base:.2f}** ({verdict(m <= 2 * base)}), "
                        f"max ÷ production **{mx / base:.2f}** ({verdict(mx <= 2 * base)}) (target ≤ 2)")
                if burst:
                    line += f"; against the upstream's own time under the same burst: median {m / burst:.2f}, max {mx / burst:.2f}"
                print(line)
    print()
    print(f"Production time = median held time of the upstream alone, one request at a time read by a "
          f"fast client ({base:.1f} ms; its configured pauses add up to the produce time). \"held\" = accept → the "
          "peer's close, measured by the upstream; \"app busy\" = accept → the upstream's last write "
          "returned (where a sync app worker would be free). \"All connections at once\" also counts the "
          "Python reader's own delays (its accept → request head is several ms), so it overstates the "
          "upstream's time under the burst." if base else "No production time measured.")
EOF
} >"$PDIR/results.md"
cat "$PDIR/results.md"
log "saved $PDIR/results.md (raw numbers: $RAW)"
