"""The unit that flows from inputs to outputs, and the acknowledgement that flows back.

A chunk holds the records of one contiguous byte range of one source. Every output whose Match
covers the chunk's tag takes a hold on it and releases the hold once the chunk is delivered (or
finally dropped). When the last hold is released, `on_done` runs: the input frees the memory
budget and may store the range's end offset. That is the whole at-least-once contract.

Records come in one of two forms. `records`: a list of dicts. `json`: the same records already
encoded, one `orjson.dumps(record)` per line, each ending in a newline, as a reader's fast path
makes them without a dict per line; kept as a list of pieces whose concatenation is that text,
so that it is copied once, into the output's payload. A JSON-lines output sends `json` as it
is; anything that needs dicts (a filter, another format) reads `records`, decoded once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

Record = dict[str, Any]


class Encoded:
    """Records as JSON lines in pieces (see the module doc): a reader's fast path's result."""

    __slots__ = ("count", "json")

    def __init__(self, json: list[bytes], count: int) -> None:
        self.json = json
        self.count = count


def decode_json_lines(json: bytes) -> list[Record]:
    """JSON lines -> records, in one call. A raw newline never occurs inside an encoded
    record (JSON escapes it), so the lines can become one array."""
    if not json:
        return []
    out: list[Record] = orjson.loads(b"[" + json[:-1].replace(b"\n", b",") + b"]")
    return out


class Chunk:
    __slots__ = ("_on_done", "_pending", "_records", "count", "emitter", "json", "nbytes", "tag")

    def __init__(
        self,
        tag: str,
        records: list[Record] | None,
        nbytes: int,
        on_done: Callable[[Chunk], None] | None = None,
        *,
        encoded: Encoded | None = None,
    ) -> None:
        self.tag = tag
        self._records = records
        self.json: list[bytes] | None = encoded.json if encoded is not None else None
        if records is not None:
            self.count = len(records)
        elif encoded is not None:
            self.count = encoded.count
        else:
            raise ValueError("a chunk needs records or their encoding")
        self.nbytes = nbytes  # raw input bytes this chunk stands for (memory accounting)
        # One hold for the router itself, so that an output that acknowledges at once cannot
        # complete the chunk before routing to the other outputs is finished.
        self._pending = 1
        self._on_done = on_done
        # The filter that re-emitted these records (rewrite_tag), which then lets them pass:
        # a rule matching its own new tag would otherwise re-emit for ever.
        self.emitter: object | None = None

    @property
    def records(self) -> list[Record]:
        if self._records is None:
            self._records = decode_json_lines(b"".join(self.json or ()))
        return self._records

    @records.setter
    def records(self, records: list[Record]) -> None:
        """Replace the records (a filter did): the encoding no longer holds."""
        self._records = records
        self.json = None
        self.count = len(records)

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


Part = list[Record] | Encoded  # what a reader returns for one range of one source


def count_of(part: Part) -> int:
    return part.count if isinstance(part, Encoded) else len(part)


def make_chunk(
    tag: str, parts: list[Part], nbytes: int, on_done: Callable[[Chunk], None] | None = None
) -> Chunk:
    """One chunk of several readers' parts, in order: JSON lines when all of them are,
    else records (decoding the encoded parts; mixed passes are rare)."""
    encoded = [p for p in parts if isinstance(p, Encoded)]
    if len(encoded) == len(parts):
        joined = (
            encoded[0]
            if len(encoded) == 1
            else Encoded([b for p in encoded for b in p.json], sum(p.count for p in encoded))
        )
        return Chunk(tag, None, nbytes, on_done, encoded=joined)
    records: list[Record] = []
    for p in parts:
        records += decode_json_lines(b"".join(p.json)) if isinstance(p, Encoded) else p
    return Chunk(tag, records, nbytes, on_done)
