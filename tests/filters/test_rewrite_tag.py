"""The `rewrite_tag` filter: Fluent Bit's documented rules and tags (docs: pipeline/filters/
rewrite-tag), and at least once through the CLI: a re-emitted record's output is down (a real
HTTP receiver answering 503), the agent is stopped and started again with its DB, nothing is
lost and the offset does not move before the copy's output accepted it."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shipper.config.classic import parse_classic_text
from shipper.config.model import ConfigError
from shipper.config.service import ServiceOptions
from shipper.filters.rewrite_tag import RewriteTagFilter
from shipper.plugins import FILTERS, Context
from tests.agent import Agent, wait_for
from tests.ops.conftest import free_port, sample, scrape
from tests.outputs.conftest import tail_input, write_config
from tests.outputs.receivers import JsonReceiver, Seen


def make(body: str, env: dict[str, str] | None = None) -> RewriteTagFilter:
    text = "[FILTER]\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n"
    doc = parse_classic_text(text, file="f.conf", env=env or {})
    flt = FILTERS["rewrite_tag"](doc.sections[0], Context(service=ServiceOptions(), name="rt.0"))
    assert isinstance(flt, RewriteTagFilter)
    return flt


def test_documented_example() -> None:
    flt = make("""
        Name          rewrite_tag
        Match         test_tag
        Rule          $tool ^(fluent)$  from.$TAG.new.$tool.$sub['s1']['s2'].out false
        Emitter_Name  re_emitted
    """)
    rec = {"tool": "fluent", "sub": {"s1": {"s2": "bit"}}}
    kept, copies = flt.split([dict(rec)], "test_tag")
    assert kept == [] and copies == [("from.test_tag.new.fluent.bit.out", [rec])]
    assert flt.emitter.name == "re_emitted" and flt.emitter.records == 1


def test_documented_placeholders_and_rule_order() -> None:
    flt = make(
        r"""
        Name rewrite_tag
        Match *
        Rule $name ^([a-z]+)-([0-9]+)$ newtag.$TAG.$TAG[1].$1.$ss['s1']['s2'].out.${HOSTNAME} true
        Rule $name ^abc second.$0 false
        Rule $level ^(ERROR|WARN)$ alert.$1.$TAG[9] false
        Rule $code ^5 http.$0 false
        """,
        env={"HOSTNAME": "fluent"},
    )
    rec = {"name": "abc-123", "ss": {"s1": {"s2": "flb"}}}
    recs = [rec, {"level": "ERROR"}, {"level": "INFO"}, {"level": 3}, {"code": 503}]
    kept, copies = flt.split(recs, "aa.bb.cc")
    # the first matching rule wins; KEEP true keeps the original too; a missing $TAG[n] is ""
    assert copies == [
        ("newtag.aa.bb.cc.bb.abc.flb.out.fluent", [rec]),
        ("alert.ERROR.", [{"level": "ERROR"}]),
    ]
    assert kept == [rec, {"level": "INFO"}, {"level": 3}, {"code": 503}]  # strings only
    assert copies[0][1][0] is not rec  # the copy is its own record


@pytest.mark.parametrize(
    "body, key",
    [
        ("Rule $a ^x$ new", "Rule"),
        ("Rule $a ([ new true", "Rule"),
        ("Rule $a x new maybe", "Rule"),
        ("Emitter_Storage.type filesystem", "Emitter_Storage.type"),
        ("Emitter_Mem_Buf_Limit lots", "Emitter_Mem_Buf_Limit"),
        ("Rule $a x y true\nTag_Prefix x", "Tag_Prefix"),
    ],
)
def test_bad_rules_name_the_key(body: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        make(f"Name rewrite_tag\nMatch *\n{body}")
    assert err.value.key == key and err.value.file == "f.conf"


def test_a_rule_needs_to_exist() -> None:
    with pytest.raises(ConfigError) as err:
        make("Name rewrite_tag\nMatch *")
    assert err.value.key == "Rule"


# --------------------------------------------------------------------------- through the CLI
class Flaky(JsonReceiver):
    """Answers 503 while `failing`, as a backend that is up but cannot take the data."""

    failing = True

    def answer(self, seen: Seen, payload: Any) -> web.StreamResponse:
        if self.failing:
            seen.answered = 503
            return web.Response(status=503, text="unavailable")
        return super().answer(seen, payload)


def _offset(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT offset FROM files").fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
    return int(row[0]) if row else 0


def test_copies_hold_the_offset_and_survive_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    lines = [f"{'ERROR' if i % 4 == 0 else 'INFO'} {i:04d}" for i in range(200)]
    log.write_text("".join(x + "\n" for x in lines))
    errors = [x for x in lines if x.startswith("ERROR")]
    db = tmp_path / "tail.db"
    with JsonReceiver() as main, Flaky() as alerts:
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log, Tag="app.main", DB=str(db))],
            filters=[
                {
                    "Name": "rewrite_tag",
                    "Match": "app.*",
                    "Rule": "$log ^ERROR alert.$TAG[1] true",
                    "Emitter_Name": "alerts_emitter",
                }
            ],
            outputs=[
                {"Name": "http", "Match": "app.*", "Port": str(main.port), "Format": "json_lines"},
                {
                    "Name": "http",
                    "Match": "alert.*",
                    "Port": str(alerts.port),
                    "Format": "json_lines",
                },
            ],
            service={"Grace": "1"},
        )
        with Agent(["-c", str(cfg)]) as agent:
            wait_for(lambda: len(main.logs()) >= 200, what="the originals delivered")
            wait_for(
                lambda: sum(s.answered == 503 for s in alerts.snapshot()) >= 3,
                what="the copies refused three times",
            )
            # every original is delivered, yet the copies are not: the offset stays put
            assert _offset(db) == 0
            agent.stop()
        assert main.logs() == lines and alerts.logs() == []
        assert _offset(db) == 0, "the offset moved before the copies were accepted"
        with Agent(["-c", str(cfg)]) as agent:
            refused = sum(s.answered == 503 for s in alerts.snapshot())
            wait_for(
                lambda: sum(s.answered == 503 for s in alerts.snapshot()) > refused,
                what="the copies refused again after the restart",
            )
            assert _offset(db) == 0
            alerts.failing = False
            wait_for(lambda: len(alerts.logs()) >= len(errors), what="the copies delivered")
            wait_for(lambda: _offset(db) == log.stat().st_size, what="the offset at the end")
            assert agent.stop() == 0
        assert alerts.logs() == errors  # nothing lost, each copy once
        assert all(r["log"].startswith("ERROR") for b in alerts.accepted for r in b)
        # at least once: the first run's originals were not stored, so they come again
        assert main.logs() == lines + lines
        assert main.errors == [] and alerts.errors == []


def test_copies_whose_output_is_down_pause_the_input(tmp_path: Path) -> None:
    """Copies hold their originals, so the original input's Mem_Buf_Limit bounds them: with
    the copies' output down, reading pauses at the limit, and nothing is lost after."""
    log = tmp_path / "app.log"
    lines = [f"ERROR {i:06d} " + "x" * 200 for i in range(3_000)]  # ~640 KB, 10 times the limit
    log.write_text("".join(x + "\n" for x in lines))
    port = free_port()
    with JsonReceiver() as main, Flaky() as alerts:
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log, Tag="app.main", Mem_Buf_Limit="64k")],
            filters=[{"Name": "rewrite_tag", "Match": "app.*", "Rule": "$log ^E alert false"}],
            outputs=[
                {"Name": "http", "Match": "app.*", "Port": str(main.port), "Format": "json_lines"},
                {
                    "Name": "http",
                    "Match": "alert",
                    "Port": str(alerts.port),
                    "Format": "json_lines",
                },
            ],
            service={"HTTP_Server": "On", "HTTP_Listen": "127.0.0.1", "HTTP_Port": str(port)},
        )
        with Agent(["-c", str(cfg)]) as agent:

            def paused() -> bool:
                try:
                    s = scrape(port)
                except OSError:  # not listening yet
                    return False
                return sample(s, "shipper_input_paused", name="tail.0") == 1

            wait_for(paused, what="reading paused at Mem_Buf_Limit")
            held = sample(scrape(port), "shipper_input_buffer_bytes", name="tail.0")
            assert held is not None and held < 64 * 1024 + 300_000  # the limit + one read
            assert alerts.logs() == [] and main.logs() == []  # KEEP false: copies only
            alerts.failing = False
            wait_for(lambda: len(alerts.logs()) >= len(lines), 30, "every copy delivered")
            assert agent.stop() == 0
        assert alerts.logs() == lines and main.logs() == []


def test_onigmo_named_groups() -> None:
    flt = make("Name rewrite_tag\nMatch *\nRule $path ^/(?<app>[a-z]+)/(?<=/)x?.*$ app.$1 false")
    assert flt.split([{"path": "/serve/x"}], "t")[1] == [("app.serve", [{"path": "/serve/x"}])]
