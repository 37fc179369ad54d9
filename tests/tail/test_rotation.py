"""Rotation, truncation, delete + re-create, and the rotated name the glob also matches."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tests.agent import Agent, wait_for


def _lines(prefix: str, a: int, b: int) -> bytes:
    return b"".join(f"{prefix} {i}\n".encode() for i in range(a, b))


def _assert_once(agent: Agent, expected: list[str]) -> None:
    counts = Counter(agent.logs())
    doubled = {k: v for k, v in counts.items() if v > 1}
    missing = [e for e in expected if e not in counts]
    assert not doubled, f"doubled: {list(doubled)[:5]}"
    assert not missing, f"missing {len(missing)}: {missing[:5]}"
    assert len(counts) == len(expected)


@pytest.mark.parametrize("glob_rotated", [True, False], ids=["glob-matches-rotated", "exact"])
def test_rename_rotation_writer_keeps_old_fd(tmp_path: Path, conf, glob_rotated: bool) -> None:  # type: ignore[no-untyped-def]
    """x -> x.1 while the writer still appends to the old fd: nothing lost, nothing doubled,
    even after Rotate_Wait released the rotated file and it rotates again (x.1 -> x.2)."""
    log = tmp_path / "app.log"
    pattern = f"{log}*" if glob_rotated else str(log)
    cfg = conf(pattern, Ray_Metadata="off", Read_from_Head="on")
    old = open(log, "ab", buffering=0)  # noqa: SIM115 - held across the rotation on purpose
    try:
        old.write(_lines("l", 0, 1000))
        with Agent(["-c", cfg]) as agent:
            agent.wait_log("l 999")
            os.rename(log, f"{log}.1")
            old.write(_lines("l", 1000, 1100))  # the writer has not reopened yet
            with open(log, "ab") as new:
                new.write(_lines("l", 1100, 1200))
            agent.wait_log("l 1199")
            agent.wait_log("l 1099")
            agent.wait_stderr("rotated or moved away")  # released after Rotate_Wait
            # Rotate again: the released file moves to .2 and must not be read again.
            os.rename(f"{log}.1", f"{log}.2")
            os.rename(log, f"{log}.1")
            with open(log, "ab") as newer:
                newer.write(_lines("l", 1200, 1300))
            agent.wait_log("l 1299")
            assert agent.stop() == 0
        _assert_once(agent, [f"l {i}" for i in range(1300)])
    finally:
        old.close()


def test_copytruncate(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "t.log"
    log.write_bytes(_lines("a", 0, 50))
    with Agent(["-c", conf(str(log), Ray_Metadata="off", Read_from_Head="on")]) as agent:
        agent.wait_log("a 49")
        with open(log, "r+b") as f:
            f.truncate(0)
        agent.wait_stderr("truncated")
        with open(log, "ab") as f:
            f.write(_lines("b", 0, 10))
        agent.wait_log("b 9")
        assert agent.stop() == 0
    _assert_once(agent, [f"a {i}" for i in range(50)] + [f"b {i}" for i in range(10)])


def test_delete_and_recreate(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "d.log"
    log.write_bytes(_lines("first", 0, 20))
    with Agent(["-c", conf(str(log), Ray_Metadata="off", Read_from_Head="on")]) as agent:
        agent.wait_log("first 19")
        log.unlink()
        log.write_bytes(_lines("second", 0, 20))
        agent.wait_log("second 19")
        agent.wait_stderr("(deleted)")  # the deleted file's fd is closed after Rotate_Wait
        assert agent.stop() == 0
    _assert_once(agent, [f"first {i}" for i in range(20)] + [f"second {i}" for i in range(20)])


def test_new_directory_seen_fast(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    """The directory does not exist when the agent starts (a sidecar starts before Ray)."""
    logs = tmp_path / "ray" / "session_latest" / "logs"
    cfg = conf(f"{logs}/*", Ray_Metadata="off", Refresh_Interval="60")  # events, not polling
    with Agent(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        session = tmp_path / "ray" / "session_2026-01-01_00-00-00_000000_1"
        (session / "logs").mkdir(parents=True)
        (tmp_path / "ray" / "session_latest").symlink_to(session)
        (session / "logs" / "raylet.out").write_text("appeared\n")
        agent.wait_log("appeared", timeout=5)  # far under Refresh_Interval
        assert agent.stop() == 0


def test_dangling_session_latest_falls_back_to_newest(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "ray"
    for name, text in [
        ("session_2026-01-01_00-00-00_000000_1", "older\n"),
        ("session_2026-01-02_00-00-00_000000_2", "newest\n"),
    ]:
        (root / name / "logs").mkdir(parents=True)
        (root / name / "logs" / "raylet.out").write_text(text)
    (root / "session_latest").symlink_to(root / "session_2026-01-03_deleted")
    cfg = conf(f"{root}/session_latest/logs/*", Ray_Metadata="off", Read_from_Head="on")
    with Agent(["-c", cfg]) as agent:
        agent.wait_log("newest")
        assert agent.stop() == 0
    assert agent.logs() == ["newest"]


def test_rotated_files_do_not_pile_up_open(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    """fds of rotated files are released after Rotate_Wait (counted in /proc/PID/fd)."""
    log = tmp_path / "r.log"
    log.write_bytes(b"")
    with Agent(["-c", conf(f"{log}*", Ray_Metadata="off", Read_from_Head="on")]) as agent:
        agent.wait_stderr("initial scan done")
        fd_dir = f"/proc/{agent.proc.pid}/fd"
        base = len(os.listdir(fd_dir))
        for n in range(5):
            with open(log, "ab") as f:
                f.write(_lines(f"r{n}", 0, 10))
            agent.wait_log(f"r{n} 9")
            for k in range(n, 0, -1):
                os.rename(f"{log}.{k}", f"{log}.{k + 1}")
            os.rename(log, f"{log}.1")
        wait_for(lambda: len(os.listdir(fd_dir)) <= base, what="rotated fds closed")
        assert agent.stop() == 0
    assert len(agent.logs()) == 50
