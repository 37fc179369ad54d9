"""Shared machinery of the reliability suite: a real agent process whose output the test can
stall, /proc probes (RSS, fds), line bookkeeping, configs, and the results table.

Everything waits on conditions with deadlines (`wait_for`), never on fixed sleeps: the
machine is small and shared, a slow run must be slower, not red.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.agent import wait_for

ROOT = Path(__file__).resolve().parents[2]

# SHIPPER_LONG=1 runs the long scenarios longer (and the model test with more examples).
LONG = os.environ.get("SHIPPER_LONG", "") not in ("", "0")


def scaled(ci: float, long: float) -> float:
    return long if LONG else ci


# -- results table ---------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    scenario: str
    written: int | None = None
    delivered: int | None = None
    lost: int | None = None
    duplicated: int | None = None
    peak_rss_kb: int | None = None
    fds_end: int | None = None
    note: str = ""
    outcome: str = "?"
    test: str = ""


RESULTS: list[Row] = []


class Recorder:
    """The `results` fixture: rows of one test (its verdict is filled in by conftest)."""

    def __init__(self, test: str) -> None:
        self.test = test

    def add(self, row: Row) -> Row:
        row.test = self.test
        RESULTS.append(row)
        return row


def format_table(rows: Sequence[Row]) -> str:
    def cell(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    head = [
        "scenario",
        "result",
        "lines written",
        "delivered",
        "lost",
        "duplicated",
        "peak RSS",
        "open fds at end",
        "notes",
    ]
    body = [
        [
            r.scenario,
            r.outcome,
            cell(r.written),
            cell(r.delivered),
            cell(r.lost),
            cell(r.duplicated),
            "-" if r.peak_rss_kb is None else f"{r.peak_rss_kb / 1024:.0f} MB",
            cell(r.fds_end),
            r.note,
        ]
        for r in rows
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(out)


# -- /proc probes ----------------------------------------------------------------------------


def proc_status(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_targets(pid: int) -> list[str]:
    out = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for n in names:
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{n}"))
        except OSError:
            continue
    return out


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


# -- the agent -------------------------------------------------------------------------------


class AgentProc:
    """`python -m shipper ARGS` with stdout read by a thread the test can pause.

    Paused, nobody reads the pipe: it fills (64 KiB), the agent's stdout writer blocks, no
    acknowledgement comes back, readers pause at Mem_Buf_Limit. `prefix` runs the agent under
    another program (setpriv, unshare) that execs it, so the PID stays the agent's.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
        keep_records: bool = False,
        cwd: str | Path | None = None,
    ) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault("PYTHONPATH", str(ROOT))
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "shipper", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd or ROOT,
            bufsize=0,
        )
        self.pid = self.proc.pid
        self.logs: list[str] = []  # `log` of every complete record, in arrival order
        self.records: list[dict[str, Any]] = []  # whole records, when keep_records
        self.bad_lines: list[bytes] = []  # stdout lines that are not JSON records
        self.torn_tail = b""  # an unfinished last line at EOF (a stop mid-write)
        self.stderr: list[str] = []
        self.peak_rss_kb = 0
        self._keep = keep_records
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()
        self._eof = threading.Event()
        self._threads = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]
        for t in self._threads:
            t.start()

    # -- threads ---------------------------------------------------------------------------
    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        rest = b""
        while True:
            self._gate.wait()
            data = os.read(fd, 1 << 16)
            if not data:
                break
            buf = rest + data
            cut = buf.rfind(b"\n")
            if cut < 0:
                rest = buf
                continue
            rest = buf[cut + 1 :]
            self._parse(buf[:cut].split(b"\n"))
        self.torn_tail = rest
        self._eof.set()

    def _parse(self, lines: list[bytes]) -> None:
        logs, recs, bad = [], [], []
        for raw in lines:
            try:
                rec = json.loads(raw)
                logs.append(rec["log"])
            except (ValueError, KeyError, TypeError):
                bad.append(raw[:200])
                continue
            if self._keep:
                recs.append(rec)
        with self._lock:
            self.logs += logs
            self.records += recs
            self.bad_lines += bad

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.stderr.append(line.decode("utf-8", "replace"))

    def _sample(self) -> None:
        while self.proc.poll() is None:
            hwm = proc_status(self.pid, "VmHWM")
            if hwm:
                self.peak_rss_kb = max(self.peak_rss_kb, hwm)
            time.sleep(0.1)

    # -- queries ---------------------------------------------------------------------------
    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.logs)

    def count(self) -> int:
        with self._lock:
            return len(self.logs)

    def err_text(self) -> str:
        with self._lock:
            return "".join(self.stderr)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kb(self) -> int:
        return proc_status(self.pid, "VmRSS")

    def fds(self) -> int:
        return fd_count(self.pid)

    def pipe_bytes(self) -> int:
        """Bytes written to stdout and not read yet (FIONREAD)."""
        import array
        import fcntl
        import termios

        buf = array.array("i", [0])
        try:
            assert self.proc.stdout is not None
            fcntl.ioctl(self.proc.stdout.fileno(), termios.FIONREAD, buf)
        except (OSError, ValueError):
            return -1
        return buf[0]

    def has_open(self, path: str | Path) -> bool:
        """Whether the agent holds the file now at `path` open (same inode: a deleted file
        of the same name that it still drains does not count)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        try:
            fds = os.listdir(f"/proc/{self.pid}/fd")
        except OSError:
            return False
        for n in fds:
            try:
                fst = os.stat(f"/proc/{self.pid}/fd/{n}")
            except OSError:
                continue
            if (fst.st_dev, fst.st_ino) == (st.st_dev, st.st_ino):
                return True
        return False

    def wait_stderr(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        wait_for(
            lambda: self.err_text().count(text) >= count or not self.alive(),
            timeout,
            f"{text!r} x{count} on stderr; stderr tail:\n{self.err_text()[-3000:]}",
        )
        assert self.err_text().count(text) >= count, (
            f"agent exited (rc={self.proc.poll()}) before {text!r}:\n{self.err_text()[-3000:]}"
        )

    def wait_count(self, n: int, timeout: float = 30.0) -> None:
        wait_for(
            lambda: self.count() >= n or not self.alive(),
            timeout,
            f"{n} records (have {self.count()}); stderr:\n{self.err_text()[-2000:]}",
        )
        assert self.count() >= n, f"agent exited early:\n{self.err_text()[-3000:]}"

    def wait_logs(
        self, wanted: Iterable[str], timeout: float = 30.0, also: Iterable[str] = ()
    ) -> None:
        """Until every line of `wanted` was delivered (by this agent or in `also`)."""
        missing = set(wanted) - set(also)
        seen = 0

        def done() -> bool:
            nonlocal seen
            logs = self.snapshot()
            missing.difference_update(logs[seen:])
            seen = len(logs)
            return not missing or not self.alive()

        wait_until(
            done,
            timeout,
            lambda: (
                f"{len(missing)} lines, e.g. {sorted(missing)[:3]}; "
                f"stderr:\n{self.err_text()[-2000:]}"
            ),
        )
        assert not missing, (
            f"agent exited with {len(missing)} lines undelivered:\n{self.err_text()[-3000:]}"
        )

    # -- control ---------------------------------------------------------------------------
    def pause(self) -> None:
        self._gate.clear()

    def resume(self) -> None:
        self._gate.set()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal, wait for the exit, then read stdout to its end."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"agent did not stop within {timeout}s after {sig!r}:\n{self.err_text()[-3000:]}"
            ) from None
        self.resume()
        if not self._eof.wait(60):
            raise AssertionError("stdout of the stopped agent not read to its end in 60s")
        for t in self._threads:
            t.join(timeout=10)
        for s in (self.proc.stdout, self.proc.stderr):
            if s is not None:
                s.close()
        return rc

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def __enter__(self) -> AgentProc:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.resume()
        for t in self._threads:
            t.join(timeout=5)
        for s in (self.proc.stdout, self.proc.stderr):
            if s is not None and not s.closed:
                s.close()


def wait_until(
    cond: Callable[[], Any], timeout: float, what: str | Callable[[], str], interval: float = 0.05
) -> Any:
    """`wait_for` with a message computed only when the deadline passes."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {text}")
        time.sleep(interval)


# -- configs ---------------------------------------------------------------------------------


def classic(
    inputs: Sequence[dict[str, object]],
    outputs: Sequence[dict[str, object]],
    service: dict[str, object] | None = None,
) -> str:
    svc: dict[str, object] = {"Flush": "0.2", "Grace": "5", "Log_Level": "info"}
    svc.update(service or {})
    out = ["[SERVICE]"] + [f"    {k} {v}" for k, v in svc.items()]
    for sec in inputs:
        out += ["[INPUT]"] + [f"    {k} {v}" for k, v in sec.items()]
    for sec in outputs:
        out += ["[OUTPUT]"]
        for k, v in sec.items():
            for one in v if isinstance(v, list) else [v]:
                out.append(f"    {k} {one}")
    return "\n".join(out) + "\n"


def tail_input(path: str, **keys: object) -> dict[str, object]:
    sec: dict[str, object] = {
        "Name": "tail",
        "Path": path,
        "Tag": "t",
        "Refresh_Interval": "1",
        "Rotate_Wait": "1",
        "Read_from_Head": "on",
        "Ray_Metadata": "off",
    }
    sec.update(keys)
    return sec


STDOUT = {"Name": "stdout", "Match": "*", "Format": "json_lines"}


def write_conf(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# -- accounting ------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Lines written vs delivered (over one or more agent runs)."""

    written: list[str] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)

    def add_run(self, logs: Iterable[str]) -> None:
        self.seen.update(logs)

    @property
    def missing(self) -> list[str]:
        return [w for w in self.written if w not in self.seen]

    @property
    def duplicated(self) -> int:
        return sum(v - 1 for v in self.seen.values() if v > 1)

    @property
    def phantom(self) -> list[str]:
        known = set(self.written)
        return [k for k in self.seen if k not in known]

    def row(self, scenario: str, **kw: Any) -> Row:
        return Row(
            scenario,
            written=len(self.written),
            delivered=sum(1 for w in set(self.written) if w in self.seen),
            lost=len(self.missing),
            duplicated=self.duplicated,
            **kw,
        )


def numbered(prefix: str, a: int, b: int, pad: int = 0) -> list[str]:
    fill = "x" * pad
    return [f"{prefix}-{i:07d}{fill}" for i in range(a, b)]


def append_lines(path: str | Path, lines: Sequence[str]) -> None:
    with open(path, "ab") as f:
        f.write(("\n".join(lines) + "\n").encode() if lines else b"")


class SteadyWriter(threading.Thread):
    """Appends numbered lines to a few files at a steady pace until stopped."""

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        rate: int = 2000,
        batch: int = 20,
        prefix: str = "w",
        pad: int = 60,
    ) -> None:
        super().__init__(daemon=True)
        self.paths = list(paths)
        self.rate, self.batch, self.prefix, self.pad = rate, batch, prefix, pad
        self.written: list[str] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            handles = [open(p, "ab", buffering=0) for p in self.paths]  # noqa: SIM115
            start = time.monotonic()
            seq = 0
            while not self.halt.is_set():
                h = handles[(seq // self.batch) % len(handles)]
                lines = numbered(self.prefix, seq, seq + self.batch, self.pad)
                h.write(("\n".join(lines) + "\n").encode())
                self.written += lines
                seq += self.batch
                ahead = seq / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    self.halt.wait(ahead)
            for h in handles:
                h.close()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> list[str]:
        self.halt.set()
        self.join(30)
        assert self.error is None, self.error
        return self.written


# -- the offsets DB --------------------------------------------------------------------------


def db_rows(db: str | Path) -> list[tuple[int, int, bytes, int, str]]:
    """(dev, ino, fingerprint, offset, name) of every stored file; [] before the table."""
    if not os.path.exists(db):
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [
            (d, i, bytes(fp), off, name)
            for d, i, fp, off, name in conn.execute(
                "SELECT dev, ino, fingerprint, offset, name FROM files"
            )
        ]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- an HTTP receiver that misbehaves on request ---------------------------------------------


class Receiver:
    """An NDJSON sink on 127.0.0.1 (aiohttp in its own thread) whose `mode` the test flips:

    up      200, the lines count as delivered
    503     body read, 503: not delivered (the client knows)
    429     body read, 429 with Retry-After 1: not delivered
    reset   body read, connection dropped without an answer: the server has the lines but
            the client cannot know (at-least-once: a retry may duplicate them)
    slow    answers 200 after `slow_s` seconds (past the agent's net.io_timeout: a retry may
            duplicate)
    echo    401 whose body quotes the request's headers and URL (credentials included)
    refuse  the listening socket closed (connection refused); open keep-alive connections
            are dropped
    """

    def __init__(self, port: int | None = None, slow_s: float = 3.0) -> None:
        import asyncio

        self.port = port or free_port()
        self.mode = "up"
        self.slow_s = slow_s
        self.logs: list[str] = []
        self.unsure: Counter[str] = Counter()  # lines the client may not know were received
        self.requests: Counter[str] = Counter()  # mode -> requests answered in that mode
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._site: Any = None
        self._runner: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._start())

    def _call(self, coro: Any, timeout: float = 30) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        from aiohttp import web

        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def _unlisten(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def _handle(self, request: Any) -> Any:
        import asyncio

        from aiohttp import web

        mode = self.mode
        body = await request.read()
        with self._lock:
            self.headers.append(dict(request.headers))
            self.requests[mode] += 1
        if request.headers.get("Content-Encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        lines = [json.loads(x)["log"] for x in body.split(b"\n") if x.strip()]
        if mode in ("refuse", "reset"):
            if mode == "reset":
                with self._lock:
                    self.logs += lines
                    self.unsure.update(lines)
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if mode == "503":
            return web.Response(status=503, text="down for maintenance")
        if mode == "echo":  # a careless server quoting the credentials it refuses
            return web.Response(
                status=401, text=f"denied: {dict(request.headers)} url={request.path_qs}"
            )
        if mode == "429":
            return web.Response(status=429, headers={"Retry-After": "1"}, text="slow down")
        if mode == "slow":
            with self._lock:
                self.logs += lines
                self.unsure.update(lines)
            await asyncio.sleep(self.slow_s)
            return web.Response(status=200)
        with self._lock:
            self.logs += lines
        return web.Response(status=200)

    def set_mode(self, mode: str) -> None:
        if mode == "refuse" and self.mode != "refuse":
            self.mode = mode
            self._call(self._unlisten())
        elif mode != "refuse" and self.mode == "refuse":
            self._call(self._listen())
            self.mode = mode
        else:
            self.mode = mode

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.logs)

    def close(self) -> None:
        async def down() -> None:
            import asyncio

            await self._unlisten()
            await self._runner.cleanup()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:  # handlers still sleeping in `slow` mode
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        try:
            self._call(down())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
