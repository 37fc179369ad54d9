"""Fluent Bit classic format: sections, entries, @INCLUDE, @SET, ${VAR}, errors with locations."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shipper.config.classic import load_classic, parse_classic_text
from shipper.config.loader import load_config
from shipper.config.model import ConfigError, Document

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "fluent-bit.conf"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, env: dict[str, str] | None = None) -> Document:
    return load_classic(str(path), env=env or {})


def error_of(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(path, env)
    return info.value


def assert_located(err: ConfigError, file: Path | str, line: int, key: str) -> None:
    assert (err.file, err.line, err.key) == (str(file), line, key)
    text = str(err)
    assert f"{file}:{line}" in text
    assert f"key '{key}'" in text


# --- the seed config ------------------------------------------------------------------------


def test_seed_config_parses_to_one_input_and_one_output() -> None:
    doc = load_config(str(FIXTURE), env={})
    assert [s.kind for s in doc.sections] == ["input", "output"]
    (inp,) = doc.of_kind("input")
    (out,) = doc.of_kind("output")
    assert inp.plugin == "tail"
    assert [(p.key, p.value) for p in inp.props] == [
        ("Name", "tail"),
        ("Path", "/tmp/ray/session_latest/logs/*"),
        ("Tag", "ray"),
        ("Path_Key", "true"),
        ("Refresh_Interval", "5"),
    ]
    assert (inp.file, inp.line) == (str(FIXTURE), 1)
    assert inp.get("path") is not None and inp.get("path").line == 3  # type: ignore[union-attr]
    assert out.plugin == "stdout"
    assert out.get("MATCH").value == "*"  # type: ignore[union-attr]
    assert doc.source == str(FIXTURE)


# --- syntax ---------------------------------------------------------------------------------


def test_all_section_kinds_case_insensitive_and_keys_kept_as_written(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "a.conf",
        "[service]\n    FLUSH 1\n[Input]\n    name dummy\n[FILTER]\n    Name grep\n"
        "[oUtPuT]\n    Name stdout\n[Parser]\n    Name p\n[multiline_PARSER]\n    Name m\n",
    )
    doc = load(conf)
    assert [s.kind for s in doc.sections] == [
        "service",
        "input",
        "filter",
        "output",
        "parser",
        "multiline_parser",
    ]
    assert doc.sections[0].props[0].key == "FLUSH"
    assert doc.sections[0].props[0].name == "flush"
    assert doc.sections[1].plugin == "dummy"


def test_comments_blank_lines_crlf_and_values(tmp_path: Path) -> None:
    text = (
        "# leading comment\r\n"
        "\r\n"
        "[INPUT]\r\n"
        "    # indented comment\r\n"
        "  # comment at another indent is still a comment\r\n"
        "    Name    tail\r\n"
        "   \r\n"
        "    Path  /var/log/a b.log  \r\n"
        "    Tag\tapp.*\r\n"
        "    Parser x # no end-of-line comments in Fluent Bit\r\n"
    )
    doc = load(write(tmp_path / "c.conf", text))
    (sec,) = doc.sections
    assert [(p.key, p.value, p.line) for p in sec.props] == [
        ("Name", "tail", 6),
        ("Path", "/var/log/a b.log", 8),
        ("Tag", "app.*", 9),
        ("Parser", "x # no end-of-line comments in Fluent Bit", 10),
    ]


def test_lone_cr_is_not_a_line_break(tmp_path: Path) -> None:
    # Fluent Bit reads with fgets(): only LF ends a line, so line numbers must not drift
    conf = tmp_path / "cr.conf"
    conf.write_bytes(b"[INPUT]\r\n    Name a\rb\n    Tag t\n")
    (sec,) = load(conf).sections
    assert [(p.value, p.line) for p in sec.props] == [("a\rb", 2), ("t", 3)]


def test_multiline_parser_rules_are_repeated_props_in_order(tmp_path: Path) -> None:
    text = (
        "[MULTILINE_PARSER]\n"
        "    name          multiline-regex-test\n"
        "    type          regex\n"
        '    rule      "start_state"   "/([a-zA-Z]+ \\d+)(.*)/"  "cont"\n'
        '    rule      "cont"          "/^\\s+at.*/"             "cont"\n'
    )
    (sec,) = load(write(tmp_path / "p.conf", text)).sections
    rules = [p for p in sec.props if p.name == "rule"]
    assert [r.value for r in rules] == [
        '"start_state"   "/([a-zA-Z]+ \\d+)(.*)/"  "cont"',
        '"cont"          "/^\\s+at.*/"             "cont"',
    ]
    assert [r.line for r in rules] == [4, 5]
    assert sec.get("rule") is rules[-1]


def test_tabs_indentation_and_double_indent_group_content(tmp_path: Path) -> None:
    doc = load(write(tmp_path / "t.conf", "[INPUT]\n\tName dummy\n\t\tTag x\n"))
    assert [p.key for p in doc.sections[0].props] == ["Name", "Tag"]


def test_empty_section_is_kept_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        doc = load(write(tmp_path / "e.conf", "[SERVICE]\n[INPUT]\n    Name dummy\n"))
    assert [s.kind for s in doc.sections] == ["service", "input"]
    assert "no keys" in caplog.text


# --- variables ------------------------------------------------------------------------------


def test_set_variables_and_environment(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "v.conf",
        "@SET tag=ray.${CLUSTER}\n"
        "@set  level = debug \n"
        "[INPUT]\n"
        "    Name dummy\n"
        "    Tag ${tag}\n"
        "    Path ${LOG_DIR}/*.log\n"
        "    Alias ${late}-${late}\n"
        "[SERVICE]\n"
        "    Log_Level ${level}\n"
        "@SET late=x\n",
    )
    doc = load(conf, {"CLUSTER": "c1", "LOG_DIR": "/tmp/ray", "tag": "env-loses"})
    inp = doc.of_kind("input")[0]
    assert inp.get("tag").value == "ray.c1"  # type: ignore[union-attr]
    assert inp.get("path").value == "/tmp/ray/*.log"  # type: ignore[union-attr]
    # Fluent Bit runs every @SET before applying any property, so order does not matter
    assert inp.get("alias").value == "x-x"  # type: ignore[union-attr]
    assert doc.of_kind("service")[0].get("log_level").value == "debug"  # type: ignore[union-attr]


def test_environment_from_process_via_load_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPPER_TEST_PATH", "/data/logs")
    conf = write(tmp_path / "v.conf", "[INPUT]\n    Name tail\n    Path ${SHIPPER_TEST_PATH}/*\n")
    doc = load_config(str(conf))
    assert doc.sections[0].get("path").value == "/data/logs/*"  # type: ignore[union-attr]


def test_undefined_variable_is_empty_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = write(tmp_path / "u.conf", "[INPUT]\n    Name dummy\n    Tag a${NOPE}b\n")
    with caplog.at_level(logging.WARNING):
        doc = load(conf, {"NOPE": ""})  # an empty variable is unset, as in flb_env_get
    assert doc.sections[0].get("tag").value == "ab"  # type: ignore[union-attr]
    assert "${NOPE}" in caplog.text
    assert f"{conf}:3" in caplog.text


def test_hostname_is_preset(tmp_path: Path) -> None:
    conf = write(tmp_path / "h.conf", "[INPUT]\n    Name dummy\n    Tag ${HOSTNAME}\n")
    assert load(conf).sections[0].get("tag").value == socket.gethostname()  # type: ignore[union-attr]
    assert load(conf, {"HOSTNAME": "h1"}).sections[0].get("tag").value == "h1"  # type: ignore[union-attr]


# --- includes -------------------------------------------------------------------------------


def test_include_relative_to_including_file_keeps_own_locations(tmp_path: Path) -> None:
    main = write(
        tmp_path / "main.conf",
        "[SERVICE]\n    Flush 1\n@INCLUDE conf.d/inputs.conf\n"
        "    Grace 3\n[OUTPUT]\n    Name stdout\n",
    )
    inputs = write(
        tmp_path / "conf.d" / "inputs.conf", "@include sub/more.conf\n[INPUT]\n    Name tail\n"
    )
    more = write(tmp_path / "conf.d" / "sub" / "more.conf", "[INPUT]\n    Name dummy\n")
    doc = load(main)
    assert [(s.kind, s.plugin) for s in doc.sections] == [
        ("service", ""),
        ("input", "dummy"),
        ("input", "tail"),
        ("output", "stdout"),
    ]
    # after the include, indented lines belong to the includer's section again (as in Fluent Bit)
    assert [p.key for p in doc.sections[0].props] == ["Flush", "Grace"]
    assert (doc.sections[1].file, doc.sections[1].props[0].line) == (str(more), 2)
    assert (doc.sections[2].file, doc.sections[2].props[0].line) == (str(inputs), 3)


def test_include_glob_is_sorted_and_variables_expand_in_paths(tmp_path: Path) -> None:
    write(tmp_path / "d" / "b.conf", "[INPUT]\n    Name b\n")
    write(tmp_path / "d" / "a.conf", "[INPUT]\n    Name a\n")
    write(tmp_path / "d" / "c.txt", "[INPUT]\n    Name never\n")
    main = write(tmp_path / "main.conf", "@SET dir=d\n@INCLUDE ${dir}/*.conf\n")
    assert [s.plugin for s in load(main).sections] == ["a", "b"]


def test_include_loop_is_an_error(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", "@INCLUDE a.conf\n")
    a = write(tmp_path / "a.conf", "[INPUT]\n    Name a\n@INCLUDE main.conf\n")
    err = error_of(main)
    assert_located(err, a, 3, "@INCLUDE")
    assert "include loop" in err.message


def test_file_included_twice_is_an_error(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", "@INCLUDE a.conf\n@INCLUDE ./a.conf\n")
    write(tmp_path / "a.conf", "[INPUT]\n    Name a\n")
    assert_located(error_of(main), main, 2, "@INCLUDE")


def test_missing_include_names_including_file_and_line(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", "# x\n@INCLUDE missing.conf\n")
    err = error_of(main)
    assert_located(err, main, 2, "@INCLUDE")
    assert "missing.conf" in err.message


def test_glob_without_match_is_an_error(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", "@INCLUDE conf.d/*.conf\n")
    assert_located(error_of(main), main, 1, "@INCLUDE")


def test_include_outside_config_dir_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = write(tmp_path / "shared" / "out.conf", "[OUTPUT]\n    Name stdout\n")
    main = write(tmp_path / "etc" / "main.conf", "@INCLUDE ../shared/out.conf\n")
    with caplog.at_level(logging.WARNING, logger="shipper.config.classic"):
        doc = load(main)
    assert doc.sections[0].plugin == "stdout"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("outside the configuration directory" in r.getMessage() for r in warnings)
    assert str(outside.resolve()) in caplog.text


def test_include_inside_config_dir_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "sub" / "x.conf", "[OUTPUT]\n    Name stdout\n")
    main = write(tmp_path / "main.conf", "@INCLUDE sub/x.conf\n")
    with caplog.at_level(logging.WARNING):
        load(main)
    assert "outside" not in caplog.text


def test_parse_text_resolves_includes_next_to_its_file(tmp_path: Path) -> None:
    write(tmp_path / "x.conf", "[OUTPUT]\n    Name stdout\n")
    doc = parse_classic_text("@INCLUDE x.conf\n", file=str(tmp_path / "virtual.conf"), env={})
    assert doc.sections[0].plugin == "stdout"
    assert doc.source == str(tmp_path / "virtual.conf")


# --- errors: file, line and key -------------------------------------------------------------

ERRORS = [
    ("    Name tail\n", 1, "Name", "outside of any"),
    ("[INPUT]\nName tail\n", 2, "Name", "indented"),
    ("[INPUT]\n    Name tail\n[BOGUS]\n    x y\n", 3, "BOGUS", "unknown section"),
    ("[INPUT]\n    Name tail\n    Path\n", 3, "Path", "no value"),
    ("[INPUT]\n    Name tail\n    Path   \t\n", 3, "Path", "no value"),
    ("[INPUT]\n    Name tail\n    Tag ${oops\n", 3, "Tag", "unterminated"),
    ("[INPUT]\n    Name tail\n    Tag ${}\n", 3, "Tag", "empty variable"),
    ("@SET novalue\n", 1, "@SET", "bad @SET"),
    ("@SET =x\n", 1, "@SET", "bad @SET"),
    ("@SET a b=x\n", 1, "@SET", "bad @SET"),
    ("@SET a=${b\n", 1, "@SET", "unterminated"),
    ("@INCLUDE\n", 1, "@INCLUDE", "file name"),
    ("@FOO bar\n", 1, "@FOO", "unknown directive"),
    ("[INPUT\n    Name tail\n", 1, "[INPUT", "missing ']'"),
    ("[]\n", 1, "", "unknown section"),
    ("[INPUT]\n    Name tail\n  Tag x\n", 3, "Tag", "lower"),
    ("[INPUT]\n    Name tail\n      Tag x\n", 3, "Tag", "extra indentation"),
    ("[INPUT]\n    Name tail\n\t\t\t\tTag x\n", 3, "Tag", "tabs and spaces"),
    ("[INPUT]\n    Name tail\n    [OUTPUT]\n", 3, "[OUTPUT]", "column 1"),
    ("[INPUT]\n    Name tail\n    @INCLUDE x.conf\n", 3, "@INCLUDE", "column 1"),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), ERRORS)
def test_errors_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, words: str
) -> None:
    conf = write(tmp_path / "bad.conf", text)
    err = error_of(conf)
    assert (err.file, err.line, err.key) == (str(conf), line, key)
    assert f"{conf}:{line}" in str(err)
    if key:
        assert f"key '{key}'" in str(err)
    assert words in err.message


def test_error_inside_included_file_points_at_that_file(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", "[SERVICE]\n    Flush 1\n@INCLUDE inc.conf\n")
    inc = write(tmp_path / "inc.conf", "[INPUT]\n    Name tail\n    Tag ${\n")
    assert_located(error_of(main), inc, 3, "Tag")


def test_load_config_missing_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(str(tmp_path / "nope.conf"), env={})
    assert info.value.file == str(tmp_path / "nope.conf")
    with pytest.raises(ConfigError, match="directory"):
        load_config(str(tmp_path), env={})
    binary = tmp_path / "bin.conf"
    binary.write_bytes(b"[INPUT]\n    Name \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8") as info:
        load_config(str(binary), env={})
    assert info.value.file == str(binary)
    if os.geteuid() != 0:  # root reads anything
        locked = write(tmp_path / "locked.conf", "[INPUT]\n    Name x\n")
        locked.chmod(0)
        with pytest.raises(ConfigError, match="cannot read") as info:
            load_config(str(locked), env={})
        assert info.value.file == str(locked)


def test_bom_is_ignored(tmp_path: Path) -> None:
    conf = tmp_path / "bom.conf"
    conf.write_bytes("\ufeff[INPUT]\n    Name dummy\n".encode())
    assert load(conf).sections[0].plugin == "dummy"


# --- fuzz -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    # module scope: hypothesis reruns the test body, a function-scoped tmp_path would be shared
    return str(tmp_path_factory.mktemp("fuzz"))


_FRAGMENTS = st.sampled_from(
    [
        "[INPUT]",
        "[output]",
        "[MULTILINE_PARSER]",
        "[",
        "]",
        "    ",
        "\t",
        "  ",
        "Name tail",
        'rule "a" "/x/" "b"',
        "@SET a=1",
        "@SET",
        "@INCLUDE ",
        "@INCLUDE *",
        "${a}",
        "${",
        "}",
        "#",
        "=",
        "\r",
        "\n",
        " ",
        "x",
    ]
)


def _parse_or_config_error(fuzz_dir: str, text: str) -> None:
    try:
        doc = parse_classic_text(text, file=os.path.join(fuzz_dir, "fuzz.conf"), env={})
    except ConfigError as err:
        assert err.file and err.line >= 1
        return
    assert isinstance(doc, Document)
    for section in doc.sections:
        for prop in section.props:
            assert prop.line >= 1
            # empty only where a variable was used: an unset one expands to nothing (warned)
            assert prop.value or "${" in text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_fuzz_arbitrary_text(fuzz_dir: str, text: str) -> None:
    _parse_or_config_error(fuzz_dir, text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(text="[INPUT]\n    ]    ${a}")  # found by CI: a value that is only an unset variable
@given(st.lists(_FRAGMENTS, max_size=40).map("".join))
def test_fuzz_config_like_text(fuzz_dir: str, text: str) -> None:
    _parse_or_config_error(fuzz_dir, text)
