"""The unit that flows from inputs to outputs, and the acknowledgement that flows back.

A chunk holds the records of one contiguous byte range of one source. Every output whose Match
covers the chunk's tag takes a hold on it and releases the hold once the chunk is delivered (or
finally dropped). When the last hold is released, `on_done` runs: the input frees the memory
budget and may store the range's end offset. That is the whole at-least-once contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Record = dict[str, Any]


class Chunk:
    __slots__ = ("_on_done", "_pending", "nbytes", "records", "tag")

    def __init__(
        self,
        tag: str,
        records: list[Record],
        nbytes: int,
        on_done: Callable[[Chunk], None] | None = None,
    ) -> None:
        self.tag = tag
        self.records = records
        self.nbytes = nbytes  # raw input bytes this chunk stands for (memory accounting)
        # One hold for the router itself, so that an output that acknowledges at once cannot
        # complete the chunk before routing to the other outputs is finished.
        self._pending = 1
        self._on_done = on_done

    def hold(self) -> None:
        self._pending += 1

    def release(self) -> None:
        self._pending -= 1
        if self._pending == 0 and self._on_done is not None:
            on_done, self._on_done = self._on_done, None
            on_done(self)

    @property
    def done(self) -> bool:
        return self._pending <= 0
