#!/usr/bin/env python3
"""Helpers of bench/tls.sh (issue 13): a new-connection-per-request HTTPS load client and a
loopback sniffer that counts full and resumed TLS 1.3 handshakes.

  tls_clients.py load --port P --path /1k.bin --mode full|resume --conns N
                      --seconds S --max-requests M [--sni localhost] [--expect-len B]
      N threads, each in a loop: TCP connect to 127.0.0.1:P, TLS 1.3 handshake (ALPN
      http/1.1, certificate not verified: the load is the server's, not the client's),
      `GET PATH` with `Connection: close`, read to EOF, check status 200 and the body length.
      full:   every request gets a fresh SSLContext and no session, so every handshake
              is a full one (certificate, CertificateVerify, ECDHE).
      resume: one SSLContext per thread; each connection offers the session (ticket) of
              the thread's previous one, as a browser does; the first is full.
      Stops at S seconds or M requests, whichever comes first. Prints one line
      `TLSLOAD requests=.. errors=.. resumed=.. full=.. non200=.. badlen=.. seconds=..
      p50_us=.. p99_us=..` (requests counts good responses only), then error samples on
      stderr.

  tls_clients.py sniff --port P --seconds S [--out FILE]
      Reads every packet on the loopback interface (AF_PACKET, root only) for S seconds and
      parses the TLS ServerHello records sent from port P: a ServerHello with the
      pre_shared_key extension (41) is a resumed TLS 1.3 handshake, one without it a full
      one. Prints `SNIFF hellos=.. resumed=.. full=.. hrr=.. versions=.. suites=..
      groups=..` (the negotiated version, cipher suite and key-exchange group counts).
      Meant for a short, light check load: under a heavy one the capture may drop packets
      (then the counts are a sample, still a valid ratio).
"""
import argparse
import collections
import socket
import ssl
import struct
import sys
import threading
import time


def cmd_load(a):
    deadline = time.monotonic() + a.seconds
    lock = threading.Lock()
    st = collections.Counter()
    lat = []
    errs = []
    req = (f"GET {a.path} HTTP/1.1\r\nHost: {a.sni}\r\nUser-Agent: tls_clients.py\r\n"
           "Connection: close\r\n\r\n").encode()

    def new_ctx():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def take():
        with lock:
            if st["started"] >= a.max_requests:
                return False
            st["started"] += 1
            return True

    def worker():
        ctx = new_ctx()
        session = None
        while time.monotonic() < deadline and take():
            if a.mode == "full":
                ctx = new_ctx()
            t0 = time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", a.port), timeout=10) as s:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with ctx.wrap_socket(s, server_hostname=a.sni, session=session) as t:
                        reused = t.session_reused
                        t.sendall(req)
                        chunks = []
                        while True:
                            d = t.recv(262144)
                            if not d:
                                break
                            chunks.append(d)
                        if a.mode == "resume":
                            session = t.session
                data = b"".join(chunks)
                dt = time.perf_counter() - t0
                head, _, body = data.partition(b"\r\n\r\n")
                status = head.split(b" ", 2)[1:2]
                with lock:
                    st["resumed" if reused else "full"] += 1
                    if status != [b"200"]:
                        st["non200"] += 1
                    elif a.expect_len is not None and len(body) != a.expect_len:
                        st["badlen"] += 1
                    else:
                        st["requests"] += 1
                        lat.append(dt)
            except (OSError, ssl.SSLError, ValueError) as e:
                with lock:
                    st["errors"] += 1
                    if len(errs) < 5:
                        errs.append(f"{type(e).__name__}: {e}")
                session = None

    t_start = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(a.seconds + 30)
    secs = time.monotonic() - t_start
    lat.sort()

    def pct(p):
        if not lat:
            return 0.0
        return lat[min(len(lat) - 1, int(len(lat) * p / 100))] * 1e6

    print(f"TLSLOAD requests={st['requests']} errors={st['errors']} resumed={st['resumed']} "
          f"full={st['full']} non200={st['non200']} badlen={st['badlen']} seconds={secs:.3f} "
          f"p50_us={pct(50):.0f} p99_us={pct(99):.0f}")
    for e in errs:
        print("error:", e, file=sys.stderr)


def parse_server_hello(buf):
    """(resumed, hrr, version, suite, group) of a TLS record buffer starting with a
    ServerHello, or None."""
    if len(buf) < 5 + 4 + 2 + 32 + 1 or buf[0] != 0x16 or buf[5] != 0x02:
        return None
    p = 5 + 4
    p += 2
    random = buf[p:p + 32]
    p += 32
    sid_len = buf[p]
    p += 1 + sid_len
    if p + 5 > len(buf):
        return None
    suite = struct.unpack(">H", buf[p:p + 2])[0]
    p += 3
    ext_len = struct.unpack(">H", buf[p:p + 2])[0]
    p += 2
    end = min(len(buf), p + ext_len)
    resumed, version, group = False, 0x0303, None
    while p + 4 <= end:
        et, el = struct.unpack(">HH", buf[p:p + 4])
        body = buf[p + 4:p + 4 + el]
        if et == 41:
            resumed = True
        elif et == 43 and len(body) >= 2:
            version = struct.unpack(">H", body[:2])[0]
        elif et == 51 and len(body) >= 2:
            group = struct.unpack(">H", body[:2])[0]
        p += 4 + el
    hrr = random == bytes.fromhex(
        "CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
    return resumed, hrr, version, suite, group


VERSIONS = {0x0304: "TLSv1.3", 0x0303: "TLSv1.2"}
SUITES = {0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
          0x1303: "TLS_CHACHA20_POLY1305_SHA256"}
GROUPS = {0x001d: "X25519", 0x0017: "secp256r1", 0x0018: "secp384r1", 0x11ec: "X25519MLKEM768"}


def cmd_sniff(a):
    ETH_P_ALL = 0x0003
    PACKET_OUTGOING = 4
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    s.bind(("lo", 0))
    s.settimeout(0.2)
    if a.ready:
        open(a.ready, "w").close()
    c = collections.Counter()
    versions, suites, groups = collections.Counter(), collections.Counter(), collections.Counter()
    deadline = time.monotonic() + a.seconds
    while time.monotonic() < deadline:
        try:
            pkt, addr = s.recvfrom(262144)
        except socket.timeout:
            continue
        if addr[2] == PACKET_OUTGOING or len(pkt) < 14 + 20 + 20:
            continue
        if struct.unpack(">H", pkt[12:14])[0] != 0x0800:
            continue
        ip = pkt[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 6:
            continue
        tcp = ip[ihl:]
        sport = struct.unpack(">H", tcp[0:2])[0]
        if sport != a.port:
            continue
        doff = (tcp[12] >> 4) * 4
        payload = tcp[doff:struct.unpack(">H", ip[2:4])[0] - ihl]
        r = parse_server_hello(payload)
        if r is None:
            continue
        resumed, hrr, version, suite, group = r
        c["hellos"] += 1
        if hrr:
            c["hrr"] += 1
            continue
        c["resumed" if resumed else "full"] += 1
        versions[VERSIONS.get(version, hex(version))] += 1
        suites[SUITES.get(suite, hex(suite))] += 1
        groups[GROUPS.get(group, hex(group) if group is not None else "none")] += 1
    fmt = lambda d: ",".join(f"{k}:{v}" for k, v in sorted(d.items())) or "-"
    line = (f"SNIFF hellos={c['hellos']} resumed={c['resumed']} full={c['full']} hrr={c['hrr']} "
            f"versions={fmt(versions)} suites={fmt(suites)} groups={fmt(groups)}")
    print(line)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--port", type=int, required=True)
    lo.add_argument("--path", default="/1k.bin")
    lo.add_argument("--sni", default="localhost")
    lo.add_argument("--mode", choices=("full", "resume"), required=True)
    lo.add_argument("--conns", type=int, default=8)
    lo.add_argument("--seconds", type=float, required=True)
    lo.add_argument("--max-requests", type=int, default=10 ** 7)
    lo.add_argument("--expect-len", type=int)
    sn = sub.add_parser("sniff")
    sn.add_argument("--port", type=int, required=True)
    sn.add_argument("--seconds", type=float, required=True)
    sn.add_argument("--out")
    sn.add_argument("--ready", help="file created once the capture socket is bound")
    a = ap.parse_args()
    if a.cmd == "load":
        if not (0 < a.seconds <= 3600) or a.max_requests < 1 or not (1 <= a.conns <= 512):
            ap.error("--seconds in (0, 3600], --max-requests >= 1, --conns in 1..512")
        cmd_load(a)
    else:
        if not (0 < a.seconds <= 120):
            ap.error("--seconds in (0, 120]")
        cmd_sniff(a)


if __name__ == "__main__":
    main()
