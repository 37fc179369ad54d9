"""From complete lines of one source to records: the seam between readers and Ray parsing.

A reader (tail, stdin) owns one LineHandler per source. It feeds decoded lines in order and
gets records back. A handler may hold trailing lines back (a multi-line record that may still
continue); `held_lines` says how many, so that the reader never stores an offset past a line
that has not been emitted yet. `flush` emits what is held (flush timeout, file closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import orjson

from shipper.chunk import Encoded, Record
from shipper.escape import escape_chunk, join_records


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceContext:
    """What a handler knows of its source."""

    path: str  # as the glob matched it (the Path_Key value); "" for a stream
    real_path: str  # symlinks resolved: session and component come from here ("": a stream)
    path_key: str | None = None  # Path_Key: the record key for `path`
    offset_key: str | None = None  # Offset_Key: the record key for the line's offset
    # A stream of several writers (stdin), not a file: a line's `(component)` prefix names
    # its writer.
    stream: bool = False


class LineHandler(Protocol):
    held_lines: int
    # After `encode`: the length of the chunk's last line when the fast path left it unread
    # (a header line whose record the next read may continue; the reader keeps its bytes and
    # gives them back with that read, or to `feed` at the flush timeout), else 0. A handler
    # that leaves a line unread holds nothing else (held_lines is 0).
    unread: int

    def feed(self, lines: list[str], now: float, offsets: list[int] | None = None) -> list[Record]:
        """Complete lines (no newline, no CR), in file order -> records.

        `offsets` (only when Offset_Key is set) gives each line's end offset in the file.
        """
        ...

    def flush(self, now: float) -> list[Record]:
        """Emit every held line now."""
        ...

    def encode(self, complete: bytes, now: float, first_at: float | None = None) -> Encoded | None:
        """The fast path: complete lines (joined by newlines, none longer than the line
        limit, no offsets wanted) straight to JSON lines, or None for `feed`'s path.
        `first_at`: when the first line was read, if it is the line left unread last time."""
        ...

    def reset(self) -> None:
        """Forget held state (the file was truncated)."""
        ...


class PlainHandler:
    """Pure Fluent Bit records: date (read time), log, the path key and the offset key."""

    __slots__ = ("_offset_key", "_path", "_path_key", "_suffix", "held_lines", "unread")

    def __init__(self, ctx: SourceContext) -> None:
        self._path_key = ctx.path_key
        self._offset_key = ctx.offset_key
        self._path = ctx.path
        self.held_lines = 0
        self.unread = 0
        # What follows the log text in every record of this source (JSON lines, see encode).
        tail = b'"'
        if ctx.path_key:
            tail += b"," + orjson.dumps(ctx.path_key) + b":" + orjson.dumps(ctx.path)
        self._suffix = tail + b"}\n"

    def encode(self, complete: bytes, now: float, first_at: float | None = None) -> Encoded | None:
        escaped = escape_chunk(complete)
        if escaped is None:
            return None
        prefix = b'{"date":' + orjson.dumps(now) + b',"log":"'
        return Encoded(*join_records(*escaped, prefix, self._suffix))

    def feed(self, lines: list[str], now: float, offsets: list[int] | None = None) -> list[Record]:
        key = self._path_key
        if offsets is not None and self._offset_key:
            okey = self._offset_key
            if key:
                return [
                    {"date": now, "log": ln, key: self._path, okey: off}
                    for ln, off in zip(lines, offsets, strict=True)
                ]
            return [
                {"date": now, "log": ln, okey: off} for ln, off in zip(lines, offsets, strict=True)
            ]
        if key:
            path = self._path
            return [{"date": now, "log": ln, key: path} for ln in lines]
        return [{"date": now, "log": ln} for ln in lines]

    def flush(self, now: float) -> list[Record]:
        return []

    def reset(self) -> None:
        pass


class HandlerFactory(Protocol):
    def __call__(self, ctx: SourceContext) -> LineHandler: ...
