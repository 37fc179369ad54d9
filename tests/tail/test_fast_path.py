"""The whole-chunk fast path (shipper/escape.py, PlainHandler.encode, chunks_json) gives
byte for byte what the per-line path gives, and steps aside whenever it could not."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.chunk import Chunk, Encoded, decode_json_lines, make_chunk
from shipper.escape import escape_chunk, longest_line_over
from shipper.formats import DateFormat, chunks_json, encode_json_array, encode_json_lines
from shipper.lines import PlainHandler, SourceContext

pytestmark = pytest.mark.unit

NOW = 1795860428.319

# Lines as they come: text with quotes, backslashes, tabs, control characters and non-ASCII,
# or arbitrary bytes (invalid UTF-8). Never a newline: lines are what lies between them.
TEXT_LINE = st.text(
    alphabet=st.sampled_from(
        [
            "a",
            "Z",
            "0",
            " ",
            '"',
            "\\",
            "\t",
            "\r",
            "\x00",
            "\x1f",
            "\x7f",
            "é",
            "€",
            "😀",
            "/",
            "\u2028",
            "{",
            "}",
            ",",
            ":",
        ]
    ),
    max_size=40,
).map(lambda s: s.encode())
BYTES_LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))
LINES = st.lists(st.one_of(TEXT_LINE, BYTES_LINE), min_size=1, max_size=30)


def per_line(handler: PlainHandler, lines: list[bytes]) -> bytes:
    """What the per-line path emits for these lines (the reference)."""
    text = [ln.decode("utf-8", "replace") for ln in lines]
    return b"".join(orjson.dumps(r) + b"\n" for r in handler.feed(text, NOW))


@pytest.mark.parametrize("path_key", ["path", None, 'we"ird\\key'])
@settings(max_examples=300, deadline=None)
@given(lines=LINES)
def test_plain_encode_equals_the_per_line_records(path_key: str | None, lines: list[bytes]) -> None:
    ctx = SourceContext(path='/logs/a "b".log', real_path="/logs/a.log", path_key=path_key)
    handler = PlainHandler(ctx)
    complete = b"\n".join(lines)
    enc = handler.encode(complete, NOW)
    has_cr = b"\r" in complete
    # Other control characters are escaped, except in a chunk with a DEL (escaped by hand).
    has_control = has_cr or (
        b"\x7f" in complete and any(c < 0x20 and c not in (0x09, 0x0A) for c in complete)
    )
    try:
        complete.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    if enc is None:
        # Steps aside only where the per-line path has work to do.
        assert has_control or not valid
        return
    assert valid and not has_control
    assert enc.count == len(lines)
    assert b"".join(enc.json) == per_line(handler, lines)


def test_plain_encode_on_the_common_cases() -> None:
    handler = PlainHandler(SourceContext(path="/p", real_path="/p", path_key="path"))
    for lines in (
        [b""],
        [b"", b""],
        [b'say "hi"\tthere \\n', b"caf\xc3\xa9"],
        [b"x"] * 1000,
        [b"del \x7f", b'"q" \\'],  # escaped by hand
    ):
        enc = handler.encode(b"\n".join(lines), NOW)
        assert enc is not None
        assert b"".join(enc.json) == per_line(handler, lines)
    # A CR, an invalid byte: the per-line path (which strips the CR, replaces the byte).
    assert handler.encode(b"a\r\nb", NOW) is None
    assert handler.encode(b"a\xffb", NOW) is None
    assert escape_chunk(b"\xed\xa0\x80") is None  # an encoded surrogate is not UTF-8


@settings(max_examples=500, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=40),
    limit=st.integers(min_value=1, max_value=50),
)
def test_longest_line_over(lengths: list[int], limit: int) -> None:
    complete = b"\n".join(b"x" * n for n in lengths)
    assert longest_line_over(complete, limit) == (max(lengths) > limit)


def _records(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"date": NOW + i, "log": f'line {i} "q" \\ \t é', "path": "/p", "n": i, "ok": i % 2 == 0}
        for i in range(start, start + n)
    ]


def _encoded(records: list[dict[str, object]]) -> Encoded:
    return Encoded([orjson.dumps(r) + b"\n" for r in records], len(records))


def test_chunk_records_decode_and_replace() -> None:
    recs = _records(5)
    chunk = Chunk("t", None, 10, encoded=_encoded(recs))
    assert chunk.count == 5 and chunk.json is not None
    assert chunk.records == recs
    chunk.records = recs[:2]  # a filter replaced them: the encoding is gone
    assert chunk.json is None and chunk.count == 2
    assert decode_json_lines(b"") == []


def test_make_chunk_keeps_order_and_form() -> None:
    a, b = _records(3), _records(4, 3)
    both = make_chunk("t", [_encoded(a), _encoded(b)], 1)
    assert both.json is not None and both.count == 7 and both.records == a + b
    mixed = make_chunk("t", [_encoded(a), b], 1)
    assert mixed.json is None and mixed.records == a + b


@pytest.mark.parametrize("fmt", ["json_lines", "json", "json_stream"])
def test_chunks_json_equals_encoding_the_records(fmt: str) -> None:
    a, b = _records(3), _records(2, 3)
    batch = [Chunk("t", None, 1, encoded=_encoded(a)), Chunk("t", None, 1, encoded=_encoded(b))]
    date = DateFormat.build("date", "double")
    body = chunks_json(batch, date, fmt)
    if fmt == "json_lines":
        assert body == encode_json_lines(a + b, date)
    elif fmt == "json":
        assert body == encode_json_array(a + b, date)
    else:
        assert body == b"".join(orjson.dumps(r) for r in a + b)
    # Another date key or format, or a chunk of dicts: the records are encoded instead.
    assert chunks_json(batch, DateFormat.build("ts", "double"), fmt) is None
    assert chunks_json(batch, DateFormat.build("date", "iso8601"), fmt) is None
    assert chunks_json([*batch, Chunk("t", a, 1)], date, fmt) is None
