"""The code's own checks, run with the suite: mypy --strict on shipper/, ruff lint and format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.timeout(300)
def test_mypy_strict() -> None:
    out = _run("mypy")  # files and strictness come from pyproject.toml
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_lint() -> None:
    out = _run("ruff", "check", "shipper", "tests", "benchmarks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format() -> None:
    out = _run("ruff", "format", "--check", "shipper", "tests", "benchmarks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_modules_stay_small() -> None:
    """One concern per module, readable in one sitting (the aim is 400 lines; tail/input.py
    and outputs/httpclient.py sit a little above it)."""
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "shipper").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert not big, big
