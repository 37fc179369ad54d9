"""shipper/tail/wake.py: while the files are idle, a write wakes the tail loop at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shipper.tail.pacing as pacing
from shipper.chunk import Chunk
from shipper.lines import PlainHandler
from shipper.tail.input import TailInput
from shipper.tail.options import TailOptions
from shipper.tail.pacing import ARM_TICK, IDLE_TICK
from shipper.tail.wake import WriteWake

pytestmark = pytest.mark.unit


async def _until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + 10.0
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


async def test_a_write_wakes_until_disarmed(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    woken: list[int] = []
    wake = WriteWake(lambda: woken.append(1))
    assert wake.arm({str(tmp_path)})
    assert wake.armed
    _append(log, b"line\n")
    await _until(lambda: bool(woken), "the wake-up")
    wake.disarm()
    assert not wake.armed
    n = len(woken)
    # A second, armed watch is the witness: once it has seen the write, the first would
    # have too, were it still armed.
    witness: list[int] = []
    probe = WriteWake(lambda: witness.append(1))
    assert probe.arm({str(tmp_path)})
    _append(log, b"more\n")
    await _until(lambda: bool(witness), "the witness")
    await asyncio.sleep(0)  # one more turn of the loop for any other ready reader
    probe.disarm()
    assert len(woken) == n
    wake.disarm()  # twice is harmless


async def test_arming_fails_quietly(tmp_path: Path) -> None:
    wake = WriteWake(lambda: None)
    assert not wake.arm({str(tmp_path / "missing")})
    assert not wake.armed
    assert not wake.arm(set())


@contextlib.asynccontextmanager
async def _tail(log: Path) -> AsyncIterator[tuple[TailInput, list[Chunk]]]:
    """A tail input following `log` from its head, and the chunks it emits (released)."""
    opts = TailOptions(path=(str(log.parent / "*.log"),), read_from_head=True)
    inp = TailInput(name="tail.0", opts=opts, factory=PlainHandler)
    got: list[Chunk] = []

    def emit(chunk: Chunk) -> None:
        got.append(chunk)
        chunk.release()

    task = asyncio.create_task(inp.run(emit))
    try:
        yield inp, got
    finally:
        inp.stop()
        await task
        inp.close()


async def test_the_idle_tail_loop_arms_and_a_write_disarms(tmp_path: Path) -> None:
    """The loop backs off past ARM_TICK, arms, and the next write is read and disarms."""
    assert IDLE_TICK > ARM_TICK
    log = tmp_path / "a.log"
    log.write_bytes(b"first\n")
    async with _tail(log) as (inp, got):
        await _until(lambda: sum(c.count for c in got) == 1, "the first line")
        await _until(lambda: inp.pacer.idle_wake.armed, "the idle wake-up to be armed")
        _append(log, b"second\n")
        await _until(lambda: sum(c.count for c in got) == 2, "the line written while idle")
        await _until(lambda: inp.pacer.idle_wake.armed, "armed again once idle")
    assert not inp.pacer.idle_wake.armed


async def test_growing_files_do_not_arm_the_wake_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many files the active tick is long as well (PASS_COST per file): while the files
    grow, reading stays on that tick; a wake-up at each write made a pass per write (2,000
    files at 10 lines/s each took 93% of a core instead of 13%)."""
    monkeypatch.setattr(pacing, "PASS_COST", 0.3)  # one file: a 0.3 s tick, past ARM_TICK
    assert ARM_TICK < 0.3
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    writes = 30
    async with _tail(log) as (inp, got):
        await _until(lambda: len(inp.table.files) == 1, "the file to be followed")
        for i in range(writes):  # a writer's pace, every 50 ms for 1.5 s: six per tick
            _append(log, b"line %d\n" % i)
            await asyncio.sleep(0.05)
        await _until(lambda: sum(c.count for c in got) == writes, "every line")
    # ~5 passes with data at a 0.3 s tick; one per write (30) with the wake-up armed.
    assert len(got) <= writes // 2, len(got)


async def test_armed_and_idle_the_loop_polls_rarely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle with the wake-up armed, polling is a safety net: the pass after the arming comes
    ARMED_IDLE_TICK later (at IDLE_TICK without it). Measured between the loop's own passes,
    not in a window of the test's clock: a loaded machine delays a pass, never brings one
    forward, so the gap cannot shrink under load."""
    monkeypatch.setattr(pacing, "ARMED_IDLE_TICK", 3.0)
    assert IDLE_TICK <= 1.0
    log = tmp_path / "a.log"
    log.write_bytes(b"first\n")
    async with _tail(log) as (inp, got):
        loop = asyncio.get_running_loop()
        passes: list[tuple[float, bool]] = []  # (loop time, armed) at the start of each pass
        real = inp._read_pass

        async def counted() -> pacing.Pass:
            passes.append((loop.time(), inp.pacer.idle_wake.armed))
            return await real()

        monkeypatch.setattr(inp, "_read_pass", counted)  # before the loop's first pass
        await _until(lambda: any(armed for _, armed in passes), "a pass after the arming")
        i = next(i for i, (_, armed) in enumerate(passes) if armed)
        assert i >= 1 and not passes[i - 1][1]
        gap = passes[i][0] - passes[i - 1][0]  # the pause that armed the wake-up
        assert gap >= 3.0 - 0.05, (gap, passes)  # at IDLE_TICK: at most 1 s
        _append(log, b"second\n")  # the wake-up still reads a write at once
        await _until(lambda: sum(c.count for c in got) == 2, "the line written while idle")
