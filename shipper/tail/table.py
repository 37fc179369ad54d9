"""The files an input follows and the ones it let go of, reconciled with each scan.

A scan (discovery.expand) says which paths match now; `reconcile` turns it into what changed:
files to open, files seen under a new name (rotated), files no longer matched, released files
forgotten. The input acts on those; this table only keeps the books.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from shipper.tail.discovery import Found, Pinned
from shipper.tail.followed import FollowedFile
from shipper.tail.identity import FileId, Released, still_there

RELEASED_TTL = 60.0  # seconds a released file may go unseen before it is forgotten


@dataclass(slots=True)
class ScanEvents:
    opened: list[tuple[FileId, Found]] = field(default_factory=list)  # new: to open
    rotated: list[tuple[FollowedFile, str]] = field(default_factory=list)  # (file, old name)
    unmatched: list[FollowedFile] = field(default_factory=list)  # just left the glob
    forgotten: list[FileId] = field(default_factory=list)  # released, gone for good


class FileTable:
    __slots__ = ("_pins", "files", "released", "ttl")

    def __init__(self, *, ttl: float = RELEASED_TTL) -> None:
        self.files: dict[FileId, FollowedFile] = {}
        self.released: dict[FileId, Released] = {}
        self.ttl = ttl
        # fid -> (open path, directory entry inode, stat) of open files at the last scan
        self._pins: dict[FileId, tuple[str, int, os.stat_result]] = {}

    def pinned(self) -> Pinned:
        """Open files listed under the same directory entry need no stat (discovery.expand)."""
        files = self.files
        return {h[0]: (h[1], h[2]) for fid, h in self._pins.items() if fid in files}

    def add(self, f: FollowedFile, item: Found | None = None) -> None:
        """Follow `f` (opened from the scan's `item`, or adopted)."""
        self.files[f.fid] = f
        self.released.pop(f.fid, None)
        if item is not None and item.dino:
            self._pins[f.fid] = (item.open_path, item.dino, item.st)

    def remember(self, released: dict[FileId, Released]) -> None:
        """Files a predecessor let go of (hot reload)."""
        self.released.update(released)

    def release(self, f: FollowedFile, mono: float) -> None:
        """Stop following `f` (closed by the caller). A file still on disk is remembered at
        its offset, so that it is not read again when a scan finds it under another name."""
        del self.files[f.fid]
        self._pins.pop(f.fid, None)
        if not f.deleted:
            self.released[f.fid] = Released(f.fingerprint, f.read_pos, f.cur_path, mono)

    def any_held(self) -> bool:
        """Do lines wait in a splitter or handler (multi-line) for what comes next?"""
        return any(f.splitter.held for f in self.files.values())

    def at_eof(self) -> bool:
        return all(f.read_pos >= f.size for f in self.files.values())

    def dirs(self) -> set[str]:
        """The directories the followed files are in (to watch for writes)."""
        return {os.path.dirname(f.real_path) for f in self.files.values()}

    def take_all(self) -> tuple[list[FollowedFile], dict[FileId, Released]]:
        """Empty the table (hot reload: a successor takes over)."""
        files, released = list(self.files.values()), self.released
        self.files, self.released, self._pins = {}, {}, {}
        return files, released

    def reconcile(
        self, found: dict[str, Found], mono: float, cutoff: float | None = None
    ) -> ScanEvents:
        """What a scan's matches change. `cutoff`: files not modified since are ignored
        (Ignore_Older)."""
        events = ScanEvents()
        seen: set[FileId] = set()
        pins: dict[FileId, tuple[str, int, os.stat_result]] = {}
        files = self.files
        for path, item in found.items():
            if cutoff is not None and item.st.st_mtime < cutoff:
                continue
            fid = FileId.of(item.st)
            if fid in seen:
                continue  # the same file under a second name (a symlinked directory)
            seen.add(fid)
            if self._finished(fid, path, item, mono):
                continue
            f = files.get(fid)
            if f is None:
                events.opened.append((fid, item))
                continue
            # Still matched under the name it has (the same file under several names,
            # through a symlinked directory): not a rotation.
            known = found.get(f.cur_path)
            if path != f.cur_path and (known is None or FileId.of(known.st) != fid):
                events.rotated.append((f, f.cur_path))
                f.moved_to(path, mono)
            else:
                f.seen()
            if item.dino:
                pins[fid] = (item.open_path, item.dino, item.st)
        self._pins = pins
        for fid, f in files.items():
            if fid not in seen:
                if f.matched:
                    events.unmatched.append(f)
                f.unmatched(mono)
        events.forgotten = self._expire(seen, mono)
        return events

    def _finished(self, fid: FileId, path: str, item: Found, mono: float) -> bool:
        """A released file seen again: True if it did not grow since (nothing to open)."""
        rel = self.released.get(fid)
        if rel is None:
            return False
        rel.seen(path, mono)
        return item.st.st_size == rel.offset

    def _expire(self, seen: set[FileId], mono: float) -> list[FileId]:
        # A scan races with renames (listed as x.1, renamed to x.2 before the stat): one
        # miss proves nothing, so a released file is forgotten only after a long absence.
        gone: list[FileId] = []
        for fid, rel in list(self.released.items()):
            if (
                fid not in seen
                and mono - rel.last_seen > self.ttl
                and not still_there(fid, rel.path)
            ):
                del self.released[fid]
                gone.append(fid)
        return gone
