"""shipper.ray.handler: Ray records from whole fixture files, markers, held_lines, properties."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.lines import PlainHandler, SourceContext
from shipper.ray.handler import RayHandler, make_ray_handler
from shipper.ray.lines import LineParser

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ray-session-2.60"
SESSION = "session_2026-11-28_10-06-45_296613_15055"
NOW = 1795860500.0
MARKERS = (":job_id:", ":task_name:", ":actor_name:")

W1 = "24d79453cbada04c5c47f9d03cc80fd828c55fc9d7bfc6c9c32f7401"
W3 = "56f46a104294dd0d56c9fbe4d2088436a51d12971a37f541b91a911e"
W4 = "8fd38dc3d7faa03f1730e3071b117fbcb51ac93d9796b55edc04ad4a"
W5 = "c5289e386529defbd462858f3cabdc34c07af77d099cefacaf80bff9"


def read_lines(path: Path) -> list[str]:
    """As a reader hands them over: split on \\n, no CR, invalid UTF-8 replaced."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def ctx_for(
    rel: str,
    path_key: str | None = "path",
    offset_key: str | None = None,
) -> SourceContext:
    """A source as the reader would make it: the path under a real session directory."""
    name = rel.split("/", 2)[-1] if rel.startswith(("logs/", "rotation/logs/")) else rel
    if rel.startswith("rotation/"):
        name = rel[len("rotation/logs/") :]
    elif rel.startswith("backend-log-json/"):
        name = rel[len("backend-log-json/logs/") :]
    elif rel.startswith("logs/"):
        name = rel[len("logs/") :]
    real = f"/tmp/raytest/{SESSION}/logs/{name}"
    return SourceContext(
        path="/tmp/raytest/session_latest/logs/" + name,
        real_path=real,
        path_key=path_key,
        offset_key=offset_key,
    )


def feed_all(h: Any, lines: list[str]) -> list[dict[str, Any]]:
    return list(h.feed(lines, NOW)) + list(h.flush(NOW + 5))


def _all_fixture_files() -> list[str]:
    out = []
    for sub in ("logs", "rotation/logs", "backend-log-json/logs"):
        for p in sorted((FIXTURES / sub).rglob("*")):
            if p.is_file():
                out.append(p.relative_to(FIXTURES).as_posix())
    return out


def _is_free_text(rel: str) -> bool:
    return rel.split("/")[-1].startswith("worker-")


# Records that are not a parsed line, by hand: the aiohttp banner, and rotated files that
# start in the middle of a record (its header is in the next older file). They can only be at
# the start of a file.
ORPHANS = {
    "logs/runtime_env_agent.out": 2,
    "rotation/logs/gcs_server.out": 3,
    "rotation/logs/gcs_server.out.1": 1,
    "rotation/logs/gcs_server.out.2": 3,
    "rotation/logs/gcs_server.out.3": 1,
    "rotation/logs/raylet.out.1": 14,
}

HEADED = [
    rel
    for rel in _all_fixture_files()
    if not _is_free_text(rel) and not rel.endswith("debug_state.txt")
]


@pytest.mark.parametrize("rel", HEADED)
def test_every_line_parses_or_continues_its_record(rel: str) -> None:
    lines = read_lines(FIXTURES / rel)
    h = RayHandler(ctx_for(rel), ray_metadata=True, multiline=("ray",))
    recs = feed_all(h, lines)
    # Nothing lost, nothing doubled, order kept.
    assert "\n".join(r["log"] for r in recs) == "\n".join(lines)
    parser = LineParser()
    orphans = ORPHANS.get(rel, 0)
    for i, rec in enumerate(recs):
        assert rec["session"] == SESSION
        part = rec["log"].split("\n")
        if i < orphans:
            assert len(part) == 1 and "level" not in rec and rec["date"] == NOW
            continue
        assert {"level", "source", "message"} <= rec.keys(), rec["log"][:200]
        assert rec["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "FATAL"}
        assert parser.parse(part[0], NOW) is not None
        for cont in part[1:]:
            assert not parser.is_header(cont), cont
        if len(part) > 1 and not rec["log"].startswith("{"):
            assert rec["message"].split("\n")[1:] == part[1:]


def test_joined_records_of_the_session() -> None:
    """Multi-line records counted by hand in the fixture files."""

    def joined(rel: str) -> list[str]:
        recs = feed_all(RayHandler(ctx_for(rel), multiline=("ray",)), read_lines(FIXTURES / rel))
        return [r["log"] for r in recs if "\n" in r["log"]]

    raylet = joined("logs/raylet.out")
    assert len(raylet) == 2
    assert raylet[0].startswith(
        "[2026-11-28 10:06:46,829 I 15328 15338] (raylet) store.cc:573: "
        "Plasma store debug dump: \nCurrent usage: 0 / 7.45557 GB"
    )
    assert raylet[0].count("\n") == 21  # lines 9-29 of raylet.out
    monitor = joined("logs/monitor.log")
    assert len(monitor) == 4
    assert all("======== Autoscaler status: " in r for r in monitor)
    assert len(joined("logs/gcs_server.out")) == 3


def _tracebacks(recs: list[dict[str, Any]]) -> list[str]:
    """The traceback of each record that has one (alone, or after its logging line)."""
    start = "Traceback (most recent call last):"
    return [
        r["log"][r["log"].index(start) :]
        for r in recs
        if r["log"].startswith(start) or "\n" + start in r["log"]
    ]


def test_worker_err_tracebacks_are_one_record_each() -> None:
    rel = f"logs/worker-{W1}-ffffffff-15425.err"
    recs = feed_all(RayHandler(ctx_for(rel), multiline=("ray",)), read_lines(FIXTURES / rel))
    tbs = _tracebacks(recs)
    assert len(tbs) == 2
    for tb in tbs:
        assert tb.split("\n") == [
            "Traceback (most recent call last):",
            '  File "/tmp/rayjob/job6.py", line 32, in bad_logged',
            "    1 / 0",
            "    ~~^~~",
            "ZeroDivisionError: division by zero",
        ]
    # logger.exception's traceback is part of its record; traceback.print_exc's stands alone.
    logged, printed = (r for r in recs if "Traceback" in r["log"])
    assert logged["log"].startswith("ERROR:mytask:caught and logged with traceback\nTraceback")
    assert logged["level"] == "ERROR" and logged["logger"] == "mytask"
    assert logged["message"] == logged["log"][len("ERROR:mytask:") :]
    assert printed["log"] == tbs[1] and "level" not in printed
    tb_recs = [r for r in recs if "Traceback" in r["log"]]
    assert all(r["task_name"] == "bad_logged" and r["job_id"] == "01000000" for r in tb_recs)

    rel = f"rotation/logs/worker-{W5}-01000000-12773.err"
    recs = feed_all(RayHandler(ctx_for(rel), multiline=("ray",)), read_lines(FIXTURES / rel))
    tbs = _tracebacks(recs)
    assert len(tbs) == 1
    assert tbs[0].count("\n") == 11
    assert tbs[0].endswith("\nValueError: actor failure after talking")
    assert [r["log"] for r in recs][:3] == [
        "Starting Python GC thread",
        "[ray] Forcing OMP_NUM_THREADS=1 to avoid performance degradation with many workers "
        "(issue #6998). You can override this by explicitly setting OMP_NUM_THREADS, or "
        "changing num_cpus.",
        "Task failed with unretryable exception: "
        "TaskID(f4402ec78d3a2607a0e86c407796db68371c2e8501000000).",
    ]
    assert recs[3]["actor_name"] == "Talker"


@pytest.mark.parametrize("rel", [r for r in _all_fixture_files() if _is_free_text(r)])
def test_worker_files_tracebacks_and_markers(rel: str) -> None:
    lines = read_lines(FIXTURES / rel)
    recs = feed_all(RayHandler(ctx_for(rel), multiline=("ray",)), lines)
    # Marker lines are consumed, everything else is shipped in order.
    rest = [ln for ln in lines if not ln.startswith(MARKERS)]
    assert "\n".join(r["log"] for r in recs) == "\n".join(rest)
    assert len(_tracebacks(recs)) == sum(ln == "Traceback (most recent call last):" for ln in lines)
    for r in recs:
        assert r["component"] == "worker" and r["stream"] in ("out", "err")


def test_marker_fields_and_key_order() -> None:
    rel = f"logs/worker-{W1}-ffffffff-15425.out"
    recs = feed_all(RayHandler(ctx_for(rel), multiline=("ray",)), read_lines(FIXTURES / rel))
    got = [(r["log"], r.get("task_name"), r.get("job_id")) for r in recs]
    assert got == [
        ("task 0 stdout line", "task", "01000000"),
        ("task 0 multi", "task", "01000000"),
        ("line", "task", "01000000"),
        ("stdout", "task", "01000000"),
        ("task 2 stdout line", "task", "01000000"),
        ("task 2 multi", "task", "01000000"),
        ("line", "task", "01000000"),
        ("stdout", "task", "01000000"),
        ("task 3 stdout line", "task", "01000000"),
        ("task 3 multi", "task", "01000000"),
        ("line", "task", "01000000"),
        ("stdout", "task", "01000000"),
        ("bad task about to raise", "bad", "01000000"),
        ("crash task about to os._exit(1)", "crash", "01000000"),
    ]
    assert list(recs[0]) == [
        "date",
        "log",
        "path",
        "session",
        "component",
        "worker_id",
        "pid",
        "stream",
        "job_id",
        "task_name",
    ]
    assert recs[0]["worker_id"] == W1 and recs[0]["pid"] == 15425
    assert recs[0]["path"] == "/tmp/raytest/session_latest/logs/" + rel[len("logs/") :]
    assert recs[0]["date"] == NOW

    # An actor's marker ends the previous task name (as Ray's log monitor does).
    rel = f"logs/worker-{W4}-01000000-15494.err"
    h = RayHandler(ctx_for(rel), multiline=("ray",))
    h.feed([":task_name:t"], NOW)
    recs = feed_all(h, read_lines(FIXTURES / rel))
    assert {(r.get("actor_name"), r.get("task_name")) for r in recs} == {("A", None)}


def test_emit_markers() -> None:
    rel = f"logs/worker-{W3}-ffffffff-15426.out"
    lines = read_lines(FIXTURES / rel)
    recs = feed_all(RayHandler(ctx_for(rel), multiline=("ray",), emit_markers=True), lines)
    assert [r["log"] for r in recs] == lines
    assert recs[0].get("job_id") == "01000000" and "task_name" not in recs[0]
    assert recs[1]["task_name"] == "task"


def test_attempt_markers_set_task_id() -> None:
    h = RayHandler(ctx_for(f"logs/worker-{W3}-01000000-15426.out"))
    recs = feed_all(
        h,
        [
            ":task_attempt_start:c2668a65bda616c1ffffffffffffffffffffffff01000000-0",
            "inside",
            ":task_attempt_end:c2668a65bda616c1ffffffffffffffffffffffff01000000-0",
            "outside",
        ],
    )
    assert [(r["log"], r.get("task_id")) for r in recs] == [
        ("inside", "c2668a65bda616c1ffffffffffffffffffffffff01000000"),
        ("outside", None),
    ]


def test_core_worker_and_daemon_key_order() -> None:
    rel = f"logs/python-core-worker-{W1}_15425.log"
    recs = feed_all(RayHandler(ctx_for(rel), multiline=("ray",)), read_lines(FIXTURES / rel))
    assert list(recs[0]) == [
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
        "worker_id",
    ]
    assert recs[0]["component"] == "core_worker" and recs[0]["worker_id"] == W1
    recs = feed_all(
        RayHandler(ctx_for("logs/raylet.out", path_key=None)),
        read_lines(FIXTURES / "logs/raylet.out")[:1],
    )
    assert recs == [
        {
            "date": recs[0]["date"],
            "log": "[2026-11-28 10:06:46,822 I 15328 15328] (raylet) main.cc:283: Setting cluster "
            "ID to: ddd9e5774ef13c0d458f2c1e7453bc0aeed5f75e112ea6d2b81a801b",
            "session": SESSION,
            "component": "raylet",
            "level": "INFO",
            "pid": 15328,
            "tid": 15328,
            "source": "main.cc:283",
            "message": "Setting cluster ID to: "
            "ddd9e5774ef13c0d458f2c1e7453bc0aeed5f75e112ea6d2b81a801b",
        }
    ]


def test_events_and_backend_json_files() -> None:
    rel = "logs/events/event_RAYLET.log"
    (rec,) = feed_all(RayHandler(ctx_for(rel), multiline=("ray",)), read_lines(FIXTURES / rel))
    assert rec["component"] == "event" and rec["source"] == "RAYLET"
    assert rec["level"] == "ERROR" and rec["pid"] == 15328 and rec["date"] == 1795860408.0
    assert rec["label"] == "RAY_WORKER_FAILURE" and rec["worker_id"] == W1
    rel = (
        "backend-log-json/logs/python-core-worker-"
        "79bef2c5bc6c10fc1f3a58bae956a34b7b2f0acef25565680848d823_17274.log"
    )
    recs = feed_all(RayHandler(ctx_for(rel), multiline=("ray",)), read_lines(FIXTURES / rel))
    # The JSON form has no pid: the file name's fills in.
    assert all(r["pid"] == 17274 and r["component"] == "core_worker" for r in recs)


def test_stdin_prefixes_name_the_component() -> None:
    ctx = SourceContext(path="", real_path="", stream=True)
    lines = read_lines(FIXTURES / "log-to-stderr/driver-stdout.txt")
    recs = feed_all(RayHandler(ctx, multiline=("ray",)), lines)
    assert "\n".join(r["log"] for r in recs) == "\n".join(lines)
    comps = {r["component"] for r in recs}
    # Every unprefixed line here follows a prefixed one, so no record is the source's own.
    assert comps == {"gcs_server", "raylet", "core_driver", "core_worker"}
    assert all("session" not in r for r in recs)
    drv = next(r for r in recs if r["component"] == "core_driver")
    assert drv["worker_id"] == "01000000ffffffffffffffffffffffffffffffffffffffffffffffff"
    # Unprefixed worker output continues the record before it (docs/ray-logs.md).
    blank = next(r for r in recs if "BEFORE_BLANK" in r["log"])
    assert blank["log"].split("\n")[1:4] == [
        "RAY_INIT_SECONDS 2.27",
        ":job_id:01000000",
        ":task_name:blanks",
    ]
    lines = read_lines(FIXTURES / "log-to-stderr/driver-stderr.txt")
    recs = feed_all(RayHandler(ctx, multiline=("ray",)), lines)
    assert {r["component"] for r in recs} == {
        "stdin",
        "monitor",
        "dashboard",
        "log_monitor",
        "runtime_env_agent",
        "dashboard_agent",
    }


def test_without_ray_metadata() -> None:
    rel = "logs/gcs_server.out"
    lines = read_lines(FIXTURES / rel)
    ctx = ctx_for(rel)
    plain = make_ray_handler(ctx, ray_metadata=False, multiline=(), tz_offset=None)
    assert isinstance(plain, PlainHandler)
    h = make_ray_handler(ctx, ray_metadata=False, multiline=("ray",), tz_offset=None)
    recs = feed_all(h, lines)
    assert all(list(r) == ["date", "log", "path"] for r in recs)
    meta = feed_all(RayHandler(ctx, multiline=("ray",)), lines)
    assert [r["log"] for r in recs] == [r["log"] for r in meta]
    # Marker lines are plain lines then.
    rel = f"logs/worker-{W3}-ffffffff-15426.out"
    h = make_ray_handler(ctx_for(rel), ray_metadata=False, multiline=("python",), tz_offset=None)
    assert [r["log"] for r in feed_all(h, read_lines(FIXTURES / rel))] == read_lines(FIXTURES / rel)


def test_single_line_mode_parses_every_line() -> None:
    rel = "logs/raylet.out"
    lines = read_lines(FIXTURES / rel)
    recs = feed_all(RayHandler(ctx_for(rel)), lines)
    assert [r["log"] for r in recs] == lines
    assert sum("level" in r for r in recs) == 60


def test_offset_key_gives_each_record_its_last_line_end() -> None:
    rel = f"logs/worker-{W1}-ffffffff-15425.err"
    lines = read_lines(FIXTURES / rel)
    ends, pos = [], 0
    for ln in lines:
        pos += len(ln.encode()) + 1
        ends.append(pos)
    for ml in [("ray",), ()]:
        h = RayHandler(ctx_for(rel, offset_key="offset"), multiline=ml)
        recs = list(h.feed(lines[:10], NOW, ends[:10])) + list(h.feed(lines[10:], NOW, ends[10:]))
        recs += h.flush(NOW)
        assert list(recs[0])[:4] == ["date", "log", "path", "offset"]
        by_log = {r["log"]: r["offset"] for r in recs}
        tb = next(r for r in recs if "Traceback" in r["log"])
        if ml:
            assert tb["log"].startswith("ERROR:mytask:")  # logger.exception: one record
            assert tb["offset"] == ends[20]  # its last line, `ZeroDivisionError: ...`
        assert by_log["task 0 stderr line"] == ends[2]
        assert [r["offset"] for r in recs] == sorted(r["offset"] for r in recs)
    # No offsets from the reader: no offset key.
    h = RayHandler(ctx_for(rel, offset_key="offset"), multiline=("ray",))
    assert all("offset" not in r for r in feed_all(h, lines))


def test_reset_drops_held_lines_keeps_markers() -> None:
    h = RayHandler(ctx_for(f"logs/worker-{W1}-01000000-15425.err"), multiline=("ray",))
    h.feed([":task_name:x", "Traceback (most recent call last):", '  File "a.py"'], NOW)
    assert h.held_lines == 2
    h.reset()
    assert h.held_lines == 0 and h.flush(NOW) == []
    (rec,) = h.feed(["after"], NOW)
    assert rec["task_name"] == "x"


def test_unknown_multiline_parser() -> None:
    with pytest.raises(ValueError, match="nosuch"):
        RayHandler(ctx_for("logs/raylet.out"), multiline=("nosuch",))


def test_time_offset_is_in_hours() -> None:
    line = "[2026-11-28 10:06:46,822 I 15328 15328] (raylet) main.cc:283: x"
    utc = make_ray_handler(ctx_for("logs/raylet.out"), ray_metadata=True, multiline=(), tz_offset=0)
    cet = make_ray_handler(ctx_for("logs/raylet.out"), ray_metadata=True, multiline=(), tz_offset=1)
    (a,), (b,) = utc.feed([line], NOW), cet.feed([line], NOW)
    assert a["date"] == 1795860406.822 and a["date"] - b["date"] == 3600


# -- properties --------------------------------------------------------------------------

SPLIT_FILES = [
    "logs/raylet.out",
    "logs/monitor.log",
    f"logs/worker-{W1}-ffffffff-15425.err",
    f"logs/worker-{W1}-ffffffff-15425.out",
    "rotation/logs/raylet.out.1",
    f"rotation/logs/worker-{W5}-01000000-12773.err",
    "logs/python-core-worker-3042138ba0359a5a25f99e5f659a38cb676469b6cbbd6b3c0f4c435f_15521.log",
]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(SPLIT_FILES),
    st.lists(st.integers(0, 300), max_size=12),
    st.sampled_from([("ray",), ("python",), ()]),
    st.booleans(),
    st.booleans(),
)
def test_held_lines_is_exact_under_any_split(
    rel: str, cuts: list[int], ml: tuple[str, ...], meta: bool, flush_between: bool
) -> None:
    lines = read_lines(FIXTURES / rel)
    bounds = sorted({0, len(lines), *(c for c in cuts if c < len(lines))})
    ctx = ctx_for(rel, offset_key="offset")
    whole = feed_all(RayHandler(ctx, ray_metadata=meta, multiline=ml), lines)
    h = RayHandler(ctx, ray_metadata=meta, multiline=ml)
    recs: list[dict[str, Any]] = []
    consumed = 0
    for lo, hi in itertools.pairwise(bounds):
        recs += h.feed(lines[lo:hi], NOW)
        if meta and rel.split("/")[-1].startswith("worker-"):
            consumed += sum(ln.startswith(MARKERS) for ln in lines[lo:hi])
        emitted = sum(r["log"].count("\n") + 1 for r in recs)
        # The reader's safe offset: everything before the held lines is in a record.
        assert emitted + consumed + h.held_lines == hi
        assert h.held_lines >= 0
        if flush_between:
            recs += h.flush(NOW)
            assert h.held_lines == 0
    recs += h.flush(NOW + 5)
    assert h.held_lines == 0
    if not flush_between:
        assert recs == whole


_CONTEXTS = [
    "logs/raylet.out",
    "logs/dashboard.log",
    f"logs/worker-{W1}-ffffffff-15425.err",
    "logs/events/event_RAYLET.log",
    "",
    "logs/job-driver-raysubmit_x.log",
]
_SEEDS = [
    "[2026-11-28 10:07:08,319 I 1 2] (raylet) a.cc:1: m",
    "2026-11-28 10:07:08,319\tINFO (monitor) a.py:1 -- m",
    "I1128 10:07:08.319117 1 a.cc:1] m",
    "Traceback (most recent call last):",
    '  File "x.py", line 1',
    "ValueError: x",
    ":job_id:01000000",
    ":task_name:t",
    ":actor_name:A",
    '{"event_id":"e","timestamp":1}',
    '{"asctime":"2026-11-28 10:07:08,319","levelname":"E","message":"m"}',
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=80).map(lambda b: b.decode("utf-8", "replace")),
            st.sampled_from(_SEEDS),
        ),
        max_size=40,
    ),
    st.sampled_from(_CONTEXTS),
    st.sampled_from([("ray",), ("python",), ()]),
    st.booleans(),
    st.integers(1, 10),
)
def test_any_input_ships_every_line_unchanged(
    lines: list[str], rel: str, ml: tuple[str, ...], meta: bool, step: int
) -> None:
    # Lines as a reader makes them: no newline inside.
    lines = [piece for ln in lines for piece in ln.split("\n")]
    ctx = SourceContext(path="", real_path="", stream=True) if rel == "" else ctx_for(rel)
    h = make_ray_handler(ctx, ray_metadata=meta, multiline=ml, tz_offset=None, emit_markers=True)
    recs: list[dict[str, Any]] = []
    for i in range(0, len(lines), step):
        recs += h.feed(lines[i : i + step], NOW)
    recs += h.flush(NOW)
    assert "\n".join(r["log"] for r in recs) == "\n".join(lines)
    assert sum(r["log"].count("\n") + 1 for r in recs) == len(lines)
    for r in recs:
        assert list(r)[:2] == ["date", "log"] and isinstance(r["date"], float)
