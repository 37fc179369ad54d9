"""Process-wide tuning the CLI applies at start (shipper/memory.py)."""

from __future__ import annotations

import subprocess
import sys

from shipper.memory import GC_THRESHOLDS, tune_allocator


def test_the_cli_raises_the_gc_thresholds_and_the_allocator_thresholds() -> None:
    # In a child process: the thresholds are process-wide, and `main` is what sets them.
    code = (
        "import gc, shipper.cli as c; print(gc.get_threshold()); "
        "c.main(['--version']); print(gc.get_threshold())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    before, _version, after = out.splitlines()
    assert before != after == str(GC_THRESHOLDS)
    assert tune_allocator() is (sys.platform == "linux")
