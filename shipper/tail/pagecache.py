"""Give back the page cache of what has been read.

A container's memory limit counts the page cache its reads pull in: a sidecar that reads a
100 MB backlog from disk inside `memory: 128Mi` is "at its limit" on cache alone, and every
further page makes the kernel reclaim in the reader's own time (failcnt climbs, CPU goes to
reclaim). A log file is read once, front to back: what lies behind the read position is not
needed again (after a restart it is read from disk, like any cold file). So every
`DROP_EVERY` bytes a file is read, the pages behind its read position are dropped
(posix_fadvise DONTNEED). Fluent Bit's tail does the same by default (it drops the whole
file before each read); `File_Cache_Advise off` turns it off in both.

Pages still dirty are left alone: they hold lines a writer wrote moments ago (the cache is
the writer's charge, not ours), and DONTNEED would start their writeback in the agent's own
time, which at a live 100k lines/s was a tenth of the agent's CPU. The kernel says whether a
range is dirty (cachestat, Linux 6.5); where it cannot, every range is dropped as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
from collections.abc import Sequence

from shipper.libc import libc
from shipper.tail.followed import FollowedFile
from shipper.tail.reader import read_all, read_cached

Results = list[tuple[bytes, int, int, int]]  # reader.read_all's

DROP_EVERY = 512 * 1024  # bytes read from one file between two drops of its pages
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_ADVISE = getattr(os, "posix_fadvise", None)
_SYS_CACHESTAT = 451  # the same number on every architecture Linux added it to
_NEVER = {errno.ENOSYS, errno.EPERM}  # before Linux 6.5; a seccomp profile that refuses it


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [
        ("nr_cache", ctypes.c_uint64),
        ("nr_dirty", ctypes.c_uint64),
        ("nr_writeback", ctypes.c_uint64),
        ("nr_evicted", ctypes.c_uint64),
        ("nr_recently_evicted", ctypes.c_uint64),
    ]


class DirtyProbe:
    """Does [start, start + length) of a file hold dirty pages? None: the kernel cannot say
    (before 6.5, not Linux, or a seccomp profile refuses it); asked once, then not again."""

    def __init__(self) -> None:
        lib = libc() if hasattr(os, "posix_fadvise") else None
        self._syscall = getattr(lib, "syscall", None)
        self._stat = _Stat()

    def dirty(self, fd: int, start: int, length: int) -> bool | None:
        call = self._syscall
        if call is None:
            return None
        rng = _Range(start, length)
        long = ctypes.c_long  # syscall(2) takes longs
        ret = call(
            long(_SYS_CACHESTAT), long(fd), ctypes.byref(rng), ctypes.byref(self._stat), long(0)
        )
        if ret != 0:
            if ctypes.get_errno() in _NEVER:
                self._syscall = None  # drop every range from now on
            return None
        return bool(self._stat.nr_dirty or self._stat.nr_writeback)


class Dropper:
    """The read pass, and where each open file's pages were last dropped up to."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled and _ADVISE is not None  # File_Cache_Advise
        # fid -> (fd, drop from, dropped or passed up to)
        self._done: dict[object, tuple[int, int, int]] = {}
        self._probe = DirtyProbe()
        self.left_dirty = 0  # bytes not dropped because a writer's pages were dirty
        self._owed = False  # a drop the loop's thread left to the read thread

    async def read(self, files: list[FollowedFile], limit: int) -> Results:
        """Every file's new bytes (reader.read_all): what the page cache holds read in the
        loop's thread, where nothing waits for a disk; a cold file's bytes, and a drop that
        might start writeback, in one thread hop."""
        results = self._read_cached(files, limit)
        if results is None:
            return await asyncio.to_thread(self.read_all, files, limit)
        # (Any error: the thread's read says what it is, or reads what would have blocked.)
        cold = [i for i, r in enumerate(results) if r[3]]
        if cold:
            again = await asyncio.to_thread(self.read_all, [files[i] for i in cold], limit)
            for i, r in zip(cold, again, strict=True):
                results[i] = r
        return results

    def read_all(self, files: list[FollowedFile], limit: int) -> Results:
        """reader.read_all, after dropping what is behind (both in the read thread)."""
        if self.enabled:
            self.behind(files)
        return read_all(files, limit)

    def _read_cached(self, files: list[FollowedFile], limit: int) -> Results | None:
        """reader.read_cached after the drops that cannot wait for a disk (ranges the kernel
        says are clean); None: one that might is due, the whole pass goes to the thread."""
        if self.enabled:
            self._owed = False
            self.behind(files, blocking=False)
            if self._owed:
                return None
        return read_cached(files, limit)

    def behind(self, files: Sequence[FollowedFile], *, blocking: bool = True) -> int:
        """Drop the pages behind each file's read position, once DROP_EVERY more bytes are
        behind it; returns the bytes advised away (for tests and telemetry).

        Each drop covers everything from where dropping started: the kernel drops only whole
        folios inside the range, and readahead makes folios of up to megabytes, so one that
        straddled the last drop's end goes with the next drop (empty ranges cost little). A
        range with dirty pages is passed over, and the next drop starts after it. Not
        `blocking` (the loop's thread): a range the kernel cannot say is clean is left for
        the read thread (`_owed`), as DONTNEED would start its writeback."""
        if _ADVISE is None:
            return 0
        dropped = 0
        for f in files:
            fd, start, upto = self._done.get(f.fid, (-1, 0, 0))
            if fd != f.fd:  # a file (re)opened: its pages before the start are not ours
                fd, start = f.fd, f.read_pos // _PAGE * _PAGE
                upto = start
                self._done[f.fid] = (fd, start, upto)
            end = f.read_pos // _PAGE * _PAGE  # the page being appended to stays
            if end - upto < DROP_EVERY:
                continue
            dirty = self._probe.dirty(fd, upto, end - upto)
            if dirty is None and not blocking:
                self._owed = True
                continue
            if dirty:
                self.left_dirty += end - upto
                self._done[f.fid] = (fd, end, end)
                continue
            with contextlib.suppress(OSError):
                _ADVISE(fd, start, end - start, os.POSIX_FADV_DONTNEED)
                dropped += end - upto
            self._done[f.fid] = (fd, start, end)
        if len(self._done) > 2 * len(files) + 64:  # forget closed files now and then
            live = {f.fid for f in files}
            self._done = {k: v for k, v in self._done.items() if k in live}
        return dropped
