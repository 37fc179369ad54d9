"""The read pass: every followed file's new bytes, from the page cache without a thread hop
or in one thread hop, and the cheap checks around it (has anything changed, how far behind is
each file)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from typing import Any

from shipper.extensions import optional
from shipper.tail.followed import FollowedFile

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


Results = list[tuple[bytes, int, int, int]]  # (data, size, nlink, errno) per file


def read_all(files: list[FollowedFile], limit: int, *, nowait: bool = False) -> Results:
    """The whole pass: fstat + pread of every open file, in order: (data, size, nlink,
    errno) each, errno 0 when both calls worked (else no data, size 0). `nowait`: see
    read_cached.

    The C helper (shipper/tail/_fastread.c) does the same in two GIL-free loops: with
    thousands of files, this loop's Python steps cost more than its system calls."""
    if _native is not None:
        got: Results = _native.read_many(
            [f.fd for f in files], [f.splitter.read_pos for f in files], limit, nowait
        )
        return got
    out: Results = []
    for f in files:
        try:
            data, size, nlink = _read_one(f.fd, f.splitter.read_pos, limit, nowait=nowait)
        except OSError as exc:
            out.append((b"", 0, 1, exc.errno or errno.EIO))
            continue
        out.append((data, size, nlink, 0))
    return out


_NOWAIT = getattr(os, "RWF_NOWAIT", None)
# What a read that must not wait answers for a file whose bytes are not in the page cache
# (or whose filesystem cannot tell): read it in a thread.
WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EOPNOTSUPP, errno.ENOSYS})


def read_cached(files: list[FollowedFile], limit: int) -> Results:
    """read_all without waiting for a disk: only the bytes the page cache holds (preadv2
    RWF_NOWAIT, Linux), errno in WOULD_BLOCK for a file whose next bytes are not there.

    A log being written is read from the page cache its writer just filled: the read pass
    then needs no thread hop (two context switches and a wake-up of the loop), and only a
    cold file's read waits in a thread."""
    return read_all(files, limit, nowait=True)


def _read_one(fd: int, pos: int, limit: int, *, nowait: bool = False) -> tuple[bytes, int, int]:
    """fstat and read up to `limit` new bytes from `pos`: (data, size, nlink)."""
    st = os.fstat(fd)
    size = st.st_size
    if size <= pos or limit <= 0:
        return b"", size, st.st_nlink
    want = min(size - pos, limit)
    if not nowait:
        return os.pread(fd, want, pos), size, st.st_nlink
    if _NOWAIT is None:
        raise OSError(errno.EOPNOTSUPP, "no RWF_NOWAIT here")
    buf = bytearray(want)
    got = os.preadv(fd, [buf], pos, _NOWAIT)
    return bytes(memoryview(buf)[:got]), size, st.st_nlink


def any_changed(files: list[FollowedFile]) -> bool:
    """Has any file bytes not read yet, or shrunk, or lost its last link? (fstat of an open
    local file does not block: the loop does it without a thread hop.)"""
    for f in files:
        try:
            st = os.fstat(f.fd)
        except OSError:
            return True
        if (
            st.st_size != f.splitter.read_pos or st.st_nlink == 0
        ):  # unread bytes, truncated, deleted
            return True
    return False


def bytes_behind(files: Iterable[FollowedFile]) -> dict[str, int]:
    """Bytes not read per file, by fstat at scrape time (read passes stop while paused)."""
    out: dict[str, int] = {}
    for f in files:
        if f.fd >= 0:
            with contextlib.suppress(OSError):
                out[f.path] = max(0, os.fstat(f.fd).st_size - f.splitter.read_pos)
    return out
