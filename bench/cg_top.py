#!/usr/bin/env python3
"""Per-request instruction profile from two `callgrind_annotate --inclusive=no` listings.

usage: cg_top.py LOAD.txt IDLE.txt REQUESTS [TOP]

callgrind_annotate splits an inlined function over the source files its lines came from
(`src/a.rs:f`, `core/.../iter.rs:f`); this merges them by function name, subtracts the
idle run (startup, timers, shutdown) and divides by the number of requests.
"""

import re
import sys
from collections import defaultdict

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def load(path):
    out = defaultdict(int)
    on = False
    seen = False
    with open(path, errors="replace") as f:
        for line in f:
            if "file:function" in line:
                on = True
                continue
            if not on:
                continue
            m = LINE.match(line)
            if not m:
                if seen and (not line.strip() or line.startswith("--")):
                    break  # end of the function table (auto-annotation follows)
                continue
            seen = True
            ir = int(m.group(1).replace(",", ""))
            name = m.group(2)
            name = re.sub(r"\s+\[[^\]]*\]$", "", name)  # the object file
            # "file:function": the file part has no "::", the function may.
            m2 = re.match(r"^([^:]*(?::(?!:)[^:]*)*?):(?!:)(.*)$", name)
            if m2 and ("/" in m2.group(1) or m2.group(1).endswith((".rs", ".c", ".S", ".h"))):
                name = m2.group(2)
            out[name] += ir
    return out


def main():
    loaded, idle = load(sys.argv[1]), load(sys.argv[2])
    n = int(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 25
    rows = sorted(
        ((v - idle.get(k, 0)) / n, k) for k, v in loaded.items()
    )
    rows.reverse()
    total = sum(r for r, _ in rows if r > 0)
    print(f"{'Ir/req':>8}  {'share':>6}  function")
    for per, name in rows[:top]:
        if per < 1:
            break
        print(f"{per:8.0f}  {100 * per / total:5.1f}%  {name[:150]}")
    print(f"{total:8.0f}  100.0%  (sum of positive rows)")


if __name__ == "__main__":
    main()
