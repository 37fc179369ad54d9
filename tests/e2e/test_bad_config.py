"""A bad config names file, line and key, exits 1, and reads nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CASES = {
    "unknown-key": (
        "[INPUT]\n    Name tail\n    Path /x/*\n    Pathh /y\n[OUTPUT]\n"
        "    Name stdout\n    Match *\n",
        4,
        "Pathh",
    ),
    "unknown-input": (
        "[INPUT]\n    Name tial\n    Path /x/*\n[OUTPUT]\n    Name stdout\n    Match *\n",
        2,
        "Name",
    ),
    "unknown-output": (
        "[INPUT]\n    Name tail\n    Path /x/*\n[OUTPUT]\n    Name stdot\n    Match *\n",
        5,
        "Name",
    ),
    "bad-time": (
        "[INPUT]\n    Name tail\n    Path /x/*\n    Refresh_Interval soon\n"
        "[OUTPUT]\n    Name stdout\n    Match *\n",
        4,
        "Refresh_Interval",
    ),
    "bad-size": (
        "[INPUT]\n    Name tail\n    Path /x/*\n    Mem_Buf_Limit lots\n"
        "[OUTPUT]\n    Name stdout\n    Match *\n",
        4,
        "Mem_Buf_Limit",
    ),
    "bad-bool": (
        "[INPUT]\n    Name tail\n    Path /x/*\n    Read_from_Head maybe\n"
        "[OUTPUT]\n    Name stdout\n    Match *\n",
        4,
        "Read_from_Head",
    ),
    "missing-path": ("[INPUT]\n    Name tail\n[OUTPUT]\n    Name stdout\n    Match *\n", 1, "Path"),
    "bad-choice": (
        "[INPUT]\n    Name tail\n    Path /x/*\n[OUTPUT]\n    Name stdout\n"
        "    Match *\n    Format yaml\n",
        7,
        "Format",
    ),
    "service-key": (
        "[SERVICE]\n    Flushh 1\n[INPUT]\n    Name tail\n    Path /x/*\n"
        "[OUTPUT]\n    Name stdout\n    Match *\n",
        2,
        "Flushh",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_names_file_line_key(tmp_path: Path, case: str) -> None:
    text, line, key = CASES[case]
    cfg = tmp_path / "bad.conf"
    cfg.write_text(text)
    for extra in ([], ["--dry-run"]):
        proc = subprocess.run(
            [sys.executable, "-m", "shipper", "-c", str(cfg), *extra],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 1
        assert f"{cfg}:{line}" in proc.stderr, proc.stderr
        assert key in proc.stderr, proc.stderr
        assert proc.stdout == ""


def test_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "outputs.conf").write_text(
        "[OUTPUT]\n    Name stdout\n    Match *\n    Formatt json\n"
    )
    cfg = tmp_path / "main.conf"
    cfg.write_text("[INPUT]\n    Name tail\n    Path /x/*\n@INCLUDE outputs.conf\n")
    proc = subprocess.run(
        [sys.executable, "-m", "shipper", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert f"{tmp_path / 'outputs.conf'}:4" in proc.stderr and "Formatt" in proc.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shipper", "-c", str(tmp_path / "nope.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1 and "nope.conf" in proc.stderr


def test_bad_command_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shipper", "-p", "x=1"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1 and "-p must follow" in proc.stderr
