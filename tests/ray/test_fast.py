"""shipper/ray/fast.py: the whole-chunk path gives the very records of the per-line path,
under any cut of the file into reads, on the real session's files and on hostile lines."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import shipper.ray.fast as fast_mod
import shipper.ray.free as free_mod
from shipper.chunk import Encoded
from shipper.lines import LineHandler
from shipper.ray.handler import RayHandler, make_ray_handler
from shipper.ray.lines import _BASIC as BASIC
from shipper.ray.structured import LEVELS
from shipper.tail.splitter import LineRules, LineSplitter
from tests.extensions import IMPLS
from tests.extensions import implementation as native_or_python
from tests.ray.test_handler import FIXTURES, HEADED, NOW, _all_fixture_files, ctx_for

pytestmark = pytest.mark.unit

# Both versions of the fast path: the C helper (shipper/ray/_fastray.c) and pure Python.
_BUILT = fast_mod._native


@contextlib.contextmanager
def implementation(impl: str) -> Iterator[None]:
    """Both modules of the C helper (fast.py's Ray formats, free.py's user output)."""
    with native_or_python(fast_mod, _BUILT, impl), native_or_python(free_mod, _BUILT, impl):
        yield


def test_the_c_helper_is_built_where_a_compiler_is() -> None:
    """`pip install .` builds it when it can; only then do the "c" cases below run."""
    if os.environ.get("SHIPPER_NO_EXTENSIONS"):
        assert not fast_mod.native()
    elif shutil.which("cc") or shutil.which("gcc"):
        assert fast_mod.native(), "a C compiler is here, but shipper.ray._fastray was not built"


RULES = LineRules(max_line=32768, skip_long=False, skip_empty=False, want_offsets=False)


def _file(handler: LineHandler) -> LineSplitter:
    return LineSplitter(handler=handler, rules=RULES)


def _records(part: list[dict[str, Any]] | Encoded) -> list[dict[str, Any]]:
    if isinstance(part, Encoded):
        return [orjson.loads(ln) for ln in b"".join(part.json).splitlines()]
    return [orjson.loads(orjson.dumps(r)) for r in part]  # as an output would see them


def ship(handler: RayHandler, pieces: list[bytes]) -> tuple[list[dict[str, Any]], int, list[int]]:
    """Pieces through the reader as reads; records, fast-path reads, commit positions."""
    f = _file(handler)
    out: list[dict[str, Any]] = []
    fast = 0
    commits = []
    for i, data in enumerate(pieces):
        part, end = f.ingest(data, NOW + i)
        fast += isinstance(part, Encoded)
        out += _records(part)
        commits.append(end)
    out += _records(f.flush_held(NOW + 99)[0])  # what the reader holds: deferred, held
    return out, fast, commits


def both(ctx_rel: str, data: bytes, cuts: list[int], multiline: tuple[str, ...] = ("ray",)) -> int:
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    fast_h = make_ray_handler(
        ctx_for(ctx_rel), ray_metadata=True, multiline=multiline, tz_offset=None
    )
    slow_h = make_ray_handler(
        ctx_for(ctx_rel), ray_metadata=True, multiline=multiline, tz_offset=None
    )
    assert isinstance(fast_h, RayHandler) and isinstance(slow_h, RayHandler)
    slow_h._fast = None
    slow_h._fast_free = False
    got, n_fast, commits = ship(fast_h, pieces)
    want, _, want_commits = ship(slow_h, pieces)
    assert got == want
    assert commits == want_commits  # held lines counted alike: the same offsets are stored
    return n_fast


WORKER_FILES = [rel for rel in _all_fixture_files() if rel.split("/")[-1].startswith("worker-")]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rel", HEADED + WORKER_FILES)
@pytest.mark.parametrize("multiline", [("ray",), ()])
def test_fixture_files_under_random_reads(rel: str, multiline: tuple[str, ...], impl: str) -> None:
    data = (FIXTURES / rel).read_bytes()
    rng = random.Random(rel)
    with implementation(impl):
        for _ in range(5):
            cuts = (
                sorted(rng.sample(range(1, len(data)), min(8, len(data) - 1)))
                if len(data) > 2
                else []
            )
            both(rel, data, cuts, multiline)


# User output, job drivers and Serve from the TEXT and JSON encodings run (Python logging's
# default format, Ray's TextFormatter context, Serve's lines, a driver's `(name pid=N)` lines).
ENCODINGS = FIXTURES.parent / "ray-session-2.60-encodings"
ENCODING_FILES = sorted(
    p.relative_to(ENCODINGS).as_posix()
    for p in ENCODINGS.glob("*/logs/**/*")
    if p.is_file() and p.name.startswith(("worker-", "job-driver-", "replica_", "proxy_"))
)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rel", ENCODING_FILES)
def test_encodings_fixture_files_under_random_reads(rel: str, impl: str) -> None:
    data = (ENCODINGS / rel).read_bytes()
    name = rel.split("/logs/", 1)[1]
    rng = random.Random(rel)
    with implementation(impl):
        for _ in range(4):
            cuts = sorted(rng.sample(range(1, len(data)), min(8, len(data) - 1)))
            both("logs/" + name, data, cuts)


def test_encodings_fixture_files_are_there() -> None:
    kinds = {rel.rsplit("/", 1)[1].split("-", 1)[0].split("_", 1)[0] for rel in ENCODING_FILES}
    assert kinds == {"worker", "job", "replica", "proxy"}


@pytest.mark.parametrize("impl", IMPLS)
def test_the_fast_path_takes_the_daemon_logs(impl: str) -> None:
    """Not a path that never runs: whole reads of real files go through it."""
    with implementation(impl):
        _takes_the_daemon_logs()


def _takes_the_daemon_logs() -> None:
    taken = 0
    for rel in (
        "logs/raylet.out",
        "logs/gcs_server.out",
        "logs/dashboard.log",
        "logs/monitor.log",
        *WORKER_FILES[:2],
    ):
        data = (FIXTURES / rel).read_bytes()
        taken += both(rel, data, [len(data) // 2])
    assert taken >= 10


STAMP = st.sampled_from(
    ["2026-11-28 10:07:08", "2026-13-45 10:07:08", "1969-12-31 23:59:59", "2026-03-29 02:30:00"]
)
# Message text: quotes, backslashes, control characters, non-ASCII. A DEL, a CR or an invalid
# byte anywhere sends the whole chunk per line, so those are rare (see RARE), not in every text.
TEXT = st.lists(
    st.sampled_from([*'aZ0 :()[]"\\\t\x0b\x0c\x1béß€😀-.,', "--", ".py", ".cc:"]), max_size=25
).map("".join)
RARE = st.sampled_from(["a DEL \x7f here", "plain \r", "bad \udcff byte"])
CPP_LINE = st.builds(
    lambda ts, ms, lvl, pid, tid, comp, src, msg: (
        f"[{ts},{ms} {lvl} {pid} {tid}] {comp}{src}: {msg}"
    ),
    STAMP,
    st.sampled_from(["000", "319", "999"]),
    st.sampled_from(list("TDIWECX")),
    st.sampled_from(["15251", "0", "007", "1" * 18, "1" * 19, "00"]),
    st.sampled_from(["15251", "1", "0", "1" * 19]),
    st.sampled_from(["", "(raylet) ", '(ray"let) ', "(a b) ", "(raylet)", "() ", "(x)) "]),
    st.sampled_from(
        ["file.cc:103", "a\\b.cc:1", 'q"x.cc:2', "x.cc", "d\tx.cc:3", "x.cc:", "x.cc:1:", ":1"]
    ),
    TEXT,
)
PY_LINE = st.builds(
    lambda ts, ms, sep, lvl, src, dash, msg: f"{ts},{ms}{sep}{lvl} {src} {dash}{msg}",
    STAMP,
    st.sampled_from(["000", "320"]),
    st.sampled_from(["\t", " ", "\\t"]),
    st.sampled_from(
        ["INFO", "WARNING", "CRITICAL", "WARN", "NOTE", "DEBUG", "ERROR", "FATAL", "TRACE", "WARNS"]
    ),
    st.sampled_from(
        [
            "worker.py:95",
            "(unknown file):0",
            'w"x.py:1',
            "a\\b.py:2",
            "x.py",
            "a:1:2",
            ":12",
            "x.py:",
            "(x) y.py:3",
            "(unknown file):",
            "(unknown file):1x",
        ]
    ),
    st.sampled_from(["-- ", "--", "- ", "--x"]),
    TEXT,
)
# Lines of a Python traceback and lines near one, for the C helper's joining.
TRACEBACK_LINES = st.sampled_from(
    [
        "Traceback (most recent call last):",
        "Traceback (most recent call last):  \x1f",
        "Traceback (most recent call last): no",
        '  File "x.py", line 1, in <module>',
        "    x = f()",
        "\t\u00a0",
        "  \u3000",
        "   ",
        "ValueError: x",
        "KeyboardInterrupt",
        "KeyboardInterrupt \x0b",
        "ray.exceptions.RayTaskError(ValueError): y",
        "a.b(c.d):",
        "a.(b):",
        "Errör: x",
        "ERROR:x:y",
        "",
    ]
)


OTHER = st.one_of(
    TEXT,
    TRACEBACK_LINES,
    st.sampled_from(
        [
            "Traceback (most recent call last):",
            '  File "x.py", line 1',
            "ValueError: x",
            "",
            ":job_id:01000000",
            ":task_name:f",
            ":actor_name:A",
            ":task_attempt_start:abc-0",
            '{"asctime": "2026-11-28 10:07:08,319", "levelname": "INFO", "message": "m"}',
            "I1128 10:07:08.319117   15251 file.cc:1403] glog",
            "ERROR:mytask:caught in task 0",
            "INFO:root:",
            "WARNING:a.b:x:y",
            "ERROR: not a logger",
            "INFO 2026-12-07 06:15:59,485 app1_Hello h1l0i75e 22ffe725-cd -- hello",
            "WARNING 2026-12-07 06:16:01,774 controller 650 -- exiting.",
            "INFO 2026-12-07 06:16:01,774 proxy 127.0.0.1 --",
            "2026-12-07 06:16:16,734\tWARNING driver.py:21 -- w user_key=v job_id=03 "
            "task_name=work timestamp_ns=1796624176734273536",
            "KeyError: 'missing' job_id=03000000 task_name=work timestamp_ns=1796624177151362400",
            "\x1b[36m(work pid=553)\x1b[0m INFO:mytask:info from task 0",
            "\x1b[36m(work pid=553)\x1b[0m Traceback (most recent call last):",
            "(Counter pid=617, ip=10.0.0.1) ERROR:actor:actor error line",
            "\x1b[33m(raylet)\x1b[0m A worker died",
            "(not a prefix",
            '{"asctime": "2026-12-07 06:18:54,678", "levelname": "ERROR", "message": "caught", '
            '"process": 551, "exc_text": "Traceback (most recent call last):\\nKeyError: 1", '
            '"job_id": "02000000", "timestamp_ns": 1796624334678581212}',
        ]
    ),
)
LINES = st.lists(
    st.one_of(CPP_LINE, CPP_LINE, PY_LINE, PY_LINE, OTHER, RARE), min_size=1, max_size=25
)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=300, deadline=None)
@example(  # a flush (the logging line left unread) once left the joiner in a traceback
    lines=[
        "Traceback (most recent call last):",
        "ERROR:mytask:caught in task 0",
        "Traceback (most recent call last):",
    ],
    cut_seed=0,
    multiline=("ray",),
)
@given(lines=LINES, cut_seed=st.integers(0, 2**16), multiline=st.sampled_from([("ray",), ()]))
def test_hostile_lines_give_the_same_records(
    lines: list[str], cut_seed: int, multiline: tuple[str, ...], impl: str
) -> None:
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")  # \udcff: a bad byte
    rng = random.Random(cut_seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1))) if len(data) > 2 else []
    with implementation(impl):
        _same_records_everywhere(data, cuts, multiline)


def _same_records_everywhere(data: bytes, cuts: list[int], multiline: tuple[str, ...]) -> None:
    for rel in (
        "logs/raylet.out",
        "logs/dashboard.log",
        "logs/python-core-worker-24d79453cbada04c5c47f9d03cc80fd828c55fc9d7bfc6c9c32f7401_15425.log",
        WORKER_FILES[0],
        "logs/job-driver-raysubmit_x.log",
        "logs/serve/replica_app_Model_x8a2.log",
    ):
        both(rel, data, cuts, multiline)


@pytest.mark.parametrize("impl", IMPLS)
def test_hostile_but_fast(impl: str) -> None:
    """Quotes, backslashes, tabs, escapes and non-ASCII in messages, continuation lines and
    a leading-zero pid among them: fast where it can be, the same records everywhere."""
    with implementation(impl):
        _hostile_but_fast()


def _hostile_but_fast() -> None:
    cpp = [
        '[2026-11-28 10:07:08,319 I 15251 15251] (raylet) file.cc:103: say "hi"\\ \t\x1b[31m é',
        "[2026-11-28 10:07:08,320 W 15251 7] x.cc:1: next",
        "  continuation of the warning",
        "[2026-11-28 10:07:08,321 E 015251 7] x.cc:1: a leading zero: per line",
        "[2026-11-28 10:07:08,322 I 1 2] y.cc:9: ok",
        "[2026-11-28 10:07:08,323 I 1 2] y.cc:9: held",
    ]
    py = [
        '2026-11-28 10:07:08,319\tINFO worker.py:95 -- a "quoted" \t tab',
        "2026-11-28 10:07:08,320\tERROR worker.py:96 -- boom",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "ValueError: x",
        "2026-11-28 10:07:08,321\tINFO worker.py:97 --",
        "2026-11-28 10:07:08,322\tINFO (unknown file):0 -- last",
        "2026-11-28 10:07:08,323\tINFO worker.py:98 -- held",
    ]
    for rel, lines in (("logs/raylet.out", cpp), ("logs/dashboard.log", py)):
        data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")  # \udcff: a bad byte
        assert both(rel, data, []) == 1
        assert both(rel, data, [len(data) // 3]) >= 1


def _mostly(valid: list[str], hostile: list[str]) -> st.SearchStrategy[str]:
    """A header field: valid nine times in ten, so that most lines miss by one field."""
    return st.integers(0, 9).flatmap(
        lambda i: st.sampled_from(valid) if i else st.sampled_from(hostile)
    )


NEAR_CPP = st.builds(
    lambda ts, ms, lvl, pid, tid, comp, src, sep, msg: (
        f"[{ts},{ms} {lvl} {pid} {tid}] {comp}{src}{sep}{msg}"
    ),
    _mostly(
        ["2026-11-28 10:07:08", "2026-11-28 10:07:09"],
        ["2026-11-28 10:07:0x", "1969-12-31 23:59:59", "2026-11-28 10:07:08 "],
    ),
    _mostly(["000", "319"], ["31", "3190", "31a"]),
    _mostly(list("TDIWEC"), ["X", "i", "II", ""]),
    _mostly(["15251", "0", "1" * 18], ["007", "1" * 19, "00", "", "-1"]),
    _mostly(["15251", "0", "1" * 18], ["01", "1" * 19, ""]),
    _mostly(["", "(raylet) ", "(gcs_server) "], ["(raylet)", "() ", "(x)) ", "(a b) ", '(a\\"b) ']),
    _mostly(
        ["file.cc:103", "a.b_c.cc:1"], ["x.cc", "x.cc:", ":1", "a:b.cc:1", "a\\b.cc:1", "x.cc:1x"]
    ),
    _mostly([": ", ":"], [" :", ";"]),
    TEXT,
)
NEAR_PY = st.builds(
    lambda ts, ms, sep, lvl, comp, src, dash, msg: f"{ts},{ms}{sep}{lvl} {comp}{src} {dash}{msg}",
    _mostly(
        ["2026-11-28 10:07:08", "2026-11-28 10:07:09"], ["2026-11-28 10:07", "x026-11-28 10:07:08"]
    ),
    _mostly(["000", "320"], ["32", "3200"]),
    _mostly(["\t"], ["\t\t", " ", "\\t"]),
    _mostly(
        ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "WARN", "FATAL", "TRACE"],
        ["WARNS", "info", "NOTE", ""],
    ),
    _mostly(["", "(raylet) "], ["(raylet)", "() ", "(a b) "]),
    _mostly(
        ["worker.py:95", "(unknown file):0", "a:1:2", "::5"],
        [":12", "x.py:", "x.py", "(unknown file):", "(unknown file):1x", "a\\b.py:2", "x.py:1x"],
    ),
    _mostly(["-- ", "--"], ["- ", "--x", "-- -"]),
    TEXT,
)


@settings(max_examples=500, deadline=None)
@given(
    lines=st.lists(st.one_of(NEAR_CPP, NEAR_PY, CPP_LINE, PY_LINE, OTHER), min_size=1, max_size=25),
    multiline=st.sampled_from([(), ("ray",)]),
)
def test_the_c_helper_takes_exactly_the_lines_the_regexes_take(
    lines: list[str], multiline: tuple[str, ...]
) -> None:
    """Row for row: the same rows left to the per-line path, the same bytes for the rest,
    and (with the `ray` joiner) the same verdict on the last line's header (defer). With the
    joiner, C also takes continuation lines into the record before them (Python sends them
    per line): every run Python takes, C takes with the same bytes, and the records of both
    are the per-line path's."""
    if _BUILT is None:
        pytest.skip("shipper/ray/_fastray.c is not built here")
    data = "\n".join(lines).encode("utf-8", "surrogateescape")
    handler = make_ray_handler(
        ctx_for("logs/raylet.out"), ray_metadata=True, multiline=multiline, tz_offset=None
    )
    assert isinstance(handler, RayHandler) and handler._fast is not None
    fast = handler._fast
    plans = {}
    for impl in IMPLS:
        with implementation(impl):
            plans[impl] = fast.plan(data)
    c, py = plans["c"], plans["python"]
    if any(line[:1] == "[" or line[:1].isdigit() for line in lines[1:]):
        assert c is not None  # no DEL, CR or bad byte here: the chunk was planned
    if c is None or py is None:
        assert c is py
        return
    assert (c.lines, c.defer) == (py.lines, py.defer)
    if not multiline:
        assert c.runs == py.runs
    taken_by_c = {i for f, a, b in c.runs if f for i in range(a, b)}
    for f, a, b in py.runs:
        if f:
            assert taken_by_c >= set(range(a, b))
            with implementation("c"):
                got = fast.encode_rows(c, a, b)
            with implementation("python"):
                assert got == fast.encode_rows(py, a, b)
    with implementation("c"):
        both("logs/raylet.out", data + b"\n", [], multiline)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_logged_traceback_is_joined_on_the_fast_path(impl: str) -> None:
    """An ERROR with its traceback in a Ray daemon's log: in C, one record of five lines in
    the same whole-chunk pass as the lines around it (no per-line work); the same records
    as the per-line path either way, however the file is cut into reads."""
    lines = [
        "[2026-11-28 10:07:08,319 I 15251 15251] (raylet) file.cc:103: before",
        "[2026-11-28 10:07:08,320 E 15251 7] x.cc:1: boom",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "    raise ValueError('x')",
        "ValueError: x",
        "[2026-11-28 10:07:08,321 I 1 2] y.cc:9: after",
        "[2026-11-28 10:07:08,322 I 1 2] y.cc:9: left for the next read",
    ]
    data = ("\n".join(lines) + "\n").encode()
    handler = make_ray_handler(
        ctx_for("logs/raylet.out"), ray_metadata=True, multiline=("ray",), tz_offset=None
    )
    assert isinstance(handler, RayHandler) and handler._fast is not None
    with implementation(impl):
        plan = handler._fast.plan(data[:-1])
        assert plan is not None and plan.defer
        if impl == "c":
            assert plan.whole and plan.runs == [(True, 0, 7)]
            records = [orjson.loads(x) for x in handler._fast.encode_rows(plan, 0, 7).splitlines()]
            assert [r["message"] for r in records] == [
                "before",
                "boom\n" + "\n".join(lines[2:6]),
                "after",
            ]
            assert records[1]["log"] == "\n".join(lines[1:6])
        else:
            assert (False, 1, 6) in plan.runs  # the header and its traceback, per line
        for cut in range(1, len(data), 7):
            both("logs/raylet.out", data, [cut])
        # Cut right after the traceback: it may go on in the next read, so it waits whole.
        assert both("logs/raylet.out", data, [data.index(b"[2026-11-28 10:07:08,321")]) >= 1


FREE_TEXT = st.lists(
    st.one_of(
        st.characters(max_codepoint=0x20),  # every control character (CR left out below)
        st.sampled_from(
            [
                *'"\\/\x7f aZ09[{:(IWEFé€😀',
                *("Traceback", "I0", "W9", "\U0010ffff", "\x1b[36m(w pid=1)"),
                *("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "INF", "ERRO"),
                *("INFO:root:", "CRITICAL:a.b:", "WARNING:é:", "ERROR::", 'DEBUG:x"y:'),
            ]
        ),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=500, deadline=None)
@example(lines=["\x1f\x7f", "INFO:root:", ""], start=0, forwarded=False, most=-1, joins=False)
@example(lines=["INFO:root:", "\x1f\x7f"], start=0, forwarded=False, most=-1, joins=False)
@example(lines=["INFO:root:", "a", "b"], start=0, forwarded=False, most=1, joins=False)
@example(
    lines=["a", "Traceback (most recent call last):", "  File", "ValueError: x", "b"],
    start=0,
    forwarded=False,
    most=-1,
    joins=True,
)
@given(
    lines=st.lists(st.one_of(FREE_TEXT, TRACEBACK_LINES), min_size=1, max_size=12),
    start=st.integers(0, 11),
    forwarded=st.booleans(),
    most=st.sampled_from([-1, 1, 2, 3]),
    joins=st.booleans(),
)
def test_the_c_helper_writes_user_output_as_the_python_path_does(
    lines: list[str], start: int, forwarded: bool, most: int, joins: bool
) -> None:
    """free_rows: the same records (JSON as orjson escapes it) and the same special line;
    a basicConfig line with its level, logger and message, unless in a driver's output;
    no more than `most` lines, stopping at the next."""
    if _BUILT is None:
        pytest.skip("shipper/ray/_fastray.c is not built here")
    lines = [ln.replace("\r", "") for ln in lines]
    text = "\n".join(lines).encode()
    pos = len("\n".join(lines[:start]).encode()) + 1 if 0 < start < len(lines) else 0
    head, tail = b'{"date":1.5,"log":"', b'","k":1}\n'
    got = {}
    for impl in IMPLS:
        with implementation(impl):
            run, n, nxt = free_mod.free_rows(text, pos, head, tail, forwarded, most, joins)
            got[impl] = (None if run is None else b"".join(run), n, nxt)
    c_out, c_n, c_nxt = got["c"]
    assert c_out is not None
    # Python refuses to escape a DEL next to control characters: it stops before such lines
    # (they go per line) where C goes on; up to there, the same
    py_out, py_n, py_nxt = got["python"]
    if py_out is not None:
        assert c_out.startswith(py_out) and py_n <= c_n
        if py_nxt == c_nxt:
            assert (c_out, c_n) == (py_out, py_n)
    # Each record is what orjson makes of the line alone (and of lines.py's basicConfig
    # match), or of a whole Python traceback's lines joined; every line taken, in order
    stop = len(text) if c_nxt < 0 else c_nxt - 1
    taken = text[pos:stop].decode() if c_n else ""
    logs = [orjson.loads(x)["log"] for x in c_out.splitlines()]
    assert len(logs) == c_n and "\n".join(logs) == taken
    if most >= 1:
        assert c_n <= most
    want = []
    for line in logs:
        rec: dict[str, object] = {"date": 1.5, "log": line}
        m = BASIC.match(line)
        if "\n" in line:
            assert joins and not forwarded
            assert line.startswith("Traceback (most recent call last):")
            assert all(x[:1] in (" ", "\t") for x in line.split("\n")[1:-1])
        elif m is not None:
            assert not forwarded
            fields = {"level": LEVELS[m.group(1)], "logger": m.group(2)}
            rec |= fields | {"message": line[m.end() :]}
        want.append(orjson.dumps(rec | {"k": 1}) + b"\n")
    assert c_out == b"".join(want)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_refused_line_before_a_logging_line_gives_the_same_records(impl: str) -> None:
    """A DEL next to a control character (escaping refused in Python, per line) before a
    basicConfig line the C helper takes: the records are the per-line path's."""
    data = b"\x1f\x7f\nINFO:root:\nplain\nWARNING:a.b:m\nTraceback (most recent call last):\n"
    data += b'  File "x.py", line 1\nValueError: x\nlast\n'
    with implementation(impl):
        for cuts in ([], [5], [9, 30], [len(data) - 3]):
            both(WORKER_FILES[0], data, cuts)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_logging_line_last_waits_unread_and_keeps_its_read_time(impl: str) -> None:
    """User output whose read ends in a basicConfig line: the line waits unread for the next
    read (which shows whether its traceback follows) instead of going per line, and its record
    keeps the time it was first read: after a read that brings no line after it, with its
    traceback, and at the flush timeout."""
    with implementation(impl):
        handler = make_ray_handler(
            ctx_for(WORKER_FILES[0]), ray_metadata=True, multiline=("ray",), tz_offset=None
        )
        f = _file(handler)

        def read(data: bytes, at: float) -> list[tuple[float, str]]:
            part, _ = f.ingest(data, at)
            assert isinstance(part, Encoded)  # never the per-line split
            return [(r["date"], r["log"]) for r in _records(part)]

        assert read(b"plain\nINFO:a:b\n", NOW) == [(NOW, "plain")]
        assert f.deferred == len(b"INFO:a:b\n") and f.held
        assert read(b"no newline yet", NOW + 1) == []
        assert read(b"\nmore\n", NOW + 2) == [
            (NOW, "INFO:a:b"),
            (NOW + 2, "no newline yet"),
            (NOW + 2, "more"),
        ]
        assert not f.held
        assert read(b"WARNING:a:c\n", NOW + 3) == []
        tb = b'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: x\n'
        assert read(tb + b"after\n", NOW + 4) == [
            (NOW + 3, "WARNING:a:c\n" + tb.decode().rstrip("\n")),
            (NOW + 4, "after"),
        ]
        assert read(b"ERROR:a:d\n", NOW + 5) == []
        flushed, end = f.flush_held(NOW + 9)
        assert [(r["date"], r["log"], r["level"]) for r in flushed] == [
            (NOW + 5, "ERROR:a:d", "ERROR")
        ]
        assert end == f.read_pos and not f.held


def test_a_users_traceback_is_joined_on_the_fast_path() -> None:
    """A worker's uncaught traceback, whole in a read: one record of the C pass, no line of
    it per line; the records are the per-line path's."""
    if _BUILT is None:
        pytest.skip("shipper/ray/_fastray.c is not built here")
    tb = b'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n    f()\n'
    data = b"before\n" + tb + b"ValueError: x\nafter\n"
    handler = make_ray_handler(
        ctx_for(WORKER_FILES[0]), ray_metadata=True, multiline=("ray",), tz_offset=None
    )
    enc = handler.encode(data[:-1], NOW)
    assert isinstance(enc, Encoded) and enc.count == 3
    assert len(enc.json) == 1  # one piece: the C pass took every line
    assert [r["log"] for r in _records(enc)] == [
        "before",
        (tb + b"ValueError: x").decode(),
        "after",
    ]
    for cuts in ([], [len(b"before\n") + 10], [len(data) - 8]):
        both(WORKER_FILES[0], data, cuts)
