"""Offsets in the DB: stored only once delivered; restarts lose nothing."""

from __future__ import annotations

import signal
import sqlite3
import threading
from collections import Counter
from pathlib import Path

from tests.agent import Agent


class Writer(threading.Thread):
    """Appends numbered lines at a steady pace until stopped."""

    def __init__(self, path: Path, prefix: str = "w") -> None:
        super().__init__(daemon=True)
        self.path, self.prefix = path, prefix
        self.count = 0
        self.halt = threading.Event()

    def run(self) -> None:
        with open(self.path, "ab", buffering=0) as f:
            while not self.halt.is_set():
                f.write(b"".join(f"{self.prefix} {self.count + i}\n".encode() for i in range(50)))
                self.count += 50
                self.halt.wait(0.005)

    def stop(self) -> list[str]:
        self.halt.set()
        self.join()
        return [f"{self.prefix} {i}" for i in range(self.count)]


def _restart_cycle(tmp_path: Path, conf, sig: int) -> tuple[Counter[str], list[str]]:  # type: ignore[no-untyped-def]
    log = tmp_path / "db.log"
    log.write_bytes(b"")
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on", DB=str(tmp_path / "o.db"))
    writer = Writer(log)
    seen: Counter[str] = Counter()
    with Agent(["-c", cfg]) as first:
        first.wait_stderr("initial scan done")
        writer.start()
        first.wait_records(2000)
        if sig == signal.SIGKILL:
            first.kill()
        else:
            assert first.stop(sig) == 0
    seen.update(first.logs())
    with Agent(["-c", cfg]) as second:
        second.wait_records(1000)
        expected = writer.stop()
        second.wait_log(expected[-1])
        assert second.stop() == 0
    seen.update(second.logs())
    return seen, expected


def test_restart_after_sigterm_no_loss_no_duplicate(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    seen, expected = _restart_cycle(tmp_path, conf, signal.SIGTERM)
    assert set(seen) == set(expected)
    assert max(seen.values()) == 1, "a graceful stop must not re-send anything"


def test_restart_after_kill9_no_loss(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    seen, expected = _restart_cycle(tmp_path, conf, signal.SIGKILL)
    assert set(seen) == set(expected)


def test_offset_stored_only_after_delivery(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    """stdout is a pipe nobody reads: the agent blocks on it and is killed -9. The stored
    offset may cover only lines that really reached the pipe."""
    import fcntl
    import subprocess
    import sys
    import termios

    from tests.agent import wait_for

    def stored() -> int | None:
        if not db.exists():
            return None
        try:
            with sqlite3.connect(db) as c:
                rows = c.execute("SELECT offset FROM files").fetchall()
        except sqlite3.OperationalError:  # created, but the table not yet
            return None
        return int(rows[0][0]) if rows else None

    def in_pipe() -> int:
        buf = bytearray(4)
        fcntl.ioctl(proc.stdout, termios.FIONREAD, buf)
        return int.from_bytes(buf, sys.byteorder)

    log = tmp_path / "n.log"
    log.write_bytes(b"x" * 100 + b"\n")
    db = tmp_path / "n.db"
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on", DB=str(db))
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", "-c", cfg],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        wait_for(lambda: stored() == 101, what="the first line's offset stored")
        with open(log, "ab") as f:  # 400 KB: far more than the pipe holds
            f.write(b"".join(f"{i:0200d}\n".encode() for i in range(2000)))
        wait_for(lambda: in_pipe() >= 60000, what="the pipe to fill up")
        proc.kill()
        proc.wait()
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    complete = out.count(b"\n") - 1  # records of the 201-byte lines that reached the pipe
    offset = stored()
    assert offset is not None and offset < log.stat().st_size
    assert offset <= 101 + complete * 201, (offset, complete)


def test_inode_reused_by_other_content_restarts_at_zero(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "i.log"
    log.write_bytes(b"".join(f"old {i}\n".encode() for i in range(100)))
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on", DB=str(tmp_path / "i.db"))
    with Agent(["-c", cfg]) as first:
        first.wait_log("old 99")
        assert first.stop() == 0
    ino = log.stat().st_ino
    # Same inode, other first bytes, longer than the stored offset: another file.
    with open(log, "r+b") as f:
        f.write(b"".join(f"NEW {i}\n".encode() for i in range(200)))
    assert log.stat().st_ino == ino
    with Agent(["-c", cfg]) as second:
        second.wait_log("NEW 199")
        assert second.stop() == 0
    assert second.logs()[0] == "NEW 0" and len(second.logs()) == 200


def test_grace_timeout_keeps_undelivered_for_next_run(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM while stdout is stuck: Grace runs out with a batch mid-delivery. That batch
    must not be acknowledged, so the next run delivers it: nothing lost."""
    import fcntl
    import subprocess
    import sys
    import termios

    from tests.agent import wait_for

    log = tmp_path / "g.log"
    total = 20000
    log.write_bytes(b"".join(b"%0100d\n" % i for i in range(total)))
    cfg = conf(
        str(log),
        Ray_Metadata="off",
        Read_from_Head="on",
        DB=str(tmp_path / "g.db"),
        service="    Grace 1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", "-c", cfg],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None

    def in_pipe() -> int:
        buf = bytearray(4)
        fcntl.ioctl(proc.stdout, termios.FIONREAD, buf)
        return int.from_bytes(buf, sys.byteorder)

    try:
        wait_for(lambda: in_pipe() >= 60000, what="the pipe to fill up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        first = proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    import json

    seen = {json.loads(line)["log"] for line in first.splitlines() if line.endswith("}")}
    assert 0 < len(seen) < total
    with Agent(["-c", cfg]) as second:
        second.wait_log(f"{total - 1:0100d}")
        assert second.stop() == 0
    seen |= set(second.logs())
    assert seen == {f"{i:0100d}" for i in range(total)}
