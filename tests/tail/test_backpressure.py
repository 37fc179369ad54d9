"""Mem_Buf_Limit: stdout is a pipe nobody reads while 200 MB are written. Memory stays flat,
the data waits on disk, and every line arrives once the pipe drains."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.agent import wait_for

LINE = 120


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_stalled_stdout_keeps_memory_flat(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    megabytes = int(os.environ.get("SHIPPER_BACKPRESSURE_MB", "200"))
    log = tmp_path / "big.log"
    log.write_bytes(b"")
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on")  # default Mem_Buf_Limit
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", "-c", cfg],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    peak = 0
    try:
        lines = megabytes * 1024 * 1024 // LINE
        block = 10_000
        with open(log, "ab") as f:
            for start in range(0, lines, block):
                f.write(
                    b"".join(
                        b"%09d %s\n" % (i, b"r" * (LINE - 11))
                        for i in range(start, min(lines, start + block))
                    )
                )
                peak = max(peak, _rss_kb(proc.pid))
        # The pipe is full and nobody reads: the agent must be holding, not hoarding.
        settle = time.monotonic() + 3
        while time.monotonic() < settle:
            peak = max(peak, _rss_kb(proc.pid))
            time.sleep(0.1)
        assert peak < 128 * 1024, f"peak RSS {peak} kB with a stalled output"

        # Now drain: every line, in order, exactly once.
        count = 0
        expect = 0
        bad: list[bytes] = []
        done = threading.Event()

        def reader() -> None:
            nonlocal count, expect
            assert proc.stdout is not None
            for raw in proc.stdout:
                pos = raw.find(b'"log":"') + 7
                seq = int(raw[pos : pos + 9])
                if seq != expect:
                    bad.append(raw[:80])
                expect = seq + 1
                count += 1
                if count >= lines:
                    done.set()
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        while not done.is_set():
            peak = max(peak, _rss_kb(proc.pid))
            if done.wait(0.2):
                break
            if proc.poll() is not None:
                break
        wait_for(done.is_set, timeout=180, what=f"{lines} lines (have {count})")
        assert not bad, bad[:3]
        assert count == lines
        assert peak < 128 * 1024, f"peak RSS {peak} kB"
        print(f"peak RSS {peak} kB")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
