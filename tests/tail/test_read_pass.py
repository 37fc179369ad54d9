"""The read pass (reader.read_all): the C helper (shipper/tail/_fastread.c) and the Python loop
return the same thing for the same files: growth, limits, truncation, deletion, a bad fd."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import shipper.tail.reader as reader_mod
from shipper.chunk import Chunk
from shipper.lines import PlainHandler, SourceContext
from shipper.tail.batch import PassBatch
from shipper.tail.followed import FollowedFile
from shipper.tail.identity import FileId
from shipper.tail.pagecache import Dropper
from shipper.tail.reader import WOULD_BLOCK, read_all, read_cached
from shipper.tail.splitter import LineRules, LineSplitter
from tests.extensions import IMPLS
from tests.extensions import implementation as native_or_python
from tests.tail.test_pagecache import _cached_file, resident
from tests.tail.test_pagecache import cold as _cold

pytestmark = pytest.mark.unit

_BUILT = reader_mod._native


def implementation(impl: str) -> contextlib.AbstractContextManager[None]:
    return native_or_python(reader_mod, _BUILT, impl)


def test_the_c_read_pass_is_built_where_a_compiler_is() -> None:
    if os.environ.get("SHIPPER_NO_EXTENSIONS"):
        assert not reader_mod.native()
    elif shutil.which("cc") or shutil.which("gcc"):
        assert reader_mod.native(), "pip install . builds shipper/tail/_fastread.c"


RULES = LineRules(max_line=32768, skip_long=False, skip_empty=False, want_offsets=False)


def _open(path: Path, offset: int = 0, size: int | None = None) -> FollowedFile:
    fd = os.open(path, os.O_RDONLY)
    ctx = SourceContext(path=str(path), real_path=str(path), path_key=None, offset_key=None)
    return FollowedFile(
        fid=FileId.of(os.fstat(fd)),
        fd=fd,
        path=str(path),
        real_path=str(path),
        fingerprint=b"",
        splitter=LineSplitter(handler=PlainHandler(ctx), rules=RULES, offset=offset),
        tag="t",
        notify=lambda f, n: None,
        size=offset if size is None else size,
    )


def _pass(files: list[FollowedFile], limit: int) -> dict[str, list[tuple[bytes, int, int, int]]]:
    out = {}
    for impl in IMPLS:
        with implementation(impl):
            out[impl] = read_all(files, limit)
    return out


def test_both_read_the_same_bytes_sizes_and_links(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    big.write_bytes(bytes(range(256)) * 1000)  # every byte value, 256,000 bytes
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    small = tmp_path / "small.log"
    small.write_bytes(b"one\ntwo\n")
    files = [_open(big), _open(empty), _open(small), _open(big, offset=255_990)]
    try:
        for limit in (0, 1, 5, 4096, 1 << 20):
            got = _pass(files, limit)
            assert got["c"] == got["python"], limit
            content = bytes(range(256)) * 1000
            assert [row[0] for row in got["c"]] == [
                content[:limit],
                b"",
                b"one\ntwo\n"[:limit],
                content[255_990 : 255_990 + limit],
            ]
            assert [row[1:] for row in got["c"]] == [
                (256_000, 1, 0),
                (0, 1, 0),
                (8, 1, 0),
                (256_000, 1, 0),
            ]
    finally:
        for f in files:
            f.close()


def test_both_see_truncation_deletion_and_a_bad_descriptor(tmp_path: Path) -> None:
    cut = tmp_path / "cut.log"
    cut.write_bytes(b"x" * 100)
    gone = tmp_path / "gone.log"
    gone.write_bytes(b"last words\n")
    files = [_open(cut, offset=100), _open(gone), _open(cut)]
    cut.write_bytes(b"y" * 10)  # copytruncate: shorter than what was read
    gone.unlink()  # still open: readable, no link left
    os.close(files[2].fd)  # a descriptor that is no longer valid
    try:
        got = _pass(files, 4096)
        assert got["c"] == got["python"]
        assert got["c"] == [
            (b"", 10, 1, 0),  # size below read_pos: the input's truncation check fires
            (b"last words\n", 11, 0, 0),  # nlink 0: deleted, drained
            (b"", 0, 1, errno.EBADF),  # reported as an error, nothing read
        ]
    finally:
        files[0].close()
        files[1].close()


def test_both_read_on_from_where_the_last_pass_ended(tmp_path: Path) -> None:
    log = tmp_path / "grow.log"
    log.write_bytes(b"")
    f = _open(log)
    try:
        with log.open("ab") as w:
            for n in range(1, 6):
                w.write(b"%d\n" % n)
                w.flush()
                got = _pass([f], 4096)
                assert got["c"] == got["python"] == [(b"%d\n" % n, log.stat().st_size, 1, 0)]
                f.splitter.ingest(got["c"][0][0], 0.0)
    finally:
        f.close()


@pytest.mark.skipif(not hasattr(os, "O_NOATIME"), reason="O_NOATIME is Linux's")
def test_files_are_opened_without_atime_updates_where_allowed(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    import fcntl

    log = tmp_path / "mine.log"
    log.write_bytes(b"x\n")
    fd = reader_mod.open_file(str(log))
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NOATIME  # our own file: allowed
    finally:
        os.close(fd)
    if os.geteuid() != 0:
        return
    # Not the owner and no CAP_FOWNER (root's file, read by `nobody`): O_NOATIME is refused
    # with EPERM, and the file is opened as usual. A forked child drops to `nobody` (the
    # interpreter may live where `nobody` cannot exec it).
    # (pytest's tmp_path lies under a directory only root may enter: a world-readable one.)
    shared = Path(tempfile.mkdtemp(prefix="shipper-noatime-", dir="/tmp"))
    shared.chmod(0o755)
    log = shared / "root.log"
    log.write_bytes(b"x\n")
    log.chmod(0o644)
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            child_fd = reader_mod.open_file(str(log))
            noatime = fcntl.fcntl(child_fd, fcntl.F_GETFL) & os.O_NOATIME
            os.write(w, os.read(child_fd, 10) + (b"noatime" if noatime else b"plain"))
            code = 0
        except BaseException as exc:
            os.write(w, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        said = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, said
    assert said == b"x\nplain"


def test_a_big_pass_is_emitted_in_chunks_each_acknowledging_its_own_files(
    tmp_path: Path,
) -> None:
    """A pass that reads more than CHUNK_READ: a chunk is full once it holds that much read
    (each one output payload), in the files' order; acknowledging one moves only its files'
    offsets."""
    settled: list[list[str]] = []
    batch = PassBatch(lambda acks, cost: settled.append([a.ledger.owner.path for a in acks]))
    files = []
    for i in range(5):
        p = tmp_path / f"{i}.log"
        p.write_bytes(b"%d line\n" % i * (200 * 1024 // 7))
        files.append(_open(p))
    for f, (data, _, _, _) in zip(files, read_all(files, 256 * 1024), strict=True):
        records, end = f.splitter.ingest(data, 0.0)
        batch.add(f, records, end, len(data))
    chunks: list[Chunk] = []
    batch.flush(chunks.append)
    per = 200 * 1024 // 7  # lines of one file
    assert [c.count for c in chunks] == [3 * per, 2 * per]  # 600 KiB read: full
    assert [r["log"][0] for c in chunks for r in c.records[:: c.count - 1]] == list("0234")
    assert all(f.ledger.acked == 0 for f in files)
    chunks[1].hold()  # an output takes it
    chunks[1].release()  # the router is done with it
    assert settled == [] and all(f.ledger.acked == 0 for f in files)
    chunks[1].release()  # the output delivered it: files 3 and 4, and nothing else
    assert settled == [[str(tmp_path / "3.log"), str(tmp_path / "4.log")]]
    size = os.path.getsize(files[3].path)
    assert [f.ledger.acked for f in files] == [0, 0, 0, size, size]
    for f in files:
        f.close()


class _Hops:
    """A Dropper whose thread hops are counted (the files each one read)."""

    def __init__(self) -> None:
        self.pages = Dropper()
        self.hops: list[list[str]] = []
        real = self.pages._in_thread

        def counted(
            slow: list[FollowedFile], due: list[FollowedFile], limit: int
        ) -> list[tuple[bytes, int, int, int]]:
            self.hops.append([Path(f.path).name for f in slow])
            return real(slow, due, limit)

        self.pages._in_thread = counted  # type: ignore[method-assign]


@pytest.mark.parametrize("impl", IMPLS)
async def test_cached_bytes_are_read_without_a_thread_hop_cold_ones_in_one(
    tmp_path: Path, impl: str
) -> None:
    """A file its writer just filled is read from the page cache in the loop's thread
    (preadv2 RWF_NOWAIT); a file whose bytes are on disk only goes to the read thread. The
    bytes are read_all's either way."""
    warm, cold = tmp_path / "warm.log", tmp_path / "cold.log"
    _cached_file(warm, MIB_4)
    _cached_file(cold, MIB_4)
    _cold(cold)
    if resident(cold, 0, MIB_4):
        pytest.skip("this filesystem keeps its pages (tmpfs): nothing is ever cold here")
    files = [_open(warm), _open(cold)]
    want = read_all(files, 64 * 1024)
    try:
        with implementation(impl):
            # A refused read starts the file's readahead, which on a fast disk may be done
            # before the refusal: then the bytes come back read. Refused at least once:
            for _ in range(20):
                _cold(cold)
                now = read_cached(files, 64 * 1024)
                assert now[0] == want[0]
                if now[1][3] in WOULD_BLOCK:
                    assert now[1][0] == b""
                    break
                assert now[1] == want[1]
            else:
                pytest.fail("the cold file's bytes were never refused")
            for _ in range(20):
                counted = _Hops()
                _cold(cold)
                assert await counted.pages.read(files, 64 * 1024) == want
                if counted.hops:
                    break
            assert counted.hops == [["cold.log"]]  # the cold file alone took the hop
            counted.hops.clear()
            assert await counted.pages.read(files[:1], 64 * 1024) == want[:1]
            assert counted.hops == []  # all of it cached: no hop at all
    finally:
        for f in files:
            f.close()


def _ingest_to(files: list[FollowedFile], pos: int) -> None:
    """Read on to `pos` in each file (as passes would have)."""
    for f in files:
        with open(f.path, "rb") as fh:
            f.splitter.ingest(fh.read(pos - f.read_pos), 0.0)


async def test_only_what_may_be_ours_is_dropped_in_the_read_thread(tmp_path: Path) -> None:
    """What a file held when first seen (a backlog) may have come from disk: the pages
    behind the read position are dropped, in the read thread (DONTNEED may wait), DROP_EVERY
    bytes at a time. Lines appended since are in pages their writer made, its charge: they
    stay."""
    backlog, live = tmp_path / "backlog.log", tmp_path / "live.log"
    _cached_file(backlog, MIB_4)
    live.write_bytes(b"")
    files = [_open(backlog, size=MIB_4), _open(live)]
    try:
        counted = _Hops()
        await counted.pages.read(files, 4096)  # first sight: all of it cached, no hop
        assert counted.hops == []
        _cached_file(live, MIB_4)  # then its writer appends (and it is written back: clean)
        _ingest_to(files, 2 * MIB)
        await counted.pages.read(files, 4096)
        assert counted.hops == [[]]  # a drop only, of the backlog
        assert resident(backlog, 0, MIB) == 0  # dropped there (whole folios: see behind())
        assert resident(live, 0, 2 * MIB) == 2 * MIB
        counted.hops.clear()
        await counted.pages.read(files, 4096)
        assert counted.hops == []  # nothing more due
    finally:
        for f in files:
            f.close()


MIB = 1024 * 1024
MIB_4 = 4 * MIB


async def test_an_error_of_the_cached_read_is_the_thread_reads(tmp_path: Path) -> None:
    """Whatever the read without waiting refuses goes to the thread, whose read reports the
    file's real error (here a descriptor no longer valid), as read_all does."""
    log = tmp_path / "a.log"
    log.write_bytes(b"x\n")
    f = _open(log)
    os.close(f.fd)
    counted = _Hops()
    assert await counted.pages.read([f], 4096) == [(b"", 0, 1, errno.EBADF)]
    assert counted.hops == [["a.log"]]
