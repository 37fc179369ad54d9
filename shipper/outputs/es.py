"""The `es` output: Elasticsearch / OpenSearch Bulk API (POST {Path}/_bulk, NDJSON).

Each record becomes an action line and a document line:

    {"create":{"_index":"fluent-bit","_type":"_doc","_id":"..."}}
    {"@timestamp":"2026-11-28T10:07:08.319Z","log":"...",...}

Keys and defaults as Fluent Bit's out_es (Write_Operation create, Type _doc, Index fluent-bit,
Logstash_Prefix logstash, Logstash_DateFormat %Y.%m.%d, Time_Key @timestamp). `Generate_ID`
derives `_id` from the record's content, so a retried batch cannot index a document twice
(Elasticsearch answers 409 for the copy, which counts as delivered).

A 200 answer with `"errors": true` is judged item by item: items refused with 429 or 5xx are
sent again (only those, with backoff), every other refused item is dropped and counted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from shipper import telemetry
from shipper.accessor import Accessor
from shipper.chunk import Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.match import Matcher
from shipper.outputs.base import Delivery, DeliveryError, backoff_delay
from shipper.outputs.httpclient import NET_PREFIX, HttpClient, HttpOptions, HttpOutput

_UTC = dt.UTC


@dataclass(frozen=True, slots=True, kw_only=True)
class EsOptions(HttpOptions):
    port: int = opt("Port", "int", 9200, help="Elasticsearch's HTTP port.")
    path: str = opt("Path", "str", "", help="Path prefix in front of /_bulk.")
    pipeline: str | None = opt("Pipeline", "str", None, help="Ingest pipeline to run.")
    index: str = opt("Index", "str", "fluent-bit", help="Index name (without Logstash_Format).")
    type: str = opt("Type", "str", "_doc", help="Document _type (see Suppress_Type_Name).")
    suppress_type_name: bool = opt(
        "Suppress_Type_Name", "bool", False, help="Leave _type out (required by Elasticsearch 8)."
    )
    logstash_format: bool = opt(
        "Logstash_Format", "bool", False, help="Index named Logstash_Prefix-<date of the record>."
    )
    logstash_prefix: str = opt(
        "Logstash_Prefix", "str", "logstash", help="Index prefix with Logstash_Format."
    )
    logstash_prefix_key: str | None = opt(
        "Logstash_Prefix_Key", "str", None, help="Record key whose value replaces the prefix."
    )
    logstash_prefix_separator: str = opt(
        "Logstash_Prefix_Separator", "str", "-", help="Between prefix and date."
    )
    logstash_dateformat: str = opt(
        "Logstash_DateFormat", "str", "%Y.%m.%d", help="strftime format of the index date."
    )
    time_key: str = opt("Time_Key", "str", "@timestamp", help="Key of the record time.")
    time_key_format: str = opt(
        "Time_Key_Format",
        "str",
        "%Y-%m-%dT%H:%M:%S",
        help="strftime format of the time (fraction and Z appended).",
    )
    time_key_nanos: bool = opt(
        "Time_Key_Nanos", "bool", False, help="Nanosecond fraction instead of milliseconds."
    )
    current_time_index: bool = opt(
        "Current_Time_Index", "bool", False, help="Date the index by the time of sending."
    )
    generate_id: bool = opt(
        "Generate_ID", "bool", False, help="_id from a hash of the record: retries are idempotent."
    )
    id_key: str | None = opt("Id_Key", "str", None, help="Record key holding the _id.")
    write_operation: str = opt(
        "Write_Operation",
        "str",
        "create",
        choices=("create", "index", "update", "upsert"),
        help="Bulk action for each record.",
    )
    replace_dots: bool = opt("Replace_Dots", "bool", False, help="'.' in keys becomes '_'.")
    trace_output: bool = opt("Trace_Output", "bool", False, help="Accepted for compatibility.")
    trace_error: bool = opt("Trace_Error", "bool", False, help="Accepted for compatibility.")
    buffer_size: str = opt("Buffer_Size", "str", "512k", help="Accepted for compatibility.")


def _dots(value: Any) -> Any:
    if isinstance(value, dict):
        return {k.replace(".", "_"): _dots(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dots(v) for v in value]
    return value


def document_id(record: Record) -> str:
    """A stable id for a record's content (UUID-shaped, as Fluent Bit's Generate_ID)."""
    h = hashlib.blake2b(
        orjson.dumps(record, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class EsOutput(HttpOutput):
    plugin = "es"

    def __init__(self, *, opts: EsOptions, client: HttpClient, **kw: Any) -> None:
        super().__init__(client=client, **kw)
        self.opts = opts
        self.action = (
            "update" if opts.write_operation in ("update", "upsert") else opts.write_operation
        )
        self.bulk_uri = (
            opts.path.rstrip("/")
            + "/_bulk"
            + (f"?pipeline={opts.pipeline}" if opts.pipeline else "")
        )
        self.id_key = Accessor.parse(opts.id_key) if opts.id_key else None
        self.prefix_key = (
            Accessor.parse(opts.logstash_prefix_key) if opts.logstash_prefix_key else None
        )

    # -- encoding ----------------------------------------------------------------------------
    def _stamp(self, t: float) -> str:
        when = dt.datetime.fromtimestamp(t, _UTC)
        if self.opts.time_key_nanos:
            frac = f"{round((t - int(t)) * 1e9) % 1_000_000_000:09d}"
        else:
            frac = f"{when.microsecond // 1000:03d}"
        return f"{when.strftime(self.opts.time_key_format)}.{frac}Z"

    def _index(self, rec: Record, t: float) -> str:
        o = self.opts
        if not o.logstash_format:
            return o.index
        prefix = o.logstash_prefix
        if self.prefix_key is not None:
            prefix = self.prefix_key.string(rec) or prefix
        when = dt.datetime.now(_UTC) if o.current_time_index else dt.datetime.fromtimestamp(t, _UTC)
        return f"{prefix}{o.logstash_prefix_separator}{when.strftime(o.logstash_dateformat)}"

    def encode(self, records: list[Record]) -> bytes:
        o = self.opts
        dumps = orjson.dumps
        lines: list[bytes] = []
        for rec in records:
            t = rec.get("date", 0.0)
            t = float(t) if isinstance(t, int | float) else 0.0
            meta: dict[str, str] = {"_index": self._index(rec, t)}
            if not o.suppress_type_name:
                meta["_type"] = o.type
            if self.id_key is not None:
                ident = self.id_key.string(rec)
                if ident:
                    meta["_id"] = ident
            elif o.generate_id:
                meta["_id"] = document_id(rec)
            doc: dict[str, Any] = {o.time_key: self._stamp(t)}
            doc.update((k, v) for k, v in rec.items() if k != "date")
            if o.replace_dots:
                doc = _dots(doc)
            lines.append(dumps({self.action: meta}))
            if o.write_operation == "update":
                lines.append(dumps({"doc": doc}))
            elif o.write_operation == "upsert":
                lines.append(dumps({"doc": doc, "doc_as_upsert": True}))
            else:
                lines.append(dumps(doc))
        lines.append(b"")
        return b"\n".join(lines)

    # -- sending -----------------------------------------------------------------------------
    def _judge(self, body: bytes, records: list[Record]) -> tuple[list[int], str]:
        """Indexes of items to send again, and why; drops (and counts) the final failures."""
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise DeliveryError(
                "Elasticsearch answered 200 with a body that is not JSON", retryable=True
            ) from None
        if not isinstance(answer, dict) or not answer.get("errors"):
            return [], ""
        items = answer.get("items")
        if not isinstance(items, list) or len(items) != len(records):
            raise DeliveryError(
                "Elasticsearch reported errors without one item per document", retryable=True
            )
        again: list[int] = []
        dropped = 0
        first_drop = first_retry = ""
        for i, item in enumerate(items):
            result: Any = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
            status = result.get("status", 0) if isinstance(result, dict) else 0
            if not isinstance(status, int) or 200 <= status < 300:
                continue
            if status == 409 and self.action == "create":
                continue  # already there: a retried document with a stable _id
            err = result.get("error") if isinstance(result, dict) else None
            why = f"{status} {_describe(err)}"
            if status == 429 or status >= 500:
                again.append(i)
                first_retry = first_retry or why
            else:
                dropped += 1
                first_drop = first_drop or why
        if dropped:
            telemetry.output_dropped(
                self.stats,
                dropped,
                f"Elasticsearch refused {dropped} document(s), e.g. "
                f"{self.client.redact(first_drop)}",
            )
        reason = (
            f"Elasticsearch refused {len(again)} document(s) for now, e.g. "
            f"{self.client.redact(first_retry)}"
            if again
            else ""
        )
        return again, reason

    async def deliver(self, payload: bytes, records: list[Record]) -> None:
        body, recs = payload, records
        attempt = 0
        while True:
            try:
                reply = await self.client.request(
                    "POST", self.bulk_uri, body, content_type="application/x-ndjson"
                )
                again, reason = self._judge(reply.body, recs)
            except DeliveryError as err:
                if recs is records:
                    raise  # the whole batch: the output's own retry handles it
                if not err.retryable:
                    telemetry.output_dropped(self.stats, len(recs), err.reason)
                    return
                again, reason = list(range(len(recs))), err.reason
            if not again:
                return
            recs = [recs[i] for i in again]
            limit = self.delivery.retry_limit
            if limit is not None and attempt >= limit:
                telemetry.output_retries_exhausted(self.stats, len(recs), reason)
                return
            delay = backoff_delay(
                attempt, self.delivery.backoff_base, self.delivery.backoff_cap, None
            )
            attempt += 1
            telemetry.output_retry(self.stats, attempt, delay, reason)
            await asyncio.sleep(delay)
            body = self.encode(recs)


def _describe(err: Any) -> str:
    if isinstance(err, dict):
        kind, reason = err.get("type", ""), err.get("reason", "")
        return f"{kind}: {reason}"[:300] if reason else str(kind)
    return str(err)[:300] if err else ""


def create(section: Section, *, name: str, matcher: Matcher, delivery: Delivery) -> EsOutput:
    opts = build(EsOptions, section, prefix_keys=NET_PREFIX)
    for key, value in (("Id_Key", opts.id_key), ("Logstash_Prefix_Key", opts.logstash_prefix_key)):
        if value:
            try:
                Accessor.parse(value)
            except ValueError as exc:
                prop = section.get(key)
                raise ConfigError(
                    str(exc), file=section.file, line=prop.line if prop else section.line, key=key
                ) from None
    if opts.write_operation in ("update", "upsert") and not (opts.id_key or opts.generate_id):
        prop = section.get("write_operation")
        raise ConfigError(
            f"Write_Operation {opts.write_operation} needs Id_Key or Generate_ID",
            file=section.file,
            line=prop.line if prop else section.line,
            key="Write_Operation",
        )
    client = HttpClient(opts, section, port=opts.port)
    return EsOutput(opts=opts, client=client, name=name, matcher=matcher, delivery=delivery)
