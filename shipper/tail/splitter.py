"""One source's bytes -> complete lines -> records, through its LineHandler. No descriptor:
tail feeds it what a read pass got from a file, stdin what its reader thread got.

Positions (byte offsets in the stream), owned here and only read elsewhere:
  read_pos  next byte to read (every byte given to `ingest` so far)
  line_pos  end of the last complete line consumed (read_pos - len(partial))
  deferred  bytes at the start of `partial` that are a complete line the handler's fast path
            left for the next read (see LineHandler.unread): a record that may continue
            waits there as raw bytes, not in the handler's per-line path; `deferred_at` is
            when it was read (a record dated by its read time keeps that time)
  emitted   end of the last line whose record went out (line_pos minus the lines a
            multi-line handler still holds): every range a reader emits ends here
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shipper.chunk import Encoded, Record
from shipper.escape import longest_line_over
from shipper.lines import LineHandler

# (lines, skipped): lines over the limit were cut (False) or dropped (True)
LongLines = Callable[[int, bool], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class LineRules:
    max_line: int  # Buffer_Max_Size
    skip_long: bool
    skip_empty: bool
    want_offsets: bool  # Offset_Key set

    fast: bool = field(init=False)  # may a chunk skip the per-line split (handler.encode)?

    def __post_init__(self) -> None:
        object.__setattr__(self, "fast", not (self.want_offsets or self.skip_empty))


def _no_long(lines: int, skipped: bool) -> None:
    pass


class LineSplitter:
    """Partial last line, deferred last line, long lines; records from the handler."""

    __slots__ = (
        "deferred",
        "deferred_at",
        "emitted",
        "handler",
        "line_pos",
        "on_long",
        "partial",
        "read_pos",
        "rules",
        "skipping",
    )

    def __init__(
        self,
        *,
        handler: LineHandler,
        rules: LineRules,
        offset: int = 0,
        skipping: bool = False,
        on_long: LongLines = _no_long,
    ) -> None:
        self.handler = handler
        self.rules = rules
        self.read_pos = self.line_pos = self.emitted = offset
        self.partial = b""
        self.deferred = 0
        self.deferred_at = 0.0
        self.skipping = skipping  # inside a long line whose rest is dropped
        self.on_long = on_long

    @property
    def held(self) -> bool:
        """Are lines read but not yet emitted, waiting to see whether their record goes on?"""
        return self.deferred > 0 or self.handler.held_lines > 0

    def restart(self, offset: int = 0) -> None:
        """Start again at `offset` with nothing held (the file was truncated)."""
        self.read_pos = self.line_pos = self.emitted = offset
        self.partial = b""
        self.deferred = 0
        self.skipping = False
        self.handler.reset()

    def take_partial(self) -> bytes:
        """Hand the unfinished last line back (stdin at a reload); b"" inside a long line."""
        data, self.partial = (b"" if self.skipping else self.partial), b""
        return data

    def end_partial(self) -> bytes:
        """The source ended: its unfinished last line (b"" inside a long line) is a line of
        its own, emitted up to the read position."""
        if not self.partial or self.skipping:
            return b""
        data, self.partial = self.partial, b""
        self.line_pos = self.emitted = self.read_pos
        return data

    def ingest(self, data: bytes, now: float) -> tuple[list[Record] | Encoded, int]:
        """Append `data`; return the records now complete and where they end (`emitted`).

        First the handler's fast path (JSON lines from the whole chunk, see escape.py); else
        one decode and one split for the whole chunk, with per-line work only when a long
        line, a CR, an empty line to skip or Offset_Key needs it.
        """
        buf = self.partial + data if self.partial else data
        first_at = self.deferred_at if self.deferred else None  # buf starts with that line
        self.deferred = 0  # a deferred line is in `buf` again
        base = self.line_pos
        self.read_pos += len(data)
        if self.skipping:  # the rest of a long line already dealt with
            nl = buf.find(b"\n")
            if nl < 0:
                self.partial = b""
                self.line_pos = self.read_pos
                return [], self._ends(self._commit_after(0, None, b""))
            self.skipping = False
            base += nl + 1
            buf = buf[nl + 1 :]
        cut = buf.rfind(b"\n")
        complete = buf[:cut] if cut >= 0 else b""
        self.partial = buf[cut + 1 :]
        self.line_pos = base + cut + 1
        rules = self.rules
        max_line = rules.max_line
        if (
            cut >= 0
            and rules.fast
            and len(self.partial) <= max_line
            and (len(complete) <= max_line or not longest_line_over(complete, max_line))
        ):
            enc = self.handler.encode(complete, now, first_at)
            if enc is not None:
                unread = self.handler.unread
                if unread:  # the last line waits for what follows it; nothing else is held
                    self.deferred = unread + 1
                    if first_at is None or cut != unread:  # (else the same line again)
                        self.deferred_at = now
                    self.partial = buf[cut - unread :]  # that line, its newline, the rest
                    self.line_pos -= unread + 1
                    return enc, self._ends(self.line_pos)
                return enc, self._ends(self._commit_after(None, None, complete))
        if first_at is not None:  # the line left unread, dated when it was read
            nl = complete.find(b"\n")
            line = complete if nl < 0 else complete[:nl]
            early = self.handler.feed([line.decode("utf-8", "replace")], first_at)
            skip = len(line) + 1
            records, end = self._ingest_lines(complete[skip:], base + skip, cut - skip, now)
            return early + records, end
        return self._ingest_lines(complete, base, cut, now)

    def _ingest_lines(
        self, complete: bytes, base: int, cut: int, now: float
    ) -> tuple[list[Record], int]:
        rules = self.rules
        long_idx: list[int] = []
        ends: list[int] | None = None
        if cut < 0:
            lines: list[str] = []
        elif b"\r" in complete or rules.want_offsets or rules.skip_empty:
            lines, ends, long_idx = self._split_slow(complete, base)
        else:
            lines = complete.decode("utf-8", "replace").split("\n")
            # A line of n characters has at most 4n bytes: only then count them exactly.
            if len(complete) > rules.max_line and max(map(len, lines)) * 4 > rules.max_line:
                lines, ends, long_idx = self._split_slow(complete, base)
        records = self._feed(lines, ends, long_idx, now)
        if len(self.partial) > rules.max_line:  # an unfinished line already too long
            text = self.partial[: rules.max_line].decode("utf-8", "replace")
            self.partial = b""
            self.line_pos = self.read_pos
            self.skipping = True
            self.on_long(1, rules.skip_long)
            if not rules.skip_long:
                offs = [self.line_pos] if rules.want_offsets else None
                records += self._feed([text], offs, [0], now)
            return records, self._ends(self.line_pos)
        return records, self._ends(self._commit_after(len(lines), ends, complete))

    def _ends(self, end: int) -> int:
        self.emitted = end
        return end

    def _split_slow(self, complete: bytes, base: int) -> tuple[list[str], list[int], list[int]]:
        """Per-line split: CR removal, long lines cut or skipped, empty lines skipped; returns
        lines, each line's end offset, and the indexes of cut lines."""
        rules = self.rules
        lines: list[str] = []
        ends: list[int] = []
        long_idx: list[int] = []
        skipped = 0
        pos = base
        for raw in complete.split(b"\n"):
            pos += len(raw) + 1
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if len(raw) > rules.max_line:
                if rules.skip_long:
                    skipped += 1
                    continue
                long_idx.append(len(lines))
                raw = raw[: rules.max_line]
            elif rules.skip_empty and not raw:
                continue
            lines.append(raw.decode("utf-8", "replace"))
            ends.append(pos)
        if skipped or long_idx:
            self.on_long(skipped or len(long_idx), bool(skipped))
        return lines, ends, long_idx

    def _feed(
        self, lines: list[str], ends: list[int] | None, long_idx: list[int], now: float
    ) -> list[Record]:
        handler = self.handler
        offsets = ends if self.rules.want_offsets else None
        if not long_idx:
            return handler.feed(lines, now, offsets) if lines else []
        # Rare: cut lines are records of their own, flagged `truncated`.
        records: list[Record] = []
        start = 0
        for i in long_idx:
            records += handler.feed(lines[start:i], now, offsets[start:i] if offsets else None)
            records += handler.flush(now)
            cut_records = handler.feed([lines[i]], now, offsets[i : i + 1] if offsets else None)
            cut_records += handler.flush(now)
            for rec in cut_records:
                rec["truncated"] = True
            records += cut_records
            start = i + 1
        records += handler.feed(lines[start:], now, offsets[start:] if offsets else None)
        return records

    def _commit_after(self, n_lines: int | None, ends: list[int] | None, complete: bytes) -> int:
        """The new emitted position: line_pos, minus the lines the handler holds back.

        `n_lines`: the lines fed from `complete` (None: every line of it, not counted)."""
        held = self.handler.held_lines
        if held == 0:
            return self.line_pos
        if n_lines is not None and held > n_lines:
            return self.emitted  # the held record began in an earlier read
        if ends is not None and n_lines is not None:
            first_held = n_lines - held
            return ends[first_held - 1] if first_held else self.line_pos - len(complete) - 1
        pos = len(complete)
        for _ in range(held):
            if pos < 0:
                return self.emitted  # more held lines than this read had
            pos = complete.rfind(b"\n", 0, pos)
        return self.line_pos - len(complete) - 1 + pos + 1

    def flush_held(self, now: float) -> tuple[list[Record], int]:
        """Emit what the handler holds and a deferred line (flush timeout, file released)."""
        records: list[Record] = []
        if self.deferred:
            line = self.partial[: self.deferred - 1]
            self.partial = self.partial[self.deferred :]
            self.line_pos += self.deferred
            self.deferred = 0
            records = self.handler.feed([line.decode("utf-8", "replace")], self.deferred_at)
        return records + self.handler.flush(now), self._ends(self.line_pos)

    def drain(self, now: float) -> tuple[list[Record], int]:
        """The source ends (a file let go of, end of input): its unfinished last line will
        never complete, so emit it as it is, with whatever the handler holds."""
        records: list[Record] = []
        if self.deferred:
            records = self.flush_held(now)[0]
        if self.partial and not self.skipping:
            records += self.handler.feed([self.partial.decode("utf-8", "replace")], now)
        self.partial = b""
        self.line_pos = self.read_pos
        records += self.handler.flush(now)
        return records, self._ends(self.read_pos)
