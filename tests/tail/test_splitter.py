"""LineSplitter in process: however a byte stream is cut into reads, the same records come
out and the positions end in the same place as with one read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.chunk import Encoded
from shipper.lines import PlainHandler, SourceContext
from shipper.tail.splitter import LineRules, LineSplitter

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0
MAX = 12  # a small line limit, so that long lines are common


def _rules(**kw: bool) -> LineRules:
    base = {"skip_long": False, "skip_empty": False, "want_offsets": False}
    base.update(kw)
    return LineRules(max_line=MAX, **base)


def _splitter(rules: LineRules, longs: list[tuple[int, bool]] | None = None) -> LineSplitter:
    ctx = SourceContext(path="/p", real_path="/p", offset_key="o" if rules.want_offsets else None)
    seen = longs if longs is not None else []
    return LineSplitter(
        handler=PlainHandler(ctx),
        rules=rules,
        on_long=lambda n, skipped: seen.append((n, skipped)),
    )


def _records(part: list[dict[str, Any]] | Encoded) -> list[dict[str, Any]]:
    if isinstance(part, Encoded):
        return [orjson.loads(ln) for ln in b"".join(part.json).splitlines()]
    return [orjson.loads(orjson.dumps(r)) for r in part]


def _feed(split: LineSplitter, pieces: list[bytes]) -> tuple[list[dict[str, Any]], list[int]]:
    out: list[dict[str, Any]] = []
    ends: list[int] = []
    for piece in pieces:
        part, end = split.ingest(piece, NOW)
        out += _records(part)
        ends.append(end)
    return out, ends


LINE = st.lists(
    st.sampled_from([b"a", b"b", b" ", b"\r", b"\xc3\xa9", b"\xff", b'"', b"\\", b"\x7f"]),
    max_size=3 * MAX,
).map(b"".join)
STREAM = st.lists(LINE, max_size=12).map(lambda ls: b"\n".join(ls))


@settings(max_examples=300, deadline=None)
@given(
    data=STREAM,
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=8),
    skip_long=st.booleans(),
    skip_empty=st.booleans(),
    want_offsets=st.booleans(),
)
def test_any_cut_of_a_stream_gives_the_records_of_one_read(
    data: bytes, cuts: list[int], skip_long: bool, skip_empty: bool, want_offsets: bool
) -> None:
    rules = _rules(skip_long=skip_long, skip_empty=skip_empty, want_offsets=want_offsets)
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    whole, cut = _splitter(rules), _splitter(rules)
    want, _ = _feed(whole, [data])
    got, ends = _feed(cut, pieces)
    # The one thing reads decide: the Offset_Key of a line cut before its end was read is
    # where reading was (its end is not known yet).
    for rec in (*want, *got):
        if rec.get("truncated"):
            rec.pop("o", None)
    assert got == want
    assert ends == sorted(ends)  # emitted ranges only move forward
    for a, b in ((whole, cut),):
        assert (a.read_pos, a.line_pos, a.emitted, a.partial, a.skipping) == (
            b.read_pos,
            b.line_pos,
            b.emitted,
            b.partial,
            b.skipping,
        )
    assert cut.read_pos == len(data)
    if not cut.skipping:
        assert cut.line_pos == len(data) - len(cut.partial)
    # what drain emits for the unfinished last line is the same too
    assert _records(whole.drain(NOW)[0]) == _records(cut.drain(NOW)[0])
    assert whole.emitted == cut.emitted == len(data)


def test_long_lines_are_cut_flagged_and_reported() -> None:
    longs: list[tuple[int, bool]] = []
    split = _splitter(_rules(), longs)
    got, _ = _feed(split, [b"short\n" + b"x" * 30 + b"\nnext\n"])
    assert [(r["log"], r.get("truncated")) for r in got] == [
        ("short", None),
        ("x" * MAX, True),
        ("next", None),
    ]
    assert longs == [(1, False)]


def test_a_long_unfinished_line_is_cut_once_and_its_rest_dropped() -> None:
    longs: list[tuple[int, bool]] = []
    split = _splitter(_rules(skip_long=True), longs)
    got, ends = _feed(split, [b"y" * 20, b"y" * 20, b"yy\nafter\n"])
    assert [r["log"] for r in got] == ["after"]  # skipped, then the next line
    assert longs == [(1, True)]
    assert ends[-1] == split.line_pos == 49


def test_restart_forgets_everything_held() -> None:
    split = _splitter(_rules())
    _feed(split, [b"one\ntw"])
    assert split.partial == b"tw" and split.read_pos == 6
    split.restart(0)
    assert (split.read_pos, split.line_pos, split.emitted, split.partial) == (0, 0, 0, b"")
    got, _ = _feed(split, [b"new\n"])
    assert [r["log"] for r in got] == ["new"]


def test_take_partial_hands_back_the_unfinished_line() -> None:
    split = _splitter(_rules())
    _feed(split, [b"done\nhalf"])
    assert split.take_partial() == b"half"
    assert split.take_partial() == b""
