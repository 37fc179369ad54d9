"""shipper/ray/fast.py: the whole-chunk path gives the very records of the per-line path,
under any cut of the file into reads, on the real session's files and on hostile lines."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.chunk import Encoded
from shipper.lines import LineHandler
from shipper.ray.handler import RayHandler, make_ray_handler
from shipper.tail.identity import FileId
from shipper.tail.reader import LineRules, TailedFile
from tests.ray.test_handler import FIXTURES, HEADED, NOW, _all_fixture_files, ctx_for

RULES = LineRules(max_line=32768, skip_long=False, skip_empty=False, want_offsets=False)


def _file(handler: LineHandler) -> TailedFile:
    return TailedFile(
        fid=FileId(1, 1),
        fd=-1,
        path="/x",
        real_path="/x",
        offset=0,
        fingerprint=b"",
        handler=handler,
        tag="t",
        notify=lambda f, n: None,
    )


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
        part, end = f.ingest(data, RULES, NOW + i)
        fast += isinstance(part, Encoded)
        out += _records(part)
        f.new_ack(end)
        commits.append(end)
    out += _records(handler.flush(NOW + 99))
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


@pytest.mark.parametrize("rel", HEADED + WORKER_FILES)
@pytest.mark.parametrize("multiline", [("ray",), ()])
def test_fixture_files_under_random_reads(rel: str, multiline: tuple[str, ...]) -> None:
    data = (FIXTURES / rel).read_bytes()
    rng = random.Random(rel)
    for _ in range(5):
        cuts = (
            sorted(rng.sample(range(1, len(data)), min(8, len(data) - 1))) if len(data) > 2 else []
        )
        both(rel, data, cuts, multiline)


def test_the_fast_path_takes_the_daemon_logs() -> None:
    """Not a path that never runs: whole reads of real files go through it."""
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
TEXT = st.lists(
    st.sampled_from([*'aZ0 :()[]"\\\t\x0b\x0c\x1b\x7féß€😀-.,', "--", ".py", ".cc:"]), max_size=25
).map("".join)
CPP_LINE = st.builds(
    lambda ts, ms, lvl, pid, tid, comp, src, msg: (
        f"[{ts},{ms} {lvl} {pid} {tid}] {comp}{src}: {msg}"
    ),
    STAMP,
    st.sampled_from(["000", "319", "999"]),
    st.sampled_from(list("TDIWECX")),
    st.sampled_from(["15251", "0", "007", "1" * 20]),
    st.sampled_from(["15251", "1"]),
    st.sampled_from(["", "(raylet) ", '(ray"let) ', "(a b) "]),
    st.sampled_from(["file.cc:103", "a\\b.cc:1", 'q"x.cc:2', "x.cc", "d\tx.cc:3"]),
    TEXT,
)
PY_LINE = st.builds(
    lambda ts, ms, sep, lvl, src, dash, msg: f"{ts},{ms}{sep}{lvl} {src} {dash}{msg}",
    STAMP,
    st.sampled_from(["000", "320"]),
    st.sampled_from(["\t", " ", "\\t"]),
    st.sampled_from(["INFO", "WARNING", "CRITICAL", "WARN", "NOTE"]),
    st.sampled_from(["worker.py:95", "(unknown file):0", 'w"x.py:1', "a\\b.py:2", "x.py"]),
    st.sampled_from(["-- ", "--", "- "]),
    TEXT,
)
OTHER = st.one_of(
    TEXT,
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
            "plain \r",
            "bad \udcff byte",
        ]
    ),
)
LINES = st.lists(st.one_of(CPP_LINE, PY_LINE, OTHER), min_size=1, max_size=25)


@settings(max_examples=300, deadline=None)
@given(lines=LINES, cut_seed=st.integers(0, 2**16), multiline=st.sampled_from([("ray",), ()]))
def test_hostile_lines_give_the_same_records(
    lines: list[str], cut_seed: int, multiline: tuple[str, ...]
) -> None:
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")  # \udcff: a bad byte
    rng = random.Random(cut_seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1))) if len(data) > 2 else []
    for rel in (
        "logs/raylet.out",
        "logs/dashboard.log",
        "logs/python-core-worker-24d79453cbada04c5c47f9d03cc80fd828c55fc9d7bfc6c9c32f7401_15425.log",
        WORKER_FILES[0],
    ):
        both(rel, data, cuts, multiline)


def test_hostile_but_fast() -> None:
    """Quotes, backslashes, tabs, escapes and non-ASCII in messages, continuation lines and
    a leading-zero pid among them: fast where it can be, the same records everywhere."""
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
