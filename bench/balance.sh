#!/usr/bin/env bash
# How evenly srvd and nginx spread connections and work over their worker processes.
#
#   bench/balance.sh           srvd and nginx, N workers in {2, 4} x C connections in
#                              {50, 500}, BALANCE_SECONDS (3) of wrk -t2 -cC per scenario
#   bench/balance.sh --smoke   srvd only, N=2, C=50, 1 s; exits non-zero when a worker's
#                              connection share is outside 0.5..1.5x of the mean, or
#                              connections are left in the listen queue
#
# Nothing is pinned (no taskset): servers and wrk share every CPU, as in production.
# srvd: workers = N, access log off (bench/lib.sh write_srvd_conf). nginx: its default
# accept handling (no accept_mutex, no reuseport: one shared listener, EPOLLEXCLUSIVE),
# worker_processes N, access log off, keepalive_requests 1000000 (write_nginx_conf with
# worker_processes changed). Each server serves /1k.bin on 127.0.0.1, on a free port.
#
# Two measures of each worker's share, both printed as a ratio to the mean over the
# workers (1.00 = exactly its share):
#   conns  the connections the worker holds halfway through the load: its socket fds whose
#          inode is an ESTABLISHED entry of /proc/net/tcp with local port = server port.
#          ESTABLISHED entries that no worker holds are still in the listen queue: they
#          are printed as "queued", and any makes the scenario miss the goal.
#   cpu    the worker's user+system time (/proc/PID/stat fields 14+15) over the load
# The goal is every ratio within 0.7..1.3 (and nothing queued).
#
# Knobs: BALANCE_SECONDS (3), BALANCE_PORT_BASE (18180: the first port tried),
# BENCH_NO_INSTALL=1 (never apt-get). Output: stdout and bench/out/balance.md.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

parse_smoke_arg "$0" "$@"

if [ "$SMOKE" = 1 ]; then
  SECS=1
  WORKER_COUNTS="2"
  CONN_COUNTS="50"
  WANT_SERVERS="srvd"
  GOAL_LO=0.5
  GOAL_HI=1.5
else
  SECS="${BALANCE_SECONDS:-3}"
  WORKER_COUNTS="2 4"
  CONN_COUNTS="50 500"
  WANT_SERVERS="srvd nginx"
  GOAL_LO=0.7
  GOAL_HI=1.3
fi
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || die "BALANCE_SECONDS must be a whole number of seconds >= 1"
PORT_BASE="${BALANCE_PORT_BASE:-18180}"
WRK_THREADS=2

mkdir -p "$OUT"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
raise_nofile

# ---------------------------------------------------------------- /proc helpers (python)
# free-port BASE            first port >= BASE that 127.0.0.1 can bind
# conns PORT PID...         per PID: its sockets that are ESTABLISHED with local port PORT;
#                           then the ESTABLISHED entries held by none of them (still queued)
# ticks PID...              per PID: utime + stime (fields 14 + 15 of /proc/PID/stat)
# row LO HI SERVER N C REQUESTS DURATION_US "CONNS" QUEUED "TICKS0" "TICKS1"
#                           one table row; exit status 3 when the connection ratios are
#                           outside LO..HI, nothing was counted, or QUEUED > 0
read -r -d '' PROC_PY <<'EOF' || true
import os, socket, sys

def free_port(base):
    for port in range(base, base + 200):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            pass
        finally:
            s.close()
    sys.exit("no free port in %d..%d" % (base, base + 199))

def established(port):
    """Inodes of the ESTABLISHED (st 01) IPv4 sockets whose local port is `port`."""
    inodes = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, st, inode = fields[1], fields[3], fields[9]
            if st == "01" and int(local.split(":")[1], 16) == port:
                inodes.append(inode)
    return inodes

def socket_inodes(pid):
    found = set()
    d = "/proc/%s/fd" % pid
    for fd in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, fd))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found

def ticks(pid):
    with open("/proc/%s/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15, counted from 1

def ratios(values):
    mean = sum(values) / len(values)
    return [v / mean for v in values] if mean > 0 else None

def fmt(rs):
    return " ".join("%.2f" % r for r in rs) if rs else "n/a"

def within(rs, lo, hi):
    return rs is not None and min(rs) >= lo and max(rs) <= hi

def row(lo, hi, server, n, c, requests, dur_us, conns, queued, t0, t1):
    lo, hi = float(lo), float(hi)
    conns = [int(x) for x in conns.split()]
    cpu = [b - a for a, b in zip(map(int, t0.split()), map(int, t1.split()))]
    rps = int(requests) / (int(dur_us) / 1e6) if int(dur_us) > 0 else 0
    cr, ur = ratios(conns), ratios(cpu)
    # A connection still in the listen queue halfway through a keep-alive load is starved:
    # no worker took its share, so the spread fails whatever the ratios of the others.
    ok_c, ok_u = within(cr, lo, hi) and int(queued) == 0, within(ur, lo, hi)
    span = lambda rs: "%.2f / %.2f" % (min(rs), max(rs)) if rs else "n/a"
    print("| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        server, n, c, rps, " ".join(map(str, conns)), queued,
        fmt(cr), span(cr), "yes" if ok_c else "**no** (queued)" if int(queued) else "**no**",
        fmt(ur), span(ur), "yes" if ok_u else "**no**"))
    sys.exit(0 if ok_c else 3)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "free-port":
    print(free_port(int(args[0])))
elif cmd == "conns":
    inodes = established(int(args[0]))
    held = [len(socket_inodes(pid).intersection(inodes)) for pid in args[1:]]
    print(" ".join(map(str, held)), len(inodes) - sum(held))
elif cmd == "ticks":
    print(" ".join(str(ticks(pid)) for pid in args))
elif cmd == "row":
    row(*args)
else:
    sys.exit("unknown command " + cmd)
EOF
proc_py() { "$PY" -c "$PROC_PY" "$@"; }

# ---------------------------------------------------------------- tools
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
case " $WANT_SERVERS " in *" nginx "*) command -v nginx >/dev/null 2>&1 || missing+=("$(nginx_package)") ;; esac
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
command -v wrk >/dev/null 2>&1 || die "wrk is missing (apt-get install wrk)"
NOTES=()
if [ "$SMOKE" = 0 ] && ! command -v nginx >/dev/null 2>&1; then
  NOTES+=("nginx is not installed and could not be installed: srvd only")
  WANT_SERVERS="srvd"
fi

build_srvd
gen_root
cat "$ROOT/1k.bin" >/dev/null

# ---------------------------------------------------------------- servers
declare -A PORT PID WORKERS

# The worker pids of server $1 once all $2 are up: children of the master that have
# created their epoll instance. Fails after 10 s.
wait_workers() {
  local master="$1" n="$2" i kids k ready
  for i in $(seq 100); do
    kids=($(child_pids "$master"))
    if [ ${#kids[@]} -eq "$n" ]; then
      ready=0
      for k in "${kids[@]}"; do
        ls -l /proc/"$k"/fd 2>/dev/null | grep -q 'anon_inode:\[eventpoll\]' && ready=$((ready + 1))
      done
      if [ "$ready" -eq "$n" ]; then
        echo "${kids[*]}"
        return 0
      fi
    fi
    sleep 0.1
  done
  return 1
}

# start_server NAME WORKERS: starts NAME with WORKERS workers on a free port.
start_server() {
  local name="$1" n="$2" dir="$OUT/balance/$1-$2" port pid kids
  mkdir -p "$dir"
  port="$(proc_py free-port "$PORT_BASE")"
  case "$name" in
    srvd)
      write_srvd_conf "$dir/srvd.toml" "$port" "$n"
      "$SRVD_BIN" -c "$dir/srvd.toml" >"$dir/stderr.log" 2>&1 &
      ;;
    nginx)
      write_nginx_conf "$dir/nginx.conf" "$port" "$dir" on
      sed -i "s/^worker_processes 1;$/worker_processes $n;/; s/nginx, one worker,/nginx, $n workers,/" \
        "$dir/nginx.conf"
      grep -q "^worker_processes $n;$" "$dir/nginx.conf" ||
        die "could not set worker_processes in $dir/nginx.conf (write_nginx_conf changed?)"
      nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stderr.log" 2>&1 &
      ;;
  esac
  pid=$!
  BENCH_PIDS+=("$pid")
  wait_port "$port" 20 "$pid" || die "$name did not start (see $dir/stderr.log)"
  kids="$(wait_workers "$pid" "$n")" ||
    die "$name: expected $n workers, found: $(child_pids "$pid" | tr '\n' ' ')(see $dir/stderr.log)"
  "$PY" "$HTTPC" check --port "$port" --path /1k.bin --expect 200 || die "$name: GET /1k.bin failed"
  PORT[$name]="$port"
  PID[$name]="$pid"
  WORKERS[$name]="$kids"
  log "$name serving on 127.0.0.1:$port (master $pid, workers $kids)"
}

# ---------------------------------------------------------------- one scenario
ROWS=()
FAILED=0

# measure SERVER N C: one bounded wrk load; appends a row to ROWS.
measure() {
  local server="$1" n="$2" c="$3" port="${PORT[$1]}" res wpid t0 t1 sample line row
  local workers=(${WORKERS[$1]})
  res="$OUT/balance/wrk-$server-n$n-c$c.txt"
  t0="$(proc_py ticks "${workers[@]}")"
  timeout -k 5 $((SECS + 30)) wrk -t"$WRK_THREADS" -c"$c" -d"${SECS}s" --timeout 5s \
    -s "$BENCH_DIR/wrk/report.lua" "http://127.0.0.1:$port/1k.bin" >"$res" 2>&1 &
  wpid=$!
  BENCH_BG+=("$wpid")
  sleep "$(awk "BEGIN { print $SECS / 2 }")"
  sample="$(proc_py conns "$port" "${workers[@]}")"
  wait "$wpid" || log "wrk exited non-zero for $server N=$n C=$c (see $res)"
  bg_done "$wpid"
  t1="$(proc_py ticks "${workers[@]}")"
  line="$(grep '^BENCH ' "$res" || true)"
  [ -n "$line" ] || die "no result from wrk for $server N=$n C=$c: $(tail -3 "$res" | tr '\n' ' ')"
  local W_requests W_duration_us W_err_connect W_err_read W_err_write W_err_timeout
  eval "$(echo "$line" | sed 's/^BENCH //' | tr ' ' '\n' | grep -E '^(requests|duration_us|err_[a-z]+)=' | sed 's/^/W_/')"
  local errs=$((W_err_connect + W_err_read + W_err_write + W_err_timeout))
  local held="${sample% *}" queued="${sample##* }"
  log "$server N=$n C=$c: $W_requests requests, connections per worker $held (+$queued not accepted yet), CPU ticks $t0 -> $t1, socket errors $errs"
  [ "$errs" -eq 0 ] || NOTES+=("$server N=$n C=$c: wrk counted $errs socket errors (see $res)")
  if row="$(proc_py row "$GOAL_LO" "$GOAL_HI" "$server" "$n" "$c" "$W_requests" "$W_duration_us" \
    "$held" "$queued" "$t0" "$t1")"; then
    :
  else
    [ $? -eq 3 ] || die "could not compute the row for $server N=$n C=$c"
    FAILED=1
  fi
  ROWS+=("$row")
}

# ---------------------------------------------------------------- runs
START=$(date +%s)
for n in $WORKER_COUNTS; do
  SERVERS=()
  for s in $WANT_SERVERS; do
    start_server "$s" "$n"
    SERVERS+=("$s")
  done
  for c in $CONN_COUNTS; do
    for s in "${SERVERS[@]}"; do
      log "N=$n C=$c, $s"
      measure "$s" "$n" "$c"
    done
  done
  # Stop these servers before starting the next worker count.
  bench_cleanup
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
versions="srvd $(srvd_version)"
case " $WANT_SERVERS " in *" nginx "*) versions+=", $( (nginx -v 2>&1 || true) | sed 's/.*: //')" ;; esac
versions+=", wrk $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')"
{
  if [ "$SMOKE" = 1 ]; then echo "# Worker balance (smoke pass: srvd, N=2, C=50, 1 s)"; else echo "# Worker balance"; fi
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
  echo "- $versions"
  echo "- not pinned: servers and wrk share all CPUs; wrk -t$WRK_THREADS -cC -d${SECS}s, GET /1k.bin, keep-alive; $ELAPSED s in all"
  echo "- conns: connections each worker holds halfway through the load; queued: established connections no worker has accepted at that moment (still in the listen queue); cpu: each worker's user+system time over the load"
  echo "- ratios are to the mean over the workers (1.00 = its exact share); goal: all within $GOAL_LO..$GOAL_HI, and for conns nothing queued"
  for note in "${NOTES[@]}"; do echo "- **$note**"; done
  echo
  echo "| server | N | C | req/s | conns per worker | queued | conns ÷ mean | min / max | in $GOAL_LO..$GOAL_HI | cpu ÷ mean | min / max | in $GOAL_LO..$GOAL_HI |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} >"$OUT/balance.md"
cat "$OUT/balance.md"
log "saved $OUT/balance.md (wrk output in $OUT/balance/)"

if [ "$SMOKE" = 1 ] && [ "$FAILED" = 1 ]; then
  die "smoke: a worker's connection share is outside $GOAL_LO..$GOAL_HI of the mean, or connections were left in the listen queue"
fi
exit 0
