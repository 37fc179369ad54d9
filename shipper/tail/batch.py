"""What a read pass emits: per tag, one chunk of every file's new records (more when the
pass read more than CHUNK_READ), and per chunk the one acknowledgement that settles all its
byte ranges when the chunk is done.

With thousands of files, the per-chunk cost of routing and delivery, and a call chain per
file and acknowledgement, cost more than the records: one chunk per tag and pass, one call
per acknowledged chunk.
"""

from __future__ import annotations

from collections.abc import Callable

from shipper.budget import record_cost
from shipper.chunk import Chunk, Encoded, Part, make_chunk
from shipper.tail.followed import FollowedFile
from shipper.tail.ledger import PassAck, RangeAck

Settled = Callable[[list[RangeAck[FollowedFile]], int], None]
# Bytes read into one chunk, after which it is full: a pass reads up to twice this
# (pacing.PASS_READ), but a chunk of Ray records from more would make one output payload of
# over 2 MB (an HTTP body in memory several times over). A chunk is full once it holds this
# much (so at most one file's read more): a pass just over it is one chunk, not a second
# one of a few lines with its own delivery and acknowledgement.
CHUNK_READ = 512 * 1024


class _Chunk:
    """A chunk being filled: its records, its acknowledgement, the bytes read into it."""

    __slots__ = ("ack", "parts", "read")

    def __init__(self, settled: Settled) -> None:
        self.parts: list[Part] = []
        self.ack: PassAck[FollowedFile] = PassAck(settled)
        self.read = 0

    def add(self, f: FollowedFile, records: Part, end: int, cost: int, nbytes: int) -> None:
        self.parts.append(records)
        self.ack.add(f.ledger, end, cost)
        self.read += nbytes


class PassBatch:
    """The records of one pass, per tag, until `flush` emits them (in chunks of at most
    CHUNK_READ bytes read)."""

    __slots__ = ("_full", "_out", "_settled")

    def __init__(self, settled: Settled) -> None:
        self._out: dict[str, _Chunk] = {}  # per tag, the chunk being filled
        self._full: list[tuple[str, _Chunk]] = []
        self._settled = settled

    def add(self, f: FollowedFile, records: Part, end: int, nbytes: int) -> tuple[int, int]:
        """A file's new records, covering its bytes up to `end`: (their memory cost, count)."""
        n = records.count if isinstance(records, Encoded) else len(records)
        if not n:
            ledger = f.ledger
            if end != ledger.end:
                ledger.add(end)(None)  # nothing to deliver, but the offset may move
            return 0, 0
        cost = record_cost(nbytes, n)
        out = self._out.get(f.tag)
        if out is None:
            out = self._out[f.tag] = _Chunk(self._settled)
        out.add(f, records, end, cost, nbytes)
        if out.read >= CHUNK_READ:  # full: the rest goes in a chunk of its own
            self._full.append((f.tag, self._out.pop(f.tag)))
        return cost, n

    def flush(self, emit: Callable[[Chunk], None]) -> None:
        full, self._full = self._full, []
        out, self._out = self._out, {}
        for tag, c in [*full, *out.items()]:
            emit(make_chunk(tag, c.parts, c.ack.cost, on_done=c.ack))
