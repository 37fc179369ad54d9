"""The scan's expansion (discovery.expand) finds exactly what glob.glob finds, with the
same identity, on its fast path (a wildcard in the file name only) and off it."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from shipper.tail import discovery
from shipper.tail.identity import FileId


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
