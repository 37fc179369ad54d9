"""The `es` output against a receiver that validates the Bulk API and answers per item."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from tests.agent import Agent
from tests.outputs.conftest import append_lines, tail_input, write_config
from tests.outputs.protocols import EsReceiver
from tests.outputs.receivers import Status, wait_until


def _es(rx: EsReceiver, **keys: str) -> dict[str, str]:
    out = {
        "Name": "es",
        "Match": "*",
        "Host": "127.0.0.1",
        "Port": str(rx.port),
        "Suppress_Type_Name": "on",
    }
    out.update(keys)
    return out


def test_bulk_format_item_errors_and_idempotent_retries(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    lines = [f"event {i:04d}" for i in range(200)]
    with EsReceiver() as items, EsReceiver() as replay, EsReceiver(es8=False) as legacy:
        # first bulk: document 0 throttled (429), document 1 refused by the mapping (400)
        items.item_script.append({0: 429, 1: 400})
        # the server indexes everything, then answers 500: the retry must not duplicate
        replay.script(Status(500, "node left", accept=True))
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log)],
            outputs=[
                _es(items, Logstash_Format="on", Logstash_Prefix="ray", Generate_ID="on"),
                _es(replay, Index="ray-logs", Generate_ID="on"),
                _es(legacy, Suppress_Type_Name="off", Time_Key="ts"),
            ],
        )
        with Agent(["-c", str(cfg)]) as agent:
            append_lines(log, lines)
            wait_until(lambda: len(items.all_docs()) >= 199, 15, "199 documents")
            wait_until(lambda: len(replay.all_docs()) >= 200, 15, "200 documents")
            wait_until(lambda: len(legacy.all_docs()) >= 200, 15, "200 documents")
            agent.stop()
            err = agent.err_text()
        for rx in (items, replay, legacy):
            assert rx.errors == []

        # the wire format
        first = items.snapshot()[0]
        assert first.headers["Content-Type"] == "application/x-ndjson"
        (op, meta, doc) = first.payload[0]
        today = dt.datetime.now(dt.UTC).strftime("%Y.%m.%d")
        assert op == "create" and meta["_index"] == f"ray-{today}" and "_type" not in meta
        assert len(meta["_id"]) == 36 and set(doc) == {"@timestamp", "log"}
        dt.datetime.strptime(doc["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert doc["@timestamp"].endswith("Z") and len(doc["@timestamp"].split(".")[1]) == 4

        # per item: only the throttled document is sent again, the refused one is dropped
        second = items.snapshot()[1]
        assert [m["_id"] for _, m, _ in second.payload] == [meta["_id"]]
        stored = sorted(d["log"] for d in items.all_docs())
        assert stored == sorted(set(lines) - {lines[1]})
        assert (
            "[es.0] dropped 1 records: Elasticsearch refused 1 document(s), e.g. 400 "
            "mapper_parsing_exception" in err
        )
        assert "Elasticsearch refused 1 document(s) for now, e.g. 429" in err

        # whole-batch retry after a 500: same _ids, the copies answered 409, nothing twice
        assert [s.answered for s in replay.snapshot()] == [500, 200]
        assert replay.snapshot()[0].extra["stored"] == 200
        assert replay.snapshot()[1].extra["stored"] == 0  # every copy: 409, already there
        assert len(replay.all_docs()) == 200 and not replay.anon
        assert {m["_index"] for _, m, _ in replay.snapshot()[0].payload} == {"ray-logs"}

        # Suppress_Type_Name off: _type _doc, as Fluent Bit sends it; Time_Key renamed
        _, meta, doc = legacy.snapshot()[0].payload[0]
        assert meta == {"_index": "fluent-bit", "_type": "_doc"} and "ts" in doc


def test_es8_refuses_type_name_final(tmp_path: Path) -> None:
    """Elasticsearch 8 answers 400 to `_type`: the batch is final, logged once."""
    log = tmp_path / "a.log"
    with EsReceiver(es8=True) as rx:
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log)],
            outputs=[_es(rx, Suppress_Type_Name="off")],
        )
        with Agent(["-c", str(cfg)]) as agent:
            append_lines(log, ["a", "b"])
            agent.wait_stderr("[es.0] dropped 2 records", 15)
            agent.stop()
            err = agent.err_text()
        assert len(rx.snapshot()) == 1 and err.count("dropped 2 records") == 1
        assert "unknown parameter [_type]" in err
        rx.errors.clear()
        assert json.loads(rx.snapshot()[0].body.splitlines()[0])["create"]["_type"] == "_doc"
