"""shipper.ray.lines: Ray's line formats -> fields."""

from __future__ import annotations

import calendar
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.ray.lines import LEVELS, LineParser

pytestmark = pytest.mark.unit

# 2026-11-28 10:07:08 as written on a machine at UTC+0 (the fixtures' stamps are local time).
T0 = calendar.timegm((2026, 11, 28, 10, 7, 8, 0, 0, 0))
NOW = float(T0 + 60)
UTC = LineParser(0)


def test_cpp_with_component() -> None:
    line = "[2026-11-28 10:07:08,319 I 15251 15260] (raylet) node_manager.cc:103: hello: world"
    assert UTC.parse(line, NOW) == {
        "date": T0 + 0.319,
        "level": "INFO",
        "pid": 15251,
        "tid": 15260,
        "source": "node_manager.cc:103",
        "message": "hello: world",
    }


def test_cpp_without_component() -> None:
    line = "[2026-11-28 10:07:08,001 W 15425 15451] core_worker.cc:591: Event stats:"
    f = UTC.parse(line, NOW)
    assert f == {
        "date": T0 + 0.001,
        "level": "WARNING",
        "pid": 15425,
        "tid": 15451,
        "source": "core_worker.cc:591",
        "message": "Event stats:",
    }


def test_cpp_levels() -> None:
    want = {"T": "DEBUG", "D": "DEBUG", "I": "INFO", "W": "WARNING", "E": "ERROR", "C": "FATAL"}
    for letter, level in want.items():
        f = UTC.parse(f"[2026-11-28 10:07:08,319 {letter} 1 2] x.cc:1: m", NOW)
        assert f is not None and f["level"] == level
    assert UTC.parse("[2026-11-28 10:07:08,319 X 1 2] x.cc:1: m", NOW) is None


def test_cpp_empty_message_and_trailing_space() -> None:
    f = UTC.parse("[2026-11-28 10:06:46,829 I 15328 15338] (raylet) store.cc:573: ", NOW)
    assert f is not None and f["message"] == "" and f["source"] == "store.cc:573"
    f = UTC.parse("[2026-11-28 10:06:46,829 I 15328 15338] (raylet) store.cc:573:", NOW)
    assert f is not None and f["message"] == ""


def test_cpp_lookalikes_are_free_text() -> None:
    for line in [
        "[state-dump] \tNodeManager.GC - 1 total",
        "[ray] Forcing OMP_NUM_THREADS=1",
        "[2026-11-28 10:07:08,319 I 15251 15251]",
        "[",
        "[]",
        "[2026-11-28 10:07:08,319 I abc 1] x.cc:1: m",
    ]:
        assert UTC.parse(line, NOW) is None, line


def test_python_format() -> None:
    line = "2026-11-28 10:07:08,319\tINFO monitor.py:95 -- Monitor: Started"
    assert UTC.parse(line, NOW) == {
        "date": T0 + 0.319,
        "level": "INFO",
        "source": "monitor.py:95",
        "message": "Monitor: Started",
    }


def test_python_stderr_variant_and_levels() -> None:
    line = "2026-11-28 10:07:08,319\tWARNING (dashboard_agent) gpu.py:78 -- no dynolog"
    assert UTC.parse(line, NOW) == {
        "date": T0 + 0.319,
        "level": "WARNING",
        "source": "gpu.py:78",
        "message": "no dynolog",
    }
    for name, level in [
        ("DEBUG", "DEBUG"),
        ("ERROR", "ERROR"),
        ("CRITICAL", "FATAL"),
        ("WARN", "WARNING"),
    ]:
        f = UTC.parse(f"2026-11-28 10:07:08,319\t{name} a.py:1 -- m", NOW)
        assert f is not None and f["level"] == level


def test_python_empty_message() -> None:
    # The autoscaler status block starts with an empty message (and a trailing space).
    for line in [
        "2026-11-28 10:06:50,736\tINFO autoscaler.py:408 -- ",
        "2026-11-28 10:06:50,736\tINFO autoscaler.py:408 --",
    ]:
        f = UTC.parse(line, NOW)
        assert f is not None and f["message"] == "" and f["source"] == "autoscaler.py:408"


def test_python_lookalikes_are_free_text() -> None:
    for line in [
        "2026-11-28 10:06:50,736 INFO autoscaler.py:408 -- x",  # space, not tab
        "2026-11-28 10:06:50,736\tNOTALEVEL a.py:1 -- x",
        "2026-11-28 10:06:50,736\tINFO a.py -- x",
        "1 node_4804578c1708b715f9ab888565a458ca244cea968bb0267b75aadf2f",
        "0.0/2.0 CPU",
        "2026",
    ]:
        assert UTC.parse(line, NOW) is None, line


def test_glog() -> None:
    line = (
        "I1128 10:07:08.319117   15251 chttp2_transport.cc:1403] ipv4:192.0.2.2:39445: Got goaway"
    )
    f = UTC.parse(line, NOW)
    assert f == {
        "date": T0 + 0.319117,
        "level": "INFO",
        "tid": 15251,
        "source": "chttp2_transport.cc:1403",
        "message": "ipv4:192.0.2.2:39445: Got goaway",
    }
    for letter, level in [("W", "WARNING"), ("E", "ERROR"), ("F", "FATAL")]:
        g = UTC.parse(f"{letter}1128 10:07:08.319117 1 a.cc:1] m", NOW)
        assert g is not None and g["level"] == level


def test_glog_year_comes_from_now() -> None:
    # A December stamp read early in January belongs to last year.
    jan = float(calendar.timegm((2027, 1, 1, 0, 5, 0, 0, 0, 0)))
    f = UTC.parse("E1231 23:59:59.500000 7 a.cc:1] m", jan)
    assert f is not None
    assert f["date"] == calendar.timegm((2026, 12, 31, 23, 59, 59, 0, 0, 0)) + 0.5
    f = UTC.parse("E0101 00:01:00.000000 7 a.cc:1] m", jan)
    assert f is not None and f["date"] == calendar.timegm((2027, 1, 1, 0, 1, 0, 0, 0, 0))


def test_tz_offset_and_local_time() -> None:
    line = "[2026-11-28 10:07:08,319 I 1 1] a.cc:1: m"
    east = LineParser(5.5).parse(line, NOW)
    assert east is not None and east["date"] == T0 + 0.319 - 5.5 * 3600
    local = LineParser().parse(line, NOW)
    want = time.mktime((2026, 11, 28, 10, 7, 8, 0, 0, -1)) + 0.319
    assert local is not None and local["date"] == want


def test_invalid_timestamp_falls_back_to_now() -> None:
    for line in [
        "[2026-13-45 10:07:08,319 I 1 1] a.cc:1: m",
        "[0000-00-00 99:99:99,000 I 1 1] a.cc:1: m",
        "2026-02-31 25:00:00,000\tINFO a.py:1 -- m",
        "I1399 10:07:08.319117 1 a.cc:1] m",
    ]:
        f = UTC.parse(line, NOW)
        assert f is not None and f["date"] == NOW, line


BACKEND = (
    '{"asctime":"2026-11-28 10:07:08,466","levelname":"W","message":"Setting node ID",'
    '"component":"raylet","filename":"main.cc","lineno":711,'
    '"node_id":"c52d438e9a1b2700af8540b95ddfcb9c642d9f2af04ca3228ee178c7"}'
)


def test_backend_log_json() -> None:
    assert UTC.parse(BACKEND, NOW) == {
        "date": T0 + 0.466,
        "level": "WARNING",
        "source": "main.cc:711",
        "message": "Setting node ID",
        "node_id": "c52d438e9a1b2700af8540b95ddfcb9c642d9f2af04ca3228ee178c7",
    }


def test_backend_json_keeps_reserved_keys() -> None:
    p = LineParser(0, reserved=frozenset({"path"}))
    line = (
        '{"asctime":"2026-11-28 10:07:08,466","levelname":"I","message":"m",'
        '"filename":"a.cc","lineno":1,"path":"x","log":"y","session":"z","date":1}'
    )
    f = p.parse(line, NOW)
    assert f == {"date": T0 + 0.466, "level": "INFO", "source": "a.cc:1", "message": "m"}


EVENT = (
    '{"custom_fields":{"job_id":"01000000","node_id":"48","worker_id":"24d7"},'
    '"event_id":"5c40","host_name":"vm","label":"RAY_WORKER_FAILURE",'
    '"message":"A worker died","pid":"15328","severity":"ERROR","source_type":"RAYLET",'
    '"timestamp":1795860408}'
)


def test_event_json() -> None:
    assert UTC.parse(EVENT, NOW) == {
        "date": 1795860408.0,
        "level": "ERROR",
        "pid": 15328,
        "message": "A worker died",
        "event_id": "5c40",
        "host_name": "vm",
        "label": "RAY_WORKER_FAILURE",
        "source_type": "RAYLET",
        "job_id": "01000000",
        "node_id": "48",
        "worker_id": "24d7",
    }


def test_export_event_json() -> None:
    line = (
        '{"event_id":"ab","timestamp":1795860408,"source_type":"EXPORT_TASK",'
        '"event_data":{"task_id":"ff","state":"FINISHED"}}'
    )
    assert UTC.parse(line, NOW) == {
        "date": 1795860408.0,
        "event_id": "ab",
        "source_type": "EXPORT_TASK",
        "event_data": {"task_id": "ff", "state": "FINISHED"},
    }


def test_other_json_is_free_text() -> None:
    for line in [
        '{"a": 1}',
        "{",
        "{}",
        "[1, 2]",
        '{"timestamp": 1}',
        '{"asctime": 1}',
        '{"a": 1} trailing',
        "{" * 5000 + "}" * 5000,
    ]:
        assert UTC.parse(line, NOW) is None, line[:40]


def test_event_json_with_odd_values() -> None:
    line = '{"event_id": 1, "timestamp": "nan", "pid": true, "severity": 3, "message": 5}'
    assert UTC.parse(line, NOW) == {"date": NOW, "message": "5", "event_id": 1}
    line = '{"event_id": "e", "timestamp": "1e999", "pid": "12x", "severity": "warning"}'
    assert UTC.parse(line, NOW) == {"date": NOW, "level": "WARNING", "event_id": "e"}


def test_prefix_component_for_stdin() -> None:
    p = LineParser(0, prefix_component=True)
    f = p.parse("[2026-11-28 10:07:08,319 I 1 2] (gcs_server) a.cc:1: m", NOW)
    assert f is not None and f["component"] == "gcs_server"
    driver = "01000000ffffffffffffffffffffffffffffffffffffffffffffffff"
    f = p.parse(f"[2026-11-28 10:07:08,319 I 1 2] (python-core-driver-{driver}) a.cc:1: m", NOW)
    assert f is not None and f["component"] == "core_driver" and f["worker_id"] == driver
    f = p.parse("2026-11-28 10:07:08,319\tINFO (monitor) monitor.py:1 -- m", NOW)
    assert f is not None and f["component"] == "monitor"
    f = p.parse(BACKEND, NOW)
    assert f is not None and f["component"] == "raylet"
    # Files do not want it: their name says it.
    f = UTC.parse("[2026-11-28 10:07:08,319 I 1 2] (gcs_server) a.cc:1: m", NOW)
    assert f is not None and "component" not in f


def test_parse_into_base_keeps_frame_order() -> None:
    base = {"date": 0.0, "log": "", "path": "/p", "session": "s", "component": "raylet"}
    f = UTC.parse("[2026-11-28 10:07:08,319 I 1 2] a.cc:1: m", NOW, base)
    assert f is not None
    assert list(f) == [
        "date",
        "log",
        "path",
        "session",
        "component",
        "level",
        "pid",
        "tid",
        "source",
        "message",
    ]
    assert base == {"date": 0.0, "log": "", "path": "/p", "session": "s", "component": "raylet"}
    f = UTC.parse(EVENT.replace('"host_name"', '"path"'), NOW, base)
    assert f is not None and f["path"] == "/p" and f["date"] == 1795860408.0


def test_is_header_agrees_with_parse() -> None:
    for line in [
        "[2026-11-28 10:07:08,319 I 1 2] a.cc:1: m",
        "[state-dump] x",
        "2026-11-28 10:07:08,319\tINFO a.py:1 -- m",
        "2026",
        "I1128 10:07:08.319117 1 a.cc:1] m",
        "Info",
        "",
        "plain",
        "Traceback (most recent call last):",
    ]:
        assert UTC.is_header(line) == (UTC.parse(line, NOW) is not None), line
    assert UTC.is_header(BACKEND) and UTC.is_header(EVENT)


def test_levels_vocabulary() -> None:
    assert set(LEVELS.values()) == {"DEBUG", "INFO", "WARNING", "ERROR", "FATAL"}


_HEADERS = [
    "[2026-11-28 10:07:08,319 I 15251 15251] (raylet) file.cc:103: ",
    "[2026-11-28 10:07:08,319 E 15251 15251] file.cc:103: ",
    "2026-11-28 10:07:08,319\tINFO file.py:95 -- ",
    "2026-11-28 10:07:08,319\tERROR (monitor) file.py:95 -- ",
    "I1128 10:07:08.319117   15251 file.cc:1403] ",
    '{"asctime":"2026-11-28 10:07:08,319","levelname":"I","message":',
    '{"event_id":"x","timestamp":',
]


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_any_bytes_never_raise(data: bytes) -> None:
    line = data.decode("utf-8", errors="replace")
    for p in (UTC, LineParser(), LineParser(-2, prefix_component=True)):
        f = p.parse(line, NOW)
        assert f is None or isinstance(f.get("date"), float)
        p.is_header(line)


@settings(max_examples=400)
@given(st.sampled_from(_HEADERS), st.binary(max_size=200), st.integers(0, 60))
def test_mangled_headers_never_raise(head: str, tail: bytes, cut: int) -> None:
    # Real headers, cut short or followed by junk: the cases a regex is most likely to get
    # wrong.
    line = head[: len(head) - cut] + tail.decode("utf-8", errors="replace")
    f = UTC.parse(line, NOW)
    if f is not None:
        assert isinstance(f["date"], float)
        assert "level" not in f or f["level"] in set(LEVELS.values())
