"""The workload: a Ray temp directory and deterministic Ray-like lines of the real formats.

Layout, as Ray makes it (docs/ray-logs.md)::

    <base>/ray/session_2026-11-28_10-06-45_296613_15055/logs/<files>
    <base>/ray/session_latest -> <base>/ray/session_2026-11-28_10-06-45_296613_15055

Files cycle through Ray's formats: C++ daemons with the `(raylet)` prefix (`raylet.out`,
`gcs_server.out`), C++ core-worker logs without it, Python components (`dashboard.log`, ...),
and worker stdout/stderr (`worker-<id>-01000000-<pid>.out/.err`, free text that starts with
Ray's `:job_id:`/`:task_name:` marker lines).

Every record's first line ends with a sequence marker ` seq=F.N` (file index F, record
number N from 1, no gaps) and, from the live writer, `@T` (the write time in microseconds since
the epoch): the counting reader finds lost and duplicated lines and write-to-emit latency from
it. About 1 record in 150 of the Python and C++ formats is an ERROR followed by an unmarked
four-line traceback (continuation lines, joined by `multiline.parser ray`); worker `.err`
files get an occasional unmarked traceback of their own. Marked lines never contain a double
quote (the reader finds `"log":"..."` values with a quote-free pattern); traceback lines do.

The content is a function of (file index, seed) only; timestamps of the backlog start at
2026-11-28 10:07:08,319 and advance 1 ms per record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

SESSION = "session_2026-11-28_10-06-45_296613_15055"
BASE_TIME = dt.datetime(2026, 11, 28, 10, 7, 8, 319000)
TRACEBACK_EVERY = 150  # about one record in this many (Python/C++ files) carries a traceback

# (name pattern, kind, component); {w} worker id, {p} pid, {d} driver id.
_SINGLETONS: tuple[tuple[str, str, str], ...] = (
    ("raylet.out", "cpp_tagged", "raylet"),
    ("dashboard.log", "python", "dashboard"),
    ("worker-{w}-01000000-{p}.out", "out", "worker"),
    ("python-core-worker-{w}_{p}.log", "cpp", "core_worker"),
    ("gcs_server.out", "cpp_tagged", "gcs_server"),
    ("monitor.log", "python", "monitor"),
    ("worker-{w}-01000000-{p}.err", "err", "worker"),
    ("python-core-driver-{d}_{p}.log", "cpp", "core_driver"),
    ("log_monitor.log", "python", "log_monitor"),
    ("dashboard_agent.log", "python", "dashboard_agent"),
    ("runtime_env_agent.log", "python", "runtime_env_agent"),
)
_PER_WORKER: tuple[tuple[str, str, str], ...] = (
    ("python-core-worker-{w}_{p}.log", "cpp", "core_worker"),
    ("worker-{w}-01000000-{p}.out", "out", "worker"),
    ("worker-{w}-01000000-{p}.err", "err", "worker"),
)

_CPP: tuple[tuple[str, str, str], ...] = (  # (level letter, source, message)
    ("I", "node_manager.cc:1652", "Driver is disconnected. worker_id={h} job_id=01000000"),
    ("I", "worker_pool.cc:564", "Started worker process with pid {n} worker_id={h}"),
    ("I", "core_worker.cc:2291", "Submitting task task_id={h} attempt=0 retries={m}"),
    ("W", "metric_recorder.cc:67", "Failed to export metrics to the metrics agent. Result: 1"),
    ("I", "object_manager.cc:213", "Pulled object {h} from a remote node in {m} ms"),
    ("I", "grpc_server.cc:144", "worker server started, listening on port {n}."),
    ("I", "task_receiver.cc:142", "Actor creation task finished, task_id: {h}"),
    ("D", "scheduler.cc:88", "Scheduling {m} tasks on node {h}, spillback=false"),
)
_PY: tuple[tuple[str, str, str], ...] = (  # (level, source, message)
    ("INFO", "head.py:268", "Loading DashboardHeadModule: UsageStatsHead, {m} modules left."),
    ("INFO", "autoscaler.py:412", "StandardAutoscaler: {m} nodes, 0 pending, CPU {k}/1024 in use"),
    ("INFO", "monitor.py:591", "Autoscaler has not received a resource update for {m}s"),
    ("WARNING", "worker.py:95", "Task {h} is taking longer than expected ({n} ms)"),
    ("INFO", "agent.py:173", "Get all modules by type: DashboardAgentModule ({m} found)"),
    ("INFO", "metrics_agent.py:331", "Exported {m} metrics to the metrics agent in {k} ms"),
    ("DEBUG", "log_monitor.py:486", "Found {m} new log files, publishing {n} lines in total"),
)
_OUT: tuple[str, ...] = (
    "task {m} processed batch {n}: loss={x} acc=0.{k} elapsed={m}ms on node {h}",
    "INFO:mytask:task {m} logging info: {n} rows written to shard {h}",
    "(Trainer pid={n}) epoch {m} step {k} done, throughput {m}.{k} samples/s on {h}",
    "print from task {m}: object {h} has {n} bytes and {m} references",
)
_ERR: tuple[str, ...] = (
    "WARNING:mytask:task {m} logging warning: retrying shard {h} ({n} ms)",
    "/home/ray/app/train.py:{m}: UserWarning: batch {n} of shard {h} has {k} empty rows",
    "(Trainer pid={n}) WARNING: gradient norm {x} exceeds the clip value at step {k}",
)
_TRACEBACK = (
    "Traceback (most recent call last):",
    '  File "/home/ray/app/train.py", line {m}, in run_step',
    "    loss = model.step(batch)",
    "ValueError: batch {n} has {m} empty rows",
)
_CPP_ERR = ("E", "task_manager.cc:1043", "Task {h} failed: user code raised ValueError")
_PY_ERR = ("ERROR", "worker.py:1021", "Task {h} failed with ValueError, see below")


@dataclass(frozen=True, slots=True)
class LogFile:
    index: int  # F in seq=F.N
    name: str
    kind: str  # cpp_tagged | cpp | python | out | err
    component: str
    pid: int


@dataclass(frozen=True, slots=True)
class Layout:
    base: Path  # <base>
    files: tuple[LogFile, ...]

    @property
    def root(self) -> Path:
        return self.base / "ray"

    @property
    def logs(self) -> Path:
        return self.root / SESSION / "logs"

    @property
    def glob(self) -> str:
        """The tail Path: through the `session_latest` link, as the seed's config has it."""
        return str(self.root / "session_latest" / "logs" / "*")

    def path(self, f: LogFile) -> Path:
        return self.logs / f.name


def _hexid(kind: str, i: int, n: int = 56) -> str:
    return hashlib.sha256(f"{kind}{i}".encode()).hexdigest()[:n]


def plan_files(n: int) -> tuple[LogFile, ...]:
    """The first `n` files of Ray's directory, in a fixed order (formats mixed early)."""
    out: list[LogFile] = []
    for i in range(n):
        if i < len(_SINGLETONS):
            pattern, kind, comp = _SINGLETONS[i]
            worker = 0
        else:
            j = i - len(_SINGLETONS)
            pattern, kind, comp = _PER_WORKER[j % len(_PER_WORKER)]
            worker = 1 + j // len(_PER_WORKER)
        pid = 15100 + worker if "{w}" in pattern else 15000 + i
        name = pattern.format(w=_hexid("w", worker), p=pid, d=_hexid("d", 0))
        out.append(LogFile(i, name, kind, comp, pid))
    return tuple(out)


def make_layout(base: Path, n_files: int) -> Layout:
    """Create the directories and the `session_latest` link (absolute, as Ray makes it)."""
    layout = Layout(base, plan_files(n_files))
    layout.logs.mkdir(parents=True, exist_ok=True)
    latest = layout.root / "session_latest"
    if not latest.is_symlink():
        latest.symlink_to(layout.root / SESSION)
    return layout


def local_stamp(t: float) -> str:
    """Ray's timestamp (local time, milliseconds): 2026-11-28 10:07:08,319."""
    lt = time.localtime(t)
    return time.strftime("%Y-%m-%d %H:%M:%S", lt) + f",{int(t % 1 * 1000):03d}"


@dataclass(slots=True)
class RecordMaker:
    """The records of one file: deterministic from (file, seed), timestamps given."""

    file: LogFile
    seed: int
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed * 1_000_003 + self.file.index)

    def header(self) -> list[str]:
        """Unmarked lines a file starts with (Ray's marker lines in worker stdout/stderr)."""
        if self.file.kind in ("out", "err"):
            return [":job_id:01000000", ":task_name:bench_task"]
        return []

    def _fill(self, text: str) -> str:
        r = self.rng
        return text.format(
            h=f"{r.getrandbits(64):016x}",
            n=r.randrange(1000, 99999),
            m=r.randrange(1, 999),
            k=r.randrange(1, 999),
            x=f"{r.random():.4f}",
        )

    def record(self, stamp: str, marker: str, room: int) -> list[str]:
        """One record: a marked line, sometimes followed by an unmarked traceback (only when
        `room` lines are left for it). `marker` is appended after a space."""
        f, r = self.file, self.rng
        tb = room > len(_TRACEBACK) and r.randrange(TRACEBACK_EVERY) == 0
        if f.kind in ("cpp", "cpp_tagged"):
            level, src, msg = _CPP_ERR if tb else _CPP[r.randrange(len(_CPP))]
            tag = f" ({f.component})" if f.kind == "cpp_tagged" else ""
            tid = f.pid + r.randrange(3) * 511
            first = f"[{stamp} {level} {f.pid} {tid}]{tag} {src}: {self._fill(msg)} {marker}"
        elif f.kind == "python":
            level, src, msg = _PY_ERR if tb else _PY[r.randrange(len(_PY))]
            first = f"{stamp}\t{level} {src} -- {self._fill(msg)} {marker}"
        else:
            pool = _OUT if f.kind == "out" else _ERR
            first = f"{self._fill(pool[r.randrange(len(pool))])} {marker}"
            if f.kind == "err" and tb:  # a user's uncaught traceback: its own record(s)
                return [first, *(self._fill(t) for t in _TRACEBACK)]
            tb = False
        if tb:
            return [first, *(self._fill(t) for t in _TRACEBACK)]
        return [first]


@dataclass(frozen=True, slots=True)
class Written:
    """What a file holds: marked records (seq 1..marked), physical lines, bytes."""

    marked: int
    lines: int
    nbytes: int


def write_backlog(layout: Layout, total_lines: int, seed: int) -> dict[int, Written]:
    """Write about `total_lines` physical lines, spread evenly over the layout's files."""
    n = len(layout.files)
    out: dict[int, Written] = {}
    for f in layout.files:
        budget = total_lines // n + (1 if f.index < total_lines % n else 0)
        maker = RecordMaker(f, seed)
        lines = maker.header()[:budget]
        seq = 0
        while len(lines) < budget:
            stamp = _backlog_stamp(seq)
            seq += 1
            lines.extend(maker.record(stamp, f"seq={f.index}.{seq}", budget - len(lines)))
        data = ("\n".join(lines) + "\n").encode() if lines else b""
        layout.path(f).write_bytes(data)
        out[f.index] = Written(seq, len(lines), len(data))
    return out


def _backlog_stamp(seq: int) -> str:
    t = BASE_TIME + dt.timedelta(milliseconds=seq)
    return t.strftime("%Y-%m-%d %H:%M:%S") + f",{t.microsecond // 1000:03d}"


def write_headers(layout: Layout, seed: int, marked: int = 0) -> dict[int, Written]:
    """Fresh files for a live run: each file's header lines and `marked` backlog records."""
    out: dict[int, Written] = {}
    for f in layout.files:
        maker = RecordMaker(f, seed)
        lines = maker.header()
        for seq in range(1, marked + 1):
            lines.append(maker.record(_backlog_stamp(seq), f"seq={f.index}.{seq}", 0)[0])
        data = ("\n".join(lines) + "\n").encode() if lines else b""
        with open(layout.path(f), "wb") as fh:
            fh.write(data)
        out[f.index] = Written(marked, len(lines), len(data))
    return out


def describe(written: dict[int, Written]) -> dict[str, float]:
    lines = sum(w.lines for w in written.values())
    nbytes = sum(w.nbytes for w in written.values())
    marked = sum(w.marked for w in written.values())
    return {
        "files": len(written),
        "lines": lines,
        "marked": marked,
        "bytes": nbytes,
        "avg_line_bytes": round(nbytes / lines, 1) if lines else 0.0,
    }


def drop_cache(layout: Layout) -> int:
    """Evict the layout's files from the page cache (written back first: only clean pages
    can go), so that the next reader reads them from disk and its cgroup is charged for the
    cache it pulls in. Returns the bytes it asked to drop."""
    total = 0
    for f in layout.files:
        fd = os.open(layout.path(f), os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total
