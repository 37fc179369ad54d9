"""The `http` output against a real ClickHouse (issue 4 "Must show" 1; docs/delivery.md).

One ClickHouse, one agent with a DB, four phases on the same table:
  A. 200k lines through `Format json_lines` to the JSONEachRow insert URI: count() and
     uniqExact(log) equal what was written.
  B. 200k more while ClickHouse is SIGKILLed mid-stream and restarted 10 s later: every line
     arrives; duplicates, if any, are one batch (one contiguous run of lines, each twice).
  C. 100k more while ClickHouse is stopped gracefully (SIGTERM) and restarted: no duplicates.
  D. the agent itself stopped gracefully mid-stream and restarted on its DB: no duplicates.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.agent import Agent, wait_for
from tests.backends import ClickHouse, clickhouse_server
from tests.outputs.conftest import tail_input, write_config

PAYLOAD = "x" * 40


def _write(path: Path, start: int, count: int, *, rate: float = 0.0) -> None:
    """Lines `%09d payload`, appended in blocks (at about `rate` lines/s when given)."""
    block = 5000
    with open(path, "a", encoding="ascii") as f:
        for first in range(start, start + count, block):
            last = min(start + count, first + block)
            f.write("".join(f"{i:09d} {PAYLOAD}\n" for i in range(first, last)))
            f.flush()
            if rate:
                time.sleep(block / rate)


def _stats(ch: ClickHouse) -> tuple[int, int]:
    try:
        row = ch.query("SELECT count(), uniqExact(log) FROM logs").split()
    except Exception:  # restarting
        return -1, -1
    return int(row[0]), int(row[1])


def _duplicates(ch: ClickHouse) -> list[int]:
    text = ch.query(
        "SELECT toUInt64(substring(log, 1, 9)) AS seq, count() AS n FROM logs "
        "GROUP BY seq HAVING n > 1 ORDER BY seq FORMAT TSV"
    )
    rows = [line.split("\t") for line in text.splitlines() if line]
    assert all(int(n) == 2 for _, n in rows), "a line arrived more than twice"
    return [int(seq) for seq, _ in rows]


def _one_run(seqs: list[int]) -> bool:
    return not seqs or seqs == list(range(seqs[0], seqs[0] + len(seqs)))


@pytest.mark.slow
@pytest.mark.clickhouse
@pytest.mark.timeout(240)
def test_clickhouse_json_lines_kill_restart_graceful(tmp_path: Path) -> None:
    log = tmp_path / "ray.log"
    log.write_text("")
    with clickhouse_server(tmp_path) as ch:
        ch.query("CREATE TABLE logs (date Float64, log String) ENGINE = MergeTree ORDER BY tuple()")
        cfg = write_config(
            tmp_path / "shipper.conf",
            inputs=[tail_input(log, DB=str(tmp_path / "offsets.db"))],
            outputs=[
                {
                    "Name": "http",
                    "Match": "*",
                    "Host": "127.0.0.1",
                    "Port": ch.port,
                    "URI": ch.insert_uri("logs") + "&input_format_skip_unknown_fields=1",
                    "Format": "json_lines",
                    "json_date_key": "date",
                    "json_date_format": "double",
                    "Workers": "1",
                }
            ],
            service={"Log_Level": "info", "Grace": "10"},
        )

        def reached(n: int) -> bool:
            return _stats(ch)[1] >= n

        agent = Agent(["-c", str(cfg)])
        try:
            # A: 200k lines, all there exactly once.
            _write(log, 0, 200_000)
            wait_for(lambda: reached(200_000), 60, "200k lines in ClickHouse")
            time.sleep(0.5)  # nothing more may arrive
            assert _stats(ch) == (200_000, 200_000)

            # B: SIGKILL mid-stream, back 10 s later.
            writer = threading.Thread(
                target=_write, args=(log, 200_000, 200_000), kwargs={"rate": 40_000}
            )
            writer.start()
            wait_for(lambda: reached(240_000), 30, "the second stream under way")
            ch.kill()
            time.sleep(10)
            ch.start()
            writer.join()
            wait_for(lambda: reached(400_000), 90, "400k distinct lines after the restart")
            time.sleep(1.0)
            total, distinct = _stats(ch)
            assert distinct == 400_000
            dups = _duplicates(ch)
            assert total - distinct == len(dups)
            assert _one_run(dups), f"duplicates are not one batch: {dups[:5]}...{dups[-5:]}"
            print(f"after the kill: {len(dups)} lines twice (one batch)")
            assert agent.proc.poll() is None
            assert (
                "cannot connect to 127.0.0.1" in agent.err_text()
                or "closed the connection" in agent.err_text()
            )
            before = total

            # C: graceful ClickHouse stop mid-stream: nothing twice.
            writer = threading.Thread(
                target=_write, args=(log, 400_000, 100_000), kwargs={"rate": 40_000}
            )
            writer.start()
            wait_for(lambda: reached(420_000), 30, "the third stream under way")
            ch.stop()
            time.sleep(3)
            ch.start()
            writer.join()
            wait_for(lambda: reached(500_000), 90, "500k distinct lines")
            time.sleep(1.0)
            total, distinct = _stats(ch)
            assert distinct == 500_000
            assert total - before == 100_000, "a graceful stop produced duplicates"

            # D: the agent stopped gracefully mid-stream, restarted on its DB.
            writer = threading.Thread(
                target=_write, args=(log, 500_000, 100_000), kwargs={"rate": 40_000}
            )
            writer.start()
            wait_for(lambda: reached(520_000), 30, "the fourth stream under way")
            assert agent.stop() == 0
            agent = Agent(["-c", str(cfg)])
            writer.join()
            wait_for(lambda: reached(600_000), 60, "600k distinct lines")
            time.sleep(1.0)
            total, distinct = _stats(ch)
            assert distinct == 600_000
            assert total - before == 200_000, "the agent's restart produced duplicates"
        finally:
            agent.kill()
