"""Parsers: Fluent Bit's documented examples (golden records), its stock parsers.conf loaded
whole, the Onigmo -> Python translation, Time_Format and Types, and config errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shipper.config.classic import parse_classic_text
from shipper.config.loader import load_config
from shipper.config.model import ConfigError
from shipper.parsers.config import ParserSet, load_parsers
from shipper.parsers.formats import Parser
from shipper.parsers.onigmo import TranslateError, translate
from shipper.parsers.timefmt import TimeFormat

FIXTURE = Path(__file__).parent.parent / "fixtures" / "fluent-bit" / "parsers.conf"


def parsers_of(body: str, tmp_path: Path | None = None) -> ParserSet:
    text = textwrap.dedent(body).strip() + "\n"
    file = str(tmp_path / "f.conf") if tmp_path else "f.conf"
    return load_parsers(parse_classic_text(text, file=file, env={}))


def one(body: str) -> Parser:
    (parser,) = parsers_of(body).parsers.values()
    return parser


# ---------------------------------------------------------------- golden: Fluent Bit's docs
def test_regex_doc_example_apache() -> None:
    """docs: pipeline/parsers/regular-expression (the apache parser, its example line)."""
    regex = (  # the page's parser, one line in the file
        r"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "
        r'"(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" '
        r'(?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$'
    )
    p = one(
        "[PARSER]\n    Name   apache\n    Format regex\n"
        f"    Regex  {regex}\n"
        "    Time_Key time\n    Time_Format %d/%b/%Y:%H:%M:%S %z\n"
    )
    got = p.parse(
        '192.168.2.20 - - [29/Jul/2015:10:27:10 -0300] "GET /cgi-bin/try/ HTTP/1.0" 200 3395'
    )
    assert got is not None
    fields, when = got
    # the documented record; the optional referer/agent groups did not match and are left out
    # (Skip_Empty_Values, on by default); `time` became the record time and left the record
    assert fields == {
        "host": "192.168.2.20",
        "user": "-",
        "method": "GET",
        "path": "/cgi-bin/try/",
        "code": "200",
        "size": "3395",
    }
    assert when == 1438176430  # 2015-07-29T13:27:10Z (the page prints a time 9 years off)


def test_json_doc_example() -> None:
    """docs: pipeline/parsers/json."""
    p = one("""
        [PARSER]
            Name        docker
            Format      json
            Time_Key    time
            Time_Format %Y-%m-%dT%H:%M:%S %z
    """)
    got = p.parse('{"key1": 12345, "key2": "abc", "time": "2006-07-28T13:22:04Z"}')
    # documented: {"key1"=>12345, "key2"=>"abc"}; the time is 13:22:04 UTC (the page's
    # epoch, 1154103724, is that time read in UTC-3)
    assert got == ({"key1": 12345, "key2": "abc"}, 1154092924)


def test_logfmt_doc_example_and_no_bare_keys() -> None:
    """docs: pipeline/parsers/logfmt."""
    p = one("[PARSER]\n    Name logfmt\n    Format logfmt")
    assert p.parse("key1=val1 key2=val2 key3") == (
        {"key1": "val1", "key2": "val2", "key3": True},
        None,
    )
    strict = one("[PARSER]\n    Name logfmt\n    Format logfmt\n    Logfmt_No_Bare_Keys true")
    assert strict.parse("key1=val1 key2=val2 key3") is None
    assert strict.parse('a=1 msg="say \\"hi\\"" e=""') == (
        {"a": "1", "msg": 'say "hi"', "e": ""},
        None,
    )


def test_ltsv_doc_example() -> None:
    """docs: pipeline/parsers/ltsv (Types status:integer size:integer)."""
    p = one("""
        [PARSER]
            Name        access_log_ltsv
            Format      ltsv
            Time_Key    time
            Time_Format [%d/%b/%Y:%H:%M:%S %z]
            Types       status:integer size:integer
    """)
    line = "\t".join(
        [
            "host:127.0.0.1",
            "ident:-",
            "user:-",
            "time:[10/Jul/2018:13:27:05 +0200]",
            "req:GET / HTTP/1.1",
            "status:200",
            "size:16218",
            "referer:http://127.0.0.1/",
            "ua:Mozilla/5.0 (X11; Fedora; Linux x86_64; rv:59.0) Gecko/20100101 Firefox/59.0",
        ]
    )
    assert p.parse(line) == (
        {
            "host": "127.0.0.1",
            "ident": "-",
            "user": "-",
            "req": "GET / HTTP/1.1",
            "status": 200,
            "size": 16218,
            "referer": "http://127.0.0.1/",
            "ua": "Mozilla/5.0 (X11; Fedora; Linux x86_64; rv:59.0) Gecko/20100101 Firefox/59.0",
        },
        1531222025,  # 2018-07-10T11:27:05Z
    )


# ---------------------------------------------------------------- Fluent Bit's stock file
def test_stock_parsers_conf_loads_whole_and_parses_its_formats(tmp_path: Path) -> None:
    ps = load_parsers(load_config(str(FIXTURE)))
    assert {
        "apache",
        "apache2",
        "nginx",
        "json",
        "docker",
        "syslog-rfc5424",
        "cri",
        "logfmt",
    } <= set(ps.parsers)
    assert len(ps.parsers) == 18
    nginx = ps.parsers["nginx"].parse(
        '93.184.216.34 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 '
        '"http://example.com/" "curl/8.0"'
    )
    assert nginx is not None and nginx[0]["remote"] == "93.184.216.34"
    assert nginx[0]["agent"] == "curl/8.0" and nginx[1] == 971211336
    cri = ps.parsers["cri"].parse("2019-03-15T10:20:30.123456789+00:00 stderr F boom")
    assert cri is not None
    assert cri[0] == {
        "time": "2019-03-15T10:20:30.123456789+00:00",  # Time_Keep On
        "stream": "stderr",
        "logtag": "F",
        "message": "boom",
    }
    assert cri[1] == pytest.approx(1552645230.123456789)
    docker = ps.parsers["docker"].parse(
        '{"log":"hello\\n","stream":"stdout","time":"2019-03-15T10:20:30.5Z"}'
    )
    assert docker is not None and docker[0]["log"] == "hello\n" and docker[1] == 1552645230.5
    syslog = ps.parsers["syslog-rfc5424"].parse(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        '[exampleSDID@32473 iut="3"] An application event'
    )
    assert syslog is not None
    assert syslog[0]["ident"] == "evntslog" and syslog[0]["message"] == "An application event"
    assert syslog[1] == pytest.approx(1065910455.003)
    # the /.../-delimited rfc3164 regex and a year-less time (this year)
    rfc3164 = ps.parsers["syslog-rfc3164"].parse(
        "<34>Oct 11 22:14:15 mymachine su[23]: 'su root' failed"
    )
    assert rfc3164 is not None and rfc3164[0]["pid"] == "23" and rfc3164[0]["host"] == "mymachine"


# ---------------------------------------------------------------- behaviour details
def test_regex_types_skip_empty_and_time_failures(caplog: pytest.LogCaptureFixture) -> None:
    p = one(r"""
        [PARSER]
            Name t
            Format regex
            Regex ^(?<n>\S+) (?<f>\S+) (?<b>\S+) (?<h>\S+)(?: (?<opt>x))? (?<time>.*)$
            Types n:integer f:float b:bool h:hex
            Time_Format %Y-%m-%d %H:%M:%S
            Time_Keep On
    """)
    assert p.parse("42abc 0.5 TRUE 0xff 2020-01-02 03:04:05") == (
        {"n": 42, "f": 0.5, "b": True, "h": 255, "time": "2020-01-02 03:04:05"},
        1577934245,
    )
    # a bool that is not one stays text; a time that does not parse is dropped with a warning
    fields, when = p.parse("1 2 maybe 1 yesterday") or ({}, None)
    assert fields == {"n": 1, "f": 2.0, "b": "maybe", "h": 1} and when is None
    assert "invalid time format" in caplog.text
    assert p.parse("no match here") is None


def test_json_time_that_does_not_parse_stays_and_non_objects_do_not_match() -> None:
    p = one("[PARSER]\n    Name j\n    Format json\n    Time_Key ts\n    Time_Format %s")
    assert p.parse('{"ts":"1500000000","a":1}') == ({"a": 1}, 1500000000)
    assert p.parse('{"ts":"soon","a":1}') == ({"ts": "soon", "a": 1}, None)
    assert p.parse("[1, 2]") is None and p.parse("plain text") is None


@pytest.mark.parametrize(
    ("fmt", "text", "epoch"),
    [
        ("%Y-%m-%dT%H:%M:%S.%L%z", "2020-01-02T03:04:05.250+01:00", 1577930645.25),
        ("%Y-%m-%dT%H:%M:%S.%LZ", "2020-01-02T03:04:05.123456789Z", 1577934245.123456789),
        ("%d/%b/%Y:%H:%M:%S %z", "02/jan/2020:03:04:05 -0130", 1577939645),
        ("%Y-%m-%d %I:%M:%S %p", "2020-01-02 03:04:05 PM", 1577977445),
        ("%s", "1577934245", 1577934245),
        ("%Y-%m-%d %H:%M:%S", "2020-01-02 03:04:05 trailing text", 1577934245),
        ("%FT%T", "2020-01-02T03:04:05", 1577934245),
    ],
)
def test_time_formats(fmt: str, text: str, epoch: float) -> None:
    assert TimeFormat.compile(fmt).parse(text) == pytest.approx(epoch)


def test_time_offset_system_zone_and_iana_zone() -> None:
    base = 1577934245  # 2020-01-02T03:04:05Z
    off = one("[PARSER]\n Name a\n Format json\n Time_Format %Y-%m-%d %H:%M:%S\n Time_Offset +0200")
    assert off.parse('{"time":"2020-01-02 03:04:05"}') == ({}, base - 7200)
    zone = one(
        "[PARSER]\n Name a\n Format json\n Time_Format %Y-%m-%d %H:%M:%S\n"
        " Time_Zone America/New_York"
    )
    assert zone.parse('{"time":"2020-01-02 03:04:05"}') == ({}, base + 5 * 3600)
    keep = one(
        "[PARSER]\n Name a\n Format json\n Time_Format %Y-%m-%d %H:%M:%S%z\n Time_Offset +0200"
    )
    assert keep.parse('{"time":"2020-01-02 03:04:05Z"}') == ({}, base)  # the text's zone wins


@pytest.mark.parametrize(
    ("ruby", "text", "expect"),
    [
        (r"(?<a>\h+)-(?<b>[\h_]+)", "ff-0a_b", {"a": "ff", "b": "0a_b"}),
        (r"/^(?<w>[[:alpha:]]+)\z/i", "Hello", {"w": "Hello"}),
        (r"(?<x-forwarded>\d+) (?<x-forwarded>\d+)?", "1 ", {"x-forwarded": "1"}),
        (r"(?<q>['\"]).*\k<q>", "'a'", {"q": "'"}),
        (r"^(?<all>.*)$", "é ü", {"all": "é ü"}),
        (r"(?m:(?<body>a.b))", "a\nb", {"body": "a\nb"}),  # Ruby's m is Python's DOTALL
        (r"(?<d>\d+)(?<rest>[-|~&]+)", "1--||", {"d": "1", "rest": "--||"}),
    ],
)
def test_onigmo_translation(ruby: str, text: str, expect: dict[str, str]) -> None:
    tr = translate(ruby)
    m = tr.regex.search(text)
    assert m is not None
    got = {}
    for name, gid in zip(tr.names, tr.ids, strict=True):
        if m.group(gid):
            got[name] = m.group(gid)
    assert got == expect


@pytest.mark.parametrize(
    ("ruby", "what"),
    [
        (r"(?<a>\p{Alpha}+)", "Unicode properties"),
        (r"(?<a>x)\g<a>", "subexpression calls"),
        (r"(?<a>[a-z&&[^b]])", "intersection"),
        (r"a(?i)b", "inline flag group"),
        (r"(?<a>(?~abc))", "absence operator"),
        (r"(?<a>[[:foo:]])", "POSIX class"),
    ],
)
def test_untranslatable_regex_is_refused_by_name(ruby: str, what: str) -> None:
    with pytest.raises(TranslateError, match="not supported") as err:
        translate(ruby)
    assert what in str(err.value)
    with pytest.raises(ConfigError) as cfg:
        parsers_of(f"[PARSER]\n    Name bad\n    Format regex\n    Regex {ruby}")
    assert "f.conf:4: key 'Regex': parser 'bad'" in str(cfg.value) and what in str(cfg.value)


@pytest.mark.parametrize(
    ("body", "line", "key", "text"),
    [
        ("[PARSER]\n    Name a\n    Format xml", 3, "Format", "expected one of regex, json"),
        ("[PARSER]\n    Name a\n    Format regex", 1, "Regex", "has Format regex but no Regex"),
        ("[PARSER]\n    Format json", 1, "Name", "missing required key"),
        (
            "[PARSER]\n    Name a\n    Format json\n    Time_Formt %s",
            4,
            "Time_Formt",
            "unknown key",
        ),
        (
            "[PARSER]\n    Name a\n    Format json\n    Decode_Field_As mysql_quoted log",
            4,
            "Decode_Field_As",
            "unknown decoder 'mysql_quoted' (supported: json, escaped, escaped_utf8)",
        ),
        (
            "[PARSER]\n    Name a\n    Format json\n    Decode_Field escaped log",
            4,
            "Decode_Field",
            "json decoder only",
        ),
        ("[PARSER]\n    Name a\n    Format json\n    Time_Format %Q", 4, "Time_Format", "%Q"),
        (
            "[PARSER]\n    Name a\n    Format json\n    Time_Format %s\n    Time_Offset +2h",
            5,
            "Time_Offset",
            "UTC offset",
        ),
        ("[PARSER]\n    Name a\n    Format ltsv\n    Types a:int", 4, "Types", "bad type"),
        (
            "[PARSER]\n    Name a\n    Format json\n[PARSER]\n    Name a\n    Format json",
            5,
            "Name",
            "already defined at f.conf:1",
        ),
        ("[MULTILINE_PARSER]\n    Name m\n    Type endswith", 3, "Type", "supported: regex"),
        (
            '[MULTILINE_PARSER]\n    Name m\n    Rule "start_state" "/\\p{L}/" "x"',
            3,
            "Rule",
            "multiline parser 'm': Unicode properties",
        ),
    ],
)
def test_parser_config_errors_name_file_line_key(body: str, line: int, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parsers_of(body)
    assert f"f.conf:{line}: key '{key}'" in str(err.value) or (
        line == 1 and "f.conf:1" in str(err.value) and key in str(err.value)
    )
    assert text in str(err.value)


def test_parsers_file_relative_to_config_dir_repeatable_yaml_and_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "mine.yaml").write_text(
        "parsers:\n  - name: kv\n    format: logfmt\nmultiline_parsers:\n"
        "  - name: ml\n    type: regex\n    rules:\n"
        "      - state: start_state\n        regex: '/^start/'\n        next_state: cont\n"
    )
    (tmp_path / "c.conf").write_text(
        f"[SERVICE]\n    Parsers_File {FIXTURE}\n    Parsers_File p/mine.yaml\n"
    )
    ps = load_parsers(load_config(str(tmp_path / "c.conf")))
    assert "kv" in ps.parsers and "apache" in ps.parsers and "ml" in ps.multiline
    (tmp_path / "bad.conf").write_text("[SERVICE]\n    Flush 1\n    Parsers_File nope.conf\n")
    with pytest.raises(ConfigError) as err:
        load_parsers(load_config(str(tmp_path / "bad.conf")))
    assert (
        f"{tmp_path / 'bad.conf'}:3: key 'Parsers_File': parsers file 'nope.conf' does not exist"
        in str(err.value)
    )


def test_unknown_parser_name_lists_the_defined_ones() -> None:
    ps = parsers_of("[PARSER]\n    Name json\n    Format json")
    from shipper.config.model import Prop

    with pytest.raises(
        ConfigError, match=r"f.conf:9: key 'Parser': unknown parser 'jsn' \(defined: json\)"
    ):
        ps.get("jsn", Prop("Parser", "jsn", "f.conf", 9))


def test_decoders_as_in_the_stock_docker_comment() -> None:
    """parsers.conf's docker parser documents `Decode_Field_As json log`; with `escaped`
    first (do_next), the classic pre-1.2 Docker setup."""
    p = one("""
        [PARSER]
            Name         docker
            Format       json
            Decode_Field_As   escaped      log    do_next
            Decode_Field_As   json         log
    """)
    assert p.parse('{"log":"{\\"a\\":1}","stream":"stdout"}') == (
        {"log": {"a": 1}, "stream": "stdout"},
        None,
    )
    assert p.parse('{"log":"tab\\\\there","stream":"stdout"}') == (
        {"log": "tab\there", "stream": "stdout"},
        None,
    )
    merge = one("[PARSER]\n Name m\n Format regex\n Regex ^(?<log>.*)$\n Decode_Field json log")
    assert merge.parse('{"k":"v"}') == ({"log": '{"k":"v"}', "k": "v"}, None)
    assert merge.parse("not json") == ({"log": "not json"}, None)


def test_types_split_on_commas_and_integers_saturate() -> None:
    p = one(
        "[PARSER]\n Name t\n Format logfmt\n Types a:integer,b:hex c:float\n"
    )  # Fluent Bit's own parsers_extra.conf writes Types with commas
    fields, _ = p.parse("a=99999999999999999999999 b=ffffffffffffffffffff c=1e3") or ({}, None)
    assert fields == {"a": 2**63 - 1, "b": 2**64 - 1, "c": 1000.0}


def test_input_handler_keeps_a_joined_record_the_regex_read_only_in_part() -> None:
    from shipper.lines import PlainHandler, SourceContext
    from shipper.parsers.handler import ParsingHandler

    p = one("[PARSER]\n Name p\n Format regex\n Regex ^(?<level>[A-Z]+) (?<msg>.*)$")
    h = ParsingHandler(PlainHandler(SourceContext(path="/a", real_path="/a", path_key="f")), p)
    joined = "ERROR failed\n  detail line"
    got = h.feed(["INFO ok", joined, "no match"], 5.0)
    assert got == [
        {"date": 5.0, "level": "INFO", "msg": "ok", "f": "/a"},
        {"date": 5.0, "level": "ERROR", "msg": "failed", "f": "/a", "log": joined},
        {"date": 5.0, "log": "no match", "f": "/a"},
    ]
    assert h.held_lines == 0 and h.encode(b"x", 1.0) is None and h.flush(6.0) == []


def test_time_strict_off_takes_the_part_of_the_format_that_fits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = "[PARSER]\n Name d\n Format json\n Time_Format %Y-%m-%dT%H:%M:%S.%L\n"
    strict, lenient = one(body), one(body + " Time_Strict off")
    line = '{"time":"2021-02-01T01:40:03Z","log":"x"}'  # no fraction: %L does not fit
    assert strict.parse(line) == ({"time": "2021-02-01T01:40:03Z", "log": "x"}, None)
    assert "invalid time format" in caplog.text
    assert lenient.parse(line) == ({"log": "x"}, 1612143603)
    assert lenient.parse('{"time":"2021-02-01T01:40:03.25","log":"x"}') == (
        {"log": "x"},
        1612143603.25,
    )


def test_multiline_rule_tokens_as_fluent_bit_splits_them() -> None:
    """Only \\" is unescaped in a quoted rule token: a regex's \\\\ reaches the regex whole."""
    ps = parsers_of(
        "[MULTILINE_PARSER]\n    Name m\n    Type regex\n"
        '    Rule "start_state, cont"   "/^dir \\\\\\\\ \\"q\\"/"   "cont"\n'
    )
    (rule,) = ps.multiline["m"].rules
    assert rule.states == ("start_state", "cont") and rule.next_state == "cont"
    assert rule.regex == '/^dir \\\\\\\\ "q"/'
    from shipper.parsers.config import compile_rule

    assert compile_rule(rule.regex).search('dir \\\\ "q"') is not None
