#!/usr/bin/env python3
# Stand-in "server" for the log throughput benchmark: writes GEN_LINES numbered lines to stdout as fast
# as it can, then idles (so the keeper neither restarts it nor loses its tail). Ignores its arguments.
import os, sys, time

n = int(os.environ.get("GEN_LINES", "2000000"))
pad = "x" * 90
out = sys.stdout.buffer
block = 2000
i = 1
while i <= n:
    end = min(n, i + block - 1)
    out.write("".join(f"line {j:010d} {pad}\n" for j in range(i, end + 1)).encode())
    i = end + 1
out.flush()
if os.environ.get("GEN_EXIT"):
    sys.exit(0)
while True:
    time.sleep(3600)
