"""Helpers for the operations tests: configs with the HTTP server on a free port, plain HTTP
requests to 127.0.0.1 (http.client: no proxy settings get in the way), and a scrape parsed
with prometheus_client's own parser."""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.agent import Agent, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def wait_started(agent: Agent) -> None:
    """Until the tail input has scanned; an agent that exits instead fails with its log."""

    def ready() -> bool:
        return "initial scan done" in agent.err_text() or agent.proc.poll() is not None

    try:
        wait_for(ready, what="the agent to start")
    except AssertionError:
        raise AssertionError(f"agent did not start:\n{agent.err_text()[-3000:]}") from None
    assert agent.proc.poll() is None, f"agent exited:\n{agent.err_text()[-3000:]}"


def free_port() -> int:
    """A port free now, below the ephemeral range: a port the kernel hands out (bind to 0)
    may meanwhile become the local end of some client connection (the tests poll a lot),
    and the agent's bind would fail."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def write_conf(
    path: Path,
    *,
    tail: dict[str, object],
    service: dict[str, object] | None = None,
    output: dict[str, object] | None = None,
) -> Path:
    """[SERVICE] (fast flush, debug log) + one tail input + one output (stdout by default)."""
    svc: dict[str, object] = {"Flush": 0.2, "Grace": 5, "Log_Level": "debug"}
    svc.update(service or {})
    inp: dict[str, object] = {
        "Name": "tail",
        "Tag": "t",
        "Refresh_Interval": 1,
        "Rotate_Wait": 1,
        "Ray_Metadata": "off",
    }
    inp.update(tail)
    out: dict[str, object] = {"Name": "stdout", "Match": "*"}
    out.update(output or {})
    lines: list[str] = []
    for name, keys in (("SERVICE", svc), ("INPUT", inp), ("OUTPUT", out)):
        lines.append(f"[{name}]")
        lines += [f"    {k} {v}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def request(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def get_json(port: int, path: str, method: str = "GET") -> tuple[int, Any]:
    status, _, body = request(port, path, method)
    return status, json.loads(body)


def reachable(port: int) -> bool:
    try:
        return request(port, "/")[0] == 200
    except OSError:
        return False


def scrape(port: int) -> Samples:
    status, _, body = request(port, "/api/v1/metrics/prometheus")
    assert status == 200, body
    out: Samples = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


class NumberedWriter(threading.Thread):
    """Appends `prefix N` lines to `path` at a steady pace, each line in two writes (so a
    reload often finds half a line). `rotate()` renames the file away between two lines and
    goes on in a new one, as a logger with rotation does."""

    def __init__(self, path: Path, prefix: str = "m", pause: float = 0.0005) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.prefix = prefix
        self.pause = pause
        self.count = 0
        self._stop_event = threading.Event()
        self._rotate_to: str | None = None
        self._rotated = threading.Event()

    def run(self) -> None:
        f = open(self.path, "ab", buffering=0)  # noqa: SIM115 - swapped at rotation
        try:
            while not self._stop_event.is_set():
                if self._rotate_to is not None:
                    os.rename(self.path, self._rotate_to)
                    f.close()
                    f = open(self.path, "ab", buffering=0)  # noqa: SIM115
                    self._rotate_to = None
                    self._rotated.set()
                line = f"{self.prefix} {self.count} {'x' * (self.count % 50)}\n".encode()
                half = len(line) // 2
                f.write(line[:half])
                time.sleep(self.pause)
                f.write(line[half:])
                self.count += 1
                time.sleep(self.pause)
        finally:
            f.close()

    def rotate(self, to: str, timeout: float = 10) -> None:
        self._rotated.clear()
        self._rotate_to = to
        assert self._rotated.wait(timeout), "writer did not rotate"

    def finish(self) -> int:
        self._stop_event.set()
        self.join(10)
        return self.count

    def wait_lines(self, n: int, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        start = self.count
        while self.count < start + n:
            assert time.monotonic() < end, "writer is stuck"
            time.sleep(0.01)
