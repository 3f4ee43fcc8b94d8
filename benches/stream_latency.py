#!/usr/bin/env python3
"""Latency of GETs whose answers are streamed in several chunks, over one keep-alive connection.

Imports 20,000 messages of about 190 bytes into project 7 of a fresh store, serves it with
`activitylog serve` on a loopback port, and times 200 GETs of the newest 100, 400 and 5,000
(19 KB, 77 KB and 965 KB: one, two and fifteen 64 KiB chunks) with Python's http.client,
printing each size's p50, p99, max and how many took over 35 ms (a delayed ACK is 40 ms).

    cargo build --release && python3 benches/stream_latency.py [BINARY ...]

Each binary given (default: target/release/activitylog) is run in turn, twice, alternating.
Standard library only.
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 8711


def probe():
    out = []
    for count in (100, 400, 5000):
        conn = http.client.HTTPConnection("127.0.0.1", PORT)
        times = []
        for _ in range(200):
            start = time.perf_counter()
            conn.request("GET", f"/activity/7?count={count}")
            body = conn.getresponse().read()
            times.append((time.perf_counter() - start) * 1e3)
            assert body.count(b"\n") == count, "a short answer"
        times.sort()
        out.append(
            f"count={count}: p50 {times[100]:.2f} p99 {times[198]:.2f} max {times[-1]:.2f} ms, "
            f">35 ms: {sum(1 for t in times if t > 35)}"
        )
    return "; ".join(out)


def main():
    binaries = sys.argv[1:] or [os.path.join(ROOT, "target/release/activitylog")]
    with tempfile.TemporaryDirectory(dir=os.path.join(ROOT, "target")) as tmp:
        lines = os.path.join(tmp, "in.jl")
        with open(lines, "w") as f:
            for i in range(20000):
                f.write(json.dumps({"event": "job:started", "i": i, "pad": "x" * 150}) + "\n")
        store = os.path.join(tmp, "store")
        subprocess.run(
            [binaries[0], "import", "--dir", store, "--project", "7", lines],
            check=True,
            capture_output=True,
        )
        for _ in range(2):
            for binary in binaries:
                server = subprocess.Popen(
                    [binary, "serve", "--dir", store, "--listen", f"127.0.0.1:{PORT}"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    for _ in range(100):
                        try:
                            http.client.HTTPConnection("127.0.0.1", PORT).request("GET", "/")
                            break
                        except OSError:
                            time.sleep(0.05)
                    print(binary, probe(), flush=True)
                finally:
                    server.terminate()
                    server.wait()


if __name__ == "__main__":
    main()
