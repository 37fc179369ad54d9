"""The line kinds of issue 15, one by one: logging.basicConfig's lines, Serve's, a driver's
`(name pid=N)` copies, Ray's TextFormatter context and Ray's JSON (Python, C++, events), and
the joiner keeping logger.exception's traceback with its line. The lines are Ray 2.60's own
(tests/fixtures/ray-session-2.60-encodings), some bent to their edges."""

from __future__ import annotations

from typing import Any

from shipper.ray.handler import RayHandler
from shipper.ray.lines import LineParser
from shipper.ray.structured import LEVELS, split_context
from tests.ray.test_handler import ctx_for, feed_all

P = LineParser(0, forwarded=True)
NOW = 5.0


def parse(line: str) -> dict[str, Any] | None:
    return P.parse(line, NOW)


def test_basic_config_lines() -> None:
    assert parse("ERROR:mytask:caught in task 0") == {
        "date": NOW,
        "level": "ERROR",
        "logger": "mytask",
        "message": "caught in task 0",
    }
    assert parse("CRITICAL:a.b-c:") == {
        "date": NOW,
        "level": "FATAL",
        "logger": "a.b-c",
        "message": "",
    }
    assert parse("WARNING:root:x: y")["message"] == "x: y"  # type: ignore[index]
    # Not a logger name: a person's text.
    for line in ("ERROR: disk full", "INFO:", "INFO::x", "ERRORS:x:y", "Info:x:y"):
        assert parse(line) is None and not P.is_header(line), line
    assert P.is_header("DEBUG:x:y")


def test_serve_lines() -> None:
    rec = parse(
        "ERROR 2026-12-07 06:15:59,494 app1_Hello h1l0i75e "
        "e8b5f3cc-2779-48e5-954e-bfa4840c0173 -- handler failed"
    )
    assert rec == {
        "date": P.epoch("2026-12-07 06:15:59") + 0.494,  # type: ignore[operator]
        "level": "ERROR",
        "component_name": "replica",
        "deployment": "app1_Hello",
        "replica": "h1l0i75e",
        "request_id": "e8b5f3cc-2779-48e5-954e-bfa4840c0173",
        "message": "handler failed",
    }
    rec = parse("WARNING 2026-12-07 06:16:01,774 controller 650 -- exiting.")
    assert rec is not None and rec["component_name"] == "controller"
    assert rec["component_id"] == "650" and "request_id" not in rec
    assert parse("INFO 2026-12-07 06:15:56,164 proxy 127.0.0.1 --")["message"] == ""  # type: ignore[index]
    assert parse("INFO 2026-12-07 06:15:56,164 proxy 127.0.0.1 -x") is None
    assert parse("INFO 2026-12-07 06:15:56 proxy 1 -- no milliseconds") is None


def test_a_drivers_copy_of_a_workers_line() -> None:
    rec = parse("\x1b[36m(work pid=553)\x1b[0m ERROR:mytask:caught in task 0")
    assert rec == {
        "date": NOW,
        "level": "ERROR",
        "logger": "mytask",
        "message": "caught in task 0",
        "origin": "work",
        "pid": 553,
    }
    rec = parse("(Counter pid=617, ip=10.0.0.1) plain print")
    assert rec == {"date": NOW, "message": "plain print", "origin": "Counter", "pid": 617}
    rec = parse("\x1b[33m(raylet)\x1b[0m A worker died")
    assert rec == {"date": NOW, "message": "A worker died", "origin": "raylet"}
    for line in ("(not a prefix", "(a b) x", "() x", "(x pid=1)no space"):
        assert parse(line) is None, line
    # Only where a driver's output is (a job driver's log, stdin): elsewhere it is text.
    assert LineParser(0).parse("(work pid=553) INFO:x:y", NOW) is None


def test_text_formatter_context() -> None:
    reserved = P.reserved
    msg = "warning from task 1 user_key=value1 job_id=03000000 task_name=work timestamp_ns=1796"
    assert split_context(msg, reserved) == (
        "warning from task 1",
        {"date": 1796 / 1e9, "user_key": "value1", "job_id": "03000000", "task_name": "work"},
    )
    # A key the record frame owns stops the context there (it stays in the message).
    assert split_context("x level=ERROR job_id=1 timestamp_ns=2", reserved) == (
        "x level=ERROR",
        {"date": 2e-9, "job_id": "1"},
    )
    assert split_context("no context", reserved) is None
    assert split_context("timestamp_ns=5 is not at the end", reserved) is None
    # After a traceback: on its last line.
    msg = "caught\nTraceback (most recent call last):\nKeyError: 'missing' job_id=03 timestamp_ns=7"
    assert split_context(msg, reserved) == (
        "caught\nTraceback (most recent call last):\nKeyError: 'missing'",
        {"date": 7e-9, "job_id": "03"},
    )


def test_ray_json_lines_on_the_text_keys() -> None:
    rec = parse(
        '{"asctime": "2026-12-07 06:18:54,678", "levelname": "ERROR", "message": "caught", '
        '"filename": "driver.py", "lineno": 25, "process": 551, "exc_text": "Traceback (most '
        'recent call last):\\nKeyError: 1", "job_id": "02000000", "task_name": "work", '
        '"timestamp_ns": 1796624334678581212, "date": "not the date", "user_key": [1]}'
    )
    assert rec == {
        "date": 1796624334678581212 / 1e9,
        "level": "ERROR",
        "pid": 551,
        "source": "driver.py:25",
        "message": "caught\nTraceback (most recent call last):\nKeyError: 1",
        "job_id": "02000000",
        "task_name": "work",
        "user_key": [1],
    }
    # C++ with RAY_BACKEND_LOG_JSON=1: a one-letter level, no pid.
    rec = parse(
        '{"asctime":"2026-12-07 06:17:18,698","levelname":"W","message":"m","component":'
        '"raylet","filename":"main.cc","lineno":283,"node_id":"abc"}'
    )
    assert rec == {
        "date": P.epoch("2026-12-07 06:17:18") + 0.698,  # type: ignore[operator]
        "level": "WARNING",
        "source": "main.cc:283",
        "message": "m",
        "node_id": "abc",
    }
    assert set(LEVELS.values()) == {"DEBUG", "INFO", "WARNING", "ERROR", "FATAL"}


def test_events_have_their_own_time_severity_and_label() -> None:
    rec = parse(
        '{"event_id": "fdd9", "source_type": "JOBS", "source_hostname": "vm", "source_pid": 322,'
        ' "message": "Started a ray job fixture_basic.", "timestamp": "1796624145", '
        '"custom_fields": {"submission_id": "fixture_basic"}, "severity": "INFO", "label": ""}'
    )
    assert rec is not None
    assert rec["date"] == 1796624145.0 and rec["level"] == "INFO" and rec["pid"] == 322
    assert rec["submission_id"] == "fixture_basic" and rec["label"] == ""
    assert "source_pid" not in rec and "timestamp" not in rec
    rec = parse(
        '{"event_id": "1", "timestamp": 17, "source_type": "EXPORT_TASK", "event_data": {}}'
    )
    assert rec == {
        "date": 17.0,
        "event_id": "1",
        "source_type": "EXPORT_TASK",
        "event_data": {},
    }


def _records(rel: str, lines: list[str]) -> list[dict[str, Any]]:
    return feed_all(RayHandler(ctx_for(rel), multiline=("ray",)), lines)


TB = [
    "Traceback (most recent call last):",
    '  File "driver.py", line 23, in work',
    '    {}["missing"]',
    "KeyError: 'missing'",
]


def test_logger_exception_is_one_record_in_user_output() -> None:
    rel = "logs/worker-ab12-02000000-552.err"
    recs = _records(rel, ["ERROR:mytask:caught", *TB, "print", "INFO:mytask:next", *TB])
    assert [r["log"].split("\n")[0] for r in recs] == [
        "ERROR:mytask:caught",
        "print",
        "INFO:mytask:next",
    ]
    assert recs[0]["message"] == "\n".join(["caught", *TB])
    assert recs[2]["log"].endswith("KeyError: 'missing'")
    # A traceback after a print is a record of its own; a headed line without one is alone.
    recs = _records(rel, ["print", *TB, "WARNING:x:w", "WARNING:x:v"])
    assert [r["log"].split("\n")[0] for r in recs] == [
        "print",
        TB[0],
        "WARNING:x:w",
        "WARNING:x:v",
    ]


def test_a_drivers_copies_join_per_worker() -> None:
    rel = "logs/job-driver-raysubmit_x.log"
    a, b = "\x1b[36m(work pid=553)\x1b[0m ", "\x1b[36m(work pid=552)\x1b[0m "
    lines = [a + "ERROR:mytask:caught", a + TB[0], a + TB[1], b + "print", a + TB[2], a + TB[3]]
    recs = _records(rel, lines)
    # The other worker's line cuts the traceback: what was held goes out as it is.
    assert [r["log"] for r in recs] == [
        "\n".join(lines[:3]),
        lines[3],
        lines[4],
        lines[5],
    ]
    assert recs[0]["message"] == "caught\n" + TB[0] + "\n" + TB[1]
    assert recs[0]["origin"] == "work" and recs[0]["pid"] == 553
    recs = _records(rel, [a + "ERROR:mytask:caught", *(a + t for t in TB), "driver print"])
    assert len(recs) == 2 and recs[0]["message"] == "\n".join(["caught", *TB])
    assert recs[1] == {**recs[1], "log": "driver print"} and "origin" not in recs[1]
