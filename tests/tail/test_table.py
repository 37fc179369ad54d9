"""FileTable in process, on real files: what each scan changes."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.lines import PlainHandler, SourceContext
from shipper.tail import discovery
from shipper.tail.followed import FollowedFile
from shipper.tail.identity import FileId
from shipper.tail.splitter import LineRules, LineSplitter
from shipper.tail.table import FileTable, ScanEvents

pytestmark = pytest.mark.unit

RULES = LineRules(max_line=1024, skip_long=False, skip_empty=False, want_offsets=False)


def _scan(table: FileTable, pattern: str) -> ScanEvents:
    return table.reconcile(discovery.expand([pattern], [], table.pinned()), time.monotonic())


def _follow(table: FileTable, events: ScanEvents) -> list[FollowedFile]:
    opened = []
    for fid, item in events.opened:
        fd = os.open(item.open_path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        split = LineSplitter(
            handler=PlainHandler(SourceContext(path=item.path, real_path=item.path)),
            rules=RULES,
            offset=size,
        )
        f = FollowedFile(
            fid=fid,
            fd=fd,
            path=item.path,
            real_path=item.path,
            fingerprint=os.pread(fd, 256, 0),
            splitter=split,
            tag="t",
            notify=lambda f, n: None,
            size=size,
        )
        table.add(f, item)
        opened.append(f)
    return opened


def test_a_scan_opens_new_files_once(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"a\n")
    (tmp_path / "b.log").write_bytes(b"b\n")
    table = FileTable()
    pattern = str(tmp_path / "*.log")
    ev = _scan(table, pattern)
    assert sorted(item.path for _, item in ev.opened) == [
        str(tmp_path / "a.log"),
        str(tmp_path / "b.log"),
    ]
    files = _follow(table, ev)
    again = _scan(table, pattern)
    assert not again.opened and not again.rotated and not again.unmatched
    assert all(f.matched for f in files)
    for f in files:
        f.close()


def test_a_rename_inside_the_glob_is_a_rotation_and_outside_an_unmatch(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"one\n")
    table = FileTable()
    pattern = str(tmp_path / "x.log*")
    (f,) = _follow(table, _scan(table, pattern))
    log.rename(tmp_path / "x.log.1")
    log.write_bytes(b"new file\n")
    ev = _scan(table, pattern)
    assert ev.rotated == [(f, str(log))]
    assert f.cur_path == str(tmp_path / "x.log.1") and f.gone
    assert [item.path for _, item in ev.opened] == [str(log)]
    (tmp_path / "x.log.1").rename(tmp_path / "elsewhere")
    ev = _scan(table, pattern)
    assert ev.unmatched == [f] and not f.matched
    ev = _scan(table, pattern)
    assert ev.unmatched == []  # said once
    f.close()
    for g in table.files.values():
        g.close()


def test_released_files_stay_released_until_they_grow_or_vanish(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    log.write_bytes(b"done\n")
    table = FileTable(ttl=0.0)
    pattern = str(tmp_path / "*.log")
    (f,) = _follow(table, _scan(table, pattern))
    f.close()
    table.release(f, time.monotonic())
    fid = FileId.of(log.stat())
    assert fid in table.released and fid not in table.files
    assert not _scan(table, pattern).opened  # did not grow
    with log.open("ab") as w:
        w.write(b"more\n")
    assert [i for i, _ in _scan(table, pattern).opened] == [fid]
    log.unlink()
    assert _scan(table, pattern).forgotten == [fid]
    assert not table.released


def test_a_deleted_file_is_not_remembered(tmp_path: Path) -> None:
    log = tmp_path / "d.log"
    log.write_bytes(b"x\n")
    table = FileTable()
    (f,) = _follow(table, _scan(table, str(tmp_path / "*.log")))
    log.unlink()
    assert f.observe(2, 0, 0, time.monotonic()) is None
    assert f.deleted and f.gone
    f.close()
    table.release(f, time.monotonic())
    assert not table.files and not table.released


def test_take_all_empties_the_table(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"a\n")
    table = FileTable()
    (f,) = _follow(table, _scan(table, str(tmp_path / "*.log")))
    files, released = table.take_all()
    assert files == [f] and released == {} and not table.files and not table.pinned()
    handed = f.export()
    assert handed.fd >= 0 and f.fd == -1 and handed.offset == 2
    os.close(handed.fd)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["create", "grow", "rotate", "move_out", "delete"]), st.integers(0, 2)
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_any_sequence_of_file_operations_keeps_the_books_straight(
    ops: list[tuple[str, int]],
) -> None:
    """Real files created, grown, renamed inside and out of the glob and deleted, in any
    order, a scan after each step: every file the glob matches is followed exactly once (or
    released and unchanged), under the name the scan found it by; what the glob lost is
    unmatched; nothing is opened twice."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "out").mkdir()
        pattern = str(d / "*.log*")
        table = FileTable(ttl=0.0)
        followed: list[FollowedFile] = []
        serial = 0
        try:
            for op, n in ops:
                serial += 1
                _apply(d, op, n, serial)
                found = discovery.expand([pattern], [], table.pinned())
                before = set(table.files)
                ev = table.reconcile(found, time.monotonic())
                opened = [fid for fid, _ in ev.opened]
                assert len(opened) == len(set(opened)) and not set(opened) & before
                followed += _follow(table, ev)
                by_fid = {FileId.of(item.st): path for path, item in found.items()}
                for fid, path in by_fid.items():
                    if fid in table.files:
                        f = table.files[fid]
                        assert f.matched and f.cur_path == path
                    else:  # released and not grown since
                        assert fid in table.released
                for fid, f in table.files.items():
                    if fid not in by_fid:
                        assert not f.matched
                for f in ev.unmatched:
                    assert f.fid not in by_fid
                # let go of what left the glob, as the input does after Rotate_Wait
                for f in [f for f in table.files.values() if not f.matched]:
                    f.close()
                    table.release(f, time.monotonic())
        finally:
            for f in followed:
                f.close()


def _apply(d: Path, op: str, n: int, serial: int) -> None:
    log = d / f"f{n}.log"
    if op == "create" and not log.exists():
        log.write_bytes(b"line %d\n" % serial)
    elif op == "grow" and log.exists():
        with log.open("ab") as w:
            w.write(b"more %d\n" % serial)
    elif op == "rotate" and log.exists():
        log.rename(d / f"f{n}.log.{serial}")  # still matched: a rotation
    elif op == "move_out" and log.exists():
        log.rename(d / "out" / f"f{n}.{serial}")  # no longer matched
    elif op == "delete" and log.exists():
        log.unlink()
