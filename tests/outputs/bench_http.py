"""Throughput of the `http` output (json_lines) to a local sink: lines/s and CPU seconds per
1M lines, measured with /usr/bin/time -v. Not a test; run:

    python -m tests.outputs.bench_http [LINES] [--workers N] [--gzip]

The sink is a separate process (aiohttp, counts newlines and answers 200). The file is
written before the agent starts (Read_from_Head on, Ray_Metadata off), so the number is the
agent's own speed, reading included.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from tests.backends import free_port

SINK = textwrap.dedent("""
    import gzip, sys
    from aiohttp import web
    count = 0
    async def ingest(request):
        global count
        body = await request.read()
        count += body.count(b"\\n")
        return web.Response(status=200)
    async def total(request):
        return web.Response(text=str(count))
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_post("/ingest", ingest)
    app.router.add_get("/count", total)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None,
                print=None)
""")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("lines", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--gzip", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    log = tmp / "raylet.out"
    with open(log, "w") as f:
        for first in range(0, args.lines, 100_000):
            f.write(
                "".join(
                    f"[2026-11-28 10:07:08,{i % 1000:03d} I 15251 15251] (raylet) "
                    f"node_manager.cc:{i % 997}: event {i:09d} lease granted to worker\n"
                    for i in range(first, min(args.lines, first + 100_000))
                )
            )
    size = log.stat().st_size
    port = free_port()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    cfg = tmp / "bench.conf"
    cfg.write_text(
        textwrap.dedent(f"""
        [SERVICE]
            Flush 0.2
            Log_Level warn
        [INPUT]
            Name tail
            Path {log}
            Read_from_Head on
            Ray_Metadata off
        [OUTPUT]
            Name http
            Match *
            Host 127.0.0.1
            Port {port}
            URI /ingest
            Format json_lines
            Workers {args.workers}
            {"compress gzip" if args.gzip else ""}
    """)
    )

    def count() -> int:
        try:
            with opener.open(f"http://127.0.0.1:{port}/count", timeout=2) as r:
                return int(r.read())
        except OSError:
            return -1

    try:
        while count() < 0:
            time.sleep(0.05)
        start = time.monotonic()
        timed = subprocess.Popen(
            ["/usr/bin/time", "-v", sys.executable, "-m", "shipper", "-c", str(cfg)],
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        while count() < args.lines:
            if timed.poll() is not None:
                raise SystemExit(f"agent exited: {timed.stderr.read() if timed.stderr else ''}")
            time.sleep(0.02)
        elapsed = time.monotonic() - start
        # stop the agent (the child of time), then read time's report
        children = subprocess.run(
            ["pgrep", "-P", str(timed.pid)], capture_output=True, text=True
        ).stdout.split()
        for pid in children:
            os.kill(int(pid), signal.SIGTERM)
        _, report = timed.communicate(timeout=60)
    finally:
        sink.terminate()
        sink.wait()
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", report).group(1))  # type: ignore[union-attr]
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", report).group(1))  # type: ignore[union-attr]
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", report).group(1))  # type: ignore[union-attr]
    print(
        f"{args.lines} lines ({size / 1e6:.0f} MB), workers {args.workers}, "
        f"gzip {args.gzip}: {elapsed:.2f} s from start to the last line at the sink"
    )
    print(
        f"  {args.lines / elapsed:,.0f} lines/s; CPU {user:.2f} user + {system:.2f} sys = "
        f"{(user + system) * 1e6 / args.lines:.2f} CPU s per 1M lines; max RSS {rss / 1024:.0f}"
        " MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
