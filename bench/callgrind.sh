#!/usr/bin/env bash
# User-space instructions per request, srvd against nginx (and lighttpd when installed),
# counted by callgrind: deterministic, so it is the number to trust on a noisy machine.
#
#   bench/callgrind.sh
#
# Each server runs three times under `valgrind --tool=callgrind --trace-children=yes`
# (valgrind follows fork without exec, so srvd's worker gets its own output file):
#   idle   started, left alone CG_IDLE_SECONDS (5), stopped: the baseline
#   ka     CG_KA_REQUESTS (20000) GETs of /1k.bin over one keep-alive connection
#   close  CG_CLOSE_REQUESTS (5000) GETs of /1k.bin, one `Connection: close` connection each
# Ir per request = (Ir of the serving process in the run - Ir of the idle run) / requests.
# The serving process is srvd's worker (workers = 1; the master holds no connection),
# nginx with `master_process off` (one process), lighttpd (one process).
# Output files and callgrind_annotate listings go to bench/out/callgrind/.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

KA="${CG_KA_REQUESTS:-20000}"
CLOSE="${CG_CLOSE_REQUESTS:-5000}"
IDLE_SECS="${CG_IDLE_SECONDS:-5}"
PORT="${BENCH_PORT_BASE:-18080}"
PORT=$((PORT + 10))
DIR="$OUT/callgrind"

trap bench_cleanup EXIT
trap 'exit 130' INT TERM
raise_nofile
command -v valgrind >/dev/null 2>&1 || apt_install valgrind
command -v valgrind >/dev/null 2>&1 || die "valgrind is missing and could not be installed"
mkdir -p "$OUT"
build_srvd
gen_root
warm_page_cache
rm -rf "$DIR"
mkdir -p "$DIR"

SERVERS=(srvd)
command -v nginx >/dev/null 2>&1 && SERVERS+=(nginx)
command -v lighttpd >/dev/null 2>&1 && SERVERS+=(lighttpd)

# Ir total of a callgrind output file.
ir_of() {
  awk '/^(summary|totals):/ {print $2; exit}' "$1"
}

# run_one SERVER MODE: one valgrind run; sets RESULT to the Ir of the serving process.
# (Not run in a $(...) subshell: the EXIT trap must see the server's pid.)
run_one() {
  local server="$1" mode="$2" conf pid i file
  local prefix="$DIR/$server-$mode"
  case "$server" in
    srvd)
      conf="$DIR/srvd.toml"
      write_srvd_conf "$conf" "$PORT" 1
      set -- "$SRVD_BIN" -c "$conf"
      ;;
    nginx)
      conf="$DIR/nginx/nginx.conf"
      write_nginx_conf "$conf" "$PORT" "$DIR/nginx" off
      set -- nginx -p "$DIR/nginx" -e "$DIR/nginx/error.log" -c "$conf"
      ;;
    lighttpd)
      conf="$DIR/lighttpd/lighttpd.conf"
      write_lighttpd_conf "$conf" "$PORT" "$DIR/lighttpd"
      set -- lighttpd -D -f "$conf"
      ;;
  esac
  port_open "$PORT" && die "port $PORT already in use"
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$prefix.%p.out" \
    "$@" >"$prefix.log" 2>&1 &
  pid=$!
  BENCH_PIDS+=("$pid")
  wait_port "$PORT" 120 "$pid" || die "$server did not start under valgrind (see $prefix.log)"
  case "$mode" in
    idle) sleep "$IDLE_SECS" ;;
    ka) "$PY" "$HTTPC" seq --port "$PORT" --requests "$KA" --max-seconds 600 >"$prefix.client" ;;
    close) "$PY" "$HTTPC" seq --port "$PORT" --requests "$CLOSE" --close --max-seconds 600 >"$prefix.client" ;;
  esac
  # A fast stop that still exits normally, so callgrind writes its files.
  case "$server" in
    srvd) kill -INT "$pid" ;;
    *) kill -TERM "$pid" ;;
  esac
  for i in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && die "$server did not stop within 60 s"
  wait "$pid" 2>/dev/null || true
  BENCH_PIDS=()
  # srvd: the worker is the file whose pid is not the master's; the others: the one file.
  file=""
  for f in "$prefix".*.out; do
    if [ "$server" != srvd ] || [ "$f" != "$prefix.$pid.out" ]; then file="$f"; fi
  done
  [ -n "$file" ] && [ -f "$file" ] || die "no callgrind output for $server/$mode"
  ln -sf "$(basename "$file")" "$prefix.out"
  RESULT="$(ir_of "$file")"
  [ -n "$RESULT" ] || die "no instruction total in $file"
}

declare -A IR
for server in "${SERVERS[@]}"; do
  for mode in idle ka close; do
    log "$server: callgrind run '$mode'"
    run_one "$server" "$mode"
    IR[$server/$mode]="$RESULT"
    log "$server/$mode: Ir ${IR[$server/$mode]}"
  done
done

per_req() { awk "BEGIN { printf \"%.0f\", (${IR[$1/$2]} - ${IR[$1/idle]}) / $3 }"; }

{
  echo "# Instructions per request (callgrind, user space)"
  echo
  echo "- srvd $(srvd_version); GET /1k.bin; (Ir of the serving process - Ir of an idle run) / requests"
  echo "- client: $(for s in "${SERVERS[@]}"; do printf '%s ka: %s; ' "$s" "$(cat "$DIR/$s-ka.client")"; done)"
  echo "- idle baselines (Ir): $(for s in "${SERVERS[@]}"; do printf '%s %s; ' "$s" "${IR[$s/idle]}"; done)"
  echo
  printf '| load |'
  for s in "${SERVERS[@]}"; do printf ' %s Ir/req |' "$s"; done
  [ ${#SERVERS[@]} -gt 1 ] && printf ' srvd ÷ best peer |'
  echo
  printf '|---|'
  for s in "${SERVERS[@]}"; do printf -- '---|'; done
  [ ${#SERVERS[@]} -gt 1 ] && printf -- '---|'
  echo
  for mode in ka close; do
    case "$mode" in
      ka) printf '| %s keep-alive requests, 1 connection |' "$KA"; n="$KA" ;;
      close) printf '| %s `Connection: close` requests |' "$CLOSE"; n="$CLOSE" ;;
    esac
    best=""
    bestv=""
    for s in "${SERVERS[@]}"; do
      v="$(per_req "$s" "$mode" "$n")"
      printf ' %s |' "$v"
      if [ "$s" != srvd ] && { [ -z "$bestv" ] || [ "$v" -lt "$bestv" ]; }; then
        best="$s"
        bestv="$v"
      fi
    done
    if [ -n "$best" ]; then
      printf ' %s (vs %s) |' "$(awk "BEGIN { printf \"%.2f\", $(per_req srvd "$mode" "$n") / $bestv }")" "$best"
    fi
    echo
  done
} >"$DIR/results.md"

for s in "${SERVERS[@]}"; do
  for mode in idle ka close; do
    callgrind_annotate --inclusive=no --threshold=100 --auto=no "$DIR/$s-$mode.out" >"$DIR/$s-$mode.self.txt" 2>/dev/null || true
    callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$DIR/$s-$mode.out" >"$DIR/$s-$mode.inclusive.txt" 2>/dev/null || true
  done
  for mode in ka close; do
    case "$mode" in ka) n="$KA" ;; close) n="$CLOSE" ;; esac
    {
      echo
      echo "## $s, $mode: instructions per request by function (own, minus the idle run)"
      echo
      echo '```'
      "$PY" "$BENCH_DIR/cg_top.py" "$DIR/$s-$mode.self.txt" "$DIR/$s-idle.self.txt" "$n" 25
      echo '```'
    } >>"$DIR/profiles.md"
  done
done

cat "$DIR/results.md"
cat "$DIR/profiles.md"
log "saved $DIR/results.md and profiles.md; annotate listings: $DIR/*.txt"
