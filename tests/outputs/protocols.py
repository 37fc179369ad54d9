"""Receivers that speak a backend's documented API: Loki's push API, Elasticsearch's Bulk
API and OTLP/HTTP JSON logs. Every request is validated against the format (a violation is
answered 400 and kept in `errors`); answers are what those servers send."""

from __future__ import annotations

import collections
import json
import re
from typing import Any

from aiohttp import web

from tests.outputs.receivers import Receiver, Seen, check

# --------------------------------------------------------------------------- Loki
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class LokiReceiver(Receiver):
    """Loki's push API (POST /loki/api/v1/push, JSON): validates streams and entries."""

    def validate(self, seen: Seen) -> list[tuple[dict[str, str], str, str]]:
        check(seen.method == "POST", f"method {seen.method}")
        check(seen.path == "/loki/api/v1/push", f"path {seen.path}")
        check(seen.headers.get("Content-Type") == "application/json", "Content-Type")
        doc = json.loads(seen.body)
        check(isinstance(doc, dict) and set(doc) == {"streams"}, "top level must be {streams}")
        check(isinstance(doc["streams"], list) and doc["streams"], "streams: non-empty list")
        out = []
        for stream in doc["streams"]:
            check(
                isinstance(stream, dict) and set(stream) == {"stream", "values"},
                f"a stream has keys {sorted(stream) if isinstance(stream, dict) else stream}",
            )
            labels = stream["stream"]
            check(isinstance(labels, dict) and labels, "stream labels: non-empty object")
            for k, v in labels.items():
                check(_LABEL.match(k), f"invalid label name {k!r}")
                check(isinstance(v, str) and v, f"label {k} value must be a non-empty string")
            check(isinstance(stream["values"], list) and stream["values"], "values: list")
            for entry in stream["values"]:
                check(isinstance(entry, list) and len(entry) in (2, 3), "entry: [ts, line]")
                ts, line = entry[0], entry[1]
                check(
                    isinstance(ts, str) and ts.isdigit() and len(ts) >= 19,
                    f"timestamp must be a string of nanoseconds, got {ts!r}",
                )
                check(isinstance(line, str), "line must be a string")
                out.append((labels, ts, line))
        return out

    def answer(self, seen: Seen, payload: Any) -> web.StreamResponse:
        self.accept(seen, payload)
        seen.answered = 204
        return web.Response(status=204)

    def entries(self) -> list[tuple[dict[str, str], str, str]]:
        with self._lock:
            return [e for batch in self.accepted for e in batch]


# --------------------------------------------------------------------------- Elasticsearch
_ACTIONS = {"index", "create", "update", "delete"}
_META = {
    "_index",
    "_id",
    "_type",
    "routing",
    "pipeline",
    "require_alias",
    "version",
    "version_type",
    "if_seq_no",
    "if_primary_term",
    "retry_on_conflict",
    "dynamic_templates",
}


class EsReceiver(Receiver):
    """Elasticsearch's Bulk API (POST /_bulk, NDJSON). `es8` refuses `_type` as ES 8 does.
    `item_status` scripts per-item answers for the next bulk requests: a dict of
    document position -> status (429, 400, 503...)."""

    def __init__(self, *, es8: bool = True, **kw: Any) -> None:
        self.es8 = es8
        self.item_script: collections.deque[dict[int, int]] = collections.deque()
        self.docs: dict[str, dict[str, Any]] = {}  # _id -> document (index by id)
        self.anon: list[dict[str, Any]] = []  # documents without _id
        super().__init__(**kw)

    def validate(self, seen: Seen) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        check(seen.method in ("POST", "PUT"), f"method {seen.method}")
        check(seen.path.endswith("/_bulk"), f"path {seen.path}")
        check(seen.headers.get("Content-Type") == "application/x-ndjson", "Content-Type")
        text = seen.body.decode("utf-8")
        check(text.endswith("\n"), "the bulk body must end with a newline")
        lines = text[:-1].split("\n")
        out = []
        i = 0
        while i < len(lines):
            action = json.loads(lines[i])
            check(isinstance(action, dict) and len(action) == 1, "action line: one key")
            ((op, meta),) = action.items()
            check(op in _ACTIONS, f"unknown action {op}")
            check(isinstance(meta, dict) and set(meta) <= _META, f"metadata {meta}")
            check(isinstance(meta.get("_index"), str) and meta["_index"], "_index missing")
            check(meta["_index"] == meta["_index"].lower(), "index names must be lowercase")
            if self.es8:
                check(
                    "_type" not in meta,
                    "Action/metadata line contains an unknown parameter [_type]",
                )
            if op == "delete":
                out.append((op, meta, {}))
                i += 1
                continue
            check(i + 1 < len(lines), "action without a document line")
            doc = json.loads(lines[i + 1])
            check(isinstance(doc, dict), "document must be an object")
            if op == "update":
                check("doc" in doc, "update needs a doc")
                check("_id" in meta, "update needs an _id")
            out.append((op, meta, doc))
            i += 2
        return out

    def _index(self, payload: Any, script: dict[int, int]) -> tuple[list[Any], bool, int]:
        """Index like Elasticsearch: `create` of an existing _id is a 409 conflict."""
        items = []
        errors = False
        stored = 0
        for pos, (op, meta, doc) in enumerate(payload):
            status = script.get(pos, 0)
            result: dict[str, Any] = {"_index": meta["_index"], "_id": meta.get("_id", "gen")}
            if not status:
                with self._lock:
                    if op == "create" and "_id" in meta and meta["_id"] in self.docs:
                        status = 409
                    else:
                        status = 201
                        stored += 1
                        if "_id" in meta:
                            self.docs[meta["_id"]] = doc
                        else:
                            self.anon.append(doc)
            result["status"] = status
            if status >= 300:
                errors = True
                kind = {
                    409: "version_conflict_engine_exception",
                    429: "es_rejected_execution_exception",
                    400: "mapper_parsing_exception",
                }.get(status, "internal_error")
                result["error"] = {"type": kind, "reason": f"scripted {status}"}
            items.append({op: result})
        return items, errors, stored

    def accept(self, seen: Seen, payload: Any) -> None:
        """The server did the work (then failed to answer, for Status(..., accept=True))."""
        seen.extra["stored"] = self._index(payload, {})[2]
        seen.accepted = True

    def answer(self, seen: Seen, payload: Any) -> web.StreamResponse:
        with self._lock:
            script = self.item_script.popleft() if self.item_script else {}
        items, errors, stored = self._index(payload, script)
        seen.accepted = True
        seen.extra["stored"] = stored
        seen.answered = 200
        return web.json_response({"took": 3, "errors": errors, "items": items})

    def all_docs(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.docs.values()) + list(self.anon)


# --------------------------------------------------------------------------- OTLP
_ANY = {
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
}
_LOG_FIELDS = {
    "timeUnixNano",
    "observedTimeUnixNano",
    "severityNumber",
    "severityText",
    "body",
    "attributes",
    "droppedAttributesCount",
    "flags",
    "traceId",
    "spanId",
    "eventName",
}


def _check_any(v: Any, where: str) -> None:
    check(isinstance(v, dict), f"{where}: AnyValue must be an object")
    check(len(v) <= 1 and set(v) <= _ANY, f"{where}: AnyValue keys {sorted(v)}")
    if not v:
        return
    ((kind, val),) = v.items()
    if kind == "stringValue":
        check(isinstance(val, str), f"{where}: stringValue")
    elif kind == "boolValue":
        check(isinstance(val, bool), f"{where}: boolValue")
    elif kind == "intValue":
        check(
            isinstance(val, str) and re.fullmatch(r"-?\d+", val),
            f"{where}: intValue must be a decimal string (int64 in JSON)",
        )
    elif kind == "doubleValue":
        check(isinstance(val, int | float) and not isinstance(val, bool), f"{where}: double")
    elif kind == "arrayValue":
        for i, item in enumerate(val.get("values", [])):
            _check_any(item, f"{where}[{i}]")
    elif kind == "kvlistValue":
        _check_kvs(val.get("values", []), where)


def _check_kvs(kvs: Any, where: str) -> None:
    check(isinstance(kvs, list), f"{where}: attributes must be a list")
    for kv in kvs:
        check(
            isinstance(kv, dict) and set(kv) <= {"key", "value"} and "key" in kv,
            f"{where}: KeyValue {kv}",
        )
        check(isinstance(kv["key"], str), f"{where}: key must be a string")
        _check_any(kv.get("value", {}), f"{where}.{kv['key']}")


class OtlpReceiver(Receiver):
    """OTLP/HTTP logs in JSON (POST /v1/logs). `partial` scripts partial-success answers:
    the next requests reject that many log records."""

    def __init__(self, **kw: Any) -> None:
        self.partial: collections.deque[int] = collections.deque()
        super().__init__(**kw)

    def validate(self, seen: Seen) -> list[dict[str, Any]]:
        check(seen.method == "POST", f"method {seen.method}")
        check(seen.path == "/v1/logs", f"path {seen.path}")
        check(seen.headers.get("Content-Type") == "application/json", "Content-Type")
        doc = json.loads(seen.body)
        check(isinstance(doc, dict) and set(doc) == {"resourceLogs"}, "top: resourceLogs")
        out = []
        for rl in doc["resourceLogs"]:
            check(set(rl) <= {"resource", "scopeLogs", "schemaUrl"}, f"ResourceLogs {set(rl)}")
            if "resource" in rl:
                check(
                    set(rl["resource"]) <= {"attributes", "droppedAttributesCount"},
                    "Resource fields",
                )
                _check_kvs(rl["resource"].get("attributes", []), "resource")
            for sl in rl["scopeLogs"]:
                check(set(sl) <= {"scope", "logRecords", "schemaUrl"}, f"ScopeLogs {set(sl)}")
                if "scope" in sl:
                    check(
                        set(sl["scope"])
                        <= {"name", "version", "attributes", "droppedAttributesCount"},
                        "scope fields",
                    )
                for lr in sl["logRecords"]:
                    check(set(lr) <= _LOG_FIELDS, f"LogRecord fields {sorted(lr)}")
                    t = lr.get("timeUnixNano")
                    check(isinstance(t, str) and t.isdigit(), "timeUnixNano: decimal string")
                    if "severityNumber" in lr:
                        n = lr["severityNumber"]
                        check(isinstance(n, int) and 0 <= n <= 24, f"severityNumber {n}")
                    if "severityText" in lr:
                        check(isinstance(lr["severityText"], str), "severityText")
                    if "body" in lr:
                        _check_any(lr["body"], "body")
                    _check_kvs(lr.get("attributes", []), "attributes")
                    out.append(lr)
        return out

    def answer(self, seen: Seen, payload: Any) -> web.StreamResponse:
        with self._lock:
            reject = self.partial.popleft() if self.partial else 0
        seen.answered = 200
        if reject:
            seen.extra["rejected"] = reject
            self.accept(seen, payload[reject:])
            return web.json_response(
                {
                    "partialSuccess": {
                        "rejectedLogRecords": str(reject),
                        "errorMessage": f"{reject} records had no service.name",
                    }
                }
            )
        self.accept(seen, payload)
        return web.json_response({})

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for batch in self.accepted for r in batch]
