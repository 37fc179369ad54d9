"""The live writer: appends marked records to the layout's files at a fixed rate.

Runs as its own process (`python -m benchmarks.writer SPEC.json`) so that neither its CPU nor
its GIL is shared with the agent or the counting reader. Every `tick` it appends to each file
the records that are due (file i is phase-shifted by i/N of a record, so writes spread evenly
over time; a heap says which files are due), one write() per file, each marked line ending
` seq=F.N@T` where T is the time of that write in microseconds since the epoch. Timestamps in
the lines are the current local time. Each file's records are made ahead (up to 512 per file,
then cycled), so that a write costs little more than the write() itself.

stdout protocol: `START <epoch>` once the first tick begins, then one JSON object at the end:
{"t_start", "t_end", "written": {"F": marked records}, "lines": physical lines}.
"""

from __future__ import annotations

import heapq
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.workload import LogFile, RecordMaker, local_stamp

_STAMP, _MARK = "\x00S\x00", "\x00M\x00"
POOL_TOTAL = 10_000  # records made ahead (over all files), then cycled: cheap writes


class Pool:
    """A file's records made once with placeholders; per write only the stamp and marker."""

    def __init__(self, maker: RecordMaker, size: int) -> None:
        self.records = [maker.record(_STAMP, _MARK, 8) for _ in range(size)]
        self.k = 0

    def take(self, stamp: str, marker: str) -> list[str]:
        rec = self.records[self.k % len(self.records)]
        self.k += 1
        return [rec[0].replace(_STAMP, stamp).replace(_MARK, marker), *rec[1:]]


def run(
    paths: list[str],
    files: list[LogFile],
    rate: float,
    duration: float,
    seed: int,
    tick: float = 0.01,
) -> dict[str, object]:
    n = len(files)
    per_file = rate / n
    size = max(8, min(512, POOL_TOTAL // n))
    pools = [Pool(RecordMaker(f, seed), size) for f in files]
    phases = [i / n for i in range(n)]
    total = [int(per_file * duration + ph) for ph in phases]  # records each file gets
    written = [0] * n
    lines_total = 0
    # When each file's next record is due: int(per_file * t + phase) > written.
    due_at = [((1 - phases[i]) / per_file, i) for i in range(n) if total[i] > 0]
    heapq.heapify(due_at)
    fds = [os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644) for p in paths]
    try:
        t_start = time.time()
        mono0 = time.monotonic()
        print(f"START {t_start:.6f}", flush=True)
        next_tick = mono0
        while True:
            elapsed = min(time.monotonic() - mono0, duration)
            while due_at and due_at[0][0] <= elapsed:
                _, i = heapq.heappop(due_at)
                due = min(int(per_file * elapsed + phases[i]), total[i]) - written[i]
                if due > 0:
                    now = time.time()
                    stamp, t_us, idx = local_stamp(now), int(now * 1e6), files[i].index
                    out: list[str] = []
                    for _ in range(due):
                        written[i] += 1
                        out.extend(pools[i].take(stamp, f"seq={idx}.{written[i]}@{t_us}"))
                    lines_total += len(out)
                    os.write(fds[i], ("\n".join(out) + "\n").encode())
                if written[i] < total[i]:
                    nxt = (written[i] + 1 - phases[i]) / per_file
                    heapq.heappush(due_at, (max(nxt, elapsed + 1e-9), i))
            if elapsed >= duration and not due_at:
                break
            next_tick += tick
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_tick = time.monotonic()  # fell behind: catch up, don't burst forever
        t_end = time.time()
    finally:
        for fd in fds:
            os.close(fd)
    return {
        "t_start": t_start,
        "t_end": t_end,
        "lines": lines_total,
        "written": {str(f.index): w for f, w in zip(files, written, strict=True)},
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    files = [LogFile(**f) for f in spec["files"]]
    result = run(
        spec["paths"],
        files,
        float(spec["rate"]),
        float(spec["duration"]),
        int(spec["seed"]),
        float(spec.get("tick", 0.01)),
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
