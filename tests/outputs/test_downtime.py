"""Backends down for real time (issue 4 "Must show" 3 and 5), both scenarios at once so that
the suite waits 60 s and not 90.

3. Two outputs with different Match; one is down for 30 s. It loses nothing, the other gets at
   most Mem_Buf_Limit ahead of it, and the tail DB offset never passes what both accepted.
5. The only backend is down for 60 s while 100 MB are written: the agent's RSS stays under
   128 MB, and afterwards every line is delivered.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agent import Agent
from tests.outputs.conftest import tail_input, write_config
from tests.outputs.receivers import CountingReceiver, JsonReceiver, wait_until

LINE = 100  # bytes per line, newline included: offsets are multiples of it


def _line(seq: int, width: int = LINE) -> str:
    return f"{seq:09d} " + "r" * (width - 11)


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for row in f:
                if row.startswith("VmRSS:"):
                    return int(row.split()[1])
    except OSError:
        pass
    return 0


def _db_offset(db: Path, path: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT offset FROM files WHERE name = ?", (str(path),)).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()
    return int(row[0]) if row else 0


def two_outputs_one_down(tmp: Path, report: dict[str, object]) -> None:
    app, other = tmp / "app.log", tmp / "other.log"
    app.write_text("")
    other.write_text("")
    db = tmp / "offsets.db"
    limit = 2 * 1024 * 1024
    with JsonReceiver() as rx_a, JsonReceiver() as rx_b:
        cfg = write_config(
            tmp / "c.conf",
            inputs=[
                tail_input(app, Tag="app.main", DB=str(db), Mem_Buf_Limit="2M"),
                tail_input(other, Tag="sys.other", DB=str(tmp / "other.db"), Mem_Buf_Limit="2M"),
            ],
            outputs=[
                {
                    "Name": "http",
                    "Alias": "a",
                    "Match": "app.*",
                    "Port": str(rx_a.port),
                    "Format": "json_lines",
                },
                {
                    "Name": "http",
                    "Alias": "b",
                    "Match_Regex": r"^(app|sys)\..*",
                    "Port": str(rx_b.port),
                    "Format": "json_lines",
                },
            ],
            service={"Log_Level": "info"},
        )
        seq = 0

        def write(n: int) -> None:
            nonlocal seq
            with open(app, "a") as f:
                f.write("".join(_line(i) + "\n" for i in range(seq, seq + n)))
            with open(other, "a") as f:
                f.write("".join(f"other {i}\n" for i in range(seq, seq + n)))
            seq += n

        def b_accepted_bytes() -> int:
            got = [int(x[:9]) for x in rx_b.logs() if not x.startswith("other")]
            return (max(got) + 1) * LINE if got else 0

        with Agent(["-c", str(cfg)]) as agent:
            write(2000)
            wait_until(lambda: len(rx_b.logs()) >= 4000, 20, "both outputs running")
            rx_b.down()
            down_at = time.monotonic()
            worst_gap = 0
            while time.monotonic() - down_at < 30:
                write(200)  # ~2000 lines/s, far more than Mem_Buf_Limit holds
                a_lines = len(rx_a.logs())
                b_app = len([x for x in rx_b.logs() if not x.startswith("other")])
                worst_gap = max(worst_gap, a_lines - b_app)
                offset = _db_offset(db, app)
                assert offset <= b_accepted_bytes(), (
                    f"offset {offset} passed what output b accepted ({b_accepted_bytes()})"
                )
                time.sleep(0.1)
            rx_b.up()
            total = seq
            wait_until(lambda: len(rx_b.logs()) >= 2 * total, 60, f"b: {2 * total} records")
            wait_until(lambda: len(rx_a.logs()) >= total, 30, f"a: {total} records")
            assert agent.stop() == 0
            err = agent.err_text()
        assert rx_a.errors == [] and rx_b.errors == []
        assert rx_a.logs() == [_line(i) for i in range(total)]
        b_logs = rx_b.logs()
        assert [x for x in b_logs if not x.startswith("other")] == rx_a.logs()
        assert [x for x in b_logs if x.startswith("other")] == [f"other {i}" for i in range(total)]
        # in flight at most Mem_Buf_Limit (+ the read that crossed it), at ~LINE+350 each
        bound = int(1.25 * limit / (LINE + 350))
        assert worst_gap <= bound, f"a ran {worst_gap} lines ahead of b (bound {bound})"
        assert "[b] delivery failed (cannot connect to 127.0.0.1" in err
        assert _db_offset(db, app) == app.stat().st_size
        report["gap"] = (worst_gap, bound, total)


def down_while_100mb(tmp: Path, report: dict[str, object]) -> None:
    width = 120
    total = 100 * 1024 * 1024 // width
    log = tmp / "big.log"
    log.write_text("")
    with CountingReceiver(total) as rx:
        rx.down()
        cfg = write_config(
            tmp / "c.conf",
            inputs=[tail_input(log)],
            outputs=[
                {
                    "Name": "http",
                    "Match": "*",
                    "Port": str(rx.port),
                    "Format": "json_lines",
                    "Workers": "2",
                }
            ],
            service={"Log_Level": "info", "Flush": "0.5"},
        )
        with Agent(["-c", str(cfg)]) as agent:
            pid = agent.proc.pid
            peak = 0
            start = time.monotonic()
            with open(log, "a") as f:
                for first in range(0, total, 20_000):
                    f.write(
                        "".join(
                            _line(i, width) + "\n" for i in range(first, min(total, first + 20_000))
                        )
                    )
                    peak = max(peak, _rss_kb(pid))
            while time.monotonic() - start < 60:
                peak = max(peak, _rss_kb(pid))
                time.sleep(0.1)
            assert rx.lines == 0
            rx.up()
            up = time.monotonic()
            while rx.distinct < total:
                peak = max(peak, _rss_kb(pid))
                assert time.monotonic() - up < 120, f"{rx.distinct}/{total} after 120 s"
                assert agent.proc.poll() is None, agent.err_text()[-2000:]
                time.sleep(0.1)
            drained = time.monotonic() - up
            assert agent.stop() == 0
        assert rx.errors == []
        assert rx.distinct == total and rx.duplicates == 0
        assert peak < 128 * 1024, f"peak RSS {peak} kB"
        report["rss"] = (peak, total, drained)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_backends_down_30s_and_60s(tmp_path: Path) -> None:
    report: dict[str, object] = {}
    failures: list[BaseException] = []

    def run(fn: Callable[[Path, dict[str, object]], None], sub: str) -> None:
        try:
            (tmp_path / sub).mkdir()
            fn(tmp_path / sub, report)
        except BaseException as exc:  # re-raised in the test thread
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(two_outputs_one_down, "three")),
        threading.Thread(target=run, args=(down_while_100mb, "five")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    print(report)
