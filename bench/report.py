#!/usr/bin/env python3
"""Turns bench/out/raw.tsv (round, scenario, server, key, value) into the Markdown table.

Every cell is the median over rounds. The last column compares srvd with the best peer
(nginx, lighttpd) on that row: for throughput higher is better, so the ratio is
srvd / best and > 1 means srvd wins; for latency, CPU and memory lower is better, so it is
srvd / lowest and < 1 means srvd wins.
"""

import statistics
import sys
from collections import defaultdict

SCENARIOS = {
    "ka1k": ("1 KiB, keep-alive, 50 conns", "req/s"),
    "close1k": ("1 KiB, `Connection: close`, 50 conns", "req/s"),
    "ka64k": ("64 KiB, keep-alive, 50 conns", "req/s"),
    "big10m": ("10 MiB, keep-alive, 4 conns", "MiB/s"),
    "nf404": ("404, keep-alive, 50 conns", "req/s"),
    "files": ("1000 distinct 4 KiB files, keep-alive, 50 conns", "req/s"),
    "idle": ("{idle} idle + 10 active conns (1 KiB)", "req/s"),
}

# key -> (row label, higher is better, formatter)
METRICS = [
    ("tput", None, True, lambda v: f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"),
    ("p99_us", "p99 latency (ms)", False, lambda v: f"{v / 1000:.2f}"),
    ("cpu_us_req", "server CPU (µs/req)", False, lambda v: f"{v:.1f}"),
    ("rss_kib", "server RSS (MiB)", False, lambda v: f"{v / 1024:.1f}"),
    ("idle_kib_conn", "RSS per idle conn (KiB)", False, lambda v: f"{v:.2f}"),
    ("alive", "idle conns still open at end", True, lambda v: f"{v:.0f}"),
    ("errors", "socket errors (connect/read/write/timeout)", False, lambda v: f"{v:.0f}"),
]


def main():
    raw, servers, idle_conns = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    data = defaultdict(list)
    order = []
    with open(raw) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                continue
            _, scen, server, key, value = parts
            if scen not in order:
                order.append(scen)
            data[(scen, server, key)].append(float(value))
    peers = [s for s in servers if s != "srvd"]
    cols = servers + (["srvd ÷ best peer"] if peers and "srvd" in servers else [])
    out = ["| scenario | metric | " + " | ".join(cols) + " |"]
    out.append("|" + "---|" * (2 + len(cols)))
    for scen in order:
        label, unit = SCENARIOS.get(scen, (scen, "req/s"))
        label = label.replace("{idle}", idle_conns)
        first = True
        for key, name, higher, fmt in METRICS:
            meds = {}
            for s in servers:
                vals = data.get((scen, s, key))
                if vals:
                    meds[s] = statistics.median(vals)
            if not meds:
                continue
            if key == "errors" and not any(meds.values()):
                continue
            row = [label if first else "", name or unit]
            first = False
            row += [fmt(meds[s]) if s in meds else "–" for s in servers]
            if len(cols) > len(servers):
                ratio = "–"
                peer_vals = {p: meds[p] for p in peers if p in meds}
                if "srvd" in meds and peer_vals and key not in ("alive", "errors"):
                    best = (max if higher else min)(peer_vals, key=peer_vals.get)
                    if peer_vals[best] > 0:
                        ratio = f"{meds['srvd'] / peer_vals[best]:.2f} (vs {best})"
                row.append(ratio)
            out.append("| " + " | ".join(row) + " |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
