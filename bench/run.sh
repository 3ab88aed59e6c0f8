#!/usr/bin/env bash
# srvd against nginx and lighttpd on loopback, same CPU budget.
#
#   bench/run.sh           full run: BENCH_SECONDS (10) per load, BENCH_ROUNDS (3) rounds
#   bench/run.sh --smoke   1 s, 1 round, three scenarios: checks that everything runs
#
# Fairness: each server is pinned to CPU 0 (taskset -c 0) and wrk to CPU 1, so every
# server gets exactly one core: srvd with workers = 1 (master + 1 worker), nginx with
# worker_processes 1 (master + 1 worker), lighttpd as a single process (max-worker 0).
# All three: access log off, sendfile on, keep-alive 60 s with no per-connection request
# cap, no open-file cache, same docroot. CPU is the servers' user+system ticks from
# /proc/PID/stat over the load, summed over all their processes; RSS is VmRSS summed over
# the same processes, sampled halfway through the load.
#
# Rounds are interleaved (scenario by scenario, A B C then the next), the server order
# rotates every round, and each cell is the median over rounds. The machine may be shared
# and noisy: compare servers within one run only.
#
# Other knobs: BENCH_SCENARIOS (subset of: ka1k close1k ka64k big10m nf404 files idle),
# BENCH_SERVERS (subset of: srvd nginx lighttpd), BENCH_IDLE_CONNS (1000),
# BENCH_PORT_BASE (18080), BENCH_NO_INSTALL=1 (never apt-get).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

parse_smoke_arg "$0" "$@"

if [ "$SMOKE" = 1 ]; then
  SECS=1
  ROUNDS=1
  SCENARIOS="${BENCH_SCENARIOS:-ka1k nf404 idle}"
  IDLE_CONNS="${BENCH_IDLE_CONNS:-100}"
else
  SECS="${BENCH_SECONDS:-10}"
  ROUNDS="${BENCH_ROUNDS:-3}"
  SCENARIOS="${BENCH_SCENARIOS:-ka1k close1k ka64k big10m nf404 files idle}"
  IDLE_CONNS="${BENCH_IDLE_CONNS:-1000}"
fi
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a whole number of seconds >= 1"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be >= 1"
PORT_BASE="${BENCH_PORT_BASE:-18080}"
WANT_SERVERS="${BENCH_SERVERS:-srvd nginx lighttpd}"
CLK_TCK="$(getconf CLK_TCK)"

mkdir -p "$OUT"
RAW="$OUT/raw.tsv"
: >"$RAW"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
raise_nofile

# ---------------------------------------------------------------- tools
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
case " $WANT_SERVERS " in *" nginx "*) command -v nginx >/dev/null 2>&1 || missing+=("$(nginx_package)") ;; esac
case " $WANT_SERVERS " in *" lighttpd "*) command -v lighttpd >/dev/null 2>&1 || missing+=(lighttpd) ;; esac
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
HAVE_WRK=0
command -v wrk >/dev/null 2>&1 && HAVE_WRK=1

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
warm_page_cache

# ---------------------------------------------------------------- servers
declare -A PORT PID
SERVERS=()
NOTES=()

start_server() {
  local name="$1" port="$2" dir="$OUT/$1"
  mkdir -p "$dir"
  if port_open "$port"; then
    NOTES+=("$name: port $port already in use, skipped")
    return 1
  fi
  case "$name" in
    srvd)
      write_srvd_conf "$dir/srvd.toml" "$port" 1
      "${SERVER_PIN[@]}" "$SRVD_BIN" -c "$dir/srvd.toml" >"$dir/stderr.log" 2>&1 &
      ;;
    nginx)
      write_nginx_conf "$dir/nginx.conf" "$port" "$dir" on
      "${SERVER_PIN[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$dir/stderr.log" 2>&1 &
      ;;
    lighttpd)
      write_lighttpd_conf "$dir/lighttpd.conf" "$port" "$dir"
      "${SERVER_PIN[@]}" lighttpd -D -f "$dir/lighttpd.conf" >"$dir/stderr.log" 2>&1 &
      ;;
  esac
  local pid=$!
  BENCH_PIDS+=("$pid")
  if ! wait_port "$port" 20 "$pid"; then
    NOTES+=("$name: did not start (see bench/out/$name/stderr.log), skipped")
    return 1
  fi
  if ! "$PY" "$HTTPC" check --port "$port" --path /1k.bin --expect 200 ||
    ! "$PY" "$HTTPC" check --port "$port" --path /missing.bin --expect 404 ||
    ! "$PY" "$HTTPC" check --port "$port" --path /files/f0999.bin --expect 200; then
    NOTES+=("$name: wrong answers to the sanity checks, skipped")
    return 1
  fi
  PORT[$name]="$port"
  PID[$name]="$pid"
  SERVERS+=("$name")
  log "$name serving on 127.0.0.1:$port (pid $pid)"
}

i=0
for name in srvd nginx lighttpd; do
  port=$((PORT_BASE + i))
  i=$((i + 1))
  case " $WANT_SERVERS " in *" $name "*) ;; *) continue ;; esac
  if [ "$name" != srvd ] && ! command -v "$name" >/dev/null 2>&1; then
    NOTES+=("$name: not installed and could not be installed, skipped")
    continue
  fi
  start_server "$name" "$port" || true
done
case " ${SERVERS[*]} " in *" srvd "*) ;; *) die "srvd did not start: see $OUT/srvd/stderr.log" ;; esac
if [ ${#SERVERS[@]} -eq 1 ]; then
  NOTES+=("ONLY srvd IS MEASURED: no peer server is available, so there are no ratios")
fi
for n in "${NOTES[@]}"; do log "NOTE: $n"; done

# ---------------------------------------------------------------- loads
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" "$4" >>"$RAW"; }

# run_wrk SERVER SCENARIO CONNS PATH SCRIPT [wrk args...]: one bounded wrk load; records
# throughput, p99, CPU per request and RSS.
run_wrk() {
  local server="$1" scen="$2" conns="$3" path="$4" script="$5"
  shift 5
  local port="${PORT[$server]}" pid="${PID[$server]}" pids t0 t1 rss wpid line
  local res="$OUT/wrk-$scen-$server.txt"
  pids=($(server_pids "$pid"))
  t0="$(cpu_ticks "${pids[@]}")"
  "${CLIENT_PIN[@]}" timeout -k 5 $((SECS + 30)) wrk -t1 -c"$conns" -d"${SECS}s" --timeout 5s \
    -s "$script" "$@" "http://127.0.0.1:$port$path" >"$res" 2>&1 &
  wpid=$!
  BENCH_BG+=("$wpid")
  sleep "$(awk "BEGIN { print $SECS / 2 }")"
  rss="$(rss_kib "${pids[@]}")"
  wait "$wpid" || log "wrk exited non-zero for $server/$scen (see $res)"
  bg_done "$wpid"
  t1="$(cpu_ticks "${pids[@]}")"
  line="$(grep '^BENCH ' "$res" || true)"
  if [ -z "$line" ]; then
    log "no result from wrk for $server/$scen: $(tail -3 "$res" | tr '\n' ' ')"
    return 0
  fi
  local requests bytes dur p99 errs
  eval "$(echo "$line" | sed 's/^BENCH //' | tr ' ' '\n' | sed 's/^/local W_/')"
  requests="$W_requests"
  bytes="$W_bytes"
  dur="$W_duration_us"
  p99="$W_p99_us"
  errs=$((W_err_connect + W_err_read + W_err_write + W_err_timeout))
  if [ "$requests" -eq 0 ]; then
    log "$server/$scen: no request completed"
    return 0
  fi
  if [ "$scen" = big10m ]; then
    record "$scen" "$server" tput "$(awk "BEGIN { print $bytes / 1048576 / ($dur / 1e6) }")"
  else
    record "$scen" "$server" tput "$(awk "BEGIN { print $requests / ($dur / 1e6) }")"
  fi
  record "$scen" "$server" p99_us "$p99"
  record "$scen" "$server" cpu_us_req "$(awk "BEGIN { print ($t1 - $t0) * 1e6 / $CLK_TCK / $requests }")"
  record "$scen" "$server" rss_kib "$rss"
  record "$scen" "$server" errors "$errs"
  log "$server/$scen: $requests requests, p99 ${p99} µs, $((t1 - t0)) CPU ticks, errors $errs"
}

# Fallback when wrk is missing (smoke only): sequential requests from the Python client.
run_seq() {
  local server="$1" scen="$2" path="$3" expect="$4" out
  out="$("$PY" "$HTTPC" seq --port "${PORT[$server]}" --path "$path" --expect "$expect" \
    --requests 500 --max-seconds 30)" || die "$server/$scen: python client failed"
  log "$server/$scen (python client, no wrk): $out"
  local n s
  n="$(echo "$out" | sed 's/.*requests=\([0-9]*\).*/\1/')"
  s="$(echo "$out" | sed 's/.*seconds=\([0-9.]*\).*/\1/')"
  record "$scen" "$server" tput "$(awk "BEGIN { print $n / $s }")"
}

# 1000 (BENCH_IDLE_CONNS) idle keep-alive connections, each after one request, plus 10
# active ones for the load duration.
run_idle() {
  local server="$1" pid="${PID[$server]}" pids rss0 rss1 hpid opened i
  local ready="$OUT/idle.ready" stop="$OUT/idle.stop" result="$OUT/idle.result"
  rm -f "$ready" "$stop" "$result"
  pids=($(server_pids "$pid"))
  rss0="$(rss_kib "${pids[@]}")"
  "${CLIENT_PIN[@]}" timeout -k 5 $((SECS + 150)) "$PY" "$HTTPC" idle --port "${PORT[$server]}" \
    --conns "$IDLE_CONNS" --hold $((SECS + 120)) --ready "$ready" --stop "$stop" \
    --result "$result" &
  hpid=$!
  BENCH_BG+=("$hpid")
  for i in $(seq 600); do
    [ -f "$ready" ] && break
    kill -0 "$hpid" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -f "$ready" ]; then
    log "$server/idle: the idle connections were not opened"
    kill "$hpid" 2>/dev/null || true
    wait "$hpid" 2>/dev/null || true
    return 0
  fi
  opened="$(cat "$ready")"
  sleep 0.5
  rss1="$(rss_kib "${pids[@]}")"
  if [ "$HAVE_WRK" = 1 ]; then
    run_wrk "$server" idle 10 /1k.bin "$OUT/report.lua"
  fi
  touch "$stop"
  wait "$hpid" || true
  bg_done "$hpid"
  local alive
  alive="$(sed 's/.*alive=\([0-9]*\).*/\1/' "$result" 2>/dev/null || echo 0)"
  [ "$HAVE_WRK" = 1 ] || record idle "$server" rss_kib "$rss1"
  if [ "$opened" -gt 0 ]; then
    record idle "$server" idle_kib_conn "$(awk "BEGIN { print ($rss1 - $rss0) / $opened }")"
  fi
  record idle "$server" alive "$alive"
  log "$server/idle: $opened opened, $alive still open at the end, RSS $rss0 -> $rss1 KiB"
}

cp "$BENCH_DIR/wrk/report.lua" "$OUT/report.lua"
cat "$BENCH_DIR/wrk/files.lua" "$BENCH_DIR/wrk/report.lua" >"$OUT/files.lua"

run_one() {
  local server="$1" scen="$2"
  if [ "$HAVE_WRK" = 0 ]; then
    case "$scen" in
      ka1k) run_seq "$server" "$scen" /1k.bin 200 ;;
      nf404) run_seq "$server" "$scen" /missing.bin 404 ;;
      idle) run_idle "$server" ;;
      *) log "$server/$scen: skipped (needs wrk)" ;;
    esac
    return 0
  fi
  case "$scen" in
    ka1k) run_wrk "$server" "$scen" 50 /1k.bin "$OUT/report.lua" ;;
    close1k) run_wrk "$server" "$scen" 50 /1k.bin "$OUT/report.lua" -H "Connection: close" ;;
    ka64k) run_wrk "$server" "$scen" 50 /64k.bin "$OUT/report.lua" ;;
    big10m) run_wrk "$server" "$scen" 4 /10m.bin "$OUT/report.lua" ;;
    nf404) run_wrk "$server" "$scen" 50 /missing.bin "$OUT/report.lua" ;;
    files) run_wrk "$server" "$scen" 50 / "$OUT/files.lua" ;;
    idle) run_idle "$server" ;;
    *) die "unknown scenario: $scen" ;;
  esac
}

[ "$HAVE_WRK" = 1 ] || NOTES+=("wrk is missing and could not be installed: python client fallback")

if [ "$SMOKE" = 0 ] && [ "$HAVE_WRK" = 1 ]; then
  log "warm-up: 1 s of 1 KiB and of the 1000 files per server"
  ROUND=0
  for s in "${SERVERS[@]}"; do
    "${CLIENT_PIN[@]}" timeout 20 wrk -t1 -c50 -d1s "http://127.0.0.1:${PORT[$s]}/1k.bin" >/dev/null 2>&1 || true
    "${CLIENT_PIN[@]}" timeout 20 wrk -t1 -c50 -d1s -s "$OUT/files.lua" "http://127.0.0.1:${PORT[$s]}/" >/dev/null 2>&1 || true
  done
fi

START=$(date +%s)
for ROUND in $(seq "$ROUNDS"); do
  # Rotate the order each round so no server always runs first or last.
  order=()
  n=${#SERVERS[@]}
  for k in $(seq 0 $((n - 1))); do order+=("${SERVERS[$(((k + ROUND - 1) % n))]}"); done
  for scen in $SCENARIOS; do
    for s in "${order[@]}"; do
      log "round $ROUND/$ROUNDS, $scen, $s"
      run_one "$s" "$scen"
    done
  done
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
IFS=,
server_list="${SERVERS[*]}"
unset IFS
versions="srvd $(srvd_version)"
case " ${SERVERS[*]} " in *" nginx "*) versions+=", $( (nginx -v 2>&1 || true) | sed 's/.*: //')" ;; esac
case " ${SERVERS[*]} " in *" lighttpd "*) versions+=", $( (lighttpd -v 2>&1 || true) | awk 'NR == 1 {print $1}')" ;; esac
# `wrk -v` exits 1 after printing its version.
[ "$HAVE_WRK" = 1 ] && versions+=", wrk $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')"
{
  if [ "$SMOKE" = 1 ]; then echo "# srvd benchmark (smoke pass: 1 s, 1 round; not a measurement)"; else echo "# srvd benchmark"; fi
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
  echo "- $versions"
  echo "- $PIN_NOTE; srvd workers = 1, nginx worker_processes 1, lighttpd single process"
  echo "- ${SECS} s per load, $ROUNDS round(s) interleaved, medians; $ELAPSED s in all; wrk -t1 --timeout 5s"
  echo "- CPU: server user+system from /proc/PID/stat (all its processes) over the load ÷ requests; RSS: VmRSS of all its processes halfway through the load"
  for n in "${NOTES[@]}"; do echo "- **$n**"; done
  echo
  "$PY" "$BENCH_DIR/report.py" "$RAW" "$server_list" "$IDLE_CONNS"
} >"$OUT/results.md"
cat "$OUT/results.md"
log "saved $OUT/results.md (raw numbers: $RAW)"
