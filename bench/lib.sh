# Shared helpers of bench/run.sh and bench/callgrind.sh (sourced, not run).
#
# Everything here stays on 127.0.0.1, and every server it starts is recorded in
# BENCH_PIDS so that `bench_cleanup` (installed as an EXIT trap by the callers) can
# stop it by its process id.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
OUT="$BENCH_DIR/out"
ROOT="$OUT/root"
SRVD_BIN="$REPO_DIR/target/release/srvd"
PY="${PYTHON:-python3}"
HTTPC="$BENCH_DIR/httpc.py"
BENCH_PIDS=()
# Short-lived helpers (load generators, idle-connection holder) still running.
BENCH_BG=()

# Forgets a helper that has been waited for.
bg_done() {
  local keep=() p
  for p in "${BENCH_BG[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  BENCH_BG=("${keep[@]}")
}

# Sets SMOKE=1 for `--smoke`; `-h`/`--help` prints the calling script's header comment.
# Usage: parse_smoke_arg "$0" "$@"
parse_smoke_arg() {
  local script="$1"
  shift
  SMOKE=0
  case "${1:-}" in
    --smoke) SMOKE=1 ;;
    "") ;;
    -h | --help)
      awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$script"
      exit 0
      ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
}

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
  printf '[bench] error: %s\n' "$*" >&2
  exit 1
}

# Stops every server this script started: SIGINT/SIGTERM first, SIGKILL after 5 s.
bench_cleanup() {
  local pid kids i
  for pid in "${BENCH_BG[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  BENCH_BG=()
  for pid in "${BENCH_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    kids="$(child_pids "$pid")"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" $kids 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
}

# The direct children of a process (srvd's and nginx's workers).
child_pids() {
  cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -v '^$' || true
}

# A server's processes: the one started plus its children.
server_pids() {
  echo "$1"
  child_pids "$1"
}

# user+system CPU time, in clock ticks, summed over the given pids (/proc/PID/stat 14+15).
cpu_ticks() {
  local total=0 p t
  for p in "$@"; do
    [ -r /proc/"$p"/stat ] || continue
    t="$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13}')" || continue
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# Resident set size in KiB, summed over the given pids (/proc/PID/status VmRSS).
rss_kib() {
  local total=0 p r
  for p in "$@"; do
    r="$(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null)" || continue
    total=$((total + ${r:-0}))
  done
  echo "$total"
}

# True when a TCP connect to 127.0.0.1:$1 succeeds.
port_open() {
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Waits (at most $2 seconds) until 127.0.0.1:$1 accepts and process $3 is alive.
wait_port() {
  local port="$1" secs="$2" pid="$3" i
  for i in $(seq $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || return 1
    port_open "$port" && return 0
    sleep 0.1
  done
  return 1
}

# Installs the given Debian packages when running as root with apt-get, unless
# BENCH_NO_INSTALL is set. Never fails: the caller checks what is there afterwards.
apt_install() {
  [ "${BENCH_NO_INSTALL:-}" = "" ] || return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
  log "installing: $*"
  if [ -z "${BENCH_APT_UPDATED:-}" ]; then
    timeout 300 apt-get update -qq >/dev/null 2>&1 || true
    BENCH_APT_UPDATED=1
  fi
  # No init system starts the packaged services here; RUNLEVEL=1 keeps invoke-rc.d quiet
  # on machines that have one.
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive timeout 600 \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 || true
}

# Debian package providing nginx: nginx-light on bookworm, plain nginx later.
nginx_package() {
  local p
  for p in nginx-light nginx; do
    if apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      echo "$p"
      return
    fi
  done
  echo nginx
}

# The commit srvd was built from, flagged when the tree had uncommitted changes.
srvd_version() {
  local rev
  rev="$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [ -n "$(git -C "$REPO_DIR" status --porcelain -- src Cargo.toml 2>/dev/null)" ]; then
    rev+=" + uncommitted changes"
  fi
  echo "$rev"
}

build_srvd() {
  log "building srvd (release)"
  (cd "$REPO_DIR" && cargo build --release --quiet --bin srvd) || die "cargo build --release failed"
  [ -x "$SRVD_BIN" ] || die "no $SRVD_BIN after the build"
}

# The docroot: 1 KiB, 64 KiB and 10 MiB files and 1000 distinct 4 KiB files.
gen_root() {
  local stamp="$ROOT/.complete" i
  [ -f "$stamp" ] && return 0
  log "generating the docroot in $ROOT"
  rm -rf "$ROOT"
  mkdir -p "$ROOT/files"
  head -c 1024 /dev/urandom >"$ROOT/1k.bin"
  head -c $((64 * 1024)) /dev/urandom >"$ROOT/64k.bin"
  head -c $((10 * 1024 * 1024)) /dev/urandom >"$ROOT/10m.bin"
  head -c $((1000 * 4096)) /dev/urandom >"$OUT/files.tmp"
  (cd "$ROOT/files" && split -a 4 -d -b 4096 "$OUT/files.tmp" f && for i in f*; do mv "$i" "$i.bin"; done)
  rm -f "$OUT/files.tmp"
  printf '<!DOCTYPE html><title>bench</title>\n' >"$ROOT/index.html"
  [ "$(find "$ROOT/files" -name 'f*.bin' | wc -l)" = 1000 ] || die "docroot generation failed"
  touch "$stamp"
}

# Reads every file once so that no server pays for the first disk read.
warm_page_cache() {
  cat "$ROOT"/*.bin "$ROOT"/files/*.bin >/dev/null
}

# write_srvd_conf FILE PORT WORKERS
write_srvd_conf() {
  cat >"$1" <<EOF
# Generated by bench/: srvd, access log off.
port = $2
bind = "127.0.0.1"
workers = $3
root = "$ROOT"
keepalive_timeout = "60s"
header_timeout = "60s"
send_timeout = "60s"
shutdown_timeout = "1s"
max_connections = 16384

[log]
access = "off"
EOF
}

# nginx_head DIR MASTER(on|off) NOFILE: the top of every bench nginx.conf (as root the
# workers run as root, one worker, pid and error log in DIR, epoll); the caller writes the
# http block.
nginx_head() {
  [ "$(id -u)" = 0 ] && echo "user root root;"
  cat <<EOF
worker_processes 1;
master_process $2;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile $3;
events {
    worker_connections 16384;
    use epoll;
}
EOF
}

# write_nginx_conf FILE PORT DIR MASTER(on|off)
write_nginx_conf() {
  local
  mkdir -p "$3"
  cat >"$1" <<EOF
# Generated by bench/: nginx, one worker, sendfile on, access log off.
$(nginx_head "$3" $4 32768)
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_body_temp_path $3/body;
    types {
        text/html html;
        application/octet-stream bin;
    }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$2 backlog=4096;
        server_name localhost;
        root $ROOT;
    }
}
EOF
}

# write_lighttpd_conf FILE PORT DIR
write_lighttpd_conf() {
  mkdir -p "$3"
  cat >"$1" <<EOF
# Generated by bench/: lighttpd, single process, sendfile, no access log (mod_accesslog
# not loaded).
server.document-root = "$ROOT"
server.bind = "127.0.0.1"
server.port = $2
server.errorlog = "$3/error.log"
server.max-worker = 0
server.event-handler = "linux-sysepoll"
server.network-backend = "sendfile"
server.max-fds = 32768
server.max-connections = 16384
server.listen-backlog = 4096
server.max-keep-alive-requests = 1000000
server.max-keep-alive-idle = 60
server.max-read-idle = 60
server.max-write-idle = 60
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html", ".bin" => "application/octet-stream" )
EOF
}

# Raises the descriptor limit for the servers and the idle-connection helper.
raise_nofile() {
  local hard
  hard="$(ulimit -Hn)"
  if [ "$hard" = unlimited ] || [ "$hard" -ge 32768 ]; then
    ulimit -n 32768 2>/dev/null || true
  else
    ulimit -n "$hard" 2>/dev/null || true
  fi
}
