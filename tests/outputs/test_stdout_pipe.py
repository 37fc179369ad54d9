"""The stdout output grows the pipe it writes to (shipper/pipes.py): a flush crosses it in one
or two writes, not one per 64 KiB (each a wake-up, which inside a CPU quota may wait out a
throttled period). Anything that is not a pipe is left alone."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from shipper.pipes import PIPE_SIZE, widen
from tests.agent import Agent, wait_for
from tests.tail.conftest import tail_config


def _config(tmp_path: Path) -> tuple[Path, str]:
    log = tmp_path / "a.log"
    log.write_text("one\ntwo\n")
    cfg = tmp_path / "shipper.conf"
    cfg.write_text(tail_config(str(log), Read_from_Head="on", Ray_Metadata="off"))
    return log, str(cfg)


def test_the_agent_grows_its_stdout_pipe(tmp_path: Path) -> None:
    _, cfg = _config(tmp_path)
    agent = Agent(["-c", cfg])
    try:
        agent.wait_records(2)
        assert agent.proc.stdout is not None
        assert fcntl.fcntl(agent.proc.stdout.fileno(), fcntl.F_GETPIPE_SZ) == PIPE_SIZE
        assert [r["log"] for r in agent.snapshot()] == ["one", "two"]
    finally:
        assert agent.stop() == 0


def test_stdout_to_a_file_is_left_alone(tmp_path: Path) -> None:
    _, cfg = _config(tmp_path)
    out = tmp_path / "out.jsonl"
    with open(out, "wb") as fh:
        agent = Agent(["-c", cfg], stdout=fh.fileno())
        try:
            wait_for(lambda: out.read_bytes().count(b"\n") >= 2, what="two records in the file")
        finally:
            assert agent.stop() == 0
    fd = os.open(out, os.O_RDONLY)
    try:
        assert widen(fd) is None
    finally:
        os.close(fd)


def test_widen_never_shrinks_a_pipe() -> None:
    r, w = os.pipe()
    try:
        assert widen(w) == PIPE_SIZE
        assert widen(w, 64 * 1024) == PIPE_SIZE  # asked for less: kept as it is
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) == PIPE_SIZE
    finally:
        os.close(r)
        os.close(w)
