"""Fluent Bit YAML format: pipeline, lists, rules, env, includes, errors with locations."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipper.config.loader import load_config
from shipper.config.model import ConfigError, Document
from shipper.config.yaml_format import load_yaml

pytestmark = pytest.mark.unit


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, env: dict[str, str] | None = None) -> Document:
    return load_yaml(str(path), env=env or {})


def error_of(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(path, env)
    return info.value


SEED_YAML = """\
service:
  flush: 1
  log_level: info
  http_server: on

pipeline:
  inputs:
    - name: tail
      path: /tmp/ray/session_latest/logs/*
      tag: ray
      path_key: true
      refresh_interval: 5
  filters:
    - name: modify
      match: '*'
      add:
        - cluster c1
        - node n1
  outputs:
    - name: http
      match: ray
      header: [X-A 1, X-B 2]
      port: 0080
"""


def test_pipeline_sections_props_and_lines(tmp_path: Path) -> None:
    conf = write(tmp_path / "fluent-bit.yaml", SEED_YAML)
    doc = load(conf)
    assert [s.kind for s in doc.sections] == ["service", "input", "filter", "output"]
    service, inp, flt, out = doc.sections
    # composed scalars stay as written: `on`, `true`, `0080` are not turned into bool/int
    assert [(p.key, p.value, p.line) for p in service.props] == [
        ("flush", "1", 2),
        ("log_level", "info", 3),
        ("http_server", "on", 4),
    ]
    assert (service.file, service.line) == (str(conf), 1)
    assert (inp.plugin, inp.line) == ("tail", 8)
    assert inp.get("path_key").value == "true"  # type: ignore[union-attr]
    assert inp.get("path").line == 9  # type: ignore[union-attr]
    assert [(p.value, p.line) for p in flt.props if p.name == "add"] == [
        ("cluster c1", 17),
        ("node n1", 18),
    ]
    assert [p.value for p in out.props if p.name == "header"] == ["X-A 1", "X-B 2"]
    assert out.get("port").value == "0080"  # type: ignore[union-attr]
    assert doc.source == str(conf)


def test_parsers_and_multiline_rules_become_classic_rule_props(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "parsers.yaml",
        "parsers:\n"
        "  - name: json\n"
        "    format: json\n"
        "multiline_parsers:\n"
        "  - name: java\n"
        "    type: regex\n"
        "    rules:\n"
        "      - state: start_state\n"
        "        regex: '/^(\\d+) (.*)/'\n"
        "        next_state: cont\n"
        "      - next_state: cont\n"
        "        state: cont\n"
        "        regex: '/^\\s+\"at\".*/'\n",
    )
    parser, ml = load(conf).sections
    assert (parser.kind, parser.plugin) == ("parser", "json")
    assert ml.kind == "multiline_parser"
    rules = [p for p in ml.props if p.name == "rule"]
    assert [r.value for r in rules] == [
        '"start_state" "/^(\\d+) (.*)/" "cont"',
        '"cont" "/^\\s+\\"at\\".*/" "cont"',
    ]
    assert [r.line for r in rules] == [8, 11]


def test_env_section_and_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPPER_YAML_DIR", "/var/log/ray")
    monkeypatch.setenv("TAG", "from-process")
    conf = write(
        tmp_path / "env.yml",
        "pipeline:\n"
        "  inputs:\n"
        "    - name: tail\n"
        "      path: ${SHIPPER_YAML_DIR}/*.log\n"
        "      tag: ${TAG}\n"
        "      alias: ${LATER}\n"
        "env:\n"
        "  TAG: ray.${CLUSTER}\n"
        "  CLUSTER: ignored-defined-after-use-in-env\n"
        "  LATER: late\n",
    )
    monkeypatch.setenv("CLUSTER", "c9")
    (inp,) = load_config(str(conf)).sections
    assert inp.get("path").value == "/var/log/ray/*.log"  # type: ignore[union-attr]
    assert inp.get("tag").value == "ray.c9"  # type: ignore[union-attr]
    assert inp.get("alias").value == "late"  # type: ignore[union-attr]


def test_undefined_variable_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conf = write(tmp_path / "u.yaml", "service:\n  log_level: x${MISSING}\n")
    with caplog.at_level(logging.WARNING):
        doc = load(conf)
    assert doc.sections[0].props[0].value == "x"
    assert "${MISSING}" in caplog.text and f"{conf}:2" in caplog.text


def test_includes_relative_glob_and_file_names(tmp_path: Path) -> None:
    main = write(
        tmp_path / "main.yaml",
        "includes:\n  - conf.d/*.yaml\n  - outputs.yaml\nservice:\n  flush: 1\n",
    )
    a = write(tmp_path / "conf.d" / "a.yaml", "pipeline:\n  inputs:\n    - name: a\n")
    write(tmp_path / "conf.d" / "b.yaml", "pipeline:\n  inputs:\n    - name: b\n")
    write(
        tmp_path / "outputs.yaml", "pipeline:\n  outputs:\n    - name: stdout\n      match: '*'\n"
    )
    doc = load(main)
    assert [(s.kind, s.plugin) for s in doc.sections] == [
        ("input", "a"),
        ("input", "b"),
        ("output", "stdout"),
        ("service", ""),
    ]
    assert (doc.sections[0].file, doc.sections[0].line) == (str(a), 3)


def test_include_loop_missing_and_outside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    main = write(tmp_path / "etc" / "main.yaml", "includes:\n  - a.yaml\n")
    a = write(tmp_path / "etc" / "a.yaml", "service:\n  flush: 1\nincludes:\n  - main.yaml\n")
    err = error_of(main)
    assert (err.file, err.line, err.key) == (str(a), 4, "includes")
    assert "include loop" in err.message

    write(main, "service:\n  flush: 1\nincludes:\n  - nope.yaml\n")
    err = error_of(main)
    assert (err.file, err.line, err.key) == (str(main), 4, "includes")
    assert "nope.yaml" in str(err)

    write(tmp_path / "shared.yaml", "service:\n  grace: 2\n")
    write(main, "includes:\n  - ../shared.yaml\n")
    with caplog.at_level(logging.WARNING):
        doc = load(main)
    assert doc.sections[0].get("grace").value == "2"  # type: ignore[union-attr]
    assert "outside the configuration directory" in caplog.text


def test_empty_file_and_empty_service(tmp_path: Path) -> None:
    assert load(write(tmp_path / "empty.yaml", "# nothing\n")).sections == ()
    doc = load(write(tmp_path / "svc.yaml", "service:\n"))
    assert [s.kind for s in doc.sections] == ["service"]


def test_loader_picks_format_by_extension(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yml", "c.YAML"):
        conf = write(tmp_path / name, "pipeline:\n  outputs:\n    - name: stdout\n")
        assert load_config(str(conf), env={}).sections[0].plugin == "stdout"
    classic = write(tmp_path / "d.conf", "[OUTPUT]\n    Name stdout\n")
    assert load_config(str(classic), env={}).sections[0].plugin == "stdout"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"), env={})


# --- errors: file, line and key -------------------------------------------------------------

ERRORS = [
    ("service:\n  flush: 1\npipline:\n  inputs: []\n", 3, "pipline", "unknown top-level"),
    (
        "pipeline:\n  inputs:\n    - name: tail\n  routes:\n    - x\n",
        4,
        "routes",
        "unknown pipeline",
    ),
    ("pipeline:\n  inputs:\n    - tag: x\n      path: /x\n", 3, "name", "needs a name"),
    (
        "pipeline:\n  inputs:\n    - name: tail\n      processors:\n        logs: []\n",
        4,
        "processors",
        "nested",
    ),
    ("pipeline:\n  inputs:\n    - name: tail\n      tag:\n", 4, "tag", "no value"),
    ("pipeline:\n  inputs:\n    - name: tail\n      tag: ${x\n", 4, "tag", "unterminated"),
    (
        "pipeline:\n  inputs:\n    - name: tail\n      header:\n        - a: b\n",
        5,
        "header",
        "single value",
    ),
    ("pipeline:\n  inputs: tail\n", 2, "inputs", "expected a list"),
    ("pipeline:\n  outputs:\n    - stdout\n", 3, "outputs", "must be a mapping"),
    ("service: [1, 2]\n", 1, "service", "must be a mapping"),
    ("env:\n  A: [1]\n", 2, "A", "single value"),
    ("includes: x.yaml\n", 1, "includes", "expected a list"),
    (
        "multiline_parsers:\n  - name: m\n    rules:\n      - state: a\n        regex: b\n",
        4,
        "next_state",
        "missing next_state",
    ),
    (
        "multiline_parsers:\n  - name: m\n    rules:\n      - state: a\n        regex: b\n"
        "        next_state: c\n        bogus: d\n",
        7,
        "bogus",
        "unknown rule field",
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), ERRORS)
def test_errors_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, words: str
) -> None:
    conf = write(tmp_path / "bad.yaml", text)
    err = error_of(conf)
    assert (err.file, err.line, err.key) == (str(conf), line, key)
    assert f"{conf}:{line}" in str(err) and f"key '{key}'" in str(err)
    assert words in err.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("service:\n  flush: 1\n   bad: indent\n", 3),
        ("pipeline:\n  inputs:\n    - name: [unclosed\n", 4),
        ("a: 1\n---\nb: 2\n", 2),
        ("- just\n- a list\n", 1),
        ("service:\n  flush: 1\n  tag: \x01\n", 3),
        ("pipeline:\n  inputs:\n    - <<: {name: a}\n", 3),
    ],
)
def test_invalid_yaml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    conf = write(tmp_path / "syntax.yaml", text)
    err = error_of(conf)
    assert (err.file, err.line) == (str(conf), line)
    assert f"{conf}:{line}" in str(err)


# --- fuzz -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    # module scope: hypothesis reruns the test body, a function-scoped tmp_path would be shared
    return str(tmp_path_factory.mktemp("fuzz"))


_WORDS = st.sampled_from(
    [
        "service",
        "pipeline",
        "inputs",
        "outputs",
        "filters",
        "name",
        "rules",
        "state",
        "regex",
        "next_state",
        "env",
        "includes",
        "parsers",
        "multiline_parsers",
        "tag",
        "${A}",
        "${",
        "x",
    ]
)
_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | _WORDS | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_WORDS, inner, max_size=4),
    max_leaves=20,
)


def _load_or_config_error(fuzz_dir: str, text: str) -> None:
    path = os.path.join(fuzz_dir, "fuzz.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    try:
        doc = load_yaml(path, env={})
    except ConfigError as err:
        assert err.file
        return
    assert isinstance(doc, Document)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_fuzz_arbitrary_text(fuzz_dir: str, text: str) -> None:
    _load_or_config_error(fuzz_dir, text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_WORDS, _VALUES, max_size=5))
def test_fuzz_yaml_shaped_documents(fuzz_dir: str, data: dict[str, Any]) -> None:
    _load_or_config_error(fuzz_dir, yaml.safe_dump(data))
