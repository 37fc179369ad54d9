"""One followed file: descriptor, positions, partial line, and bytes -> records.

Positions (byte offsets in the file):
  read_pos   next byte to read
  line_pos   end of the last complete line consumed (read_pos - len(partial))
  deferred   bytes at the start of `partial` that are a complete line the handler's fast path
             left for the next read (see LineHandler.unread): a record that may continue
             waits there as raw bytes, not in the handler's per-line path
  commit_pos end of the last line whose record was emitted (line_pos minus the lines a
             multi-line handler still holds); a chunk covers [previous commit_pos, commit_pos)
  acked_pos  end of the last chunk that every output accepted: the only offset ever stored
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shipper.chunk import Chunk, Encoded, Record
from shipper.escape import longest_line_over
from shipper.extensions import optional
from shipper.lines import LineHandler
from shipper.tail.identity import FileId

_native: Any = optional("shipper.tail._fastread")


def native() -> bool:
    """Is the C read pass in use (shipper/tail/_fastread.c)?"""
    return _native is not None


_NOATIME = getattr(os, "O_NOATIME", 0)


def open_file(path: str) -> int:
    """Open a file to follow, without access-time updates where allowed: reading a file
    that is being written otherwise dirties its inode on every read (relatime updates atime
    whenever it is older than mtime), a journal write per file and pass. O_NOATIME needs the
    file's owner or CAP_FOWNER; without either the file is opened as usual."""
    flags = os.O_RDONLY | os.O_CLOEXEC
    if _NOATIME:
        try:
            return os.open(path, flags | _NOATIME)
        except PermissionError:
            pass
    return os.open(path, flags)


@dataclass(frozen=True, slots=True, kw_only=True)
class LineRules:
    max_line: int  # Buffer_Max_Size
    skip_long: bool
    skip_empty: bool
    want_offsets: bool  # Offset_Key set

    fast: bool = field(init=False)  # may a chunk skip the per-line split (handler.encode)?

    def __post_init__(self) -> None:
        object.__setattr__(self, "fast", not (self.want_offsets or self.skip_empty))


class RangeAck:
    """The acknowledgement of one file's byte range (called when its chunk is done).

    `cost` is what the range's records count against the input's memory budget."""

    __slots__ = ("cost", "done", "end", "file", "generation")

    def __init__(self, file: TailedFile, end: int, cost: int) -> None:
        self.file = file
        self.end = end
        self.cost = cost
        self.generation = file.generation
        self.done = False

    def __call__(self, chunk: Chunk | None) -> None:
        self.done = True
        self.file.acknowledge(self.cost)


class TailedFile:
    """State of one open file. The read thread calls only `read_chunk`."""

    def __init__(
        self,
        *,
        fid: FileId,
        fd: int,
        path: str,
        real_path: str,
        offset: int,
        fingerprint: bytes,
        handler: LineHandler,
        tag: str,
        notify: Callable[[TailedFile, int], None],
    ) -> None:
        self.fid = fid
        self.fd = fd
        self.path = path  # as matched at open: the Path_Key value, for ever
        self.cur_path = path  # where the glob last saw it
        self.real_path = real_path
        self.tag = tag
        self.handler = handler
        self.fingerprint = fingerprint
        self.read_pos = self.line_pos = self.commit_pos = self.acked_pos = offset
        self.size = offset
        self.partial = b""
        self.deferred = 0
        self.skipping = False  # inside a long line whose rest is dropped
        self.generation = 0  # bumped on truncation: older acks no longer move offsets
        self.pending: collections.deque[RangeAck] = collections.deque()
        self.matched = True  # seen by the last scan
        self.deleted = False
        self.last_change = 0.0  # monotonic time of the last growth (or open)
        self._notify = notify  # (file, released bytes) after an acknowledgement

    # -- thread side --------------------------------------------------------------------
    def read_chunk(self, limit: int) -> tuple[bytes, int, int]:
        """fstat and read up to `limit` new bytes: (data, size, nlink)."""
        st = os.fstat(self.fd)
        size = st.st_size
        if size <= self.read_pos or limit <= 0:
            return b"", size, st.st_nlink
        data = os.pread(self.fd, min(size - self.read_pos, limit), self.read_pos)
        return data, size, st.st_nlink

    # -- loop side ----------------------------------------------------------------------
    def truncated(self) -> None:
        """The file shrank below what we read (copytruncate): start again at 0."""
        self.read_pos = self.line_pos = self.commit_pos = self.acked_pos = 0
        self.partial = b""
        self.deferred = 0
        self.skipping = False
        self.generation += 1
        self.handler.reset()

    def ingest(
        self, data: bytes, rules: LineRules, now: float
    ) -> tuple[list[Record] | Encoded, int]:
        """Append `data`; return the records now complete and the new commit position.

        First the handler's fast path (JSON lines from the whole chunk, see escape.py); else
        one decode and one split for the whole chunk, with per-line work only when a long
        line, a CR, an empty line to skip or Offset_Key needs it.
        """
        buf = self.partial + data if self.partial else data
        self.deferred = 0  # a deferred line is in `buf` again
        base = self.line_pos
        self.read_pos += len(data)
        if self.skipping:  # the rest of a long line already dealt with
            nl = buf.find(b"\n")
            if nl < 0:
                self.partial = b""
                self.line_pos = self.read_pos
                return [], self._commit_after(0, None, b"")
            self.skipping = False
            base += nl + 1
            buf = buf[nl + 1 :]
        cut = buf.rfind(b"\n")
        complete = buf[:cut] if cut >= 0 else b""
        self.partial = buf[cut + 1 :]
        self.line_pos = base + cut + 1
        long_idx: list[int] = []
        ends: list[int] | None = None
        max_line = rules.max_line
        if (
            cut >= 0
            and rules.fast
            and len(self.partial) <= max_line
            and (len(complete) <= max_line or not longest_line_over(complete, max_line))
        ):
            handler = self.handler
            enc = handler.encode(complete, now)
            if enc is not None:
                unread = handler.unread
                if unread:  # the last line waits for what follows it; nothing else is held
                    self.deferred = unread + 1
                    self.partial = buf[cut - unread :]  # that line, its newline, the rest
                    self.line_pos -= unread + 1
                    return enc, self.line_pos
                return enc, self._commit_after(None, None, complete)
        if cut < 0:
            lines: list[str] = []
        elif b"\r" in complete or rules.want_offsets or rules.skip_empty:
            lines, ends, long_idx = _split_slow(complete, base, rules)
        else:
            lines = complete.decode("utf-8", "replace").split("\n")
            # A line of n characters has at most 4n bytes: only then count them exactly.
            if len(complete) > rules.max_line and max(map(len, lines)) * 4 > rules.max_line:
                lines, ends, long_idx = _split_slow(complete, base, rules)
        records = self._feed(lines, ends, long_idx, rules, now)
        if len(self.partial) > rules.max_line:  # an unfinished line already too long
            text = self.partial[: rules.max_line].decode("utf-8", "replace")
            self.partial = b""
            self.line_pos = self.read_pos
            self.skipping = True
            if not rules.skip_long:
                records += self._feed(
                    [text], [self.line_pos] if rules.want_offsets else None, [0], rules, now
                )
            return records, self.line_pos
        return records, self._commit_after(len(lines), ends, complete)

    def _feed(
        self,
        lines: list[str],
        ends: list[int] | None,
        long_idx: list[int],
        rules: LineRules,
        now: float,
    ) -> list[Record]:
        handler = self.handler
        offsets = ends if rules.want_offsets else None
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
        """The new commit position: line_pos, minus the lines the handler holds back.

        `n_lines`: the lines fed from `complete` (None: every line of it, not counted)."""
        held = self.handler.held_lines
        if held == 0:
            return self.line_pos
        if n_lines is not None and held > n_lines:
            return self.commit_pos  # the held record began in an earlier read
        if ends is not None and n_lines is not None:
            first_held = n_lines - held
            return ends[first_held - 1] if first_held else self.line_pos - len(complete) - 1
        pos = len(complete)
        for _ in range(held):
            if pos < 0:
                return self.commit_pos  # more held lines than this read had
            pos = complete.rfind(b"\n", 0, pos)
        return self.line_pos - len(complete) - 1 + pos + 1

    @property
    def held(self) -> bool:
        """Are lines read but not yet emitted, waiting to see whether their record goes on?"""
        return self.deferred > 0 or self.handler.held_lines > 0

    def flush_held(self, now: float) -> list[Record]:
        """Emit what the handler holds and a deferred line (flush timeout, file released)."""
        records: list[Record] = []
        if self.deferred:
            line = self.partial[: self.deferred - 1]
            self.partial = self.partial[self.deferred :]
            self.line_pos += self.deferred
            self.deferred = 0
            records = self.handler.feed([line.decode("utf-8", "replace")], now)
        return records + self.handler.flush(now)

    def new_ack(self, end: int, cost: int = 0) -> RangeAck:
        ack = RangeAck(self, end, cost)
        self.pending.append(ack)
        self.commit_pos = end
        return ack

    def acknowledge(self, nbytes: int) -> None:
        """A chunk is done: advance acked_pos over every finished chunk, in order."""
        while self.pending and self.pending[0].done:
            ack = self.pending.popleft()
            if ack.generation == self.generation:
                self.acked_pos = ack.end
        self._notify(self, nbytes)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _split_slow(
    complete: bytes, base: int, rules: LineRules
) -> tuple[list[str], list[int], list[int]]:
    """Per-line split: CR removal, long lines cut or skipped, empty lines skipped; returns
    lines, each line's end offset, and the indexes of cut lines."""
    lines: list[str] = []
    ends: list[int] = []
    long_idx: list[int] = []
    pos = base
    for raw in complete.split(b"\n"):
        pos += len(raw) + 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > rules.max_line:
            if rules.skip_long:
                continue
            long_idx.append(len(lines))
            raw = raw[: rules.max_line]
        elif rules.skip_empty and not raw:
            continue
        lines.append(raw.decode("utf-8", "replace"))
        ends.append(pos)
    return lines, ends, long_idx


def drain_partial(file: TailedFile, now: float) -> list[Record]:
    """A file we let go of will never complete its last line: emit it as it is, with
    whatever the handler holds, so that nothing read is lost."""
    records: list[Record] = []
    if file.deferred:
        records = file.flush_held(now)
    if file.partial and not file.skipping:
        text = file.partial.decode("utf-8", "replace")
        records += file.handler.feed([text], now)
    file.partial = b""
    file.line_pos = file.read_pos
    records += file.handler.flush(now)
    return records


def read_all(files: list[TailedFile], limit: int) -> list[tuple[bytes, int, int, int]]:
    """One thread hop for the whole pass: fstat + pread of every open file, in order:
    (data, size, nlink, errno) each, errno 0 when both calls worked (else no data, size 0).

    The C helper (shipper/tail/_fastread.c) does the same in two GIL-free loops: with
    thousands of files, this loop's Python steps cost more than its system calls."""
    if _native is not None:
        got: list[tuple[bytes, int, int, int]] = _native.read_many(
            [f.fd for f in files], [f.read_pos for f in files], limit
        )
        return got
    out: list[tuple[bytes, int, int, int]] = []
    for f in files:
        try:
            data, size, nlink = f.read_chunk(limit)
        except OSError as exc:
            out.append((b"", 0, 1, exc.errno or errno.EIO))
            continue
        out.append((data, size, nlink, 0))
    return out


def any_changed(files: list[TailedFile]) -> bool:
    """Has any file bytes not read yet, or shrunk, or lost its last link? (fstat of an open
    local file does not block: the loop does it without a thread hop.)"""
    for f in files:
        try:
            st = os.fstat(f.fd)
        except OSError:
            return True
        if st.st_size != f.read_pos or st.st_nlink == 0:  # unread bytes, truncated, deleted
            return True
    return False


def bytes_behind(files: Iterable[TailedFile]) -> dict[str, int]:
    """Bytes not read per file, by fstat at scrape time (read passes stop while paused)."""
    out: dict[str, int] = {}
    for f in files:
        if f.fd >= 0:
            with contextlib.suppress(OSError):
                out[f.path] = max(0, os.fstat(f.fd).st_size - f.read_pos)
    return out
