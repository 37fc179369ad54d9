"""Give back the page cache of what has been read.

A container's memory limit counts the page cache its reads pull in: a sidecar that reads a
100 MB backlog from disk inside `memory: 128Mi` is "at its limit" on cache alone, and every
further page makes the kernel reclaim in the reader's own time (failcnt climbs, CPU goes to
reclaim). A log file is read once, front to back: what lies behind the read position is not
needed again (after a restart it is read from disk, like any cold file). So every
`DROP_EVERY` bytes a file is read, the pages behind its read position are dropped
(posix_fadvise DONTNEED). Fluent Bit's tail does the same by default (it drops the whole
file before each read); `File_Cache_Advise off` turns it off in both.

Only what the agent's reads may have pulled in from disk is dropped: what a file held when
the agent first saw it (a backlog), and all of a file once a read of it had to wait for the
disk (see reader.read_cached). Lines appended while the agent follows a file are read from
pages their writer made, which are charged to the writer's memory cgroup, not ours: dropping
them would cost our CPU for nothing. And pages still dirty are left alone:
DONTNEED would start their writeback in the agent's own time (cachestat, Linux 6.5, says
whether a range is; where it cannot, every range is dropped). The drops run in the read
thread: DONTNEED may wait (for writeback, for every CPU to give back its page lists).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import sys
from collections.abc import Sequence

from shipper.libc import libc
from shipper.tail.followed import FollowedFile
from shipper.tail.reader import Results, read_all, read_cached

DROP_EVERY = 512 * 1024  # bytes read from one file between two drops of its pages
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_ADVISE = getattr(os, "posix_fadvise", None)
_SYS_CACHESTAT = 451  # the same number on every architecture Linux added it to
_NEVER = {errno.ENOSYS, errno.EPERM}  # before Linux 6.5; a seccomp profile that refuses it
_ALL = sys.maxsize


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
        # fid -> the bytes whose cache may be ours: what the file held when first seen,
        # all of it once a read of it had to go to disk
        self._own: dict[object, int] = {}
        self._probe = DirtyProbe()
        self.left_dirty = 0  # bytes not dropped because a writer's pages were dirty

    async def read(self, files: list[FollowedFile], limit: int) -> Results:
        """Every file's new bytes (reader.read_all): what the page cache holds read in the
        loop's thread, where nothing waits for a disk; in one thread hop, the rest and the
        drops that are due (DONTNEED may wait: for writeback, for every CPU's page lists)."""
        self._forget(files)
        if self.enabled:
            own = self._own
            for f in files:
                if f.fid not in own:
                    own[f.fid] = f.size
        results = read_cached(files, limit)
        # (Any error: the thread's read says what it is, or reads what would have blocked.)
        again = [i for i, r in enumerate(results) if r[3]]
        if self.enabled:
            for i in again:  # read from disk: all of its cache is ours from now on
                self._own[files[i].fid] = _ALL
        due = [f for f in files if self._due(f)] if self.enabled else []
        if again or due:
            slow = [files[i] for i in again]
            got = await asyncio.to_thread(self._in_thread, slow, due, limit)
            for i, r in zip(again, got, strict=True):
                results[i] = r
        return results

    def _in_thread(self, slow: list[FollowedFile], due: list[FollowedFile], limit: int) -> Results:
        """The read thread's part of a pass: the drops that are due, then the reads that
        would have waited."""
        if due:
            self.behind(due)
        return read_all(slow, limit) if slow else []

    def _entry(self, f: FollowedFile) -> tuple[int, int, int]:
        """(fd, drop from, dropped up to); a file seen (or reopened) starts at its read
        position: the pages before it are not ours."""
        got = self._done.get(f.fid)
        if got is None or got[0] != f.fd:
            start = f.read_pos // _PAGE * _PAGE
            got = self._done[f.fid] = (f.fd, start, start)
        return got

    def _end(self, f: FollowedFile) -> int:
        """Where a drop of the file's pages may end: its read position (the page being
        appended to stays), within what may be ours."""
        return min(f.read_pos, self._own.get(f.fid, _ALL)) // _PAGE * _PAGE

    def _due(self, f: FollowedFile) -> bool:
        return self._end(f) - self._entry(f)[2] >= DROP_EVERY

    def behind(self, files: Sequence[FollowedFile]) -> int:
        """Drop the pages behind each file's read position, once DROP_EVERY more bytes are
        behind it; returns the bytes advised away (for tests and telemetry).

        Each drop covers everything from where dropping started: the kernel drops only whole
        folios inside the range, and readahead makes folios of up to megabytes, so one that
        straddled the last drop's end goes with the next drop (empty ranges cost little). A
        range with dirty pages is passed over, and the next drop starts after it."""
        if _ADVISE is None:
            return 0
        dropped = 0
        for f in files:
            fd, start, upto = self._entry(f)
            end = self._end(f)
            if end - upto < DROP_EVERY:
                continue
            if self._probe.dirty(fd, upto, end - upto):
                self.left_dirty += end - upto
                self._done[f.fid] = (fd, end, end)
                continue
            with contextlib.suppress(OSError):
                _ADVISE(fd, start, end - start, os.POSIX_FADV_DONTNEED)
                dropped += end - upto
            self._done[f.fid] = (fd, start, end)
        return dropped

    def _forget(self, files: list[FollowedFile]) -> None:
        """Forget files no longer followed (now and then: `files` is every open one)."""
        if len(self._done) + len(self._own) > 4 * len(files) + 128:
            live = {f.fid for f in files}
            self._done = {k: v for k, v in self._done.items() if k in live}
            self._own = {k: v for k, v in self._own.items() if k in live}
