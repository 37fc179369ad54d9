"""The `opentelemetry` output against a receiver that validates OTLP/HTTP JSON logs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.agent import Agent
from tests.outputs.conftest import append_lines, tail_input, write_config
from tests.outputs.protocols import OtlpReceiver
from tests.outputs.receivers import Status, wait_until

LEVELS = {"DEBUG": 5, "INFO": 9, "WARNING": 13, "ERROR": 17, "FATAL": 21}


def test_otlp_records_severity_attributes_and_answers(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    filters = [
        {
            "Name": "modify",
            "Match": "*",
            "Condition": f"Key_value_matches log ^{lvl}",
            "Set": f"level {lvl}",
        }
        for lvl in LEVELS
    ]
    filters.append({"Name": "record_modifier", "Match": "*", "Record": "pid 4242"})
    lines = [f"{lvl} message {i}" for i, lvl in enumerate(list(LEVELS) * 20)]
    with OtlpReceiver() as rx:
        rx.script(Status(503, retry_after="1"), Status(429))
        rx.partial.append(3)  # the first accepted request rejects 3 records
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log)],
            filters=filters,
            outputs=[
                {
                    "Name": "opentelemetry",
                    "Match": "*",
                    "Host": "127.0.0.1",
                    "Port": str(rx.port),
                    "add_label": "service.name ray",
                }
            ],
        )
        with Agent(["-c", str(cfg)]) as agent:
            append_lines(log, lines)
            agent.wait_stderr("rejected 3 of 100 log records", 15)
            append_lines(log, ["INFO after"])
            wait_until(
                lambda: any(r.get("body") == {"stringValue": "INFO after"} for r in rx.records()),
                15,
                "the next batch",
            )
            agent.stop()
            err = agent.err_text()
        assert rx.errors == []
        seen = rx.snapshot()
        # 503 and 429 retried, the partial success not: three requests for the first batch
        assert [s.answered for s in seen] == [503, 429, 200, 200]
        assert seen[2].extra["rejected"] == 3
        assert "[opentelemetry.0] dropped 3 records: the OTLP receiver rejected 3 of 100" in err
        assert "3 records had no service.name" in err
        records = rx.records()
        assert len(records) == 100 - 3 + 1
        for rec in records:
            text = rec["body"]["stringValue"]
            level = text.split()[0]
            assert rec["severityText"] == level and rec["severityNumber"] == LEVELS[level]
            assert abs(int(rec["timeUnixNano"]) / 1e9 - time.time()) < 120
            assert rec["attributes"] == [{"key": "pid", "value": {"stringValue": "4242"}}]
        doc = json.loads(seen[2].body)
        assert doc["resourceLogs"][0]["resource"]["attributes"] == [
            {"key": "service.name", "value": {"stringValue": "ray"}}
        ]
        assert doc["resourceLogs"][0]["scopeLogs"][0]["scope"]["name"] == "shipper"
