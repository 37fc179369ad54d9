"""End to end with a real Ray (issue 3, Must show 4).

Ray runs in a fresh network namespace (only loopback: it cannot bind to or reach the
machine's own address) and PID namespace; its temp dir is shared with the host, where
`shipper` (the agent, and `shipper tail`, the view) follow `<temp>/session_latest`. Both start
before Ray, as a sidecar does, when the directory does not exist yet.

The driver starts a session, runs a task that prints a unique marker and logs an exception
(logger.exception and traceback.print_exc), then waits for the test; on its word it does
ray.shutdown() + ray.init() in the same temp dir (a second session), runs the task again and
waits once more. Timings are printed (pytest -s) for the record.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.agent import Agent, wait_for
from tests.backends import (
    REPO_ROOT,
    ray_env,
    ray_temp_dir,
    require_netns,
    require_ray,
    run_in_netns,
    stop_process,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

DRIVER = r"""
import logging, os, sys, time, traceback
import ray

temp, marker, go = sys.argv[1], sys.argv[2], sys.argv[3]


def say(*args):
    print(*args, flush=True)


@ray.remote
def marker_task(text):
    print(text, flush=True)
    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger("e2e").exception("EXC " + text)
        traceback.print_exc()
    sys.stderr.flush()
    return ray.get_runtime_context().get_job_id()


def session(n):
    t = time.monotonic()
    try:
        ray.init(_temp_dir=temp, include_dashboard=False, num_cpus=1)
    except Exception as exc:
        say("RAY_INIT_FAILED", repr(exc))
        sys.exit(3)
    say(f"INIT{n}", round(time.monotonic() - t, 2))
    say(f"JOB{n}", ray.get(marker_task.remote(f"{marker}-{n}")))


def wait_for_word(path):
    while not os.path.exists(path):
        time.sleep(0.05)


session(1)
wait_for_word(go + "1")
ray.shutdown()
session(2)
wait_for_word(go + "2")
ray.shutdown()
say("DONE")
"""


class Lines:
    """A process's output lines, collected by a thread."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def starting(self, prefix: str) -> str | None:
        with self._lock:
            return next((ln for ln in self.lines if ln.startswith(prefix)), None)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("SHIPPER_REQUIRE_BACKENDS", "") not in ("", "0"):
        pytest.fail(f"backend required (SHIPPER_REQUIRE_BACKENDS=1) but: {reason}")
    pytest.skip(reason)


def _config(path: Path, temp: Path) -> str:
    logs = temp / "session_latest" / "logs"
    path.write_text(f"""\
[SERVICE]
    Flush 0.2
    Grace 5
    Log_Level info
[INPUT]
    Name              tail
    Path              {logs}/*, {logs}/events/*.log
    Exclude_Path      */debug_state.txt
    Tag               ray
    Path_Key          path
    Refresh_Interval  1
    Read_from_Head    true
    multiline.parser  ray
[OUTPUT]
    Name   stdout
    Match  *
""")
    return str(path)


def _find(
    agent: Agent, cond: Any, what: str, n: int = 1, timeout: float = 60
) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]]:
        hits = [r for r in agent.snapshot() if cond(r)]
        return hits if len(hits) >= n else []

    return wait_for(found, timeout, f"{what}; agent stderr:\n{agent.err_text()[-3000:]}")  # type: ignore[no-any-return]


def _traceback_ok(rec: dict[str, Any]) -> bool:
    lines = rec["log"].split("\n")
    return (
        lines[0] == "Traceback (most recent call last):"
        and len(lines) >= 4
        and lines[1].startswith('  File "')
        and "1 / 0" in rec["log"]
        and lines[-1] == "ZeroDivisionError: division by zero"
    )


def test_real_ray_marker_job_task_traceback_and_session_switch(tmp_path: Path) -> None:
    py = require_ray()
    require_netns()
    marker = f"MARK-{uuid.uuid4().hex[:12]}"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    go = tmp_path / "go"
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    with ray_temp_dir() as temp:
        agent = Agent(["-c", _config(tmp_path / "shipper.conf", temp)])
        view = subprocess.Popen(
            [sys.executable, "-m", "shipper", "tail", str(temp), "-c", "worker"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"},
        )
        view_out = Lines(view.stdout)
        driver = run_in_netns(
            [py, str(script), str(temp), marker, str(go)],
            env=ray_env(home=tmp_path / "home"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out = Lines(driver.stdout)
        try:

            def driver_said(word: str, timeout: float = 150) -> str:
                def said() -> str | None:
                    failed = out.starting("RAY_INIT_FAILED")
                    if failed or driver.poll() is not None:
                        return failed or f"EXITED {driver.returncode}"
                    return out.starting(word)

                line = wait_for(said, timeout, f"{word} from the driver:\n{out.text()[-3000:]}")
                if line.startswith(("RAY_INIT_FAILED", "EXITED")):
                    if "RAY_INIT_FAILED" in line:
                        _skip_or_fail(f"Ray cannot start here: {line}")
                    pytest.fail(f"the Ray driver failed ({line}):\n{out.text()[-3000:]}")
                return str(line)

            # -- session 1 ---------------------------------------------------------------
            job1 = driver_said("JOB1 ").split()[1]
            timings["ray_init_1"] = float(driver_said("INIT1 ").split()[1])
            t_job1 = time.monotonic()
            session1 = os.path.basename(os.path.realpath(temp / "session_latest"))
            mark1 = f"{marker}-1"
            rec = _find(agent, lambda r: r["log"] == mark1, f"the marker {mark1}")[0]
            timings["marker_1_seen_after_job"] = time.monotonic() - t_job1
            assert rec["component"] == "worker", rec
            assert rec["job_id"] == job1, rec
            assert rec["task_name"] == "marker_task", rec
            assert rec["session"] == session1 and rec["stream"] == "out", rec
            assert rec["path"].startswith(str(temp / "session_latest" / "logs")), rec

            tbs = _find(
                agent,
                lambda r: r.get("session") == session1 and r["log"].startswith("Traceback"),
                "two tracebacks",
                n=2,
            )
            for tb in tbs:
                assert _traceback_ok(tb), tb["log"]  # the whole traceback, one record
                assert tb["component"] == "worker" and tb["stream"] == "err", tb
                assert tb["job_id"] == job1 and tb["task_name"] == "marker_task", tb
            exc = _find(agent, lambda r: r["log"] == f"EXC {mark1}", "logger.exception's line")
            assert exc[0]["task_name"] == "marker_task"
            wait_for(lambda: mark1 in view_out.text(), 30, "the marker in shipper tail")

            # -- session 2: ray.shutdown() + ray.init() in the same temp dir --------------
            (tmp_path / "go1").touch()
            t_switch = time.monotonic()
            job2 = driver_said("JOB2 ").split()[1]
            timings["ray_init_2"] = float(driver_said("INIT2 ").split()[1])
            session2 = os.path.basename(os.path.realpath(temp / "session_latest"))
            assert session2 != session1
            mark2 = f"{marker}-2"
            rec2 = _find(agent, lambda r: r["log"] == mark2, f"the marker {mark2}")[0]
            timings["switch_to_marker_2_seen"] = time.monotonic() - t_switch
            assert rec2["session"] == session2, rec2
            assert rec2["component"] == "worker" and rec2["job_id"] == job2, rec2
            assert rec2["task_name"] == "marker_task", rec2
            _find(
                agent,
                lambda r: r.get("session") == session2 and r["component"] == "raylet",
                "raylet records of the new session",
            )
            wait_for(lambda: mark2 in view_out.text(), 30, "the second marker in shipper tail")
            shown = view_out.text()
            assert f"── new session {session2} ──" in shown
            assert (
                shown.index(mark1)
                < shown.index(f"── new session {session2} ──")
                < shown.index(mark2)
            )

            (tmp_path / "go2").touch()
            driver_said("DONE")
            assert driver.wait(60) == 0
        finally:
            stop_process(driver)
            if view.poll() is None:
                view.send_signal(signal.SIGINT)
            try:
                view_rc = view.wait(20)
            finally:
                stop_process(view, timeout=0)
            agent_rc = agent.stop()
        timings["total"] = time.monotonic() - t0
    assert agent_rc == 0, agent.err_text()[-3000:]
    assert view_rc == 0
    records = agent.snapshot()
    # Each marker exactly once, though session_latest moved under the agent.
    assert [r["log"] for r in records].count(mark1) == 1
    assert [r["log"] for r in records].count(mark2) == 1
    print("\nreal Ray timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in timings.items()))
