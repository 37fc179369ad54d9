"""The `parser` and `multiline` filters, built from classic config text the way the agent
builds them (parsers from the same document), on Fluent Bit's documented examples."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from shipper.config.classic import parse_classic_text
from shipper.config.model import ConfigError
from shipper.config.service import ServiceOptions
from shipper.parsers.config import load_parsers
from shipper.plugins import FILTERS, Context, Filter

DUMMY_TEST = r"""
[PARSER]
 Name dummy_test
 Format regex
 Regex ^(?<INT>[^ ]+) (?<FLOAT>[^ ]+) (?<BOOL>[^ ]+) (?<STRING>.+)$
"""


def make(text: str) -> Filter:
    doc = parse_classic_text(textwrap.dedent(text).strip() + "\n", file="f.conf", env={})
    (sec,) = doc.of_kind("filter")
    ctx = Context(service=ServiceOptions(), name="f.0", parsers=load_parsers(doc))
    return FILTERS[sec.plugin](sec, ctx)


def run(flt: Filter, *records: dict[str, Any]) -> list[dict[str, Any]]:
    return flt.apply([dict(r) for r in records], "dummy.data")


# ------------------------------------------------------------------ parser: the docs' examples
def test_parser_filter_doc_example() -> None:
    """docs: pipeline/filters/parser, `{"data":"100 0.5 true This is example"}`."""
    flt = make(
        DUMMY_TEST + "[FILTER]\n Name parser\n Match dummy.*\n Key_Name data\n Parser dummy_test"
    )
    assert flt.matcher.matches("dummy.data") and not flt.matcher.matches("other")
    assert run(flt, {"date": 1.5, "data": "100 0.5 true This is example"}) == [
        {"date": 1.5, "INT": "100", "FLOAT": "0.5", "BOOL": "true", "STRING": "This is example"}
    ]


def test_parser_filter_doc_example_reserve_data_and_preserve_key() -> None:
    record = {
        "date": 1.5,
        "data": "100 0.5 true This is example",
        "key1": "value1",
        "key2": "value2",
    }
    parsed = {"INT": "100", "FLOAT": "0.5", "BOOL": "true", "STRING": "This is example"}
    base = DUMMY_TEST + "[FILTER]\n Name parser\n Match *\n Key_Name data\n Parser dummy_test\n"
    reserve = make(base + " Reserve_Data On")
    assert run(reserve, record) == [{"date": 1.5, **parsed, "key1": "value1", "key2": "value2"}]
    both = make(base + " Reserve_Data On\n Preserve_Key On")
    (out,) = run(both, record)
    assert out == {
        "date": 1.5,
        **parsed,
        "data": record["data"],
        "key1": "value1",
        "key2": "value2",
    }
    preserve = make(base + " Preserve_Key On")
    assert run(preserve, record) == [{"date": 1.5, **parsed, "data": record["data"]}]


def test_parser_filter_first_matching_parser_wins_time_and_passthrough() -> None:
    flt = make("""
        [PARSER]
            Name js
            Format json
            Time_Key ts
            Time_Format %s
        [PARSER]
            Name kv
            Format logfmt
        [FILTER]
            Name parser
            Match *
            Key_Name log
            Parser js
            Parser kv
    """)
    got = run(
        flt,
        {"date": 9.0, "log": '{"ts":"1500000000","a":1}'},
        {"date": 9.0, "log": "a=1 b=two"},
        {"date": 9.0, "log": 7},  # not text: untouched
        {"date": 9.0, "other": "x"},  # no key: untouched
    )
    assert got == [
        {"date": 1500000000, "a": 1},
        {"date": 9.0, "a": "1", "b": "two"},
        {"date": 9.0, "log": 7},
        {"date": 9.0, "other": "x"},
    ]


def test_parser_filter_record_accessor_and_no_match() -> None:
    flt = make(
        DUMMY_TEST + "[FILTER]\n Name parser\n Match *\n Key_Name $k['msg']\n"
        " Parser dummy_test\n Reserve_Data On"
    )
    rec = {"date": 2.0, "k": {"msg": "1 2 false rest of it"}}
    assert run(flt, rec) == [
        {
            "date": 2.0,
            "INT": "1",
            "FLOAT": "2",
            "BOOL": "false",
            "STRING": "rest of it",
            "k": rec["k"],
        }
    ]
    assert run(flt, {"date": 2.0, "k": {"msg": "short"}}) == [{"date": 2.0, "k": {"msg": "short"}}]


@pytest.mark.parametrize(
    ("body", "line", "key", "text"),
    [
        (
            "[FILTER]\n Name parser\n Match *\n Key_Name log\n Parser nope",
            5,
            "Parser",
            "unknown parser 'nope'",
        ),
        ("[FILTER]\n Name parser\n Match *\n Parser dummy_test", 1, "Key_Name", "missing required"),
        (
            "[FILTER]\n Name parser\n Match *\n Key_Name log\n Parser dummy_test\n Reserve_Dat on",
            6,
            "Reserve_Dat",
            "unknown key",
        ),
        (
            "[FILTER]\n Name multiline\n Match *\n multiline.parser ray",
            4,
            "multiline.parser",
            "on the tail input",
        ),
        (
            "[FILTER]\n Name multiline\n Match *\n multiline.parser python, docker",
            4,
            "multiline.parser",
            "name them without other parsers",
        ),
        (
            "[FILTER]\n Name multiline\n Match *\n multiline.parser py",
            4,
            "multiline.parser",
            "supported: go, java, python, docker, cri",
        ),
        (
            "[FILTER]\n Name multiline\n Match *\n multiline.parser go\n mode partial_message",
            5,
            "mode",
            "expected one of parser",
        ),
    ],
)
def test_filter_config_errors(body: str, line: int, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        make(DUMMY_TEST + body)
    where = line + DUMMY_TEST.strip().count("\n") + 1
    assert f"f.conf:{where}" in str(err.value) and key in str(err.value), str(err.value)
    assert text in str(err.value)


# ------------------------------------------------------------------ multiline
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/app/main.py", line 3, in <module>',
    "    main()",
    '  File "/app/main.py", line 2, in main',
    "    raise ValueError('bad')",
    "ValueError: bad",
]


def test_multiline_doc_example_custom_regex_parser() -> None:
    """docs: administration/configuring-fluent-bit/multiline-parsing (multiline-regex-test)."""
    flt = make(r"""
        [MULTILINE_PARSER]
            name          multiline-regex-test
            type          regex
            flush_timeout 1000
            rule      "start_state"   "/([a-zA-Z]+ \d+ \d+\:\d+\:\d+)(.*)/"  "cont"
            rule      "cont"          "/^\s+at.*/"                     "cont"
        [FILTER]
            name                  multiline
            match                 *
            multiline.key_content log
            multiline.parser      multiline-regex-test
    """)
    exc = [
        'Dec 14 06:41:08 Exception in thread "main" java.lang.RuntimeException: Something has '
        "gone wrong, aborting!",
        "    at com.myproject.module.MyProject.badMethod(MyProject.java:22)",
        "    at com.myproject.module.MyProject.oneMoreMethod(MyProject.java:18)",
        "    at com.myproject.module.MyProject.anotherMethod(MyProject.java:14)",
        "    at com.myproject.module.MyProject.someMethod(MyProject.java:10)",
        "    at com.myproject.module.MyProject.main(MyProject.java:6)",
    ]
    lines = ["single line...", *exc, "another line..."]
    got = run(flt, *({"date": float(i), "log": ln, "file": "t.log"} for i, ln in enumerate(lines)))
    assert got == [
        {"date": 0.0, "log": "single line...", "file": "t.log"},
        {"date": 1.0, "log": "\n".join(exc), "file": "t.log"},
        {"date": 7.0, "log": "another line...", "file": "t.log"},
    ]


def test_multiline_python_go_java_builtins() -> None:
    flt = make(
        "[FILTER]\n Name multiline\n Match *\n multiline.key_content msg\n"
        " multiline.parser go, java, python"
    )
    go = [
        "panic: something went wrong",
        "",
        "goroutine 1 [running]:",
        "main.main()",
        "\t/app/main.go:5 +0x27",
        "",
    ]
    java = [
        "java.lang.IllegalStateException: boom",
        "\tat com.example.A.b(A.java:10)",
        "\tat com.example.A.main(A.java:3)",
        "Caused by: java.io.IOException: disk",
        "\tat com.example.C.d(C.java:1)",
        "\t... 2 more",
    ]
    lines = ["before", *TRACEBACK, "between", *go, "middle", *java, "after"]
    out = [r["msg"] for r in run(flt, *({"msg": ln} for ln in lines))]
    assert out == [
        "before",
        "\n".join(TRACEBACK),
        "between",
        "\n".join(go),  # a blank line after a frame continues (to the next goroutine)
        "middle",
        "\n".join(java),
        "after",
    ]


def test_multiline_keeps_first_record_and_skips_non_text() -> None:
    flt = make("[FILTER]\n Name multiline\n Match *\n multiline.parser python")
    recs = [{"date": float(i), "log": ln, "n": i} for i, ln in enumerate(TRACEBACK)]
    recs.insert(2, {"date": 99.0, "other": 1})  # no content: passes, ends the open group
    got = run(flt, *recs)
    assert got[0] == {"date": 0.0, "log": "\n".join(TRACEBACK[:2]), "n": 0}
    assert got[1] == {"date": 99.0, "other": 1}
    assert [r["log"] for r in got[2:]] == TRACEBACK[2:]


def test_multiline_docker_and_cri_join_partial_lines_per_stream() -> None:
    """Fluent Bit's docker (JSON, `log` without a final newline is partial) and cri
    (`P`/`F`) built-ins: the runtime's split lines become one record again."""
    flt = make("[FILTER]\n Name multiline\n Match *\n multiline.parser docker, cri")
    lines = [
        '{"log":"one, ","stream":"stdout","time":"2021-02-01T01:40:03.534120Z"}',
        '{"log":"err\\n","stream":"stderr","time":"2021-02-01T01:40:03.534125Z"}',
        '{"log":"two, ","stream":"stdout","time":"2021-02-01T01:40:03.534130Z"}',
        '{"log":"three\\n","stream":"stdout","time":"2021-02-01T01:40:03.534140Z"}',
        "2021-02-01T01:40:04.000000000+00:00 stdout P cri one ",
        "2021-02-01T01:40:04.100000000+00:00 stdout F cri two",
        "2021-02-01T01:40:05.000000000Z stderr F whole",
        "not a container line",
        "2021-02-01T01:40:06.000000000Z stdout P left open at the chunk's end",
    ]
    out = run(flt, *({"date": 1.0, "log": ln, "file": "c.log"} for ln in lines))
    assert out == [
        {
            "date": 1612143603.534125,
            "file": "c.log",
            "log": "err\n",
            "stream": "stderr",
            "time": "2021-02-01T01:40:03.534125Z",
        },
        {
            "date": 1612143603.53412,
            "file": "c.log",
            "log": "one, two, three\n",
            "stream": "stdout",
            "time": "2021-02-01T01:40:03.534120Z",
        },
        {
            "date": 1612143604.0,
            "file": "c.log",
            "time": "2021-02-01T01:40:04.000000000+00:00",
            "stream": "stdout",
            "_p": "P",
            "log": "cri one cri two",
        },
        {
            "date": 1612143605.0,
            "file": "c.log",
            "time": "2021-02-01T01:40:05.000000000Z",
            "stream": "stderr",
            "_p": "F",
            "log": "whole",
        },
        {"date": 1.0, "log": "not a container line", "file": "c.log"},
        {
            "date": 1612143606.0,
            "file": "c.log",
            "time": "2021-02-01T01:40:06.000000000Z",
            "stream": "stdout",
            "_p": "P",
            "log": "left open at the chunk's end",
        },
    ]
