"""The processes of a run: the agent under test (as a user runs it), the HTTP sink, the writer.

The agent is a plain subprocess of its command line with the generated config; nothing of the
harness runs inside it. Its stdout goes to /dev/null or to a counting reader (a thread here that
feeds benchmarks.tally.Tally as bytes arrive). It is never reaped by Popen: `stop` sends SIGTERM
and collects the exit with wait4, so the OS's rusage of the whole life (threads and reaped
children included) is kept.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import cgroups, procstat
from benchmarks.tally import LineSplitter, Tally

REPO = Path(__file__).resolve().parent.parent
STOP_GRACE = 15.0  # seconds after SIGTERM before SIGKILL (the agents' Grace is 5)


def harness_env() -> dict[str, str]:
    """Environment for the harness's own helpers (`python -m benchmarks.*`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """An agent under test. `command` holds `{config}` where the config path goes."""

    label: str
    command: str
    fluent_bit_config: bool  # given the Fluent Bit variant of the config

    def argv(self, config: Path) -> list[str]:
        cmd = self.command if "{config}" in self.command else self.command + " -c {config}"
        return [a.replace("{config}", str(config)) for a in shlex.split(cmd)]


def default_agent_command() -> str:
    return f"{shlex.quote(sys.executable)} -m shipper -c {{config}}"


class Agent:
    """A running agent. `stdout`: 'null' or 'count' (a Tally reader)."""

    def __init__(
        self,
        argv: list[str],
        *,
        stdout: str,
        stderr: Path,
        timed: bool = False,
        head: Path | None = None,
        group: cgroups.Group | None = None,
    ) -> None:
        self.argv = argv
        self.group = group  # joined between fork and exec: everything it allocates counts
        self.group_stats: dict[str, int | None] = {}
        self.group_removed: bool | None = None
        self._profiler: subprocess.Popen[bytes] | None = None
        self.tally = Tally(timed=timed) if stdout == "count" else None
        self._err = open(stderr, "wb")  # noqa: SIM115 - closed in stop()
        self.stderr_path = stderr
        self._head_path = head
        self._head = bytearray()
        out = subprocess.PIPE if stdout == "count" else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            preexec_fn=group.join if group is not None else None,
        )
        self.pid = self.proc.pid
        self.spawned = time.time()
        self._tree = [self.pid]
        self._tree_at = 0.0
        self.hwm_kb = 0
        self._reader: threading.Thread | None = None
        if self.tally is not None:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None and self.tally is not None
        fd = self.proc.stdout.fileno()
        split = LineSplitter()
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            now = time.time()
            if len(self._head) < 4096:
                self._head += data[:4096]
            block = split.push(data)
            if block:
                self.tally.feed(block, now)
        rest = split.finish()
        if rest:
            self.tally.feed(rest + b"\n", time.time())

    def tree(self, fresh: bool = False) -> list[int]:
        """The agent's process tree (rescanned at most once a second unless `fresh`)."""
        now = time.monotonic()
        if fresh or now - self._tree_at > 1.0:
            self._tree = procstat.descendants(self.pid)
            self._tree_at = now
        return self._tree

    def cpu(self) -> float:
        return procstat.cpu_seconds(self.tree(fresh=True))

    def sample_rss(self) -> None:
        self.hwm_kb = max(self.hwm_kb, procstat.hwm_kb(self.tree()))
        if self.group is not None:
            self.group.sample()

    def exited(self) -> bool:
        """True once the agent has exited (it is not reaped: wait4 comes in stop)."""
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def stop(self) -> procstat.Exit:
        """SIGTERM, then wait4 (and wait for an attached profiler to write its output)."""
        self.sample_rss()
        if not self.exited():
            os.kill(self.pid, signal.SIGTERM)
        ex = procstat.wait_exit(self.pid, STOP_GRACE)
        if ex is None:
            os.kill(self.pid, signal.SIGKILL)
            ex = procstat.wait_exit(self.pid, 10.0)
            ex = procstat.Exit(None, ex.cpu_s if ex else 0.0)
        self.proc.returncode = -1 if ex.code is None else ex.code  # reaped here, not by Popen
        if self.group is not None:
            self.group_stats = self.group.stats()  # the peaks outlive the process
            self.group_stats["peak_cache_bytes"] = self.group.peak_cache
            self.group_removed = self.group.remove()
        if self._profiler is not None:
            try:
                self._profiler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._profiler.kill()
                self._profiler.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()
        if self._head_path is not None:
            self._head_path.write_bytes(bytes(self._head[:4096]))
        return ex

    def attach(self, argv: list[str], log: Path) -> None:
        """Start a sampling profiler on the running agent (`argv` + `--pid PID`): it is not
        part of the agent's process tree, so its own CPU is not counted."""
        with open(log, "wb") as out:
            self._profiler = subprocess.Popen(
                [*argv, "--pid", str(self.pid)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def stderr_tail(self, n: int = 3) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-n:])


class Sink:
    """benchmarks.sink as a subprocess: its port, its progress and its final summary."""

    def __init__(self, *, expect: Path, stderr: Path, timed: bool = False) -> None:
        argv = [sys.executable, "-m", "benchmarks.sink", "--expect", str(expect)]
        if timed:
            argv.append("--timed")
        self._err = open(stderr, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self._err, env=harness_env(), cwd=REPO, text=True
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        if len(first) != 2 or first[0] != "PORT":
            raise RuntimeError(f"the HTTP sink did not start ({first!r})")
        self.port = int(first[1])
        self.received = 0
        self.last_time = 0.0
        self.summary: dict[str, object] = {}
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("P "):
                _, t, n = line.split()
                self.received, self.last_time = int(n), float(t)
            elif line.startswith("S "):
                self.summary = json.loads(line[2:])

    def stop(self) -> dict[str, object]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(timeout=10)
        self._err.close()
        return self.summary


class Writer:
    """benchmarks.writer as a subprocess; `started` is its first tick's wall time."""

    def __init__(self, spec: Path, stderr: Path) -> None:
        self._err = open(stderr, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.writer", str(spec)],
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=harness_env(),
            cwd=REPO,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        if len(first) != 2 or first[0] != "START":
            raise RuntimeError(f"the live writer did not start ({first!r})")
        self.started = float(first[1])
        self.result: dict[str, object] | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.result = json.loads(line)

    def done(self) -> bool:
        return self.proc.poll() is not None

    def wait(self) -> dict[str, object]:
        self.proc.wait()
        self._thread.join(timeout=10)
        self._err.close()
        if self.result is None:
            raise RuntimeError("the live writer ended without a result")
        return self.result
