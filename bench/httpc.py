#!/usr/bin/env python3
"""Small HTTP/1.1 client for the benchmarks (loopback only, every wait bounded).

Modes:
  check  one GET, exit 0 when the status is the expected one
  seq    N sequential GETs: keep-alive over one connection, or one connection each with
         `Connection: close`; prints `requests=N seconds=S`
  idle   opens N keep-alive connections, makes one request on each, then holds them idle
         until a stop file appears or --hold seconds pass; writes the count to --ready,
         and at the end how many the server still kept open to --result
"""

import argparse
import os
import resource
import selectors
import socket
import sys
import time

HOST = "127.0.0.1"


def request_bytes(path, close):
    conn = "close" if close else "keep-alive"
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: srvd-bench\r\n"
        f"Accept: */*\r\nConnection: {conn}\r\n\r\n"
    ).encode()


class ClosedBetweenResponses(ConnectionError):
    """The server closed a keep-alive connection before any byte of the next response."""


class Reader:
    """Reads one response at a time from a blocking socket (Content-Length framed)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        self.buf += chunk

    def response(self):
        if not self.buf:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ClosedBetweenResponses("server closed the idle connection")
            self.buf = chunk
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        self.buf = rest
        while len(self.buf) < length:
            self._fill()
        self.buf = self.buf[length:]
        return status


def connect(port, timeout):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def cmd_check(a):
    with connect(a.port, 5) as s:
        s.sendall(request_bytes(a.path, True))
        status = Reader(s).response()
    if status != a.expect:
        print(f"GET {a.path}: status {status}, expected {a.expect}", file=sys.stderr)
        return 1
    return 0


def cmd_seq(a):
    deadline = time.monotonic() + a.max_seconds
    req = request_bytes(a.path, a.close)
    done = 0
    reconnects = 0
    start = time.monotonic()
    s = None
    try:
        while done < a.requests and time.monotonic() < deadline:
            if s is None:
                s = connect(a.port, 30)
                r = Reader(s)
            s.sendall(req)
            try:
                status = r.response()
            except ClosedBetweenResponses:
                # A server may end a keep-alive connection after some requests: retry.
                s.close()
                s = None
                reconnects += 1
                continue
            if status != a.expect:
                print(f"unexpected status {status}", file=sys.stderr)
                return 1
            done += 1
            if a.close:
                s.close()
                s = None
    finally:
        if s is not None:
            s.close()
    secs = time.monotonic() - start
    print(f"requests={done} seconds={secs:.3f} reconnects={reconnects}")
    return 0 if done == a.requests else 1


def cmd_idle(a):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    deadline = time.monotonic() + a.hold
    req = request_bytes(a.path, False)
    socks = []
    for _ in range(a.conns):
        if time.monotonic() > deadline:
            break
        try:
            s = connect(a.port, 10)
            s.sendall(req)
            if Reader(s).response() != 200:
                s.close()
                break
            socks.append(s)
        except OSError as e:
            print(f"idle: stopped opening at {len(socks)}: {e}", file=sys.stderr)
            break
    with open(a.ready + ".tmp", "w") as f:
        f.write(f"{len(socks)}\n")
    os.rename(a.ready + ".tmp", a.ready)
    # Hold: wake on the stop file, the deadline, or a server closing a connection.
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    while time.monotonic() < deadline and not os.path.exists(a.stop):
        sel.select(timeout=0.1)
    alive = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                continue
        except BlockingIOError:
            alive += 1
            continue
        except OSError:
            continue
    for s in socks:
        s.close()
    with open(a.result, "w") as f:
        f.write(f"opened={len(socks)} alive={alive}\n")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("check")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--path", default="/1k.bin")
    c.add_argument("--expect", type=int, default=200)
    s = sub.add_parser("seq")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--path", default="/1k.bin")
    s.add_argument("--expect", type=int, default=200)
    s.add_argument("--requests", type=int, required=True)
    s.add_argument("--close", action="store_true")
    s.add_argument("--max-seconds", type=float, default=300)
    i = sub.add_parser("idle")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--path", default="/1k.bin")
    i.add_argument("--conns", type=int, default=1000)
    i.add_argument("--hold", type=float, default=60)
    i.add_argument("--ready", required=True)
    i.add_argument("--stop", required=True)
    i.add_argument("--result", required=True)
    a = p.parse_args()
    return {"check": cmd_check, "seq": cmd_seq, "idle": cmd_idle}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
