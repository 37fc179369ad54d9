"""`session_latest` re-pointed as Ray does (remove, then create) to a session whose files
have the same names: every line of both sessions once, each with the right `session`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.agent import Agent

NAMES = ["raylet.out", "gcs_server.out", "worker-aa-01000000-7.out", "events/event_GCS.log"]


def _session(root: Path, n: int) -> Path:
    logs = root / f"session_2026-11-28_10-0{n}-00_000000_{n}" / "logs"
    (logs / "events").mkdir(parents=True)
    return logs


def _write(logs: Path, tag: str, a: int, b: int) -> list[str]:
    out = []
    for name in NAMES:
        lines = [f"{tag} {name} {i}" for i in range(a, b)]
        with open(logs / name, "a") as f:
            f.write("".join(line + "\n" for line in lines))
        out += lines
    return out


def test_session_switch_reads_both_once_with_right_session(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "ray"
    s1 = _session(root, 1)
    link = root / "session_latest"
    link.symlink_to(s1.parent)
    cfg = conf(
        f"{link}/logs/*, {link}/logs/events/*.log",
        Read_from_Head="on",
        Path_Key="path",
        Refresh_Interval="60",
    )
    expected: dict[str, str] = {}
    with Agent(["-c", cfg]) as agent:
        expected |= dict.fromkeys(_write(s1, "one", 0, 100), s1.parent.name)
        agent.wait_log(f"one {NAMES[-1]} 99")
        s2 = _session(root, 2)
        link.unlink()  # Ray: remove ...
        expected |= dict.fromkeys(_write(s1, "one", 100, 120), s1.parent.name)  # dying
        link.symlink_to(s2.parent)  # ... then create
        expected |= dict.fromkeys(_write(s2, "two", 0, 100), s2.parent.name)
        expected |= dict.fromkeys(_write(s1, "one", 120, 130), s1.parent.name)  # last words
        agent.wait_records(len(expected), timeout=30)
        assert agent.stop() == 0
    records = agent.snapshot()
    counts = Counter(r["log"] for r in records)
    assert set(counts) == set(expected)
    assert max(counts.values()) == 1
    for rec in records:
        assert rec["session"] == expected[rec["log"]], rec
        assert rec["path"].startswith(str(link)), rec  # the path as the glob matched it
