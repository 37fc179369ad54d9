"""The stdout output grows the pipe it writes to (shipper/pipes.py): a flush crosses it in one
or two writes, not one per 64 KiB (each a wake-up, which inside a CPU quota may wait out a
throttled period). Anything that is not a pipe is left alone."""

from __future__ import annotations

import fcntl
import os
import random
import threading
from pathlib import Path

import pytest

from shipper.pipes import PIPE_SIZE, widen, write_all
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


def _through_a_pipe(pieces: list[bytes]) -> bytes:
    """write_all into a pipe of 64 KiB that a thread reads: what came out the other end."""
    r, w = os.pipe()
    got = bytearray()

    def drain() -> None:
        while chunk := os.read(r, 65536):
            got.extend(chunk)

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    try:
        write_all(w, pieces)
    finally:
        os.close(w)
        t.join(10)
        os.close(r)
    return bytes(got)


def _pieces() -> list[bytes]:
    """More pieces than one writev takes (IOV_MAX), empty ones, big ones: a payload's pieces."""
    rnd = random.Random(7)
    out = [b"%d:" % i + b"x" * rnd.choice([0, 1, 90, 4096, 70_000]) + b"\n" for i in range(3000)]
    out[5:5] = [b"", b""]
    return [*out, b""]


def test_write_all_writes_every_piece_in_order_across_a_pipe() -> None:
    """A blocking pipe of 64 KiB and a reader: >1,024 pieces (IOV_MAX) in order, whole."""
    pieces = _pieces()
    assert _through_a_pipe(pieces) == b"".join(pieces)


def test_write_all_goes_on_after_short_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """writev may write less than asked (a signal, a socket): each time it goes on from the
    byte after the last written, inside a piece or between two."""
    pieces = _pieces()
    real = os.writev
    rnd = random.Random(3)
    calls = 0

    def short(fd: int, buffers: list[bytes | memoryview]) -> int:
        nonlocal calls
        calls += 1
        left = rnd.choice([1, 7, 4096, 100_000])  # write at most this much, as a kernel may
        cut: list[bytes | memoryview] = []
        for b in buffers:
            if left <= 0:
                break
            cut.append(memoryview(b)[:left])
            left -= len(b)
        return real(fd, cut)

    monkeypatch.setattr(os, "writev", short)
    assert _through_a_pipe(pieces) == b"".join(pieces)
    assert calls > len(pieces) // 1024 + 10  # it did write short, many times
