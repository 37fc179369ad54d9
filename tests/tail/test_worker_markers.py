"""Ray's worker markers across the rotation ring (issue 14): `:job_id:`, `:task_name:`,
`:actor_name:` are written once, where they change, and a worker `.out` rotates (Ray 2.60 with
RAY_ROTATION_MAX_BYTES). Every record of every generation carries the keys in force when its
line was written: a renamed file keeps them, a new generation inherits them from the one
before it, and after a restart with a DB they come back from the DB (also when the generation
that had them was deleted meanwhile). Real files named as Ray names them; the real-Ray run is
tests/e2e/test_ray_rotation.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.agent import Agent

WORKER = "worker-5f0e0d1c2b3a49a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8-ffffffff-4242.out"


class Worker:
    """Writes a worker file as Ray does, remembers what each line's record must say."""

    def __init__(self, path: Path, count: int) -> None:
        self.path = path
        self.count = count  # RAY_ROTATION_BACKUP_COUNT
        self.keys: dict[str, str] = {}
        self.expected: dict[str, dict[str, str]] = {}
        self.gen = 0
        self.n = 0

    def marker(self, key: str, value: str) -> None:
        with open(self.path, "ab") as f:
            f.write(f":{key}:{value}\n".encode())
        if key == "actor_name":
            self.keys.pop("task_name", None)
        self.keys[key] = value

    def lines(self, n: int) -> list[str]:
        out = [f"g{self.gen} line {self.n + i} " + "p" * 40 for i in range(n)]
        self.n += n
        with open(self.path, "ab") as f:
            f.write("".join(x + "\n" for x in out).encode())
        for x in out:
            self.expected[x] = dict(self.keys)
        return out

    def rotate(self) -> None:
        p = str(self.path)
        if os.path.exists(f"{p}.{self.count}"):
            os.unlink(f"{p}.{self.count}")
        for k in range(self.count - 1, 0, -1):
            if os.path.exists(f"{p}.{k}"):
                os.rename(f"{p}.{k}", f"{p}.{k + 1}")
        os.rename(p, f"{p}.1")
        self.gen += 1


def _check(records: list[dict[str, Any]], w: Worker, skip: set[str] = frozenset()) -> int:  # type: ignore[assignment]
    checked = 0
    for rec in records:
        want = w.expected.get(rec["log"])
        if want is None or rec["log"] in skip:
            continue
        got = {k: rec[k] for k in ("job_id", "task_name", "actor_name") if k in rec}
        # The file name's job_id (ffffffff: a worker started before the job) is replaced by
        # the marker's.
        assert got == {**{"job_id": "ffffffff"}, **want}, (rec["log"], got, want)
        checked += 1
    return checked


def test_running_agent_new_generation_inherits(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    logs = tmp_path / "logs"
    logs.mkdir()
    w = Worker(logs / WORKER, count=3)
    w.marker("job_id", "02000000")
    w.marker("task_name", "produce")
    first = w.lines(50)
    with Agent(["-c", conf(f"{logs}/*", Read_from_Head="on")]) as agent:
        agent.wait_log(first[-1])
        w.rotate()
        second = w.lines(50)
        w.marker("actor_name", "Talker")
        third = w.lines(20)
        w.rotate()
        fourth = w.lines(20)
        agent.wait_log(fourth[-1])
        agent.wait_log(third[-1])
        assert agent.stop() == 0
    records = agent.snapshot()
    assert _check(records, w) == len(first + second + third + fourth)
    by_log = {r["log"]: r for r in records}
    assert by_log[fourth[0]]["actor_name"] == "Talker" and "task_name" not in by_log[fourth[0]]
    assert by_log[second[0]]["task_name"] == "produce"


@pytest.mark.parametrize("deleted", [False, True], ids=["predecessor-kept", "predecessor-deleted"])
def test_restart_with_db_rotated_while_stopped(tmp_path: Path, conf, deleted: bool) -> None:  # type: ignore[no-untyped-def]
    """Stopped in the middle of a generation; it rotates (twice, or until the ring deleted
    it) while no agent runs: the next run attributes every generation it reads."""
    logs = tmp_path / "logs"
    logs.mkdir()
    w = Worker(logs / WORKER, count=1 if deleted else 3)
    w.marker("job_id", "02000000")
    w.marker("task_name", "produce")
    first = w.lines(30)
    cfg = conf(f"{logs}/*", Read_from_Head="on", DB=str(tmp_path / "db"))
    with Agent(["-c", cfg]) as a1:
        a1.wait_log(first[-1])
        w.rotate()
        w.marker("actor_name", "Talker")
        second = w.lines(30)
        a1.wait_log(second[-1])
        assert a1.stop() == 0
    # No agent: generation 1 (markers in the DB) grows, then the ring turns twice.
    second += w.lines(30)
    w.rotate()
    third = w.lines(30)
    w.rotate()
    fourth = w.lines(30)
    assert os.path.exists(f"{w.path}.2") != deleted  # generation 1, or deleted by the ring
    with Agent(["-c", cfg]) as a2:
        a2.wait_log(fourth[-1])
        a2.wait_log(third[-1])
        if not deleted:
            a2.wait_log(second[-1])
        assert a2.stop() == 0
    records = a1.snapshot() + a2.snapshot()
    lost = set(second[30:]) if deleted else set()
    checked = _check(records, w, skip=lost)
    assert checked == len(first) + len(second) + len(third) + len(fourth) - len(lost)
    for rec in records:
        if rec["log"] in third + fourth:
            assert rec["actor_name"] == "Talker" and rec["job_id"] == "02000000", rec
