"""SIGTERM within Grace, Log_Level, Ignore_Older."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.agent import Agent, wait_for


def test_sigterm_with_a_stuck_output_exits_0_within_grace(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    """stdout is a pipe nobody reads: draining cannot finish, Grace bounds the wait."""
    log = tmp_path / "g.log"
    log.write_bytes(b"".join(b"%0100d\n" % i for i in range(20000)))  # 2 MB: fills the pipe
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on", service="    Grace 2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", "-c", cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        os.set_blocking(proc.stderr.fileno(), False)
        err = b""

        def started() -> bool:
            nonlocal err
            err += proc.stderr.read() or b""  # type: ignore[union-attr]
            return b"initial scan done" in err

        wait_for(started, what="agent started")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert rc == 0
    assert took < 2 + 3, f"took {took:.1f}s with Grace 2"


def test_log_level_error_keeps_stderr_quiet(tmp_path: Path) -> None:
    log = tmp_path / "q.log"
    log.write_text("line\n")
    cfg = tmp_path / "q.conf"
    cfg.write_text(
        f"[SERVICE]\n    Log_Level error\n[INPUT]\n    Name tail\n    Path {log}\n"
        "    Read_from_Head on\n    Ray_Metadata off\n[OUTPUT]\n    Name stdout\n"
        "    Match *\n"
    )
    with Agent(["-c", str(cfg)]) as agent:
        agent.wait_log("line")
        assert agent.stop() == 0
    assert agent.err_text() == ""
    with Agent(["-v", "-c", str(cfg)]) as verbose:  # -v overrides Log_Level
        verbose.wait_log("line")
        assert verbose.stop() == 0
    assert "[debug]" in verbose.err_text() and "[ info]" in verbose.err_text()


def test_ignore_older(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    old = tmp_path / "old.log"
    old.write_text("stale\n")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    (tmp_path / "new.log").write_text("fresh\n")
    cfg = conf(f"{tmp_path}/*.log", Ray_Metadata="off", Read_from_Head="on", Ignore_Older="1h")
    with Agent(["-c", cfg]) as agent:
        agent.wait_log("fresh")
        agent.wait_stderr("following 1 file")
        assert agent.stop() == 0
    assert agent.logs() == ["fresh"]


def test_stdout_closed_by_its_reader_stops_the_agent(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    """`shipper | head -1`: once the reader is gone the agent says so and exits 1 instead of
    retrying for ever."""
    log = tmp_path / "h.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(5000)))
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on", service="    Grace 1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", "-c", cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away
    with open(log, "ab") as f:  # more to write, into the closed pipe
        f.write(b"".join(b"more %d\n" % i for i in range(5000)))
    rc = proc.wait(timeout=30)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    assert first.startswith(b'{"date":')
    assert rc == 1
    assert "standard output was closed" in err
