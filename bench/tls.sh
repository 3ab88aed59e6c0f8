#!/usr/bin/env bash
# HTTPS (issue 13): srvd's rustls listeners against nginx's OpenSSL ones, on loopback,
# same CPU budget, same certificate, both on TLS 1.3.
#
#   bench/tls.sh           full run: BENCH_SECONDS (10) per load, BENCH_ROUNDS (3) rounds
#   bench/tls.sh --smoke   1 s per load, 1 round: checks that everything runs
#   bench/tls.sh --perf    where each server's CPU goes: perf record of the worker during
#                          a BENCH_SECONDS (5) t1, t2 and t3 load, split by library
#                          (rustls / ring / libssl / libcrypto / kernel / libc / the
#                          server's own code); bench/out/tls/perf.md
#
# Certificate: ECDSA P-256 (self-signed, CN and SAN localhost), made with openssl in
# bench/out/tls at every run; srvd and nginx load the same two files.
# srvd: listen = ["127.0.0.1:PORT tls"], top-level tls = { cert, key }, workers = 1, access
# log off (rustls defaults: TLS 1.3 and 1.2; the clients below only speak 1.3). nginx
# (Debian's, with --with-http_ssl_module, on the system OpenSSL): worker_processes 1,
# listen ... ssl, ssl_protocols TLSv1.3, ssl_session_tickets on, ssl_session_cache
# shared:SSL:10m, access log off. Both issue 2 session tickets after a full handshake.
#
# Scenarios (docroot: lib.sh's bench/out/root):
#   t1  GET /1k.bin, keep-alive over TLS, wrk -t1 -c50. Server CPU per request (target
#       srvd <= 0.8 x nginx), req/s.
#   t2  GET /1k.bin, a new connection and a FULL handshake per request: bench/tls_clients.py
#       `load --mode full` (BENCH_T2_CONNS (8) threads, each request a fresh SSLContext and
#       no session: wrk cannot be used, it resumes the OpenSSL session on every reconnect).
#       Every handshake is counted full or resumed by the client. Target CPU per request
#       srvd <= 1.0 x nginx.
#   t3  GET /1k.bin, a new connection per request WITH resumption (TLS 1.3 tickets):
#       wrk -t1 -c50 -H "Connection: close", which resumes (checked first: see below);
#       BENCH_T3_CLIENT=py uses tls_clients.py `load --mode resume` instead (chosen
#       automatically when the check cannot show that wrk resumes). Target CPU per
#       request srvd <= 1.0 x nginx.
#   t4  GET /10m.bin over TLS, wrk -t1 -c4. Throughput in MiB/s (target srvd >= nginx)
#       and server CPU per MiB.
#
# Checks before the loads, for each server: curl (--cacert, TLS 1.3) gets /1k.bin and
# /10m.bin with status 200 and the files' bytes; openssl s_client shows TLSv1.3, the
# cipher suite, the key-exchange group and the certificate's SHA-256 fingerprint (the
# same for both servers, or the run stops); s_client -sess_out / -sess_in shows that a
# saved session is "Reused". Then bench/tls_clients.py `sniff` (root: AF_PACKET on lo)
# counts the ServerHellos with and without a pre_shared_key extension during three short
# loads per server: wrk with Connection: close (should be all resumed but the first of
# each connection), the full-handshake client (none resumed) and the resuming one (all
# but the first of each thread).
#
# Fairness as in run.sh: servers pinned to CPU 0 (taskset), wrk and the Python client to
# CPU 1; keep-alive 60 s without a request cap. Server CPU = user+system ticks of all the
# server's processes (/proc/PID/stat 14+15) over the load / requests. Rounds interleaved
# (t1 srvd nginx, t2 srvd nginx, ...; the order flips every round), medians over rounds.
# The TLS clients (OpenSSL 3.0) cost more CPU per handshake than the servers, so in t2
# and t3 the client on CPU 1 sets the rate and the servers are far from saturated: read
# CPU per request, not req/s.
#
# Knobs: BENCH_SECONDS, BENCH_ROUNDS, BENCH_SCENARIOS (subset of: t1 t2 t3 t4),
# BENCH_T2_CONNS (8), BENCH_T3_CLIENT (wrk|py; default: wrk if the sniff shows it resumes),
# BENCH_PORT_BASE (18080; this script uses +70 and +71), BENCH_NO_INSTALL=1,
# BENCH_SRVD_BIN / BENCH_SRVD_REV (measure that binary instead of building the tree).
# Output: bench/out/tls/results.md (raw numbers: raw.tsv; wrk and client output beside).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

PERF=0
rest=()
for a in "$@"; do
  if [ "$a" = --perf ]; then PERF=1; else rest+=("$a"); fi
done
[ ${#rest[@]} -le 1 ] || die "too many arguments: ${rest[*]} (try --help)"
parse_smoke_arg "$0" "${rest[@]}"

TDIR="$OUT/tls"
PORT_BASE="${BENCH_PORT_BASE:-18080}"
CLK_TCK="$(getconf CLK_TCK)"
TLSC="$BENCH_DIR/tls_clients.py"
if [ "$SMOKE" = 1 ]; then
  SECS=1
  ROUNDS=1
else
  SECS="${BENCH_SECONDS:-10}"
  [ "$PERF" = 0 ] || SECS="${BENCH_SECONDS:-5}"
  ROUNDS="${BENCH_ROUNDS:-3}"
fi
SCENARIOS="${BENCH_SCENARIOS:-t1 t2 t3 t4}"
T2_CONNS="${BENCH_T2_CONNS:-8}"
KA_CONNS=50
BIG_CONNS=4
MAX_REQUESTS=2000000
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a whole number of seconds >= 1"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be >= 1"
[[ "$T2_CONNS" =~ ^[1-9][0-9]*$ ]] && [ "$T2_CONNS" -le 512 ] || die "BENCH_T2_CONNS must be 1..512"
for s in $SCENARIOS; do
  case "$s" in t1 | t2 | t3 | t4) ;; *) die "unknown scenario: $s (BENCH_SCENARIOS: t1 t2 t3 t4)" ;; esac
done
case "${BENCH_T3_CLIENT:-}" in "" | wrk | py) ;; *) die "BENCH_T3_CLIENT must be wrk or py" ;; esac
has_scen() { case " $SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

trap bench_cleanup EXIT
trap 'exit 130' INT TERM
raise_nofile
rm -rf "$TDIR"
mkdir -p "$TDIR"

# ---------------------------------------------------------------- tools
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=("$(nginx_package)")
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
for t in wrk nginx curl openssl; do
  command -v "$t" >/dev/null 2>&1 || die "$t is missing and could not be installed"
done
nginx_has_ssl() { nginx -V 2>&1 | grep -q -- '--with-http_ssl_module'; }
if ! nginx_has_ssl; then
  log "this nginx has no http_ssl_module: trying nginx-full, then nginx"
  apt_install nginx-full
  nginx_has_ssl || apt_install nginx
fi
nginx_has_ssl || die "nginx lacks --with-http_ssl_module (apt-get install nginx-full)"
NGINX_PKG="$(dpkg -S "$(readlink -f "$(command -v nginx)")" 2>/dev/null | cut -d: -f1 | head -1)"
NGINX_SSL_LIB="$(nginx -V 2>&1 | sed -n 's/^built with \(.*\)$/\1/p' | head -1)"
"$PY" -c 'import ssl; ssl.TLSVersion.TLSv1_3' 2>/dev/null || die "$PY's ssl module has no TLS 1.3"
curl -V | grep -qi 'ssl' || die "this curl has no TLS support"

SERVER_PIN=()
CLIENT_PIN=()
PIN_NOTE="not pinned (fewer than 2 CPUs or no taskset): servers and load share the CPUs"
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 0)
  CLIENT_PIN=(taskset -c 1)
  PIN_NOTE="servers pinned to CPU 0, wrk and the Python clients to CPU 1"
fi

# ---------------------------------------------------------------- srvd, docroot, certificate
if [ -n "${BENCH_SRVD_BIN:-}" ]; then
  [ -x "$BENCH_SRVD_BIN" ] || die "BENCH_SRVD_BIN=$BENCH_SRVD_BIN is not an executable"
  SRVD_BIN="$BENCH_SRVD_BIN"
  SRVD_LABEL="${BENCH_SRVD_REV:-unknown commit} ($SRVD_BIN)"
else
  build_srvd
  SRVD_LABEL="$(srvd_version)"
fi
# A private copy: a rebuild by someone else during the run cannot change what is measured.
mkdir -p "$TDIR/bin"
SRVD="$TDIR/bin/srvd"
cp "$SRVD_BIN" "$SRVD"
gen_root
cat "$ROOT/1k.bin" "$ROOT/10m.bin" >/dev/null

CERT="$TDIR/cert.pem"
KEY="$TDIR/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
  -keyout "$KEY" -out "$CERT" -days 30 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost >"$TDIR/openssl-req.log" 2>&1 ||
  die "openssl could not make the certificate: $(tail -3 "$TDIR/openssl-req.log")"
CERT_FP="$(openssl x509 -in "$CERT" -noout -fingerprint -sha256 | cut -d= -f2)"
CERT_DESC="$(openssl x509 -in "$CERT" -noout -text | awk '/Public Key Algorithm|NIST CURVE|Signature Algorithm/ {sub(/^ +/, ""); print}' | sort -u | paste -sd';' | sed 's/;/; /g')"

SRVD_PORT=$((PORT_BASE + 70))
NGINX_PORT=$((PORT_BASE + 71))
declare -A PORT=([srvd]="$SRVD_PORT" [nginx]="$NGINX_PORT")
declare -A PID
NOTES=()

write_srvd_tls_conf() {
  cat >"$1" <<EOF
# Generated by bench/tls.sh: srvd, one worker, one TLS listener, access log off.
listen = ["127.0.0.1:$2 tls"]
workers = 1
root = "$ROOT"
tls = { cert = "$CERT", key = "$KEY" }
keepalive_timeout = "60s"
header_timeout = "60s"
send_timeout = "60s"
shutdown_timeout = "1s"
max_connections = 16384

[log]
access = "off"
EOF
}

# nginx's descriptor limit: 32768, or the hard limit when that is lower (no setrlimit alert).
NGINX_NOFILE="$(ulimit -Hn)"
[ "$NGINX_NOFILE" = unlimited ] || [ "$NGINX_NOFILE" -gt 32768 ] && NGINX_NOFILE=32768

write_nginx_tls_conf() {
  local file="$1" port="$2" dir="$3"
  mkdir -p "$dir"
  cat >"$file" <<EOF
# Generated by bench/tls.sh: nginx, one worker, TLS 1.3 only, access log off.
$(nginx_head "$dir" on $NGINX_NOFILE)
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
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.3;
    ssl_session_tickets on;
    ssl_session_cache shared:SSL:10m;
    server {
        listen 127.0.0.1:$port ssl backlog=4096;
        server_name localhost;
        root $ROOT;
    }
}
EOF
}

start_server() {
  local name="$1" port="${PORT[$1]}" dir="$TDIR/$1"
  mkdir -p "$dir"
  port_open "$port" && die "$name: port $port already in use (another benchmark running?)"
  case "$name" in
    srvd)
      write_srvd_tls_conf "$dir/srvd.toml" "$port"
      "$SRVD" --check -c "$dir/srvd.toml" >"$dir/check.log" 2>&1 ||
        die "srvd --check rejects the config (does this srvd have TLS listeners?): $(head -5 "$dir/check.log")"
      "${SERVER_PIN[@]}" "$SRVD" -c "$dir/srvd.toml" >"$dir/stderr.log" 2>&1 &
      ;;
    nginx)
      write_nginx_tls_conf "$dir/nginx.conf" "$port" "$dir"
      nginx -t -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/check.log" 2>&1 ||
        die "nginx -t rejects the config: $(tail -3 "$dir/check.log")"
      "${SERVER_PIN[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stderr.log" 2>&1 &
      ;;
  esac
  local pid=$!
  BENCH_PIDS+=("$pid")
  PID[$name]="$pid"
  wait_port "$port" 20 "$pid" || die "$name did not start (see $dir/stderr.log)"
  # The worker must be up too (srvd's master forks it after binding).
  local i
  for i in $(seq 50); do
    [ -n "$(child_pids "$pid")" ] && break
    sleep 0.1
  done
  [ -n "$(child_pids "$pid")" ] || die "$name: no worker process after 5 s"
  log "$name started (pid $pid, https://127.0.0.1:$port, worker $(child_pids "$pid" | paste -sd' '))"
}

start_server srvd
start_server nginx

# ---------------------------------------------------------------- checks
RAW="$TDIR/raw.tsv"
: >"$RAW"
ROUND=0
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" "$4" >>"$RAW"; }
# TLS parameters per server, for the report.
declare -A TLSINFO

for s in srvd nginx; do
  p="${PORT[$s]}"
  for f in 1k.bin 10m.bin; do
    r="$(curl -sS --max-time 30 --tlsv1.3 --cacert "$CERT" --resolve "localhost:$p:127.0.0.1" \
      -o "$TDIR/check.body" -w '%{http_code} %{size_download}' "https://localhost:$p/$f")" ||
      die "$s: curl https://localhost:$p/$f failed"
    [ "$r" = "200 $(stat -c %s "$ROOT/$f")" ] && cmp -s "$TDIR/check.body" "$ROOT/$f" ||
      die "$s: GET /$f over TLS: '$r', expected 200 and the file's bytes"
  done
  sc="$TDIR/s_client-$s.txt"
  echo | timeout 10 openssl s_client -connect "127.0.0.1:$p" -servername localhost -showcerts >"$sc" 2>&1 || true
  proto="$(sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is .*$/\1/p' "$sc" | head -1)"
  cipher="$(sed -n 's/^New, TLSv[0-9.]*, Cipher is \(.*\)$/\1/p' "$sc" | head -1)"
  group="$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' "$sc" | head -1)"
  sig="$(sed -n 's/^Peer signature type: \(.*\)/\1/p' "$sc" | head -1)"
  fp="$(openssl x509 -in "$sc" -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2)"
  [ "$proto" = TLSv1.3 ] || die "$s: openssl s_client did not negotiate TLSv1.3 (see $sc)"
  [ "$fp" = "$CERT_FP" ] || die "$s: serves a certificate with fingerprint '$fp', not the bench's ($CERT_FP)"
  # Resumption: a session saved after reading a response, offered on a new connection.
  printf 'GET /1k.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
    timeout 10 openssl s_client -connect "127.0.0.1:$p" -servername localhost -ign_eof \
      -sess_out "$TDIR/sess-$s.pem" >"$TDIR/s_client-sess-$s.txt" 2>&1 || true
  printf 'GET /1k.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
    timeout 10 openssl s_client -connect "127.0.0.1:$p" -servername localhost -ign_eof \
      -sess_in "$TDIR/sess-$s.pem" >"$TDIR/s_client-resume-$s.txt" 2>&1 || true
  if grep -q '^Reused, TLSv1.3' "$TDIR/s_client-resume-$s.txt"; then reuse=yes; else
    reuse=no
    NOTES+=("$s: openssl s_client -sess_in did not resume (see $TDIR/s_client-resume-$s.txt)")
  fi
  TLSINFO[$s]="$proto, $cipher, key exchange $group, signature ${sig:-?}; s_client -sess_in resumed: $reuse"
  log "$s: ${TLSINFO[$s]}"
done
[ "${TLSINFO[srvd]%%;*}" = "${TLSINFO[nginx]%%;*}" ] ||
  NOTES+=("srvd and nginx negotiate different parameters with openssl s_client: ${TLSINFO[srvd]%%;*} vs ${TLSINFO[nginx]%%;*}")

# sniff_check SERVER LABEL CMD...: counts full / resumed ServerHellos during a short load.
declare -A SNIFF
SNIFF_OK=1
sniff_check() {
  local s="$1" label="$2" out="$TDIR/sniff-$1-$2.txt" ready="$TDIR/sniff.ready" spid i line
  shift 2
  [ "$SNIFF_OK" = 1 ] || return 0
  rm -f "$ready"
  "${CLIENT_PIN[@]}" timeout -k 2 10 "$PY" "$TLSC" sniff --port "${PORT[$s]}" --seconds 2.5 \
    --ready "$ready" >"$out" 2>&1 &
  spid=$!
  BENCH_BG+=("$spid")
  for i in $(seq 50); do
    [ -e "$ready" ] && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.05
  done
  if [ ! -e "$ready" ]; then
    wait "$spid" 2>/dev/null || true
    bg_done "$spid"
    SNIFF_OK=0
    NOTES+=("the loopback sniffer could not start (needs root / AF_PACKET): $(tail -1 "$out")")
    return 0
  fi
  "$@" >"$TDIR/sniff-load-$s-$label.txt" 2>&1 || log "$s/$label: the check load exited non-zero"
  wait "$spid" || true
  bg_done "$spid"
  line="$(grep '^SNIFF ' "$out" || true)"
  [ -n "$line" ] || {
    NOTES+=("sniff $s/$label: no result ($(tail -1 "$out"))")
    return 0
  }
  SNIFF[$s/$label]="${line#SNIFF }"
  log "$s/$label: ${line#SNIFF }"
}
sniff_field() { echo "${SNIFF[$1]:-}" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

for s in srvd nginx; do
  p="${PORT[$s]}"
  sniff_check "$s" wrk-close "${CLIENT_PIN[@]}" timeout -k 5 20 wrk -t1 -c2 -d1s -H "Connection: close" \
    "https://127.0.0.1:$p/1k.bin"
  sniff_check "$s" py-full "${CLIENT_PIN[@]}" timeout -k 5 20 "$PY" "$TLSC" load --port "$p" \
    --mode full --conns 2 --seconds 1 --expect-len 1024
  sniff_check "$s" py-resume "${CLIENT_PIN[@]}" timeout -k 5 20 "$PY" "$TLSC" load --port "$p" \
    --mode resume --conns 2 --seconds 1 --expect-len 1024
done

# Does wrk resume on both servers? (resumed / hellos >= 0.95)
WRK_RESUMES=unknown
if [ "$SNIFF_OK" = 1 ] && [ -n "${SNIFF[srvd/wrk-close]:-}" ] && [ -n "${SNIFF[nginx/wrk-close]:-}" ]; then
  WRK_RESUMES=yes
  for s in srvd nginx; do
    h="$(sniff_field "$s/wrk-close" hellos)"
    r="$(sniff_field "$s/wrk-close" resumed)"
    awk "BEGIN { exit !($h > 0 && $r / $h >= 0.95) }" || WRK_RESUMES=no
  done
  for s in srvd nginx; do
    [ "$(sniff_field "$s/py-full" resumed)" = 0 ] ||
      NOTES+=("$s: the full-handshake client was resumed: ${SNIFF[$s/py-full]}")
    for l in wrk-close py-full py-resume; do
      v="$(sniff_field "$s/$l" versions)"
      [ -z "$v" ] || [[ "$v" =~ ^TLSv1\.3:[0-9]+$ ]] ||
        NOTES+=("$s/$l: not all handshakes TLS 1.3: $v")
    done
  done
fi
T3_CLIENT="${BENCH_T3_CLIENT:-}"
if [ -z "$T3_CLIENT" ]; then
  if [ "$WRK_RESUMES" = yes ]; then T3_CLIENT=wrk; else T3_CLIENT=py; fi
fi
log "wrk resumes sessions on reconnect: $WRK_RESUMES; t3 uses $T3_CLIENT"

# ---------------------------------------------------------------- loads
cp "$BENCH_DIR/wrk/report.lua" "$TDIR/report.lua"

# run_wrk SERVER SCEN PATH CONNS [wrk args...]: one bounded wrk load; records req/s, MiB/s,
# CPU per request and per MiB, p50/p99, errors.
run_wrk() {
  local server="$1" scen="$2" path="$3" conns="$4" pids t0 t1 wpid line
  shift 4
  local res="$TDIR/wrk-$scen-$server-$ROUND.txt"
  pids=($(server_pids "${PID[$server]}"))
  t0="$(cpu_ticks "${pids[@]}")"
  "${CLIENT_PIN[@]}" timeout -k 5 $((SECS + 30)) wrk -t1 -c"$conns" -d"${SECS}s" --timeout 10s --latency \
    "$@" -s "$TDIR/report.lua" "https://127.0.0.1:${PORT[$server]}$path" >"$res" 2>&1 &
  wpid=$!
  BENCH_BG+=("$wpid")
  wait "$wpid" || log "wrk exited non-zero for $server/$scen (see $res)"
  bg_done "$wpid"
  t1="$(cpu_ticks "${pids[@]}")"
  line="$(grep '^BENCH ' "$res" || true)"
  [ -n "$line" ] || die "no result from wrk for $server/$scen: $(tail -3 "$res" | tr '\n' ' ')"
  eval "$(echo "$line" | sed 's/^BENCH //' | tr ' ' '\n' | sed 's/^/local W_/')"
  [ "$W_requests" -gt 0 ] || die "$server/$scen: no request completed"
  local errs=$((W_err_connect + W_err_read + W_err_write + W_err_timeout + W_err_status))
  record "$scen" "$server" tput "$(awk "BEGIN { print $W_requests / ($W_duration_us / 1e6) }")"
  record "$scen" "$server" mib_s "$(awk "BEGIN { print $W_bytes / 1048576 / ($W_duration_us / 1e6) }")"
  record "$scen" "$server" cpu_us_req "$(awk "BEGIN { print ($t1 - $t0) * 1e6 / $CLK_TCK / $W_requests }")"
  record "$scen" "$server" cpu_ms_mib "$(awk "BEGIN { print ($t1 - $t0) * 1e3 / $CLK_TCK / ($W_bytes / 1048576) }")"
  record "$scen" "$server" cpu_share "$(awk "BEGIN { print ($t1 - $t0) / $CLK_TCK / ($W_duration_us / 1e6) }")"
  record "$scen" "$server" p50_us "$W_p50_us"
  record "$scen" "$server" p99_us "$W_p99_us"
  record "$scen" "$server" errors "$errs"
  [ "$errs" = 0 ] || NOTES+=("$scen/$server round $ROUND: wrk errors: connect $W_err_connect read $W_err_read write $W_err_write timeout $W_err_timeout non-2xx $W_err_status")
  log "$server/$scen: $W_requests requests, $((t1 - t0)) CPU ticks, errors $errs"
}

# run_py SERVER SCEN MODE(full|resume) CONNS: the new-connection-per-request client.
run_py() {
  local server="$1" scen="$2" mode="$3" conns="$4" pids t0 t1 cpid line
  local res="$TDIR/py-$scen-$server-$ROUND.txt"
  pids=($(server_pids "${PID[$server]}"))
  t0="$(cpu_ticks "${pids[@]}")"
  "${CLIENT_PIN[@]}" timeout -k 5 $((SECS + 40)) "$PY" "$TLSC" load --port "${PORT[$server]}" \
    --mode "$mode" --conns "$conns" --seconds "$SECS" --max-requests "$MAX_REQUESTS" \
    --expect-len 1024 >"$res" 2>&1 &
  cpid=$!
  BENCH_BG+=("$cpid")
  wait "$cpid" || log "the TLS client exited non-zero for $server/$scen (see $res)"
  bg_done "$cpid"
  t1="$(cpu_ticks "${pids[@]}")"
  line="$(grep '^TLSLOAD ' "$res" || true)"
  [ -n "$line" ] || die "no result from the TLS client for $server/$scen: $(tail -3 "$res" | tr '\n' ' ')"
  eval "$(echo "$line" | sed 's/^TLSLOAD //' | tr ' ' '\n' | sed 's/^/local K_/')"
  [ "$K_requests" -gt 0 ] || die "$server/$scen: no request completed ($(tail -3 "$res" | tr '\n' ' '))"
  local errs=$((K_errors + K_non200 + K_badlen))
  record "$scen" "$server" tput "$(awk "BEGIN { print $K_requests / $K_seconds }")"
  record "$scen" "$server" cpu_us_req "$(awk "BEGIN { print ($t1 - $t0) * 1e6 / $CLK_TCK / $K_requests }")"
  record "$scen" "$server" cpu_share "$(awk "BEGIN { print ($t1 - $t0) / $CLK_TCK / $K_seconds }")"
  record "$scen" "$server" p50_us "$K_p50_us"
  record "$scen" "$server" p99_us "$K_p99_us"
  record "$scen" "$server" errors "$errs"
  record "$scen" "$server" resumed_share "$(awk "BEGIN { n = $K_resumed + $K_full; print n ? $K_resumed / n : 0 }")"
  [ "$errs" = 0 ] || NOTES+=("$scen/$server round $ROUND: client errors $K_errors, non-200 $K_non200, wrong length $K_badlen ($(grep '^error:' "$res" | head -2 | tr '\n' ' '))")
  if [ "$mode" = full ] && [ "$K_resumed" != 0 ]; then
    NOTES+=("$scen/$server round $ROUND: $K_resumed of the full-handshake client's connections were resumed")
  fi
  log "$server/$scen: $K_requests requests ($K_full full, $K_resumed resumed handshakes), $((t1 - t0)) CPU ticks, errors $errs"
}

run_scen() {
  case "$1" in
    t1) run_wrk "$2" t1 /1k.bin "$KA_CONNS" ;;
    t2) run_py "$2" t2 full "$T2_CONNS" ;;
    t3)
      if [ "$T3_CLIENT" = wrk ]; then
        run_wrk "$2" t3 /1k.bin "$KA_CONNS" -H "Connection: close"
      else
        run_py "$2" t3 resume "$T2_CONNS"
      fi
      ;;
    t4) run_wrk "$2" t4 /10m.bin "$BIG_CONNS" ;;
  esac
}

# ---------------------------------------------------------------- --perf
if [ "$PERF" = 1 ]; then
  command -v perf >/dev/null 2>&1 || apt_install linux-perf
  command -v perf >/dev/null 2>&1 || die "perf is missing (apt-get install linux-perf)"
  : >"$TDIR/perf.tsv"
  ROUND=perf
  for scen in t1 t2 t3; do
    for s in srvd nginx; do
      w="$(child_pids "${PID[$s]}" | head -1)"
      data="$TDIR/perf-$scen-$s.data"
      timeout -k 5 $((SECS + 30)) perf record -q -F 4999 -p "$w" -o "$data" -- sleep $((SECS + 1)) \
        >"$TDIR/perf-$scen-$s.log" 2>&1 &
      ppid=$!
      BENCH_BG+=("$ppid")
      sleep 0.5
      run_scen "$scen" "$s"
      wait "$ppid" || true
      bg_done "$ppid"
      perf report -i "$data" --no-children --sort dso,sym -F overhead,dso,sym --stdio 2>/dev/null |
        grep -v '^#' | grep -v '^$' >"$TDIR/perf-$scen-$s.txt" || true
      [ -s "$TDIR/perf-$scen-$s.txt" ] || die "$s/$scen: no perf samples (see $TDIR/perf-$scen-$s.log)"
      printf '%s\t%s\t%s\n' "$scen" "$s" "$TDIR/perf-$scen-$s.txt" >>"$TDIR/perf.tsv"
    done
  done
  {
    echo "# srvd TLS: where the worker's CPU goes (perf record, $SECS s per load)"
    echo
    echo "- srvd $SRVD_LABEL, nginx $( (nginx -v 2>&1 || true) | sed 's/.*nginx\///') ($NGINX_SSL_LIB); $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- t1: wrk -t1 -c$KA_CONNS keep-alive GET /1k.bin; t2: tls_clients.py full handshakes, $T2_CONNS threads; t3: $T3_CLIENT, resumed handshakes"
    echo "- share of the worker's samples; CPU per request from /proc in the same loads: see raw.tsv (round 'perf')"
    echo
    "$PY" - "$TDIR/perf.tsv" "$RAW" <<'EOF'
import re, sys
from collections import defaultdict
runs = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
cpu = {}
for line in open(sys.argv[2]):
    rnd, scen, server, key, value = line.rstrip("\n").split("\t")
    if key == "cpu_us_req":
        cpu[(scen, server)] = float(value)
def bucket(dso, sym):
    if dso.startswith("[kernel") or sym.startswith("[k]"):
        return "kernel"
    s = sym.split("] ", 1)[-1]
    if "libssl" in dso:
        return "libssl (OpenSSL TLS)"
    if "libcrypto" in dso:
        return "libcrypto (OpenSSL crypto)"
    if "libc.so" in dso or "libc-" in dso or "ld-linux" in dso:
        return "libc (malloc, memcpy, ...)"
    if "srvd" in dso:
        if re.search(r"ring_core_|\bring::|^fe4?_|^fe_", s):
            if re.search(r"25519|^fe4?_|^fe_", s):
                return "ring: X25519"
            if re.search(r"nistz256|p256|ecdsa|\bec::", s):
                return "ring: P-256 (ECDSA)"
            if "sha512" in s:
                return "ring: SHA-384/512 (key schedule, transcript)"
            if re.search(r"sha256|hmac|hkdf|digest", s):
                return "ring: SHA-256, HMAC, HKDF"
            if re.search(r"aes|gcm|ghash|chacha|poly1305|aead", s):
                return "ring: AEAD (records, tickets)"
            return "ring: other"
        if "rustls" in s:
            return "rustls (TLS)"
        if re.search(r"\bmemcpy|\bmemmove|\bmemset", s):
            return "libc (malloc, memcpy, ...)"
        return "srvd's own code (and std)"
    if dso.startswith("nginx"):
        return "nginx's own code"
    return "other: " + dso
order = ["kernel", "rustls (TLS)", "ring: X25519", "ring: P-256 (ECDSA)",
         "ring: SHA-384/512 (key schedule, transcript)", "ring: SHA-256, HMAC, HKDF",
         "ring: AEAD (records, tickets)", "ring: other", "libssl (OpenSSL TLS)", "libcrypto (OpenSSL crypto)",
         "libc (malloc, memcpy, ...)", "srvd's own code (and std)", "nginx's own code"]
titles = {"t1": "keep-alive 1 KiB", "t2": "full handshake per request", "t3": "resumed handshake per request"}
for scen in ("t1", "t2", "t3"):
    share = {}
    tops = {}
    for sc, server, path in runs:
        if sc != scen:
            continue
        b = defaultdict(float)
        top = []
        for line in open(path):
            m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(.*)$", line)
            if not m:
                continue
            pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
            b[bucket(dso, sym)] += pct
            top.append((pct, dso, sym.split("] ", 1)[-1][:90]))
        top = sorted(top, reverse=True)[:15]
        share[server] = b
        tops[server] = top
    if not share:
        continue
    print(f"## {scen}: {titles[scen]}")
    print()
    print("| where | " + " | ".join(f"{s} % of samples | {s} µs/req" for s in share) + " |")
    print("|---|" + "---|---|" * len(share))
    keys = [k for k in order if any(k in share[s] for s in share)] + sorted(
        {k for s in share for k in share[s]} - set(order))
    for k in keys:
        cells = []
        for s in share:
            v = share[s].get(k, 0.0)
            c = cpu.get((scen, s))
            cells.append(f"{v:.1f} | " + (f"{v / 100 * c:.2f}" if c else "–"))
        print(f"| {k} | " + " | ".join(cells) + " |")
    print("| **CPU per request (/proc, under perf)** | " + " | ".join(
        f"100 | **{cpu[(scen, s)]:.2f}**" if (scen, s) in cpu else "100 | –" for s in share) + " |")
    print()
    for s in share:
        print(f"Top symbols, {s} {scen}: " + "; ".join(f"{p:.1f}% {sym} ({dso})" for p, dso, sym in tops[s]))
        print()
EOF
  } >"$TDIR/perf.md"
  cat "$TDIR/perf.md"
  log "saved $TDIR/perf.md"
  exit 0
fi

# ---------------------------------------------------------------- rounds
if [ "$SMOKE" = 0 ]; then
  log "warm-up: 1 s of t1 per server"
  for s in srvd nginx; do
    "${CLIENT_PIN[@]}" timeout 20 wrk -t1 -c"$KA_CONNS" -d1s "https://127.0.0.1:${PORT[$s]}/1k.bin" >/dev/null 2>&1 || true
  done
fi

LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
for ROUND in $(seq "$ROUNDS"); do
  for scen in $SCENARIOS; do
    order=(srvd nginx)
    [ $((ROUND % 2)) = 0 ] && order=(nginx srvd)
    for s in "${order[@]}"; do
      log "round $ROUND/$ROUNDS, $scen, $s"
      run_scen "$scen" "$s"
    done
  done
done
ELAPSED=$(($(date +%s) - START))
for s in srvd nginx; do
  kill -0 "${PID[$s]}" 2>/dev/null || NOTES+=("$s exited during the run (see $TDIR/$s/stderr.log)")
done
grep -h -i -E '\[(error|crit|alert|emerg)\]' "$TDIR/nginx/error.log" >"$TDIR/nginx-errors.txt" 2>/dev/null || true
[ ! -s "$TDIR/nginx-errors.txt" ] || NOTES+=("nginx error.log: $(wc -l <"$TDIR/nginx-errors.txt") error lines, e.g. $(head -1 "$TDIR/nginx-errors.txt" | cut -c1-200)")
grep -i -E 'error|panic|warn' "$TDIR/srvd/stderr.log" >"$TDIR/srvd-errors.txt" 2>/dev/null || true
[ ! -s "$TDIR/srvd-errors.txt" ] || NOTES+=("srvd stderr: $(wc -l <"$TDIR/srvd-errors.txt") error/warning lines, e.g. $(head -1 "$TDIR/srvd-errors.txt" | cut -c1-200)")

# ---------------------------------------------------------------- report
sniff_row() {
  local s l
  for l in wrk-close py-full py-resume; do
    printf '| %s |' "$l"
    for s in srvd nginx; do
      if [ -n "${SNIFF[$s/$l]:-}" ]; then
        printf ' %s of %s resumed |' "$(sniff_field "$s/$l" resumed)" "$(sniff_field "$s/$l" hellos)"
      else
        printf ' – |'
      fi
    done
    printf ' %s |\n' "$(sniff_field "srvd/$l" suites), $(sniff_field "srvd/$l" groups) / $(sniff_field "nginx/$l" suites), $(sniff_field "nginx/$l" groups)" |
      sed 's/:[0-9][0-9]*//g'

  done
}
{
  if [ "$SMOKE" = 1 ]; then echo "# srvd TLS benchmark (smoke pass: short loads, 1 round; not a measurement)"; else echo "# srvd TLS benchmark"; fi
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
  echo "- srvd $SRVD_LABEL (rustls + ring); nginx $( (nginx -v 2>&1 || true) | sed 's/.*nginx\///') from Debian package ${NGINX_PKG:-?} ($NGINX_SSL_LIB); wrk $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}'); clients on $("$PY" -c 'import ssl; print(ssl.OPENSSL_VERSION)')"
  echo "- certificate: $CERT_DESC (SHA-256 $CERT_FP), the same files for both"
  echo "- srvd: ${TLSINFO[srvd]}"
  echo "- nginx: ${TLSINFO[nginx]}"
  echo "- $PIN_NOTE; srvd workers = 1, nginx worker_processes 1; access logs off"
  echo "- t1: wrk -t1 -c$KA_CONNS keep-alive; t2: tls_clients.py full handshakes, $T2_CONNS threads; t3: $([ "$T3_CLIENT" = wrk ] && echo "wrk -t1 -c$KA_CONNS -H 'Connection: close' (resumes: see the sniff)" || echo "tls_clients.py resuming, $T2_CONNS threads"); t4: wrk -t1 -c$BIG_CONNS GET /10m.bin; ${SECS} s per load"
  echo "- $ROUNDS round(s) interleaved, medians; $ELAPSED s in all; load average before the loads $LOADAVG"
  echo "- CPU: server user+system from /proc/PID/stat (master + worker) over the load ÷ requests (t4: ÷ MiB); 'server busy' = that CPU time ÷ the load's duration"
  for n in "${NOTES[@]}"; do echo "- **$n**"; done
  echo
  echo "Handshakes seen on the wire during the checks (ServerHello with / without pre_shared_key; 1 s loads):"
  echo
  echo "| check load | srvd | nginx | suite, group (srvd / nginx) |"
  echo "|---|---|---|---|"
  if [ "$SNIFF_OK" = 1 ]; then sniff_row; else echo "| (sniffer unavailable) | – | – | – |"; fi
  echo
  "$PY" - "$RAW" "$SCENARIOS" <<'EOF'
import statistics, sys
from collections import defaultdict
data = defaultdict(list)
for line in open(sys.argv[1]):
    rnd, scen, server, key, value = line.rstrip("\n").split("\t")
    if rnd.isdigit():
        data[(scen, server, key)].append(float(value))
scens = sys.argv[2].split()
med = lambda *k: statistics.median(data[k]) if data.get(k) else None
verdict = lambda ok: "PASS" if ok else "FAIL"
titles = {"t1": "1 KiB, keep-alive over TLS", "t2": "new connection per request, full handshake",
          "t3": "new connection per request, resumed (tickets)", "t4": "10 MiB download, 4 connections"}
# (key, target, lower is better)
targets = {"t1": ("cpu_us_req", 0.8, True), "t2": ("cpu_us_req", 1.0, True),
           "t3": ("cpu_us_req", 1.0, True), "t4": ("mib_s", 1.0, False)}
fmts = {"tput": ("req/s", lambda v: f"{v:,.0f}"),
        "mib_s": ("MiB/s", lambda v: f"{v:,.0f}"),
        "cpu_us_req": ("server CPU (µs/req)", lambda v: f"{v:.2f}"),
        "cpu_ms_mib": ("server CPU (ms/MiB)", lambda v: f"{v:.3f}"),
        "cpu_share": ("server busy (CPU s / s)", lambda v: f"{v:.2f}"),
        "p50_us": ("p50 latency (ms)", lambda v: f"{v / 1000:.2f}"),
        "p99_us": ("p99 latency (ms)", lambda v: f"{v / 1000:.2f}"),
        "resumed_share": ("handshakes resumed (client count)", lambda v: f"{v * 100:.1f}%"),
        "errors": ("errors (socket + non-200)", lambda v: f"{v:.0f}")}
rows = {"t1": ["cpu_us_req", "tput", "cpu_share", "p50_us", "p99_us", "errors"],
        "t2": ["cpu_us_req", "tput", "cpu_share", "p50_us", "p99_us", "resumed_share", "errors"],
        "t3": ["cpu_us_req", "tput", "cpu_share", "p50_us", "p99_us", "resumed_share", "errors"],
        "t4": ["mib_s", "cpu_ms_mib", "cpu_share", "p50_us", "p99_us", "errors"]}
print("## Summary")
print()
print("| scenario | metric | srvd | nginx | srvd ÷ nginx | per round | target |")
print("|---|---|---|---|---|---|---|")
for scen in scens:
    key, target, lower = targets[scen]
    a, b = med(scen, "srvd", key), med(scen, "nginx", key)
    if a is None or b is None:
        continue
    per = " ".join(f"{x / y:.2f}" for x, y in zip(data[(scen, "srvd", key)], data[(scen, "nginx", key)]))
    r = a / b
    ok = r <= target if lower else r >= target
    t = f"{'≤' if lower else '≥'} {target}: **{verdict(ok)}**"
    lab, fmt = fmts[key]
    print(f"| {scen} {titles[scen]} | {lab} | {fmt(a)} | {fmt(b)} | **{r:.2f}** | {per} | {t} |")
print()
for scen in scens:
    if not any(k[0] == scen for k in data):
        continue
    print(f"## ({scen}) {titles[scen]}")
    print()
    print("| metric | srvd | nginx | srvd ÷ nginx |")
    print("|---|---|---|---|")
    for key in rows[scen]:
        a, b = med(scen, "srvd", key), med(scen, "nginx", key)
        if a is None and b is None:
            continue
        lab, fmt = fmts[key]
        r = f"{a / b:.2f}" if a is not None and b and key not in ("errors", "resumed_share") else "–"
        c = lambda v: "–" if v is None else fmt(v)
        if key == "errors":
            c = lambda v: "–" if v is None else f"{v:.0f}"
            a = sum(data[(scen, "srvd", key)]) if data.get((scen, "srvd", key)) else None
            b = sum(data[(scen, "nginx", key)]) if data.get((scen, "nginx", key)) else None
            lab += ", all rounds"
        print(f"| {lab} | {c(a)} | {c(b)} | {r} |")
    print()
    key = targets[scen][0]
    print(f"{fmts[key][0]} per round: " + "; ".join(
        f"{s} " + " ".join(fmts[key][1](v) for v in data[(scen, s, key)]) for s in ("srvd", "nginx")))
    print()
EOF
} >"$TDIR/results.md"
cat "$TDIR/results.md"
log "saved $TDIR/results.md (raw numbers: $RAW)"
