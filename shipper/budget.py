"""Mem_Buf_Limit: the bytes of records an input may have in flight, and the pause at it.

One per input (tail, stdin). Reading asks for `room()`; at none left the input stops reading
(the data waits on disk or in the pipe) and `release` wakes it once acknowledgements made room.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shipper.telemetry import InputStats

log = logging.getLogger(__name__)

RECORD_OVERHEAD = 350  # bytes of a record dict beyond its line, roughly
RESUME_FRACTION = 4  # reading that waits resumes once this part of its cap is free again, not
# at the first acknowledgement: passes stay big when the output is the bottleneck (as it is
# inside a CPU quota), instead of one small pass per acknowledged chunk


def record_cost(nbytes: int, records: int) -> int:
    """What `records` made of `nbytes` of input count against the budget."""
    return nbytes + RECORD_OVERHEAD * records


class InputBudget:
    """`limit`: Mem_Buf_Limit; `window`: a lower cap on reading ahead (the tail input reads
    no further ahead of its outputs than that, whatever the limit); `wake`: called when
    acknowledgements made room again after `room()` found none."""

    __slots__ = ("_cap", "_resume", "_stats", "_waiting", "_wake", "in_flight", "limit")

    def __init__(
        self,
        *,
        limit: int,
        stats: InputStats,
        wake: Callable[[], None],
        window: int | None = None,
    ) -> None:
        self.limit = limit
        self._cap = limit if window is None else min(limit, window)
        self._stats = stats
        self._wake = wake
        self._resume = max(1, self._cap // RESUME_FRACTION)
        self._waiting = False
        self.in_flight = 0
        stats.buffer_limit = limit

    def room(self) -> int:
        """Bytes that may still be read into records (<= 0: wait). Reading fills the cap,
        then waits until a part of it is free again. Marks the input paused while at
        Mem_Buf_Limit itself."""
        stats = self._stats
        stats.buffer_bytes = self.in_flight
        room = self._cap - self.in_flight
        if self._waiting and room < self._resume:
            room = 0
        self._waiting = room <= 0
        if room > 0:
            stats.paused = False
        elif self.in_flight >= self.limit and not stats.paused:
            stats.paused = True
            log.debug(
                "%s: paused at Mem_Buf_Limit (%d bytes in flight)", stats.name, self.in_flight
            )
        return room

    def charge(self, cost: int) -> None:
        self.in_flight += cost

    def release(self, cost: int) -> None:
        self.in_flight -= cost
        if self._waiting and self._cap - self.in_flight >= self._resume:
            self._waiting = False
            self._wake()
