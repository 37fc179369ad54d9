"""File identity: (device, inode) checked against a fingerprint of the first bytes.

While we hold a file open its inode cannot be reused, so (dev, ino) alone is exact for open
files. For files we let go of (and for offsets in the DB) the inode may have been freed and
reused by another file within seconds, as Ray's rotation does: the fingerprint tells them apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

FINGERPRINT_BYTES = 256


class FileId(NamedTuple):
    """(device, inode): a tuple, since every scan makes one per file and every dict of files
    hashes them (a dataclass's hash and init cost a Python call each)."""

    dev: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileId:
        return cls(st.st_dev, st.st_ino)


def read_fingerprint(fd: int) -> bytes:
    """The first bytes of an open file (fewer while the file is shorter)."""
    return os.pread(fd, FINGERPRINT_BYTES, 0)


def same_content(stored: bytes, current: bytes) -> bool:
    """Whether `current` (read now) can be the file whose first bytes were `stored`.

    A file only grows at its end, so its old prefix must still be a prefix now. An empty
    stored fingerprint matches anything: nothing was known.
    """
    if len(current) < len(stored):
        return False
    return current.startswith(stored)


@dataclass(slots=True)
class Released:
    """A file we let go of, remembered for as long as it exists so it is never re-read."""

    fingerprint: bytes
    offset: int
    path: str
    last_seen: float  # monotonic time a scan last found it

    def seen(self, path: str, mono: float) -> None:
        """A scan found it (again) at `path`."""
        self.last_seen, self.path = mono, path


def still_there(fid: FileId, path: str) -> bool:
    """Whether `path` still names the file `fid`."""
    try:
        return FileId.of(os.stat(path)) == fid
    except OSError:
        return False


def start_offset(
    fingerprint: bytes,
    size: int,
    *,
    released: tuple[bytes, int] | None,
    saved: tuple[bytes, int] | None,
    at_end: bool,
) -> tuple[int, str]:
    """Where to start reading a file we open, and why.

    A file we let go of (`released`) or one the DB knows (`saved`, fingerprint and offset)
    resumes at its offset if it is still that file; if its first bytes changed, or it is
    shorter than the offset, the inode was reused by another file: read it from the head.
    Otherwise files found at the first scan start at their end (`at_end`), later ones at 0.
    """
    for entry, why in ((released, "released"), (saved, "db")):
        if entry is not None:
            stored, offset = entry
            if same_content(stored, fingerprint) and size >= offset:
                return offset, why
            return 0, f"{why} entry for another file (inode reused)"
    if at_end:
        return size, "tail"
    return 0, "head"


def describe_start(offset: int, why: str, *, initial: bool) -> str:
    """Where reading a file starts (start_offset's answer), in words for the log."""
    if why == "tail":
        return "at end"
    if why == "head":
        return "from head" if initial else "new, from head"
    if why in ("db", "released"):
        return f"from offset {offset} ({'DB' if why == 'db' else 'seen before'})"
    return f"from head: {why}"
