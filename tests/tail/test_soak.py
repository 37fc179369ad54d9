"""A bounded soak: 20 files at >= 20k lines/s, shift-rename rotation every 256 KB with 5
backups, a session switch midway: every line exactly once, counted by sequence markers."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.agent import Agent, wait_for

FILES = 20
ROTATE_AT = 256 * 1024
BACKUPS = 5


class RayLikeWriter(threading.Thread):
    """Writes `[seq]`-marked lines round-robin into FILES files of the current session,
    rotating each as Ray's Python handlers do (x -> x.1 -> ... -> x.5, oldest dropped)."""

    def __init__(self, root: Path, rate: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.root, self.rate, self.seconds = root, rate, seconds
        self.written: list[str] = []
        self.rotations = 0
        self.switched = threading.Event()
        self.error: BaseException | None = None

    def session(self, n: int) -> Path:
        logs = self.root / f"session_2026-11-28_10-0{n}-00_000000_{n}" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        link = self.root / "session_latest"
        if link.is_symlink():
            link.unlink()  # remove + create, as Ray re-points it: not atomic
        link.symlink_to(logs.parent)
        return logs

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _run(self) -> None:
        logs = self.session(1)
        handles = [open(logs / f"worker-{i}.out", "ab") for i in range(FILES)]  # noqa: SIM115
        sizes = [0] * FILES
        start = time.monotonic()
        seq = 0
        batch = 100
        while (elapsed := time.monotonic() - start) < self.seconds:
            if not self.switched.is_set() and elapsed > self.seconds / 2:
                for h in handles:
                    h.close()
                logs = self.session(2)
                handles = [open(logs / f"worker-{i}.out", "ab") for i in range(FILES)]  # noqa: SIM115
                sizes = [0] * FILES
                self.switched.set()
            i = seq // batch % FILES
            lines = [
                f"[{seq + k:09d}] session line written by the soak writer, padding to "
                f"about ninety bytes"
                for k in range(batch)
            ]
            data = ("\n".join(lines) + "\n").encode()
            handles[i].write(data)
            handles[i].flush()
            self.written += lines
            sizes[i] += len(data)
            seq += batch
            if sizes[i] >= ROTATE_AT:
                handles[i].close()
                base = logs / f"worker-{i}.out"
                for k in range(BACKUPS - 1, 0, -1):
                    if Path(f"{base}.{k}").exists():
                        os.rename(f"{base}.{k}", f"{base}.{k + 1}")
                os.rename(base, f"{base}.1")
                handles[i] = open(base, "ab")  # noqa: SIM115
                sizes[i] = 0
                self.rotations += 1
            ahead = seq / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        for h in handles:
            h.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_soak_rotation_and_session_switch(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    seconds = float(os.environ.get("SHIPPER_SOAK_SECONDS", "12"))
    root = tmp_path / "ray"
    root.mkdir()
    cfg = conf(
        f"{root}/session_latest/logs/*", Read_from_Head="on", Rotate_Wait="2", Refresh_Interval="5"
    )
    writer = RayLikeWriter(root, rate=25_000, seconds=seconds)
    with Agent(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        writer.start()
        writer.join(seconds + 60)
        assert writer.error is None, writer.error
        total = len(writer.written)
        assert total >= 20_000 * seconds * 0.9, f"writer too slow: {total} lines"
        last = writer.written[-1]
        wait_for(
            lambda: len(agent.records) >= total,
            timeout=60,
            what=f"{total} records (have {len(agent.records)})",
        )
        agent.wait_log(last)
        assert agent.stop() == 0
    counts = Counter(agent.logs())
    doubled = [k for k, v in counts.items() if v > 1]
    missing = [w for w in writer.written if w not in counts]
    assert not doubled, f"{len(doubled)} doubled, e.g. {doubled[:3]}"
    assert not missing, f"{len(missing)} missing, e.g. {missing[:3]}"
    assert writer.rotations >= FILES, "the soak must rotate every file at least once"
    sessions = Counter(r["session"] for r in agent.snapshot())
    assert len(sessions) == 2 and min(sessions.values()) > 0
