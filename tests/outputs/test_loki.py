"""The `loki` output against a receiver that validates Loki's push API."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.agent import Agent
from tests.outputs.conftest import append_lines, tail_input, write_config
from tests.outputs.protocols import LokiReceiver
from tests.outputs.receivers import Status, wait_until

# Filters give the records the keys labels are made of (and exercise modify/record_modifier).
FILTERS = [
    {"Name": "record_modifier", "Match": "*", "Record": "stream out"},
    {
        "Name": "modify",
        "Match": "*",
        "Add": "component worker",
        "Condition": "Key_value_matches log ^gcs",
    },
    {"Name": "modify", "Match": "*", "Add": "component raylet"},
]


def _lines() -> list[str]:
    return [f"{'gcs' if i % 3 == 0 else 'ray'} event {i:04d}" for i in range(300)]


def test_loki_streams_labels_lines_and_tenant(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append_lines(log, _lines())
    with LokiReceiver() as rx_json, LokiReceiver() as rx_kv:
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log)],
            filters=FILTERS,
            outputs=[
                {
                    "Name": "loki",
                    "Match": "*",
                    "Host": "127.0.0.1",
                    "Port": str(rx_json.port),
                    "Labels": "job=ray, $component",
                    "Label_Keys": "$stream",
                    "Remove_Keys": "stream",
                    "Tenant_ID": "team-a",
                    "Line_Format": "json",
                },
                {
                    "Name": "loki",
                    "Match": "*",
                    "Port": str(rx_kv.port),
                    "Line_Format": "key_value",
                    "Remove_Keys": "component, stream",
                    "Drop_Single_Key": "on",
                },
            ],
        )
        with Agent(["-c", str(cfg)]) as agent:
            wait_until(lambda: len(rx_json.entries()) >= 300, 15, "300 Loki entries")
            wait_until(lambda: len(rx_kv.entries()) >= 300, 15, "300 Loki entries")
            agent.stop()
        assert rx_json.errors == [] and rx_kv.errors == []

        seen = rx_json.snapshot()[0]
        assert seen.headers["X-Scope-OrgID"] == "team-a"
        assert seen.headers["Content-Type"] == "application/json"
        doc = json.loads(seen.body)
        # records with equal labels share one stream
        label_sets = [s["stream"] for s in doc["streams"]]
        assert len(label_sets) == len({json.dumps(ls, sort_keys=True) for ls in label_sets})
        entries = rx_json.entries()
        by_line = {json.loads(line)["log"]: labels for labels, _, line in entries}
        assert sorted(by_line) == sorted(_lines())
        for text, labels in by_line.items():
            want = "worker" if text.startswith("gcs") else "raylet"
            assert labels == {"job": "ray", "component": want, "stream": "out"}
        # the line: the record without its time; with Remove_Keys the label keys go too
        for _, ts, line in entries:
            assert set(json.loads(line)) == {"log"}
            assert abs(int(ts) / 1e9 - time.time()) < 120

        # key_value + Drop_Single_Key: only `log` is left, so the line is its bare value
        kv = rx_kv.entries()
        assert sorted(line for _, _, line in kv) == sorted(_lines())
        assert all(labels == {"job": "fluent-bit"} for labels, _, _ in kv)
        assert "X-Scope-OrgID" not in rx_kv.snapshot()[0].headers


def test_loki_key_value_format_and_answers(tmp_path: Path) -> None:
    """500 is retried, 400 (Loki's answer to out-of-order or invalid entries) is final."""
    log = tmp_path / "a.log"
    with LokiReceiver() as rx:
        rx.script(Status(500, "ingester unavailable"), Status(400, "entry too far behind"))
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log)],
            filters=FILTERS[:1],
            outputs=[
                {
                    "Name": "loki",
                    "Match": "*",
                    "Port": str(rx.port),
                    "Line_Format": "key_value",
                    "Labels": "job=t",
                }
            ],
        )
        with Agent(["-c", str(cfg)]) as agent:
            append_lines(log, ["first"])
            agent.wait_stderr("[loki.0] dropped 1 records", 15)
            append_lines(log, ["second"])
            wait_until(lambda: rx.entries(), 15, "the second batch")
            agent.stop()
            err = agent.err_text()
        assert rx.errors == []
        assert [s.answered for s in rx.snapshot()] == [500, 400, 204]
        assert "HTTP status=500: ingester unavailable" in err
        assert [line for _, _, line in rx.entries()] == ['log="second" stream="out"']
