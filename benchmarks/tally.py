"""Counting what an agent emitted: sequence markers in the records' `log` values.

Records are JSON (json_lines from stdout or an HTTP body: one object per line, or an array).
Only the `log` value is searched (a Ray-parsed record repeats the marker in `message`), with a
quote-free pattern: marked lines never contain a double quote (benchmarks/workload.py). A
joined multi-line record carries its lines' markers in one `log`, so every line still counts
once. The searches run in C (two `findall`s per block of bytes).

The markers seen are counted in SHARDS dicts, not one: a dict of millions of keys rehashes
all of them each time it grows, under the GIL, for up to a second at 2.8M and 5.6M keys (28
and 56 s into a 100k-lines/s run); the reader thread stopped reading meanwhile, the agent's
output waited on the full pipe, and the stall counted as the agent's write-to-emit latency.
"""

from __future__ import annotations

import math
import re
import statistics
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

_LOG = re.compile(rb'"log"\s*:\s*"([^"]*)')
_MARK = re.compile(rb"seq=(\d+\.\d+)")
_TIMED = re.compile(rb"seq=(\d+\.\d+)(?:@(\d+))?")
SHARDS = 256


@dataclass(frozen=True, slots=True)
class Summary:
    received: int  # markers seen, duplicates included
    distinct: int
    lost: int
    duplicated: int  # extra copies of a line
    unexpected: int  # markers that name no written line
    latencies_ms: tuple[float, ...] = ()

    def latency(self) -> dict[str, float | None]:
        lat = sorted(self.latencies_ms)
        if not lat:
            return {"p50_ms": None, "p99_ms": None, "max_ms": None}
        return {"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": lat[-1]}

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "distinct": self.distinct,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unexpected": self.unexpected,
            **self.latency(),
        }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    k = max(0, min(len(sorted_values) - 1, math.ceil(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


class Tally:
    """Markers seen so far. `feed` takes whole records (bytes ending at a newline)."""

    def __init__(self, *, timed: bool = False) -> None:
        self.timed = timed
        self.counts: list[dict[bytes, int]] = [{} for _ in range(SHARDS)]
        self.received = 0
        self.latencies_us: list[int] = []
        self.last_time = 0.0
        self.progress: list[tuple[float, int]] = []  # (time, received) after each block
        self._lock = threading.Lock()

    def feed(self, data: bytes, now: float) -> None:
        logs = b"\n".join(_LOG.findall(data))
        if self.timed:
            pairs = _TIMED.findall(logs)
            marks = [m for m, _ in pairs]
            now_us = int(now * 1e6)
            lat = [now_us - int(t) for _, t in pairs if t]
        else:
            marks, lat = _MARK.findall(logs), []
        if not marks:
            return
        shards = self.counts
        with self._lock:
            for m in marks:
                shard = shards[hash(m) % SHARDS]
                shard[m] = shard.get(m, 0) + 1
            self.latencies_us.extend(lat)
            self.received += len(marks)
            self.last_time = now
            self.progress.append((now, self.received))

    @property
    def distinct(self) -> int:
        return sum(map(len, self.counts))

    def summary(self, expected: dict[int, int]) -> Summary:
        """`expected`: file index -> number of marked lines written (seq 1..n)."""
        with self._lock:
            counts: Counter[bytes] = Counter()
            for shard in self.counts:
                counts.update(shard)
            lat = [x / 1000 for x in self.latencies_us]
        good = unexpected = dup = 0
        for key, c in counts.items():
            f, _, n = key.partition(b".")
            if 1 <= int(n) <= expected.get(int(f), 0):
                good += 1
            else:
                unexpected += 1
            dup += c - 1
        total = sum(expected.values())
        return Summary(sum(counts.values()), len(counts), total - good, dup, unexpected, tuple(lat))


class LineSplitter:
    """Cuts a byte stream into blocks of whole lines for Tally.feed."""

    def __init__(self) -> None:
        self._rest = b""

    def push(self, data: bytes) -> bytes:
        buf = self._rest + data if self._rest else data
        cut = buf.rfind(b"\n") + 1
        self._rest = buf[cut:]
        return buf[:cut]

    def finish(self) -> bytes:
        rest, self._rest = self._rest, b""
        return rest
