"""The `counter` output: one line per flush on standard output, `time,count (total = N)`, as
Fluent Bit's out_counter prints it (time: seconds with six decimals when the flush happened).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from shipper.chunk import Chunk, Record
from shipper.config.model import Section
from shipper.config.schema import build
from shipper.match import Matcher
from shipper.outputs.base import Delivery, DeliveryError, Output


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterOptions:
    """out_counter has no keys."""


class CounterOutput(Output):
    plugin = "counter"

    def __init__(self, *, fd: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.total = 0
        self._fd = sys.stdout.fileno() if fd is None else fd

    def encode_chunks(self, batch: list[Chunk]) -> bytes | None:
        count = sum(c.count for c in batch)
        return str(count).encode()  # only the count is needed: no record is decoded

    def encode(self, records: list[Record]) -> bytes:
        return str(len(records)).encode()

    async def send(self, payload: bytes, records: list[Record]) -> None:
        count = int(payload)
        line = f"{time.time():f},{count} (total = {self.total + count})\n".encode()
        try:
            await asyncio.to_thread(os.write, self._fd, line)
        except OSError as exc:
            raise DeliveryError(
                f"cannot write to standard output: {exc.strerror}", retryable=True
            ) from None
        self.total += count


def create(section: Section, *, name: str, matcher: Matcher, delivery: Delivery) -> CounterOutput:
    build(CounterOptions, section)
    return CounterOutput(name=name, matcher=matcher, delivery=delivery)
