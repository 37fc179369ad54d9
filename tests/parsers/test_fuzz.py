"""Fuzz: any Regex value is compiled or refused with a TranslateError (never another
exception), any Time_Format compiles or raises ValueError, and no line crashes a parser."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shipper.config.loader import load_config
from shipper.parsers.config import load_parsers
from shipper.parsers.onigmo import TranslateError, translate
from shipper.parsers.timefmt import TimeFormat

STOCK = load_parsers(
    load_config(str(Path(__file__).parent.parent / "fixtures" / "fluent-bit" / "parsers.conf"))
).parsers
REGEXY = st.text(alphabet="()[]{}<>?*+^$\\/|&-:.=!#'~azAZ09 ghkpxKGXRHhez,imx", max_size=40)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REGEXY)
@example(r"\x{zz}")
@example(r"\x{110000}")
@example(r"(?<a>x)\k<b>")
@example(r"[[:alpha:]&&[^a]]")
def test_fuzz_regex_translation(pattern: str) -> None:
    try:
        tr = translate(pattern)
    except TranslateError:
        return
    assert len(tr.names) == len(tr.ids)
    tr.regex.search("some text 123 <x>")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="%YmdHMSLzZbBaAjpIsTDFR:-./ T+e0", max_size=24), st.text(max_size=40))
def test_fuzz_time_formats(fmt: str, text: str) -> None:
    try:
        tf = TimeFormat.compile(fmt, lenient=len(fmt) % 2 == 0)
    except ValueError:
        return
    t = tf.parse(text)
    assert t is None or isinstance(t, float | int)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_fuzz_every_stock_parser_takes_any_line(line: str) -> None:
    for parser in STOCK.values():
        got = parser.parse(line, 1_700_000_000.0)
        assert got is None or isinstance(got[0], dict)
