"""When the reader lags behind its writers: copytruncate, the rotation ring, moved files.

copytruncate: a followed file shrinks below its offset. The bytes not read yet are in the copy
logrotate just made next to it (`x.1`, `x-YYYYMMDD`, matched by the glob or not): a regular file
whose first bytes are the truncated file's and whose size reaches the offset. Its rest
`[offset, size)` is read as a file of its own, with the original's line handler (the lines
continue), and the original waits until it is done: in order, exactly once. A copy is then
known (identity and size), so a glob that matches it never reads it again; a file that starts
as a followed sibling does and carries a rotated name of it is such a copy too.

The rotation ring (`x` -> `x.1` ... `x.N`, the oldest deleted): a renamed file is read to its
end through the descriptor held. A file new at a name inherits the handler state (Ray's worker
markers) of the file that had the name before, once that one is read to its end; after a
restart, from the DB. A generation the DB knows that is gone at start was deleted before it
was read: its unread bytes (known size - offset) are counted and logged. One the DB knows
that Ray's log monitor moved to `old/` is read to its end even when no glob matches there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipper import telemetry
from shipper.tail.copies import (
    Copied,
    Key,
    find_copy,
    is_file,
    origin_keys,
    own_keys,
    ring_age,
    ring_base,
    ring_next,
)
from shipper.tail.discovery import Found
from shipper.tail.followed import FollowedFile
from shipper.tail.identity import FINGERPRINT_BYTES, FileId, same_content
from shipper.tail.splitter import LineSplitter

if TYPE_CHECKING:
    from shipper.tail.checkpoints import Checkpoint
    from shipper.tail.input import TailInput

log = logging.getLogger(__name__)

MAYBE_COPY_WAIT = 2.0  # seconds a short file with a copy's name waits to show what it is


def export_state(handler: Any) -> bytes | None:
    """A line handler's exported state (Ray's worker markers), None for handlers without."""
    fn = getattr(handler, "export_state", None)
    state: bytes | None = fn() if fn is not None else None
    return state


def adopt_state(handler: Any, state: bytes | None) -> None:
    fn = getattr(handler, "adopt_state", None)
    if fn is not None and state:
        fn(state)


# (directory, name) -> (name, followed file or the DB's fingerprint) of the files a file
# with a name cut there may be a copy of (see copy_of)
Names = dict[Key, list[tuple[str, FollowedFile | bytes]]]


@dataclass(slots=True)
class _Copy:
    size: int
    last_seen: float  # monotonic

    def seen(self, mono: float) -> None:
        self.last_seen = mono


class Lag:
    """One tail input's state for the above; the input calls it at a few points."""

    def __init__(self) -> None:
        self.copies: dict[FileId, _Copy] = {}  # known copies: never read as files of their own
        self.waiting: dict[FileId, FollowedFile] = {}  # file -> the one to read to its end first
        self._copying: set[FileId] = set()  # files reading a copy's rest (share a handler)
        self._left: dict[str, FollowedFile] = {}  # a name -> the file that had it before
        self._maybe: dict[FileId, float] = {}  # short files with a copy's name: first seen
        self._db_states: dict[str, tuple[float, int, bytes]] = {}  # base -> (when, -age, state)
        self._db_rows: list[tuple[str, bytes]] = []  # (name, fingerprint) before the 1st scan
        # This scan's indexes, built when a file is opened: by name, and by the names of
        # which a file's name would be a copy's (see copy_of)
        self._by_path: dict[str, FollowedFile] | None = None
        self._names: Names | None = None

    # -- scans --------------------------------------------------------------------------
    def begin_scan(self) -> None:
        self._by_path = self._names = None

    def _indexes(self, inp: TailInput) -> tuple[dict[str, FollowedFile], Names]:
        if self._by_path is None or self._names is None:
            self._by_path = {g.cur_path: g for g in inp.table.files.values()}
            self._names = {}
            for name, fp in self._db_rows:  # at the start: the files the DB knew
                for key in own_keys(name):
                    self._names.setdefault(key, []).append((name, fp))
            for g in inp.table.files.values():
                for key in own_keys(g.cur_path):
                    self._names.setdefault(key, []).append((g.cur_path, g))
        return self._by_path, self._names

    def known_copy(self, fid: FileId, size: int, mono: float) -> bool:
        """A scan found `fid`: is it a copy already known (and unchanged)?"""
        c = self.copies.get(fid)
        if c is None:
            return False
        if size == c.size:
            c.seen(mono)
            return True
        del self.copies[fid]  # rewritten (cp onto the last copy): look again
        return False

    def left(self, path: str, f: FollowedFile) -> None:
        """`f` was renamed away from `path` (a rotation)."""
        self._left[path] = f

    def forget_unseen(self, seen: set[FileId], ttl: float, mono: float) -> None:
        for fid, c in list(self.copies.items()):
            if fid not in seen and mono - c.last_seen > ttl:
                del self.copies[fid]
        for fid in [k for k in self._maybe if k not in seen]:
            del self._maybe[fid]
        for path, f in list(self._left.items()):
            if f.fd < 0 and f.last_change < mono - ttl:
                del self._left[path]

    def copy_of(
        self, inp: TailInput, path: str, fid: FileId, head: bytes, st: os.stat_result
    ) -> bool:
        """Is a file found new a copy of a followed sibling (known from now on, not to be
        read)? A short one with a copy's name may be one being written: the next scan
        (soon) knows."""
        mono = time.monotonic()
        names = self._indexes(inp)[1]
        base = os.path.basename(path)
        for key in origin_keys(path):
            for name, orig in names.get(key, ()):
                if os.path.basename(name) != base and self._is_copy(inp, orig, fid, head, st, mono):
                    return True
        return False

    def _is_copy(
        self,
        inp: TailInput,
        orig: FollowedFile | bytes,
        fid: FileId,
        head: bytes,
        st: os.stat_result,
        mono: float,
    ) -> bool:
        if isinstance(orig, bytes):
            fp = orig
        elif orig.fid == fid:
            return False
        else:
            fp = orig.fingerprint
        if fp:
            # a short fingerprint is all of a short file: its copy has just those bytes
            if head == fp or (len(fp) == FINGERPRINT_BYTES and same_content(fp, head)):
                self.copies[fid] = _Copy(st.st_size, mono)
                self._maybe.pop(fid, None)
                inp.table.released.pop(fid, None)
                return True
            short = len(head) < len(fp) and fp.startswith(head)
            if short and mono - self._maybe.setdefault(fid, mono) < MAYBE_COPY_WAIT:
                asyncio.get_running_loop().call_later(0.25, inp.pacer.kick)
                return True
        return False

    # -- opening ------------------------------------------------------------------------
    def load_db(self, rows: dict[FileId, Checkpoint]) -> None:
        """Before the first scan: each ring's latest stored state (the youngest name of the
        last write), for a successor whose predecessor is gone (deleted by the ring while no
        agent ran)."""
        self._db_rows = [(cp.name, cp.fingerprint) for cp in rows.values() if cp.fingerprint]
        for cp in rows.values():
            if cp.state:
                base, key = ring_base(cp.name), (cp.updated, -ring_age(cp.name))
                known = self._db_states.get(base)
                if known is None or key > known[:2]:
                    self._db_states[base] = (*key, cp.state)

    def opened(self, inp: TailInput, f: FollowedFile, why: str, saved: Checkpoint | None) -> None:
        """A file was opened (`why`: see identity.start_offset; `saved`: its DB row): give it
        the state it goes on from."""
        if (
            saved is not None
            and why.startswith("db entry")
            and not self._truncated_at_start(inp, f, saved)
        ):
            _gone(inp, saved)  # the DB's file is gone, its inode already reused by this one
        if why != "db":
            saved = None
        by_path, names = self._indexes(inp)
        for key in own_keys(f.cur_path):
            names.setdefault(key, []).append((f.cur_path, f))
        if callable(getattr(f.splitter.handler, "adopt_state", None)):
            self._inherit(inp, f, saved, by_path)
        by_path[f.cur_path] = f

    def _inherit(
        self,
        inp: TailInput,
        f: FollowedFile,
        saved: Checkpoint | None,
        by_path: dict[str, FollowedFile],
    ) -> None:
        """The handler state `f` starts with: its DB row's, or its predecessor's."""
        handler = f.splitter.handler
        if saved is not None:
            adopt_state(handler, saved.state)
        elif f.fid not in self.waiting:  # (not after a copy: see _truncated_at_start)
            # In a ring the file at the next name is the one before (several turns may lie
            # between two scans); else the file that had this name last.
            pred = by_path.get(ring_next(f.path)) or self._left.pop(f.path, None)
            if pred is None or pred.fid == f.fid:
                pred = by_path.get(f.path)
            if pred is None or pred.fid == f.fid:
                known = self._db_states.get(ring_base(f.path))
                adopt_state(handler, known[2] if known else None)
            elif _unread(inp, pred):
                self.waiting[f.fid] = pred  # its markers may still change: read it first
            else:
                adopt_state(handler, export_state(pred.splitter.handler))

    def after_start(
        self, inp: TailInput, seen: set[FileId], *, adopted: bool
    ) -> list[tuple[FileId, Found]]:
        """After the first scan with a DB: rows whose file is gone lost their unread bytes
        (counted); a file moved to `old/` is returned, to be read to its end."""
        self._db_states.clear()
        self._db_rows = []
        db = inp.db
        if db is None or adopted:  # a hot reload: nothing happened while nobody read
            return []
        moved: list[tuple[FileId, Found]] = []
        for fid, cp in db.saved().items():
            if fid in seen or fid in inp.table.files:
                continue
            there = os.path.join(os.path.dirname(cp.name), "old", os.path.basename(cp.name))
            if is_file(there, fid, cp.fingerprint):
                with contextlib.suppress(OSError):
                    moved.append((fid, Found(there, os.stat(there), there)))
                continue
            if is_file(cp.name, fid, cp.fingerprint):
                continue  # still there, no longer matched: not ours to judge
            _gone(inp, cp)
            db.forget(fid)
        return moved

    # -- reading ------------------------------------------------------------------------
    def truncated(
        self, inp: TailInput, f: FollowedFile, size: int, nlink: int, mono: float
    ) -> None:
        """`f` shrank below its offset: read its rest from the copy, if there is one."""
        start = f.read_pos
        found = self._find(inp, f, f.fingerprint, start)
        if found is None:
            telemetry.copy_missed(inp.stats, f.path, max(0, f.size - start))
            taken = False
        else:  # the copy takes the splitter: `f` goes on after it (see FollowedFile)
            taken = self._read_copy(inp, f, found, f.splitter, f.ledger.acked, mono)
        f.restart_after_truncation(size, nlink, mono, splitter_taken=taken)

    def _truncated_at_start(self, inp: TailInput, f: FollowedFile, saved: Checkpoint) -> bool:
        """The DB's file has other first bytes now, or is shorter than its offset: truncated
        while no agent ran (copytruncate)? Then its rest is read from the copy first."""
        found = self._find(inp, f, saved.fingerprint, saved.offset)
        if found is None:
            return False
        split = inp._splitter(f.path, f.real_path, saved.offset)
        adopt_state(split.handler, saved.state)
        return self._read_copy(inp, f, found, split, saved.offset, time.monotonic())

    @staticmethod
    def _find(inp: TailInput, f: FollowedFile, fingerprint: bytes, offset: int) -> Copied | None:
        dirs = {os.path.dirname(f.cur_path), os.path.dirname(f.real_path)}
        skip = {*inp.table.files, f.fid}
        return find_copy(dirs, fingerprint=fingerprint, offset=offset, orig=f.cur_path, skip=skip)

    def _read_copy(
        self,
        inp: TailInput,
        f: FollowedFile,
        found: Copied,
        split: LineSplitter,
        acked: int,
        mono: float,
    ) -> bool:
        """Follow the copy `found` from `split`'s position to its end, `f` after it."""
        path, fd, st, head = found
        fid = FileId.of(st)
        self.copies.pop(fid, None)
        inp.table.released.pop(fid, None)
        start = split.read_pos
        if st.st_size <= start:  # nothing unread in it: known, never read
            os.close(fd)
            self.copies[fid] = _Copy(st.st_size, mono)
            return False
        c = FollowedFile(
            fid=fid,
            fd=fd,
            path=f.path,  # its lines were written to f: records say so
            real_path=f.real_path,
            fingerprint=head,
            splitter=split,
            tag=f.tag,
            notify=inp._acknowledged,
            size=st.st_size,
            cur_path=path,
        )
        c.ledger.rebase(acked)
        inp.table.add(c)
        self._copying.add(fid)
        self.waiting[f.fid] = c
        telemetry.file_opened(inp.stats, path, f"its rest from {start}: copy of {f.path}")
        telemetry.copy_recovered(inp.stats, f.path, path, start, st.st_size)
        return True

    def after_pass(self, inp: TailInput, mono: float) -> bool:
        """Files whose predecessor (or copy) is read to its end go on. True if any did."""
        went_on = False
        for fid, pred in list(self.waiting.items()):
            if _unread(inp, pred):
                continue
            del self.waiting[fid]
            went_on = True
            if pred.fid in self._copying:
                self._copy_done(inp, pred, mono)
            f = inp.table.files.get(fid)
            if f is not None and f.splitter.handler is not pred.splitter.handler:
                adopt_state(f.splitter.handler, export_state(pred.splitter.handler))
        return went_on

    def _copy_done(self, inp: TailInput, c: FollowedFile, mono: float) -> None:
        """A copy's rest is read: a last line without newline is a record of its own (its
        end went nowhere); the copy is known from now on and never read again."""
        self._copying.discard(c.fid)
        split = c.splitter
        last = split.end_partial()
        if last:
            records = split.handler.feed([last.decode("utf-8", "replace")], time.time())
            inp._emit_records(c, records, split.read_pos)
        c.close()
        if c.fid in inp.table.files:
            inp.table.release(c, mono)
        telemetry.file_released(inp.stats, c.cur_path, "copy read to its end")


def _unread(inp: TailInput, f: FollowedFile) -> bool:
    """Has `f` (followed) bytes not read yet? By fstat now: its last pass may be old."""
    if f.fd < 0 or f.fid not in inp.table.files:
        return False
    try:
        return os.fstat(f.fd).st_size > f.read_pos
    except OSError:
        return False


def _gone(inp: TailInput, cp: Checkpoint) -> None:
    if cp.size is not None and cp.size > cp.offset:
        telemetry.rotated_lost(inp.stats, cp.name, cp.size - cp.offset)
