"""What has been read leaves the page cache (shipper/tail/pagecache.py): a sidecar's memory
limit counts the cache its reads pull in. Residency is asked of the kernel (mincore)."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from shipper.tail.pagecache import DROP_EVERY, Dropper
from tests.agent import Agent, wait_for

PAGE = mmap.PAGESIZE
MIB = 1024 * 1024
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident(path: Path, start: int, end: int) -> int:
    """Bytes of [start, end) of `path` in the page cache (mincore over a read-only mapping)."""
    size = os.path.getsize(path)
    pages = (size + PAGE - 1) // PAGE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            assert _libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)
    return PAGE * sum(1 for i in range(start // PAGE, min(pages, end // PAGE)) if vec[i] & 1)


def _cached_file(path: Path, nbytes: int, line: int = 2048) -> None:
    row = b"x" * (line - 1) + b"\n"
    with open(path, "wb") as f:
        f.write(row * (nbytes // line))
        f.flush()
        os.fdatasync(f.fileno())  # clean pages: only those can be dropped
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass  # now all of it is in the page cache


def test_pages_behind_the_read_position_are_dropped(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    _cached_file(log, 12 * MIB)
    size = log.stat().st_size
    assert resident(log, 0, size) > size * 0.9
    fd = os.open(log, os.O_RDONLY)
    try:
        f = SimpleNamespace(fid=(1, 2), fd=fd, read_pos=0)
        drop = Dropper()
        files = cast(Any, [f])
        assert drop.behind(files) == 0  # opened here: nothing behind it yet
        f.read_pos = DROP_EVERY - PAGE
        assert drop.behind(files) == 0  # not DROP_EVERY behind yet: no system call
        assert resident(log, 0, DROP_EVERY - PAGE) == DROP_EVERY - PAGE
        f.read_pos = 8 * MIB + 100
        assert drop.behind(files) == 8 * MIB
        # Readahead's folios can be megabytes: one straddling 8 MiB may stay till next time.
        assert resident(log, 0, 6 * MIB) == 0
        assert resident(log, 10 * MIB, size) > MIB  # not read yet: kept
    finally:
        os.close(fd)


def cold(path: Path) -> None:
    """Out of the page cache: written back, then dropped."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.timeout(60)
def test_the_agent_gives_back_the_cache_of_what_it_read(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    """A file read from disk: the cache its reads pulled in is the agent's charge."""
    log = tmp_path / "big.log"
    _cached_file(log, 16 * MIB)
    cold(log)
    size = log.stat().st_size
    agent = Agent(["-c", conf(str(log), Ray_Metadata="off", Read_from_Head="on")])
    try:
        agent.wait_records(size // 2048, timeout=30)
        # Every page at least two drops behind the end is gone; the file itself is intact.
        behind = size - 4 * MIB
        wait_for(lambda: resident(log, 0, behind) == 0, 10, "the read pages to leave the cache")
    finally:
        assert agent.stop() == 0
    assert log.stat().st_size == size
    assert len(agent.records) == size // 2048


@pytest.mark.timeout(60)
def test_a_writers_cached_pages_are_left_to_it(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    """Lines appended while the agent follows the file are in pages their writer made: the
    writer's charge, and dropping them would cost the agent's CPU for nothing."""
    log = tmp_path / "big.log"
    log.write_bytes(b"")
    agent = Agent(["-c", conf(str(log), Ray_Metadata="off", Read_from_Head="on")])
    try:
        agent.wait_stderr("initial scan done")
        _cached_file(log, 8 * MIB)  # the writer's lines, written back: clean pages
        size = log.stat().st_size
        agent.wait_records(size // 2048, timeout=30)
        assert resident(log, 0, size) > size * 0.9
    finally:
        assert agent.stop() == 0


@pytest.mark.timeout(60)
def test_file_cache_advise_off_leaves_the_cache_alone(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "big.log"
    _cached_file(log, 8 * MIB)
    cold(log)
    size = log.stat().st_size
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on", File_Cache_Advise="off")
    agent = Agent(["-c", cfg])
    try:
        agent.wait_records(size // 2048, timeout=30)
        assert resident(log, 0, size) > size * 0.9
    finally:
        assert agent.stop() == 0


def _dirty_file(path: Path, nbytes: int) -> None:
    """Written and not synced: a writer's fresh lines (the kernel writes them back in ~30 s)."""
    with open(path, "wb") as f:
        f.write((b"y" * 2047 + b"\n") * (nbytes // 2048))


def test_a_writers_dirty_pages_are_left_to_it(tmp_path: Path) -> None:
    """DONTNEED would start their writeback in the agent's time; the cache is the writer's."""
    log = tmp_path / "live.log"
    _dirty_file(log, 12 * MIB)
    fd = os.open(log, os.O_RDONLY)
    try:
        drop = Dropper()
        if drop._probe.dirty(fd, 0, 4 * MIB) is None:
            pytest.skip("the kernel cannot say which pages are dirty (cachestat, Linux 6.5)")
        assert drop._probe.dirty(fd, 0, 4 * MIB) is True
        f = SimpleNamespace(fid=(1, 3), fd=fd, read_pos=0)
        files = cast(Any, [f])
        drop.behind(files)
        f.read_pos = 4 * MIB
        assert drop.behind(files) == 0
        assert drop.left_dirty == 4 * MIB
        assert drop._probe.dirty(fd, 0, 4 * MIB) is True  # no writeback was started
        assert resident(log, 0, 4 * MIB) == 4 * MIB
        # Written back (clean) now: what is read from here on is dropped, from here on.
        os.fsync(fd)
        f.read_pos = 10 * MIB + 100
        assert drop.behind(files) == 6 * MIB
        assert resident(log, 4 * MIB, 8 * MIB) == 0  # (a folio straddling 10 MiB may stay)
        assert resident(log, 0, 4 * MIB) == 4 * MIB  # passed over: the writer's to age out
    finally:
        os.close(fd)


def test_without_cachestat_every_range_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "a.log"
    _cached_file(log, 4 * MIB)
    import shipper.tail.pagecache as pagecache

    monkeypatch.setattr(pagecache, "_SYS_CACHESTAT", 100_000)  # no such system call: ENOSYS
    fd = os.open(log, os.O_RDONLY)
    try:
        drop = Dropper()
        f = SimpleNamespace(fid=(1, 4), fd=fd, read_pos=0)
        files = cast(Any, [f])
        drop.behind(files)
        f.read_pos = 2 * MIB
        assert drop.behind(files) == 2 * MIB
        assert drop._probe._syscall is None  # asked once, not again
        assert resident(log, 0, MIB) == 0
    finally:
        os.close(fd)
