"""Run the real `shipper` CLI as a subprocess and read what it emits.

Tests use `Agent` to start shipper with a config file, collect the JSON records it writes on
stdout (in a reader thread), and poll for conditions with a deadline: no sleep-and-hope.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEADLINE = 20.0


def wait_for(
    cond: Callable[[], Any],
    timeout: float = DEADLINE,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """Poll `cond` until it returns something truthy; fail the test at the deadline."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Agent:
    """shipper as a user runs it: `python -m shipper ARGS`, stdout parsed as JSON lines."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        stdout: int | None = subprocess.PIPE,
        stdin: int | None = subprocess.DEVNULL,
    ) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shipper", *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            stdin=stdin,
            env=full_env,
            cwd=cwd,
        )
        self.records: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.stderr: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._read_err, daemon=True)]
        if stdout == subprocess.PIPE:
            self._threads.append(threading.Thread(target=self._read_out, daemon=True))
        for t in self._threads:
            t.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.raw.append(line)
                self.records.append(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.stderr.append(line.decode("utf-8", "replace"))

    # -- queries ------------------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.records)

    def logs(self) -> list[str]:
        with self._lock:
            return [r["log"] for r in self.records]

    def err_text(self) -> str:
        with self._lock:
            return "".join(self.stderr)

    def wait_records(self, n: int, timeout: float = DEADLINE) -> list[dict[str, Any]]:
        wait_for(
            lambda: len(self.records) >= n or self.proc.poll() is not None,
            timeout,
            f"{n} records (have {len(self.records)}); stderr:\n{self.err_text()[-2000:]}",
        )
        assert len(self.records) >= n, f"agent exited early:\n{self.err_text()[-3000:]}"
        return self.snapshot()

    def wait_log(self, text: str, timeout: float = DEADLINE) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for rec in self.snapshot():
                if rec.get("log") == text:
                    return rec
            return None

        return wait_for(find, timeout, f"a record with log {text!r}")  # type: ignore[no-any-return]

    def wait_stderr(self, text: str, timeout: float = DEADLINE) -> None:
        wait_for(lambda: text in self.err_text(), timeout, f"{text!r} on stderr")

    # -- lifecycle ----------------------------------------------------------------------
    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"agent did not stop within {timeout}s") from None
        self._close_pipes()
        return rc

    def _close_pipes(self) -> None:
        for t in self._threads:
            t.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if stream is not None:
                stream.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
