"""The offsets DB on a disk that fills up or turns read-only under a running agent: a clear
error, shipping goes on, offsets are stored again once the disk allows it, and a restart
after that re-sends nothing.

The DB lives on a tiny tmpfs of its own (mount needs root; skipped otherwise), so the fault is
real ENOSPC / EROFS from the kernel, not a permission bit root would ignore.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import (
    STDOUT,
    AgentProc,
    Row,
    Tally,
    append_lines,
    classic,
    db_rows,
    numbered,
    tail_input,
    wait_until,
    write_conf,
)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write a filler file until the filesystem is full."""
    filler = path / "filler"
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    return filler


def stored(db: Path) -> dict[str, int]:
    return {name: off for _, _, _, off, name in db_rows(db)}


@pytest.mark.timeout(180)
def test_db_disk_full_keeps_shipping_and_recovers(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    fault = "disk-full"
    logs = tmp_path / "logs"
    logs.mkdir()
    tally = Tally()
    row = results.add(Row(f"offsets DB {fault} under a running agent"))
    with tmpfs(tmp_path / "dbfs", "8m") as fs:
        db = fs / "offsets.db"
        cfg = write_conf(
            tmp_path / "s.conf", classic([tail_input(f"{logs}/*.log", DB=str(db))], [STDOUT])
        )
        first = logs / "f000.log"
        lines = numbered("a", 0, 100)
        append_lines(first, lines)
        tally.written += lines
        with AgentProc(["-c", cfg]) as agent:
            agent.wait_logs(lines)
            wait_until(
                lambda: stored(db).get(str(first)) == first.stat().st_size,
                30,
                "the first file's offset stored",
            )
            # the fault
            filler = fill(fs)
            # many new files: new rows the DB cannot store
            for i in range(1, 120):
                more = numbered(f"b{i}", 0, 20, pad=100)
                append_lines(logs / f"f{i:03d}.log", more)
                tally.written += more
            agent.wait_logs(tally.written, timeout=60)  # keeps shipping
            agent.wait_stderr("cannot store offsets")
            assert agent.alive()
            # Let the last acknowledgements land: from here on nothing new arrives, so the
            # offsets must be stored by a retry, not piggy-backed on fresh data.
            time.sleep(2)
            # the disk recovers; no new data needed for the offsets to be stored
            filler.unlink()
            agent.wait_stderr("stored in", timeout=30)  # "offsets stored in ... again"
            sizes = {str(p): p.stat().st_size for p in logs.glob("*.log")}
            wait_until(
                lambda: stored(db) == sizes,
                30,
                lambda: f"all offsets stored (have {len(stored(db))}/{len(sizes)})",
            )
            row.fds_end = agent.fds()
            assert agent.stop() == 0
            err = agent.err_text()
        tally.add_run(agent.snapshot())
        row.peak_rss_kb = agent.peak_rss_kb
        # a restart after the recovery re-sends nothing
        extra = numbered("c", 0, 10)
        append_lines(first, extra)
        tally.written += extra
        with AgentProc(["-c", cfg]) as again:
            again.wait_logs(extra)
            assert again.stop() == 0
        tally.add_run(again.snapshot())
    r = tally.row(row.scenario)
    row.written, row.delivered, row.lost, row.duplicated = (
        r.written,
        r.delivered,
        r.lost,
        r.duplicated,
    )
    row.note = "error once, shipping on, stored again after recovery"
    assert "Traceback" not in err, err[-3000:]
    assert err.count("cannot store offsets") == 1, "reported once, not once per commit"
    assert not tally.missing
    assert tally.duplicated == 0


@pytest.mark.parametrize("leftover", ["no-wal-files", "wal-files-left"])
@pytest.mark.timeout(180)
def test_db_read_only_at_start_keeps_shipping_and_recovers(
    tmp_path: Path,
    results,  # type: ignore[no-untyped-def]
    leftover: str,
) -> None:
    """A read-only filesystem cannot be produced under an open DB (remount ro is refused,
    EBUSY, while a file is open for writing; the kernel does it only on fs errors): the DB's
    volume is read-only when the agent starts (mounted so by mistake), then fixed.

    Without its -wal/-shm files (a clean close) SQLite cannot open a WAL database on a
    read-only volume at all; with them it opens it read-only. Either way the stored offsets
    must be used (no re-send) and stored again once the volume is writable."""
    logs = tmp_path / "logs"
    logs.mkdir()
    tally = Tally()
    row = results.add(Row(f"offsets DB read-only at start, writable later ({leftover})"))
    with tmpfs(tmp_path / "dbfs", "8m") as fs:
        db = fs / "offsets.db"
        cfg = write_conf(
            tmp_path / "s.conf", classic([tail_input(f"{logs}/*.log", DB=str(db))], [STDOUT])
        )
        first = logs / "f000.log"
        tally.written += numbered("a", 0, 100)
        append_lines(first, tally.written)
        with AgentProc(["-c", cfg]) as one:
            one.wait_logs(tally.written)
            assert one.stop() == 0
        tally.add_run(one.snapshot())
        assert stored(db) == {str(first): first.stat().st_size}
        if leftover == "no-wal-files":  # the test's own reader left them; the agent did not
            for suffix in ("-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        more, other = numbered("b", 0, 50), numbered("d", 0, 10)
        append_lines(first, more)
        append_lines(logs / "f001.log", other)
        tally.written += more + other
        with AgentProc(["-c", cfg]) as two:
            two.wait_logs(tally.written[100:], also=one.snapshot())
            two.wait_stderr("cannot store offsets")
            subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
            sizes = {str(p): p.stat().st_size for p in logs.glob("*.log")}
            wait_until(
                lambda: stored(db) == sizes,
                30,
                lambda: (
                    f"offsets stored after the fix (have {stored(db)}, want {sizes}); "
                    f"stderr:\n{two.err_text()[-3000:]}"
                ),
            )
            row.fds_end = two.fds()
            assert two.stop() == 0
            err = two.err_text()
        tally.add_run(two.snapshot())
        row.peak_rss_kb = max(one.peak_rss_kb, two.peak_rss_kb)
        extra = numbered("c", 0, 10)
        append_lines(first, extra)
        tally.written += extra
        with AgentProc(["-c", cfg]) as three:
            three.wait_logs(extra)
            assert three.stop() == 0
        tally.add_run(three.snapshot())
    r = tally.row(row.scenario)
    row.written, row.delivered, row.lost, row.duplicated = (
        r.written,
        r.delivered,
        r.lost,
        r.duplicated,
    )
    row.note = "stored offsets read at start although the volume is read-only"
    assert "Traceback" not in err, err[-3000:]
    assert not tally.missing
    assert tally.duplicated == 0, "the stored offsets were not used while read-only"
