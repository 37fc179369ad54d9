"""The `opentelemetry` output: OTLP/HTTP logs, JSON encoding (POST /v1/logs).

    {"resourceLogs": [{"resource": {"attributes": [...]},
      "scopeLogs": [{"scope": {"name": "shipper", "version": "..."},
        "logRecords": [{"timeUnixNano": "1764324428319000000", "severityNumber": 9,
                        "severityText": "INFO", "body": {"stringValue": "..."},
                        "attributes": [{"key": "component", "value": {"stringValue": "raylet"}}]
        }]}]}]}

As the OTLP JSON mapping requires, 64-bit integers (times, intValue) are decimal strings,
enums are numbers and field names lowerCamelCase. Severity comes from the record's `level`
(DEBUG 5, INFO 9, WARNING 13, ERROR 17, FATAL 21), the body from `log` (logs_body_key), every
other key becomes an attribute. A 200 answer carrying `partialSuccess` with rejected records is
logged and counted as dropped, never retried (the server told us retrying will not help).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from shipper import __version__, telemetry
from shipper.chunk import Record
from shipper.config.model import Section
from shipper.config.schema import build, opt
from shipper.match import Matcher
from shipper.outputs.base import Delivery
from shipper.outputs.httpclient import (
    NET_PREFIX,
    HttpClient,
    HttpOptions,
    HttpOutput,
    parse_header,
)

SEVERITY = {
    "TRACE": 1,
    "DEBUG": 5,
    "INFO": 9,
    "NOTICE": 10,
    "WARN": 13,
    "WARNING": 13,
    "ERROR": 17,
    "CRITICAL": 21,
    "FATAL": 21,
}
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class OtlpOptions(HttpOptions):
    port: int = opt("Port", "int", 80, help="Port of the OTLP/HTTP receiver (often 4318).")
    logs_uri: str = opt("Logs_uri", "str", "/v1/logs", help="Path of the logs endpoint.")
    metrics_uri: str = opt("Metrics_uri", "str", "/v1/metrics", help="Accepted (logs only).")
    traces_uri: str = opt("Traces_uri", "str", "/v1/traces", help="Accepted (logs only).")
    logs_body_key: str = opt(
        "Logs_body_key", "str", "log", help="Record key that becomes the log body."
    )
    severity_key: str = opt(
        "Logs_severity_key",
        "str",
        "level",
        help="Record key mapped to severityText/severityNumber.",
    )
    add_label: tuple[tuple[str, str], ...] = opt(
        "add_label",
        "str",
        (),
        multi=True,
        convert=parse_header,
        help="Resource attribute 'NAME VALUE'; repeatable.",
    )


def any_value(value: Any) -> dict[str, Any]:
    """A JSON value as an OTLP AnyValue."""
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, dict):
        return {
            "kvlistValue": {
                "values": [{"key": str(k), "value": any_value(v)} for k, v in value.items()]
            }
        }
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if value is None:
        return {}
    return {"stringValue": str(value)}


class OtlpOutput(HttpOutput):
    plugin = "opentelemetry"

    def __init__(self, *, opts: OtlpOptions, client: HttpClient, **kw: Any) -> None:
        super().__init__(client=client, **kw)
        self.opts = opts
        self.resource = {
            "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in opts.add_label]
        }
        self.scope = {"name": "shipper", "version": __version__}

    def _log_record(self, rec: Record) -> dict[str, Any]:
        body_key, sev_key = self.opts.logs_body_key, self.opts.severity_key
        out: dict[str, Any] = {}
        t = rec.get("date")
        if isinstance(t, int | float):
            out["timeUnixNano"] = str(round(float(t) * 1_000_000) * 1000)
        level = rec.get(sev_key)
        if isinstance(level, str) and level:
            out["severityNumber"] = SEVERITY.get(level.upper(), 0)
            out["severityText"] = level
        if body_key in rec:
            out["body"] = any_value(rec[body_key])
        out["attributes"] = [
            {"key": k, "value": any_value(v)}
            for k, v in rec.items()
            if k not in ("date", body_key, sev_key)
        ]
        return out

    def encode(self, records: list[Record]) -> bytes:
        payload = {
            "resourceLogs": [
                {
                    "resource": self.resource,
                    "scopeLogs": [
                        {"scope": self.scope, "logRecords": [self._log_record(r) for r in records]}
                    ],
                }
            ]
        }
        return orjson.dumps(payload)

    async def deliver(self, payload: bytes, records: list[Record]) -> None:
        reply = await self.client.request(
            "POST", self.opts.logs_uri, payload, content_type="application/json"
        )
        rejected, message = partial_success(reply.body)
        if rejected:
            telemetry.output_dropped(
                self.stats,
                rejected,
                f"the OTLP receiver rejected {rejected} of "
                f"{len(records)} log records (partial success, not retried): "
                f"{self.client.redact(message[:300]) or 'no message'}",
            )


def partial_success(body: bytes) -> tuple[int, str]:
    """(rejectedLogRecords, errorMessage) of an ExportLogsServiceResponse in JSON."""
    if not body or not body.lstrip().startswith(b"{"):
        return 0, ""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0, ""
    part = (
        answer.get("partialSuccess", answer.get("partial_success"))
        if isinstance(answer, dict)
        else None
    )
    if not isinstance(part, dict):
        return 0, ""
    raw: Any = part.get("rejectedLogRecords", part.get("rejected_log_records", 0))
    try:
        rejected = int(raw or 0)
    except (TypeError, ValueError):
        rejected = 0
    message = part.get("errorMessage", part.get("error_message", ""))
    return max(0, rejected), str(message or "")


def create(section: Section, *, name: str, matcher: Matcher, delivery: Delivery) -> OtlpOutput:
    opts = build(OtlpOptions, section, prefix_keys=NET_PREFIX)
    client = HttpClient(opts, section, port=opts.port)
    return OtlpOutput(opts=opts, client=client, name=name, matcher=matcher, delivery=delivery)
