"""A real Ray 2.60 whose worker `.out` rotates (RAY_ROTATION_MAX_BYTES) while the agent lags and
while it is stopped (issue 14): every record of every generation carries the worker's
attribution (`job_id`, `actor_name`, from the marker lines Ray writes once, at the top of the
first generation), and the generation the ring deleted before it was read is counted exactly.

Ray runs in its own network and PID namespace; the agent (with a DB) ships to an HTTP receiver
on the host's loopback. Phases:
  1. the actor prints 50 lines; the agent delivers them;
  2. the receiver goes down; the actor prints 250 lines (the file rotates twice); the agent
     reads them all (it knows each generation's size) and cannot deliver; SIGTERM;
  3. with no agent running the actor prints 20 lines at a time until the ring (3 backups)
     deleted the first generation (one the agent knew to its end);
  4. the agent starts again on its DB with the receiver up.
Written minus delivered, from a snapshot of the files taken at the stop, is the proven loss:
the bytes of the deleted generation past what was delivered of it. The counter must equal it.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.agent import wait_for
from tests.backends import (
    free_port,
    ray_env,
    ray_temp_dir,
    require_netns,
    require_ray,
    run_in_netns,
    stop_process,
)
from tests.e2e.test_real_ray import Lines
from tests.outputs.receivers import JsonReceiver
from tests.reliability.harness import AgentProc, classic, tail_input, wait_until, write_conf

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

DRIVER = r"""
import os, sys, time
import ray

temp, go = sys.argv[1], sys.argv[2]
ray.init(_temp_dir=temp, include_dashboard=False, num_cpus=1)


@ray.remote
class Talker:
    def say(self, a, b):
        for i in range(a, b):
            print(f"T {i:06d} " + "t" * 80, flush=True)
        return os.getpid()


t = Talker.remote()
print("PID", ray.get(t.say.remote(0, 50)), ray.get_runtime_context().get_job_id(), flush=True)
# Phase 2 at once, phase 3 in steps of 20 lines, until the test says END.
steps = [("P2", 50, 300)] + [(f"P3-{k}", 300 + 20 * k, 320 + 20 * k) for k in range(40)]
for phase, a, b in steps:
    while not os.path.exists(go + phase):
        if os.path.exists(go + "END"):
            break
        time.sleep(0.05)
    else:
        ray.get(t.say.remote(a, b))
        print("DONE", phase, flush=True)
        continue
    break
ray.shutdown()
print("BYE", flush=True)
"""


def _line(i: int) -> str:
    return f"T {i:06d} " + "t" * 80


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/metrics/prometheus") as r:
        text = r.read().decode()
    return sum(
        float(m.group(1))
        for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    )


def _generations(logs: Path, pid: int) -> dict[int, bytes]:
    """inode -> content of the worker's `.out` generations now."""
    out = {}
    for p in glob.glob(f"{logs}/worker-*-{pid}.out*"):
        try:
            st = os.stat(p)
            out[st.st_ino] = Path(p).read_bytes()
        except OSError:
            continue
    return out


def test_real_ray_worker_rotation_markers_and_ring_loss(tmp_path: Path) -> None:
    py = require_ray()
    require_netns()
    go = tmp_path / "go"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    t0 = time.monotonic()
    with ray_temp_dir() as temp, JsonReceiver() as rx:
        logs = temp / "session_latest" / "logs"
        db = tmp_path / "tail.db"
        port = free_port()
        out = {"Name": "http", "Match": "*", "Host": "127.0.0.1", "Port": rx.port,
               "Format": "json_lines", "Retry_Limit": "no_limits"}  # fmt: skip
        svc = {"HTTP_Server": "on", "HTTP_Listen": "127.0.0.1", "HTTP_Port": port, "Grace": "1"}
        inp = tail_input(f"{logs}/worker-*.out*", DB=str(db), Ray_Metadata="on", Path_Key="path")
        cfg = write_conf(tmp_path / "s.conf", classic([inp], [out], svc))
        env = ray_env(
            home=tmp_path / "home", RAY_ROTATION_MAX_BYTES="10000", RAY_ROTATION_BACKUP_COUNT="3"
        )
        driver = run_in_netns(
            [py, str(script), str(temp), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        said = Lines(driver.stdout)
        a1 = AgentProc(["-c", cfg])
        try:

            def driver_said(word: str, timeout: float = 120) -> str:
                def found() -> str | None:
                    if driver.poll() is not None:
                        return f"EXITED {driver.returncode}"
                    return said.starting(word)

                line = wait_for(found, timeout, f"{word}:\n{said.text()[-3000:]}")
                assert not line.startswith("EXITED"), said.text()[-3000:]
                return str(line)

            _, pid_s, job = driver_said("PID ").split()
            pid = int(pid_s)
            first = [_line(i) for i in range(50)]
            wait_for(lambda: set(first) <= set(rx.logs()), 60, "phase 1 delivered")
            # -- phase 2: the backend is down, the file rotates, the agent reads it all ----
            rx.down()
            (tmp_path / "goP2").touch()
            driver_said("DONE P2")
            assert len(glob.glob(f"{logs}/worker-*-{pid}.out.*")) >= 2, os.listdir(logs)
            state: list[float] = []

            def all_read() -> bool:
                # the three generations followed, nothing left to read
                state[:] = [
                    len(re.findall(rf"following \S+-{pid}\.out", a1.err_text())),
                    _metric(port, "shipper_input_bytes_behind"),
                ]
                return state[0] >= 3 and state[1] == 0

            wait_until(
                all_read,
                30,
                lambda: (
                    f"every generation read (followed, behind: {state}); "
                    f"{sorted(os.listdir(logs))}\n{a1.err_text()[-3000:]}"
                ),
            )
            assert a1.stop() == 0
            at_stop = _generations(logs, pid)
            delivered_1 = Counter(rx.logs())
            # -- phase 3: no agent; the ring deletes the first generation -------------------
            now, deleted, step = at_stop, [], 0
            while not deleted:
                assert step < 40, "the ring never deleted a generation"
                (tmp_path / f"goP3-{step}").touch()
                driver_said(f"DONE P3-{step}")
                now = _generations(logs, pid)
                # (an inode the ring freed may be the next generation's already)
                deleted = [i for i, d in at_stop.items() if not now.get(i, b"").startswith(d[:200])]
                step += 1
            assert len(deleted) == 1, (sorted(at_stop), sorted(now))
            printed = 300 + 20 * step
            # -- phase 4: the agent again, on its DB ----------------------------------------
            rx.up()
            still = {ln.decode() for data in now.values() for ln in data.split(b"\n")}
            expect = {_line(i) for i in range(printed)} & (still | set(delivered_1))
            with AgentProc(["-c", cfg]) as a2:
                wait_until_delivered = 60
                wait_for(
                    lambda: expect <= set(rx.logs()),
                    wait_until_delivered,
                    "every line that still exists delivered",
                )
                lost_bytes = _metric(port, "shipper_input_rotated_lost_bytes_total")
                lost_files = _metric(port, "shipper_input_rotated_lost_files_total")
                assert a2.stop() == 0
            (tmp_path / "goEND").touch()
            driver_said("BYE")
        finally:
            stop_process(driver)
            if a1.alive():
                a1.kill()
    records: list[dict[str, Any]] = [
        r for batch in rx.accepted for r in batch if r["log"].startswith("T ")
    ]
    seen = Counter(r["log"] for r in records)
    written = [_line(i) for i in range(printed)]
    # The proven loss: the deleted generation's bytes past the lines delivered from it.
    gone = at_stop[deleted[0]]
    kept = 0
    for raw in gone.split(b"\n")[:-1]:
        text = raw.decode()
        if text.startswith("T ") and text not in delivered_1:
            break
        kept += len(raw) + 1
    proven = len(gone) - kept
    undelivered = [w for w in written if w not in seen]
    assert all(w.encode() in gone for w in undelivered), undelivered[:3]
    assert max(seen.values()) == 1, [k for k, v in seen.items() if v > 1][:3]
    assert lost_files == 1
    assert lost_bytes == proven > 0, (lost_bytes, proven)
    # Attribution of every record, from every generation, in both runs.
    task = records[0].get("task_name")  # what the first generation's markers said
    for r in records:
        assert r["job_id"] == job and r["actor_name"] == "Talker", r
        assert r.get("task_name") == task, r
        assert r["component"] == "worker" and r["stream"] == "out", r
    print(
        f"\nreal Ray rotation: written {len(written)}, delivered {len(seen)}, lost "
        f"{len(undelivered)} ({proven} B), doubled 0, rotated_lost_bytes {lost_bytes:.0f}, "
        f"{time.monotonic() - t0:.1f}s"
    )
