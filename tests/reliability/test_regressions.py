"""Deterministic repros of what the model-based test found at random, kept as plain tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.reliability.harness import (
    STDOUT,
    AgentProc,
    Row,
    Tally,
    append_lines,
    classic,
    numbered,
    tail_input,
    write_conf,
)


def _session(root: Path, n: int) -> Path:
    logs = root / f"session_2026-01-01_00-00-0{n}_000000_{n}" / "logs"
    logs.mkdir(parents=True)
    return logs


@pytest.mark.parametrize("how", ["session re-pointed", "renamed, writer keeps its fd"])
@pytest.mark.timeout(60)
def test_last_lines_of_a_quiet_file_after_it_moved_away(
    tmp_path: Path,
    results,  # type: ignore[no-untyped-def]
    how: str,
) -> None:
    """A file idle for longer than Rotate_Wait, then moved away (session_latest re-pointed,
    or renamed): its writer's next lines still arrive (Rotate_Wait counts from the move).
    Before the fix they were lost: the file was let go of at the first scan."""
    root = tmp_path / "ray"
    s1 = _session(root, 1)
    link = root / "session_latest"
    link.symlink_to(s1.parent)
    log = s1 / "raylet.out"
    tally = Tally()
    tally.written += numbered("first", 0, 5)
    append_lines(log, tally.written)
    cfg = write_conf(
        tmp_path / "s.conf",
        classic([tail_input(f"{link}/logs/*", Rotate_Wait="2", Refresh_Interval="1")], [STDOUT]),
    )
    row = results.add(Row(f"last lines of a quiet file after it moved away ({how})"))
    with open(log, "ab", buffering=0) as writer, AgentProc(["-c", cfg]) as agent:
        agent.wait_logs(tally.written)
        time.sleep(3)  # quiet for longer than Rotate_Wait (the condition, not a wait)
        if how == "session re-pointed":
            s2 = _session(root, 2)
            link.unlink()
            link.symlink_to(s2.parent)
            new = numbered("new", 0, 5)
            append_lines(s2 / "raylet.out", new)
            tally.written += new
            agent.wait_logs(new)  # the agent has seen the switch
        else:
            os.rename(log, f"{log}.1")
            append_lines(log, numbered("new", 0, 5))
            tally.written += numbered("new", 0, 5)
            agent.wait_logs(numbered("new", 0, 5))  # the agent has seen the rotation
        last = numbered("last", 0, 5)
        writer.write(("\n".join(last) + "\n").encode())  # the old writer's last words
        tally.written += last
        agent.wait_logs(last, timeout=20)
        row.fds_end = agent.fds()
        assert agent.stop() == 0
    tally.add_run(agent.snapshot())
    r = tally.row(row.scenario)
    row.written, row.delivered, row.lost, row.duplicated = (
        r.written,
        r.delivered,
        r.lost,
        r.duplicated,
    )
    row.peak_rss_kb = agent.peak_rss_kb
    assert not tally.missing and tally.duplicated == 0


@pytest.mark.timeout(60)
def test_deleted_files_leave_no_offsets_behind(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    """Ray deletes (or moves away) a file per dead worker: its DB row must go with it, or the
    offsets DB grows for ever (and holds stale rows for inodes the kernel reuses)."""
    from tests.reliability.harness import db_rows, wait_until

    logs = tmp_path / "logs"
    logs.mkdir()
    db = tmp_path / "offsets.db"
    cfg = write_conf(
        tmp_path / "s.conf",
        classic(
            [tail_input(f"{logs}/*.log", DB=str(db), Rotate_Wait="1")],
            [STDOUT],
            service={"Log_Level": "debug"},
        ),
    )
    tally = Tally()
    row = results.add(Row("deleted files leave no offsets behind (DB rows)"))
    with AgentProc(["-c", cfg]) as agent:
        for i in range(20):
            lines = numbered(f"w{i}", 0, 10)
            append_lines(logs / f"worker-{i}.log", lines)
            tally.written += lines
        agent.wait_logs(tally.written)
        wait_until(lambda: len(db_rows(db)) == 20, 30, "20 rows stored")
        for i in range(20):
            (logs / f"worker-{i}.log").unlink()
        agent.wait_stderr("(deleted)", count=20)
        keep = numbered("keep", 0, 5)
        append_lines(logs / "live.log", keep)  # something to commit after the deletions
        tally.written += keep
        agent.wait_logs(keep)
        wait_until(
            lambda: [r[4] for r in db_rows(db)] == [str(logs / "live.log")],
            30,
            lambda: f"only the live file's row left (have {len(db_rows(db))} rows)",
        )
        row.fds_end = agent.fds()
        assert agent.stop() == 0
    tally.add_run(agent.snapshot())
    r = tally.row(row.scenario)
    row.written, row.delivered, row.lost, row.duplicated = (
        r.written,
        r.delivered,
        r.lost,
        r.duplicated,
    )
    row.peak_rss_kb = agent.peak_rss_kb
    assert not tally.missing and tally.duplicated == 0


@pytest.mark.timeout(60)
def test_a_path_with_a_nul_byte_matches_nothing(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    """`Path /tmp/a<NUL>b/*.log` passed --dry-run, then killed the tail input at its first
    scan (glob: ValueError, embedded null byte) and the agent exited 1 with a traceback.
    Found by the fuzz tests. It matches nothing; the input's other patterns still work."""
    log = tmp_path / "ok.log"
    lines = numbered("ok", 0, 10)
    append_lines(log, lines)
    cfg = tmp_path / "s.conf"
    cfg.write_bytes(classic([tail_input(f"{tmp_path}/a\0b/*.log, {log}")], [STDOUT]).encode())
    with AgentProc(["-c", str(cfg)]) as agent:
        agent.wait_logs(lines)
        assert agent.stop() == 0
        err = agent.err_text()
    assert "Traceback" not in err and "stopped unexpectedly" not in err, err
    results.add(
        Row(
            "a Path with a NUL byte",
            written=10,
            delivered=agent.count(),
            lost=0,
            duplicated=0,
            peak_rss_kb=agent.peak_rss_kb,
            note="matches nothing; the other patterns ship",
        )
    )
