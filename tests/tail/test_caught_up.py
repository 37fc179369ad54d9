"""TailInput.caught_up: set once every file found at the start is delivered (acknowledged)
up to the size it had then; what the files get afterwards is live and waits for nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shipper.chunk import Chunk
from shipper.lines import PlainHandler
from shipper.tail.input import TailInput
from shipper.tail.options import TailOptions

pytestmark = pytest.mark.unit


async def test_caught_up_waits_for_the_acknowledgement_not_the_read(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"one\ntwo\n")
    (tmp_path / "b.log").write_bytes(b"x" * 5000 + b"\nunterminated")
    opts = TailOptions(path=(str(tmp_path / "*.log"),), read_from_head=True)
    inp = TailInput(name="tail.0", opts=opts, factory=PlainHandler)
    held: list[Chunk] = []
    all_read = asyncio.Event()

    def emit(chunk: Chunk) -> None:  # an output that holds on to what it gets
        held.append(chunk)
        if sum(c.count for c in held) == 3:
            all_read.set()

    task = asyncio.create_task(inp.run(emit))
    try:
        async with asyncio.timeout(10):
            await all_read.wait()
        await asyncio.sleep(0.2)  # more passes: read, but nothing delivered yet
        assert not inp.caught_up.is_set()
        with (tmp_path / "a.log").open("ab") as w:
            w.write(b"live\n")  # after the start: not waited for
        for chunk in held:
            chunk.release()  # delivered
        async with asyncio.timeout(10):
            await inp.caught_up.wait()
    finally:
        inp.stop()
        await task
        for chunk in held:
            if not chunk.done:
                chunk.release()
        inp.close()


async def test_nothing_to_read_is_caught_up_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"old\n")
    opts = TailOptions(path=(str(tmp_path / "*.log"),))  # from the end: nothing to deliver
    inp = TailInput(name="tail.0", opts=opts, factory=PlainHandler)
    task = asyncio.create_task(inp.run(lambda chunk: chunk.release()))
    try:
        async with asyncio.timeout(10):
            await inp.caught_up.wait()
    finally:
        inp.stop()
        await task
        inp.close()
