"""The scan's expansion (discovery.expand) finds exactly what glob.glob finds, with the
same identity, on its fast path (a wildcard in the file name only) and off it."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from shipper.tail import discovery
from shipper.tail.identity import FileId

pytestmark = pytest.mark.unit


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "session_x" / "logs"
    d.mkdir(parents=True)
    for name in ("raylet.out", "a.log", ".hidden.log", "b.txt", "[x].log", "é.log", "c.log.1"):
        (d / name).write_text(name)
    (d / "dir.log").mkdir()  # a directory that matches: never followed
    (d / "dir.log" / "inner.log").write_text("no")
    (d / "link.log").symlink_to(d / "a.log")  # a link to a file: its target's identity
    (d / "dangling.log").symlink_to(d / "gone")  # nothing to read
    return d


def _reference(pattern: str) -> dict[str, FileId]:
    return {p: FileId.of(os.stat(p)) for p in sorted(glob.glob(pattern)) if os.path.isfile(p)}


@pytest.mark.parametrize(
    "pattern",
    ["*", "*.log", ".*", "?.log", "[ab]*", "*[!g]", "**", "[[]x].log", "é*", "*.log.?", "nope*"],
)
def test_expand_finds_what_glob_finds(logs: Path, pattern: str) -> None:
    full = str(logs / pattern)
    got = discovery.expand([full], [])
    assert {p: FileId.of(f.st) for p, f in got.items()} == _reference(full)
    assert all(f.open_path == p for p, f in got.items())


def test_expand_off_the_fast_path_and_relative(logs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wild_dir = str(logs.parent.parent / "session_*" / "logs" / "*.log")
    assert discovery.expand([wild_dir], []).keys() == _reference(wild_dir).keys()
    plain = str(logs / "a.log")  # no wildcard at all
    assert list(discovery.expand([plain], [])) == [plain]
    monkeypatch.chdir(logs)
    assert discovery.expand(["*.log"], []).keys() == _reference("*.log").keys()
    assert discovery.expand([str(logs / "missing" / "*")], []) == {}


def test_a_pinned_file_under_the_same_entry_is_not_stat_again(logs: Path) -> None:
    """`pinned` (files the caller holds open): listed under the same directory entry, the old
    stat stands for the file; an entry replaced by another file is stat again."""
    pattern = str(logs / "*.log")
    first = discovery.expand([pattern], [])
    a = str(logs / "a.log")
    pinned = {p: (f.dino, f.st) for p, f in first.items() if p in (a, str(logs / "é.log"))}
    assert all(dino > 0 for dino, _ in pinned.values())
    with open(a, "ab") as w:
        w.write(b" grew")  # the pinned stat is older than this
    (logs / "é.log").unlink()
    os.rename(logs / "b.txt", logs / "é.log")  # another file under a pinned name
    again = discovery.expand([pattern], [], pinned)
    assert again[a].st is first[a].st  # not stat again: its old size
    assert again[a].st.st_size == len("a.log") != os.stat(a).st_size
    moved = again[str(logs / "é.log")]
    assert FileId.of(moved.st) == FileId.of(os.stat(logs / "é.log"))  # the new file's identity
    assert FileId.of(moved.st) != FileId.of(first[str(logs / "é.log")].st)
    assert again.keys() == _reference(pattern).keys()
