"""What a read pass emits: per tag, one chunk of every file's new records, and the one
acknowledgement that settles all their byte ranges when the chunk is done.

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


class PassBatch:
    """The records of one pass, per tag, until `flush` emits them; and how many bytes the
    passes read and made, which sizes the next pass (pacing.per_file_read)."""

    __slots__ = ("_out", "_settled", "bytes_in", "bytes_out")

    def __init__(self, settled: Settled) -> None:
        self._out: dict[str, tuple[list[Part], PassAck[FollowedFile]]] = {}
        self._settled = settled
        self.bytes_in = self.bytes_out = 0  # read, and of records made

    def add(self, f: FollowedFile, records: Part, end: int, nbytes: int) -> tuple[int, int]:
        """A file's new records, covering its bytes up to `end`: (their memory cost, count)."""
        self.bytes_in += nbytes
        if type(records) is Encoded:
            n = records.count  # its bytes count in flush, every part in one call
        else:
            n = len(records)  # type: ignore[arg-type]
            self.bytes_out += 4 * nbytes
        if not n:
            ledger = f.ledger
            if end != ledger.end:
                ledger.add(end)(None)  # nothing to deliver, but the offset may move
            return 0, 0
        cost = record_cost(nbytes, n)
        out = self._out.get(f.tag)
        if out is None:
            out = self._out[f.tag] = ([], PassAck(self._settled))
        out[0].append(records)
        out[1].add(f.ledger, end, cost)
        return cost, n

    def flush(self, emit: Callable[[Chunk], None]) -> None:
        out, self._out = self._out, {}
        for tag, (parts, ack) in out.items():
            chunk = make_chunk(tag, parts, ack.cost, on_done=ack)
            if chunk.json is not None:
                self.bytes_out += sum(map(len, chunk.json))
            else:  # a mixed pass (rare): its encoded parts
                self.bytes_out += sum(len(b) for p in parts if type(p) is Encoded for b in p.json)
            emit(chunk)

    def lean(self) -> bool:
        """Did the passes since the last call make records under 3x the bytes they read
        (plain records, not Ray's)? Starts the count again."""
        lean = self.bytes_in > 0 and self.bytes_out < 3 * self.bytes_in
        self.bytes_in = self.bytes_out = 0
        return lean
