"""The agent, end to end, on a Ray daemon log whose last line is a header: that line waits
unread for the next read (shipper/tail/reader.py `deferred`), so a traceback written after it
still joins its record, Multiline_Flush emits it when nothing follows, and a restart with a DB
emits it exactly once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tests.agent import Agent, write_config

SESSION = "session_2026-11-28_10-07-08_000000_1"


def _line(i: int) -> bytes:
    return (
        f"[2026-11-28 10:07:08,{i % 1000:03d} I 15000 16022] (raylet) x.cc:{i}: line {i}\n".encode()
    )


def _setup(tmp_path: Path, flush: float, db: bool = False) -> tuple[Path, Path]:
    logs = tmp_path / "ray" / SESSION / "logs"
    logs.mkdir(parents=True)
    log = logs / "raylet.out"
    log.write_bytes(b"")
    db_line = f"    DB {tmp_path / 'offsets.db'}\n" if db else ""
    cfg = write_config(
        tmp_path / "shipper.conf",
        "[SERVICE]\n    Flush 0.2\n    Grace 5\n"
        "[INPUT]\n    Name tail\n"
        f"    Path {logs}/*.out\n    Tag ray\n    Read_from_Head on\n"
        f"    multiline.parser ray\n    Multiline_Flush {flush}\n{db_line}"
        "[OUTPUT]\n    Name stdout\n    Match *\n",
    )
    return log, cfg


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_a_traceback_after_the_last_line_joins_it_and_the_flush_emits_the_next(
    tmp_path: Path,
) -> None:
    log, cfg = _setup(tmp_path, flush=3.0)
    with Agent(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        _append(log, b"".join(_line(i) for i in range(10)))
        agent.wait_records(9)
        assert "line 9" not in " ".join(agent.logs())  # waits for what follows it
        _append(log, b"Traceback (most recent call last):\nValueError: boom\n" + _line(10))
        rec = agent.wait_log(
            _line(9).decode().rstrip("\n")
            + "\nTraceback (most recent call last):\nValueError: boom"
        )
        assert rec["component"] == "raylet" and rec["level"] == "INFO" and rec["pid"] == 15000
        start = time.monotonic()
        last = agent.wait_log(_line(10).decode().rstrip("\n"))  # nothing follows: the flush
        assert time.monotonic() - start >= 1.0  # not before Multiline_Flush (3 s) ran out
        assert last["message"] == "line 10" and last["source"] == "x.cc:10"
        assert agent.stop() == 0
    logs = agent.logs()
    assert len(logs) == 11 and len(set(logs)) == 11, logs


def test_a_restart_emits_the_waiting_line_once(tmp_path: Path) -> None:
    log, cfg = _setup(tmp_path, flush=30.0, db=True)
    _append(log, b"".join(_line(i) for i in range(20)))
    with Agent(["-c", cfg]) as first:
        first.wait_records(19)
        assert first.stop() == 0  # line 19 waits: its offset is not stored
    with Agent(["-c", cfg]) as second:
        second.wait_stderr("initial scan done")
        _append(log, _line(20))
        second.wait_log(_line(19).decode().rstrip("\n"))
        assert second.stop() == 0
    seen = Counter(first.logs() + second.logs())
    want = {_line(i).decode().rstrip("\n") for i in range(20)}
    assert set(seen) >= want and all(seen[t] == 1 for t in want), seen
