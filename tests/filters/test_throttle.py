"""The `throttle` filter: Fluent Bit's documented sliding window (docs: pipeline/filters/
throttle) on a stepped clock, and through the CLI: dropped records are counted in the
metrics and acknowledged (the DB offset moves past them)."""

from __future__ import annotations

import logging
import sqlite3
import textwrap
from pathlib import Path

import pytest

from shipper.config.classic import parse_classic_text
from shipper.config.model import ConfigError
from shipper.config.service import ServiceOptions
from shipper.filters.throttle import ThrottleFilter, ThrottleOptions
from shipper.match import Matcher
from shipper.plugins import FILTERS, Context
from tests.agent import Agent, wait_for
from tests.ops.conftest import free_port, sample, scrape


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(rate: int, window: int, interval: float, clock: Clock) -> ThrottleFilter:
    opts = ThrottleOptions(rate=rate, window=window, interval=interval)
    return ThrottleFilter(
        name="throttle.t", matcher=Matcher.build("*", None), opts=opts, clock=clock
    )


def test_documented_window() -> None:
    """Rate 5, Window 5, Interval 1s: panes 1|3|5|7|3|4 pass whole (slow start: the average
    is over the panes so far), and of 7 records in the 7th second 6 pass (5 on average over
    the last 5 panes), "the last pane of the window was overwritten and 1 message dropped"."""
    clock = Clock()
    flt = throttle(5, 5, 1.0, clock)
    passed = []
    for second, n in enumerate([1, 3, 5, 7, 3, 4, 7]):
        clock.now = 1000.0 + second + 0.5
        passed.append(len(flt.apply([{"n": i} for i in range(n)], "t")))
    assert passed == [1, 3, 5, 7, 3, 4, 6]


def test_rate_over_window_and_idle_gap() -> None:
    clock = Clock()
    flt = throttle(1, 300, 1.0, clock)  # the docs' smooth variant: 1 per second on average
    assert len(flt.apply([{}] * 10, "t")) == 1  # first second: 1
    clock.now += 1
    assert len(flt.apply([{}] * 10, "t")) == 1
    clock.now += 1000  # long idle: every pane of the window is empty again
    assert len(flt.apply([{}] * 500, "t")) == 300
    clock.now += 1
    assert flt.apply([{"x": 1}], "t") == []
    flt = throttle(60, 5, 60.0, clock)  # the docs' bursty variant: 60 may come at once
    assert len(flt.apply([{}] * 100, "t")) == 60
    clock.now += 59
    assert flt.apply([{}], "t") == []


@pytest.mark.parametrize(
    "body, key",
    [("Rate 0", "Rate"), ("Window x", "Window"), ("Interval 0", "Interval"), ("Burst 3", "Burst")],
)
def test_bad_keys(body: str, key: str) -> None:
    text = f"[FILTER]\n    Name throttle\n    Match *\n    {body}\n"
    doc = parse_classic_text(text, file="f.conf", env={})
    sec = doc.sections[0]
    with pytest.raises(ConfigError) as err:
        FILTERS["throttle"](sec, Context(service=ServiceOptions(), name="throttle.0"))
    assert err.value.key == key and err.value.file == "f.conf" and err.value.line == 4


def _offset(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT offset FROM files").fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
    return int(row[0]) if row else 0


def test_dropped_records_are_counted_and_acknowledged(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    db = tmp_path / "tail.db"
    port = free_port()
    cfg = tmp_path / "c.conf"
    cfg.write_text(
        textwrap.dedent(f"""
        [SERVICE]
            Flush 0.2
            HTTP_Server On
            HTTP_Listen 127.0.0.1
            HTTP_Port {port}
        [INPUT]
            Name tail
            Path {log}
            Tag app.x
            DB {db}
            Read_from_Head on
            Ray_Metadata off
        [FILTER]
            Name throttle
            Match app.*
            Rate 10
            Window 2
            Interval 1h
            Print_Status on
        [OUTPUT]
            Name stdout
            Match *
        """)
    )
    with Agent(["-c", str(cfg)]) as agent:
        recs = agent.wait_records(10)
        wait_for(lambda: _offset(db) == log.stat().st_size, what="the offset past every line")

        def dropped() -> float | None:
            s = scrape(port)
            return sample(s, "shipper_filter_throttled_total", name="throttle.0")

        assert wait_for(lambda: dropped() == 90, what="90 throttled")
        samples = scrape(port)
        assert sample(samples, "fluentbit_filter_drop_records_total", name="throttle.0") == 90
        assert sample(samples, "fluentbit_filter_records_total", name="throttle.0") == 100
        assert agent.stop() == 0
    assert [r["log"] for r in agent.snapshot()] == [f"line {i}" for i in range(10)]
    assert len(recs) == 10


def test_print_status_logs_each_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    opts = ThrottleOptions(rate=2, window=3, interval=1.0, print_status=True)
    flt = ThrottleFilter(
        name="throttle.p", matcher=Matcher.build("*", None), opts=opts, clock=clock
    )
    with caplog.at_level(logging.INFO, logger="shipper.throttle.p"):
        assert len(flt.apply([{}] * 5, "app")) == 2
        assert caplog.records == []  # the interval has not ended yet
        clock.now += 1
        flt.apply([{}], "app")
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "rate 1.0" in msg and "limit 2" in msg and "3 dropped" in msg
