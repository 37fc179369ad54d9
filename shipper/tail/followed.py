"""One followed file: its descriptor, identity and marks, with the splitter that turns its bytes
into records and the ledger of its acknowledged ranges.

The read thread touches only `fd` and `read_pos` (read_all); everything else is the loop's.
Other parts change a file only through its methods.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from shipper.tail.identity import FINGERPRINT_BYTES, FileId, read_fingerprint
from shipper.tail.ledger import AckLedger
from shipper.tail.splitter import LineSplitter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class HandedFile:
    """A file handed to a successor at a hot reload (shipper.tail.handover)."""

    fid: FileId
    fd: int  # owned by whoever holds this now
    path: str  # as first matched (the Path_Key value)
    cur_path: str  # where the last scan saw it
    real_path: str
    offset: int  # acked position: where the successor reads from
    fingerprint: bytes
    size: int
    deleted: bool
    skipping: bool  # the offset is inside a long line whose rest is dropped


class FollowedFile:
    __slots__ = (
        "cur_path",
        "deleted",
        "fd",
        "fid",
        "fingerprint",
        "last_change",
        "ledger",
        "matched",
        "path",
        "real_path",
        "size",
        "splitter",
        "tag",
    )

    def __init__(
        self,
        *,
        fid: FileId,
        fd: int,
        path: str,
        real_path: str,
        fingerprint: bytes,
        splitter: LineSplitter,
        tag: str,
        notify: Callable[[FollowedFile, int], None],
        size: int,
        cur_path: str | None = None,
    ) -> None:
        self.fid = fid
        self.fd = fd
        self.path = path  # as matched at open: the Path_Key value, for ever
        self.cur_path = path if cur_path is None else cur_path  # where the glob last saw it
        self.real_path = real_path
        self.tag = tag
        self.fingerprint = fingerprint
        self.splitter = splitter
        self.ledger: AckLedger[FollowedFile] = AckLedger(self, splitter.read_pos, notify)
        self.size = size
        self.matched = True  # seen by the last scan
        self.deleted = False
        self.last_change = time.monotonic()  # of the last growth, open, rotation or handover

    # -- marks --------------------------------------------------------------------------
    @property
    def read_pos(self) -> int:
        return self.splitter.read_pos

    @property
    def gone(self) -> bool:
        """Deleted, rotated or moved away, or no longer matched by the glob."""
        return self.deleted or not self.matched or self.cur_path != self.path

    def seen(self) -> None:
        """A scan found it under its current name."""
        self.matched = True

    def moved_to(self, path: str, mono: float) -> None:
        """A scan found it under a new name (rotated)."""
        self.matched = True
        self.cur_path = path
        self.last_change = mono  # Rotate_Wait counts from the rotation

    def unmatched(self, mono: float) -> None:
        """A scan did not find it (session_latest re-pointed, renamed out of the glob)."""
        if self.matched:  # Rotate_Wait for a dying writer's last lines counts from now
            self.last_change = mono
        self.matched = False

    def observe(self, size: int, nlink: int, got: int, mono: float) -> int | None:
        """A read pass's fstat and the `got` bytes it read. When the file shrank below what
        was read (copytruncate), reading starts again at 0: returns where it was."""
        self.size = size
        if nlink == 0 and not self.deleted:
            self.deleted = True
            self.last_change = mono  # drained until idle for Rotate_Wait from now
        if got:
            self.last_change = mono
            return None
        was = self.splitter.read_pos
        if size < was:
            self.splitter.restart(0)
            self.ledger.restart(0)
            self.last_change = mono
            return was
        return None

    def restart_after_truncation(
        self, size: int, nlink: int, mono: float, *, splitter_taken: bool
    ) -> None:
        """Truncated below its offset (copytruncate): read again from 0 as new content. When
        a copy took the splitter (partial line, handler state: its lines go on there), this
        file goes on after it with a fresh splitter sharing the handler."""
        if splitter_taken:
            split = self.splitter
            self.splitter = LineSplitter(
                handler=split.handler, rules=split.rules, on_long=split.on_long
            )
            self.ledger.restart(0)
        self.observe(size, nlink, 0, mono)  # restarts at 0 unless the copy took the splitter
        self.fingerprint = b""  # new content: read again as it grows
        self.last_change = mono

    def note_size(self) -> None:
        """Remember the size the file has now (it may have grown since the last pass)."""
        with contextlib.suppress(OSError):
            self.size = max(self.size, os.fstat(self.fd).st_size)

    # -- identity -----------------------------------------------------------------------
    def refresh_fingerprint(self) -> None:
        """A fingerprint taken while the file was short grows with it (up to its full size),
        so that a reused inode can be told apart later."""
        if len(self.fingerprint) < FINGERPRINT_BYTES and self.fd >= 0:
            try:
                self.fingerprint = read_fingerprint(self.fd)
            except OSError as exc:
                log.debug("fingerprint of %s: %s", self.path, exc)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    # -- hot reload ---------------------------------------------------------------------
    def export(self) -> HandedFile:
        """Describe the file at its acknowledged offset and give its descriptor away (this
        object is left without one, so closing the old input does not close it)."""
        self.refresh_fingerprint()
        acked = self.ledger.acked
        split = self.splitter
        if split.read_pos != acked:
            log.debug(
                "%s: handed over at acked offset %d (%d bytes to read again)",
                self.path,
                acked,
                split.read_pos - acked,
            )
        handed = HandedFile(
            fid=self.fid,
            fd=self.fd,
            path=self.path,
            cur_path=self.cur_path,
            real_path=self.real_path,
            offset=acked,
            fingerprint=self.fingerprint,
            size=self.size,
            deleted=self.deleted,
            skipping=split.skipping and acked == split.line_pos,
        )
        self.fd = -1
        return handed

    @classmethod
    def adopt(
        cls,
        h: HandedFile,
        *,
        splitter: LineSplitter,
        tag: str,
        notify: Callable[[FollowedFile, int], None],
    ) -> FollowedFile:
        """The successor's file: the same descriptor, read again from the acked offset by a
        fresh splitter and handler (so nothing half-parsed crosses the reload)."""
        f = cls(
            fid=h.fid,
            fd=h.fd,
            path=h.path,
            real_path=h.real_path,
            fingerprint=h.fingerprint,
            splitter=splitter,
            tag=tag,
            notify=notify,
            size=h.size,
        )
        f.cur_path, f.deleted = h.cur_path, h.deleted
        return f
