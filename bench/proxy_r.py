#!/usr/bin/env python3
"""Helpers of bench/proxy.sh, scenario (r): slow clients behind a buffering proxy.

Modes (loopback only, every wait bounded):

  upstream  a tiny threaded HTTP/1.1 upstream. Every request gets a SIZE-byte body
            (Content-Length, `Connection: close`), produced in PIECES pieces with
            PRODUCE_MS / PIECES of sleep before each, as an app rendering a page would.
            After the last byte is written it shuts its side down and waits (at most
            --eof-timeout s) for the peer to close. One JSON line per connection goes to
            --log: the path, and in ms since accept: `req` (request head read), `sent`
            (the last sendall returned: the app worker would be free), `held` (the peer
            closed: the proxy read the whole response and let go of the connection).
            A small SO_SNDBUF (--sndbuf) keeps `sent` close to what the peer has read.
  clients   N concurrent clients (asyncio, one thread; `--sequential`: one after the
            other), each one GET on its own connection; `--slow`: reads CHUNK bytes every INTERVAL s (~100 KB/s with the
            defaults) with a small SO_RCVBUF so the kernel cannot soak up the response;
            otherwise reads as fast as it can. Checks status 200 and the full length.
            Prints one JSON line: completed, errors, client seconds (median, max).
            Everything stops after --max-seconds.
  summary   reads an upstream log and prints the held/sent distribution of the
            connections whose path starts with a prefix, as JSON.
"""

import argparse
import asyncio
import json
import socket
import statistics
import sys
import threading
import time

HOST = "127.0.0.1"


# ----------------------------------------------------------------------------- upstream
def serve(args):
    size, pieces = args.size, args.pieces
    piece = size // pieces
    body_pieces = [bytes([65 + i % 26]) * piece for i in range(pieces)]
    body_pieces[-1] += b"z" * (size - piece * pieces)
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    pause = args.produce_ms / 1000.0 / pieces
    log = open(args.log, "a", buffering=1)
    lock = threading.Lock()

    def handle(conn, t0):
        rec = {"path": "?"}
        try:
            conn.settimeout(args.eof_timeout)
            buf = b""
            while b"\r\n\r\n" not in buf:
                c = conn.recv(65536)
                if not c:
                    raise ConnectionError("closed before the request head")
                buf += c
                if len(buf) > 65536:
                    raise ConnectionError("request head too large")
            line = buf.split(b"\r\n", 1)[0].split()
            rec["path"] = line[1].decode("latin-1") if len(line) > 1 else "?"
            rec["req"] = (time.monotonic() - t0) * 1000
            conn.sendall(head)
            for p in body_pieces:
                if pause:
                    time.sleep(pause)
                conn.sendall(p)
            rec["sent"] = (time.monotonic() - t0) * 1000
            conn.shutdown(socket.SHUT_WR)
            while True:
                c = conn.recv(65536)
                if not c:
                    break
            rec["held"] = (time.monotonic() - t0) * 1000
        except (OSError, ConnectionError) as e:
            rec["error"] = str(e)
            rec["held"] = (time.monotonic() - t0) * 1000
        finally:
            conn.close()
            with lock:
                log.write(json.dumps(rec) + "\n")

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.sndbuf:
        # Inherited by the accepted sockets.
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.sndbuf)
    ls.bind((HOST, args.port))
    ls.listen(1024)
    ls.settimeout(0.5)
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        try:
            conn, _ = ls.accept()
        except socket.timeout:
            continue
        t0 = time.monotonic()
        conn.settimeout(None)
        threading.Thread(target=handle, args=(conn, t0), daemon=True).start()
    ls.close()


# ------------------------------------------------------------------------------ clients
async def one_client(i, args, results):
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.slow and args.rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    sock.setblocking(False)
    t0 = time.monotonic()
    try:
        await loop.sock_connect(sock, (HOST, args.port))
        req = (
            f"GET {args.path}/{i} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: srvd-bench\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        ).encode()
        await loop.sock_sendall(sock, req)
        st = {"head": b"", "status": None, "length": None, "got": 0}

        def feed(c):
            if st["status"] is not None:
                st["got"] += len(c)
                return
            st["head"] += c
            if b"\r\n\r\n" in st["head"]:
                head, _, rest = st["head"].partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                st["status"] = int(lines[0].split()[1])
                for l in lines[1:]:
                    k, _, v = l.partition(b":")
                    if k.strip().lower() == b"content-length":
                        st["length"] = int(v)
                st["got"] = len(rest)
                st["head"] = b""

        def done():
            return st["length"] is not None and st["got"] >= st["length"]

        tick = time.monotonic()
        eof = False
        while not eof and not done():
            if args.slow:
                # CHUNK bytes per INTERVAL, on a fixed schedule.
                tick += args.interval
                delay = tick - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                want = args.chunk
                while want > 0 and not done():
                    c = await loop.sock_recv(sock, want)
                    if not c:
                        eof = True
                        break
                    feed(c)
                    want -= len(c)
            else:
                c = await loop.sock_recv(sock, 262144)
                if not c:
                    eof = True
                else:
                    feed(c)
        status, length, got = st["status"], st["length"], st["got"]
        ok = status == 200 and length == args.size and got == length
        results.append(
            {
                "ok": ok,
                "status": status,
                "bytes": got,
                "seconds": time.monotonic() - t0,
            }
        )
    except OSError as e:
        results.append({"ok": False, "error": str(e), "seconds": time.monotonic() - t0})
    finally:
        sock.close()


async def sequential(args, results):
    for i in range(args.conns):
        await one_client(i, args, results)


async def run_clients(args):
    results = []
    if args.sequential:
        tasks = [asyncio.create_task(sequential(args, results))]
    else:
        tasks = [asyncio.create_task(one_client(i, args, results)) for i in range(args.conns)]
    done, pending = await asyncio.wait(tasks, timeout=args.max_seconds)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    return results, len(pending)


def clients(args):
    results, unfinished = asyncio.run(run_clients(args))
    secs = sorted(r["seconds"] for r in results if r.get("ok"))
    errors = [r for r in results if not r.get("ok")]
    out = {
        "completed": len(secs),
        "errors": len(errors) + unfinished,
        "client_s_median": round(statistics.median(secs), 3) if secs else None,
        "client_s_max": round(secs[-1], 3) if secs else None,
    }
    if errors:
        out["first_error"] = errors[0]
    print(json.dumps(out))
    return 0 if not errors and not unfinished else 1


# ------------------------------------------------------------------------------ summary
def summary(args):
    held, sent, errors = [], [], 0
    with open(args.log) as f:
        for line in f:
            rec = json.loads(line)
            if not rec.get("path", "").startswith(args.prefix + "/"):
                continue
            if "error" in rec:
                errors += 1
                continue
            held.append(rec["held"])
            sent.append(rec["sent"])
    out = {"conns": len(held), "errors": errors}
    for name, v in (("held", held), ("sent", sent)):
        if v:
            v.sort()
            out[f"{name}_median_ms"] = round(statistics.median(v), 2)
            out[f"{name}_max_ms"] = round(v[-1], 2)
    out["held_ms"] = [round(x, 2) for x in held]
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    u = sub.add_parser("upstream")
    u.add_argument("--port", type=int, required=True)
    u.add_argument("--size", type=int, default=1 << 20)
    u.add_argument("--pieces", type=int, default=16)
    u.add_argument("--produce-ms", type=float, default=50.0)
    u.add_argument("--sndbuf", type=int, default=65536)
    u.add_argument("--eof-timeout", type=float, default=60.0)
    u.add_argument("--max-seconds", type=float, default=900.0)
    u.add_argument("--log", required=True)
    c = sub.add_parser("clients")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--path", required=True, help="request path prefix; client i GETs PATH/i")
    c.add_argument("--conns", type=int, default=100)
    c.add_argument("--size", type=int, default=1 << 20)
    c.add_argument("--slow", action="store_true")
    c.add_argument("--sequential", action="store_true", help="one request after the other")
    c.add_argument("--chunk", type=int, default=10240)
    c.add_argument("--interval", type=float, default=0.1)
    c.add_argument("--rcvbuf", type=int, default=32768)
    c.add_argument("--max-seconds", type=float, default=60.0)
    s = sub.add_parser("summary")
    s.add_argument("--log", required=True)
    s.add_argument("--prefix", required=True)
    args = ap.parse_args()
    if args.mode == "upstream":
        serve(args)
    elif args.mode == "clients":
        sys.exit(clients(args))
    else:
        summary(args)


if __name__ == "__main__":
    main()
