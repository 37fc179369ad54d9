"""RayHandler's whole-chunk paths (shipper/ray/fast.py): a chunk of complete lines to JSON
lines, runs of rows the fast path takes and the rest through the handler's per-line `feed`,
in order. A mixin: the state is RayHandler's (shipper/ray/handler.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from shipper.chunk import Encoded, Record
from shipper.escape import needs_per_line
from shipper.ray.fast import FastRay
from shipper.ray.free import basic_line, free_rows
from shipper.ray.multiline import Joiner

__all__ = ["FastEncoding"]


class FastEncoding:
    """`encode` for RayHandler (see LineHandler.encode)."""

    # (The state it writes is here; what it reads is RayHandler's.)
    __slots__ = ("_free_tail", "unread")
    _free_tail: bytes | None  # see _free_frame
    unread: int
    _fast: FastRay | None
    _fast_free: bool
    _prefixed: bool
    _joiner: Joiner | None

    if TYPE_CHECKING:

        def feed(
            self, lines: list[str], now: float, offsets: list[int] | None = None
        ) -> list[Record]: ...

        def flush(self, now: float) -> list[Record]: ...

        def _free(self, line: str, t: float) -> Record: ...

    def encode(self, complete: bytes, now: float, first_at: float | None = None) -> Encoded | None:
        """The fast path (shipper/ray/fast.py, free.py) where it applies; its runs of rows in
        order, the rest through `feed` as if the lines had come one by one."""
        self.unread = 0
        if self._fast_free:
            return self._encode_free(complete, now, first_at)
        fast = self._fast
        plan = fast.plan(complete) if fast is not None else None
        if fast is None or plan is None:
            return None
        if plan.whole and (self._joiner is None or not self._joiner.held):
            # The usual chunk (see below), without the loop.
            self.unread = len(complete) - complete.rfind(b"\n") - 1
            return Encoded([plan.out], plan.lines - 1)
        parts: list[bytes] = []
        count = 0
        split: list[bytes] | None = None
        for is_fast, start, end in plan.runs:
            if is_fast:
                if self._joiner is not None and self._joiner.held:
                    # The run's first line has a header: what is held is complete.
                    count += _dump(self.flush(now), parts)
                parts.append(fast.encode_rows(plan, start, end))
                count += end - start
                continue
            if start == plan.lines - 1:
                raw = [complete[complete.rfind(b"\n") + 1 :]]
            else:
                if split is None:
                    split = complete.split(b"\n")
                raw = split[start:end]
            count += self._feed_raw(raw, now, parts)
        if plan.defer:
            # The last line has a header: it waits unread for the next read (see
            # LineHandler.unread), and no record held before it can go on.
            self.unread = len(complete) - complete.rfind(b"\n") - 1
            if self._joiner is not None and self._joiner.held:
                count += _dump(self.flush(now), parts)
        return Encoded(parts, count)

    def _encode_free(self, complete: bytes, now: float, first_at: float | None) -> Encoded | None:
        """Runs of plain lines through the fast path (free.free_rows), each special line (and
        a traceback until it ends) through `feed`, in order. A logging line last waits unread
        for the next read, which shows whether its traceback follows (as a Ray header line
        does, see fast.py): else it and the next line would go per line, the joiner holding
        it. Its record keeps the time it was first read (`first_at` then)."""
        if needs_per_line(complete):
            return None  # the reader's per-line path strips CRs and replaces bad bytes
        joiner = self._joiner
        parts: list[bytes] = []
        count = 0
        last = complete.rfind(b"\n") + 1
        defer = joiner is not None and not self._prefixed and basic_line(complete[last:])
        if defer:
            self.unread = len(complete) - last
            complete = complete[: last - 1] if last else b""
        pos, end = 0, len(complete) if last or not defer else -1  # -1: no line before it
        if first_at is not None and end >= 0 and not (joiner is not None and joiner.held):
            # The line left unread by the last read: its record, dated when it was read.
            first = _head(first_at)
            run, n, nxt = free_rows(
                complete, 0, first, self._free_frame(), self._prefixed, 1, joiner is not None
            )
            if n and run is not None:
                parts += run
                count += n
            else:  # its traceback follows
                nl = complete.find(b"\n")
                nxt = nl + 1 if nl >= 0 else -1
                count += self._feed_raw([complete[: nl if nl >= 0 else end]], first_at, parts)
            pos = end + 1 if nxt < 0 else nxt
        head = _head(now)
        while pos <= end:
            if joiner is None or not joiner.held:  # plain lines are records of their own
                run, n, nxt = free_rows(
                    complete, pos, head, self._free_frame(), self._prefixed, -1, joiner is not None
                )
                if run is None:  # a DEL with control characters: line by line
                    stop = end if nxt < 0 else nxt - 1  # the newline before the special line
                    count += self._feed_raw(complete[pos:stop].split(b"\n"), now, parts)
                else:
                    parts += run
                    count += n
                if nxt < 0:
                    break
                pos = nxt
            nl = complete.find(b"\n", pos)
            stop = end if nl < 0 else nl
            count += self._feed_raw([complete[pos:stop]], now, parts)
            pos = stop + 1
        if defer and joiner is not None and joiner.held:
            count += _dump(self.flush(now), parts)  # a logging line next: the held is complete
        return Encoded(parts, count)

    def _free_frame(self) -> bytes:
        """What follows the log text in every plain record (from its closing quote on):
        `_free` builds it once, again only when a marker line changes it."""
        tail = self._free_tail
        if tail is None:
            tail = orjson.dumps(self._free("", 0.0)).partition(b',"log":""')[2]
            self._free_tail = tail = b'"' + tail + b"\n"
        return tail

    def _feed_raw(self, raw: list[bytes], now: float, parts: list[bytes]) -> int:
        """Lines of a chunk that needs no per-line cleaning (see needs_per_line) to `feed`."""
        return _dump(self.feed([r.decode() for r in raw], now), parts)


def _head(now: float) -> bytes:
    """A plain record's start, up to its log text."""
    return b'{"date":' + orjson.dumps(now) + b',"log":"'


def _dump(records: list[Record], parts: list[bytes]) -> int:
    dumps = orjson.dumps
    parts += [dumps(r) + b"\n" for r in records]
    return len(records)
