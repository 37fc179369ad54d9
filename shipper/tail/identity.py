"""File identity: (device, inode) checked against a fingerprint of the first bytes.

While we hold a file open its inode cannot be reused, so (dev, ino) alone is exact for open
files. For files we let go of (and for offsets in the DB) the inode may have been freed and
reused by another file within seconds, as Ray's rotation does: the fingerprint tells them apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

FINGERPRINT_BYTES = 256


@dataclass(frozen=True, slots=True)
class FileId:
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
