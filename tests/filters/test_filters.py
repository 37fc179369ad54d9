"""Filters `modify`, `record_modifier` and `grep`, built from classic config text the
way the agent builds them, plus one run through the CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from shipper.config.classic import parse_classic_text
from shipper.config.model import ConfigError
from shipper.config.service import ServiceOptions
from shipper.plugins import FILTERS, Context, Filter
from tests.agent import Agent


def make(body: str, env: dict[str, str] | None = None) -> Filter:
    text = "[FILTER]\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n"
    doc = parse_classic_text(text, file="f.conf", env=env or {})
    sec = doc.sections[0]
    return FILTERS[sec.plugin](sec, Context(service=ServiceOptions(), name="f.0"))


def run(flt: Filter, *records: dict[str, Any]) -> list[dict[str, Any]]:
    return flt.apply([dict(r) for r in records], "app.x")


# --------------------------------------------------------------------------- modify
@pytest.mark.unit
def test_modify_rules_in_order() -> None:
    flt = make(
        """
        Name modify
        Match app.*
        Add pod ${POD_LABELS}
        Add level INFO
        Set env "prod east"
        Rename msg message
        Copy message text
        Remove secret
        Remove_wildcard tmp_*
        Remove_regex ^x\\d$
        Hard_rename old level
        Hard_copy message log
        Move_to_start env
    """,
        env={"POD_LABELS": "app=ray,team=ml"},
    )
    assert flt.matcher.matches("app.log") and not flt.matcher.matches("sys.log")
    (out,) = run(
        flt,
        {
            "date": 1.0,
            "log": "l",
            "msg": "m",
            "secret": "s",
            "tmp_a": 1,
            "tmp_b": 2,
            "x1": 0,
            "x12": 0,
            "old": "WARN",
            "level": "DEBUG",
        },
    )
    assert out == {
        "env": "prod east",
        "date": 1.0,
        "message": "m",
        "x12": 0,
        "level": "WARN",
        "pod": "app=ray,team=ml",
        "text": "m",
        "log": "m",
    }


@pytest.mark.unit
def test_modify_add_and_rename_respect_existing_keys() -> None:
    flt = make("""
        Name modify
        Match *
        Add level INFO
        Rename a b
        Copy c b
        Set s 1
    """)
    (out,) = run(flt, {"level": "ERROR", "a": 1, "b": 2, "c": 3, "s": "0", "z": 9})
    assert out == {"level": "ERROR", "a": 1, "b": 2, "c": 3, "z": 9, "s": "1"}
    assert list(out)[-1] == "s"  # Set moves the key to the end, as Fluent Bit's does


@pytest.mark.unit
def test_modify_conditions() -> None:
    flt = make("""
        Name modify
        Match *
        Condition Key_value_matches log ^ERROR
        Condition Key_exists $k8s['pod']
        Condition Key_does_not_exist done
        Condition Key_value_equals pid 42
        Condition No_key_matches ^debug_
        Set severity high
    """)
    hit = {"log": "ERROR boom", "k8s": {"pod": "p"}, "pid": 42}
    outs = run(
        flt,
        hit,
        {**hit, "log": "INFO ok"},
        {**hit, "done": 1},
        {**hit, "pid": 7},
        {**hit, "debug_x": 1},
        {"log": "ERROR", "pid": 42},
    )
    assert [o.get("severity") for o in outs] == ["high", None, None, None, None, None]
    flt = make("""
        Name modify
        Match *
        Condition Matching_keys_have_matching_values ^lvl_ ^(INFO|WARN)$
        Condition A_key_matches ^lvl_
        Add ok yes
    """)
    outs = run(flt, {"lvl_a": "INFO", "lvl_b": "WARN"}, {"lvl_a": "INFO", "lvl_b": "ERR"}, {})
    assert [o.get("ok") for o in outs] == ["yes", None, None]


@pytest.mark.parametrize(
    "body, key",
    [
        ("Set onlykey", "Set"),
        ("Rename a b c", "Rename"),
        ("Condition Key_value_equals k", "Condition"),
        ("Condition Bogus_condition k", "Condition"),
        ("Remove_regex ([", "Remove_regex"),
        ("Frobnicate a b", "Frobnicate"),
    ],
)
@pytest.mark.unit
def test_modify_bad_rules_name_the_line(body: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        make(f"Name modify\nMatch *\n{body}")
    assert err.value.key == key and err.value.file == "f.conf" and err.value.line == 4


# --------------------------------------------------------------------------- record_modifier
@pytest.mark.unit
def test_record_modifier_record_remove_allowlist() -> None:
    flt = make("""
        Name record_modifier
        Match *
        Record hostname node-1
        Record cluster ray prod
        Remove_key Secret
        Remove_key tmp_*
    """)
    (out,) = run(flt, {"log": "x", "secret": 1, "TMP_a": 2, "cluster": "old"})
    assert out == {"log": "x", "hostname": "node-1", "cluster": "ray prod"}
    flt = make("""
        Name record_modifier
        Match *
        Allowlist_key log
        Whitelist_key k8s_*
        Uuid_key id
    """)
    (out,) = run(flt, {"log": "x", "date": 1.0, "k8s_pod": "p", "other": 3})
    assert set(out) == {"log", "k8s_pod", "id"} and len(out["id"]) == 36
    with pytest.raises(ConfigError):
        make("Name record_modifier\nMatch *\nRemove_key a\nAllowlist_key b")


# --------------------------------------------------------------------------- grep
@pytest.mark.unit
def test_grep_regex_exclude_and_logical_ops() -> None:
    recs = [
        {"log": "ERROR disk", "component": "raylet", "pid": 12},
        {"log": "INFO ok", "component": "raylet", "pid": 7},
        {"log": "ERROR gcs", "component": "gcs_server", "k": {"app": "serve"}},
        {"log": "WARNING x"},
    ]
    flt = make("Name grep\nMatch *\nExclude component gcs\nRegex log ^ERROR")
    assert [r["log"] for r in run(flt, *recs)] == ["ERROR disk"]
    # legacy: the first matching Regex keeps the record (rules after it are not looked at,
    # exactly as Fluent Bit's flb_grep_filter_legacy does)
    flt = make("Name grep\nMatch *\nRegex log ^ERROR\nExclude component gcs")
    assert [r["log"] for r in run(flt, *recs)] == ["ERROR disk", "ERROR gcs"]
    flt = make("Name grep\nMatch *\nRegex log ERROR\nRegex component ^nope$")
    assert [r["log"] for r in run(flt, *recs)] == ["ERROR disk", "ERROR gcs"]
    flt = make("Name grep\nMatch *\nLogical_Op and\nRegex log ERROR\nRegex pid ^1")
    assert [r["log"] for r in run(flt, *recs)] == ["ERROR disk"]
    flt = make("Name grep\nMatch *\nLogical_Op or\nExclude log ^INFO\nExclude $k['app'] serve")
    assert [r["log"] for r in run(flt, *recs)] == ["ERROR disk", "WARNING x"]
    with pytest.raises(ConfigError) as err:
        make("Name grep\nMatch *\nLogical_Op AND\nRegex a b\nExclude c d")
    assert err.value.key == "Exclude"
    with pytest.raises(ConfigError):
        make("Name grep\nMatch *\nRegex onlykey")


def test_filters_through_the_cli(tmp_path: Path) -> None:
    """Filters run per chunk before routing, only where Match covers the tag."""
    log = tmp_path / "a.log"
    log.write_text("ERROR one\nINFO two\nERROR three\n")
    cfg = tmp_path / "c.conf"
    cfg.write_text(
        textwrap.dedent(f"""
        [SERVICE]
            Flush 0.2
        [INPUT]
            Name tail
            Path {log}
            Tag app.x
            Read_from_Head on
            Ray_Metadata off
        [FILTER]
            Name grep
            Match app.*
            Regex log ^ERROR
        [FILTER]
            Name modify
            Match_Regex ^app\\..*$
            Add pod ${{POD_NAME}}
            Rename log message
        [FILTER]
            Name record_modifier
            Match other.*
            Record never here
        [OUTPUT]
            Name stdout
            Match *
            Format json_lines
    """)
    )
    with Agent(["-c", str(cfg)], env={"POD_NAME": "ray-head-0"}) as agent:
        recs = agent.wait_records(2)
        agent.stop()
    assert [(r["message"], r["pod"]) for r in recs] == [
        ("ERROR one", "ray-head-0"),
        ("ERROR three", "ray-head-0"),
    ]
    assert all("never" not in r and "log" not in r for r in recs)
