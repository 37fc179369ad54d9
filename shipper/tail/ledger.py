"""Acknowledgements of one source's byte ranges, in order: what may be stored as delivered.

A reader emits consecutive ranges [previous end, end) of a source, each in some chunk; chunks
are acknowledged in any order (outputs retry, workers run concurrently). The committed
position moves only over a prefix of acknowledged ranges: the highest end such that every
range up to it is acknowledged. That position is the only offset ever stored (DB, hot reload).

`RangeAck` settles one range (a chunk of one source: stdin, or a file's range that carries no
record); `PassAck` settles every file's range in one chunk of a tail read pass, with one call
to its owner (thousands of files: one call per chunk, not per file).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from shipper.chunk import Chunk

T = TypeVar("T")


class RangeAck(Generic[T]):
    """The acknowledgement of one range up to `end`; `cost`: what its records count against
    the reader's memory budget. Call it (as a chunk's on_done) when the range is delivered."""

    __slots__ = ("cost", "done", "end", "generation", "ledger")

    def __init__(self, ledger: AckLedger[T], end: int, cost: int) -> None:
        self.ledger = ledger
        self.end = end
        self.cost = cost
        self.generation = ledger.generation
        self.done = False

    def __call__(self, chunk: Chunk | None) -> None:
        self.settle()
        ledger = self.ledger
        ledger.notify(ledger.owner, self.cost)

    def settle(self) -> None:
        """The range is delivered: move the ledger's committed position if it can."""
        self.done = True
        self.ledger.advance()


def _ignore(owner: Any, cost: int) -> None:
    pass


class AckLedger(Generic[T]):
    """Pending ranges of one source and its committed position (`acked`)."""

    __slots__ = ("acked", "end", "generation", "notify", "owner", "pending")

    def __init__(
        self, owner: T, offset: int = 0, notify: Callable[[T, int], None] = _ignore
    ) -> None:
        self.owner = owner  # the source (what `notify` and PassAck's owner are told)
        self.notify = notify  # (owner, cost released) after a RangeAck
        self.acked = self.end = offset
        self.generation = 0  # bumped by restart: older ranges no longer move `acked`
        self.pending: collections.deque[RangeAck[T]] = collections.deque()

    def add(self, end: int, cost: int = 0) -> RangeAck[T]:
        """The range from the previous end up to `end` was emitted."""
        ack = RangeAck(self, end, cost)
        self.pending.append(ack)
        self.end = end
        return ack

    def advance(self) -> None:
        """Move `acked` over every acknowledged range at the head, in order."""
        pending = self.pending
        while pending and pending[0].done:
            ack = pending.popleft()
            if ack.generation == self.generation:
                self.acked = ack.end

    def rebase(self, acked: int) -> None:
        """Committed only up to `acked`, behind where reading goes on (a copytruncate copy
        read on from its original's reader: stored at what the original had committed)."""
        self.acked = acked

    def restart(self, offset: int = 0) -> None:
        """The source starts again at `offset` (truncated): ranges in flight still settle
        (their budget comes back) but no longer move `acked`."""
        self.generation += 1
        self.acked = self.end = offset


class PassAck(Generic[T]):
    """on_done of a tail pass's chunk: settles every range in it, then tells `notify` once
    with the ranges and the budget they release."""

    __slots__ = ("acks", "cost", "notify")

    def __init__(self, notify: Callable[[list[RangeAck[T]], int], None]) -> None:
        self.acks: list[RangeAck[T]] = []
        self.cost = 0
        self.notify = notify

    def add(self, ledger: AckLedger[T], end: int, cost: int) -> None:
        self.acks.append(ledger.add(end, cost))
        self.cost += cost

    def __call__(self, chunk: Chunk | None) -> None:
        for ack in self.acks:
            ack.settle()
        self.notify(self.acks, self.cost)
