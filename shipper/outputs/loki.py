"""The `loki` output: Grafana Loki's push API, JSON flavour (POST /loki/api/v1/push).

    {"streams": [{"stream": {"job": "fluent-bit"}, "values": [["<ns>", "<line>"], ...]}]}

Labels as Fluent Bit's out_loki builds them: `Labels` holds static `k=v` pairs, `$key`
record accessors (label named after the key path, e.g. `$a['b']` -> `a_b`) and `k=$key`;
`Label_Keys` more `$key`s; with none at all the label is `job=fluent-bit`. The line is the
record without its time (and without `Remove_Keys`, plus the label keys when Remove_Keys is
set, as Fluent Bit does) as JSON, or `key=value` pairs. Records with equal label sets share
one stream, values in record order. Loki answers 400 for out-of-order or invalid data: that
batch is final (logged, counted), as in Fluent Bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from shipper.accessor import Accessor
from shipper.chunk import Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.match import Matcher
from shipper.outputs.base import Delivery
from shipper.outputs.httpclient import NET_PREFIX, HttpClient, HttpOptions, HttpOutput

DEFAULT_LABELS = {"job": "fluent-bit"}


@dataclass(frozen=True, slots=True, kw_only=True)
class LokiOptions(HttpOptions):
    port: int = opt("Port", "int", 3100, help="Loki's HTTP port.")
    uri: str = opt("URI", "str", "/loki/api/v1/push", help="Push API path.")
    labels: tuple[str, ...] = opt(
        "Labels",
        "list",
        (),
        help="Stream labels: k=v, $key, k=$key (comma separated). Default job=fluent-bit.",
    )
    label_keys: tuple[str, ...] = opt(
        "Label_Keys", "list", (), help="Record keys ($key) to use as labels."
    )
    remove_keys: tuple[str, ...] = opt(
        "Remove_Keys", "list", (), help="Record keys left out of the line."
    )
    line_format: str = opt(
        "Line_Format",
        "str",
        "json",
        choices=("json", "key_value"),
        help="The line: the record as JSON, or key=value pairs.",
    )
    drop_single_key: str = opt(
        "Drop_Single_Key",
        "str",
        "off",
        choices=("on", "off", "true", "false", "raw"),
        help="With one key left, send only its value (raw: strings unquoted in json format).",
    )
    tenant_id: str | None = opt(
        "Tenant_ID", "str", None, help="Sent as X-Scope-OrgID (multi-tenant Loki)."
    )
    bearer_token: str | None = opt(
        "Bearer_Token", "str", None, help="Authorization: Bearer token (never logged)."
    )
    auto_kubernetes_labels: bool = opt(
        "Auto_Kubernetes_Labels",
        "bool",
        False,
        help="Add the record's kubernetes['labels'] as labels.",
    )


@dataclass(frozen=True, slots=True)
class _Label:
    name: str
    static: str | None
    accessor: Accessor | None


def _label_name(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return "_" + name if name[:1].isdigit() else name


def parse_labels(opts: LokiOptions) -> tuple[list[_Label], list[Accessor]]:
    """The label rules, and the accessors they read (for Remove_Keys)."""
    labels: list[_Label] = []
    used: list[Accessor] = []
    for item in opts.labels:
        if item.startswith("$"):
            acc = Accessor.parse(item)
            labels.append(_Label(_label_name(acc.normalized_name()), None, acc))
            used.append(acc)
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"invalid label {item!r}: expected k=v, $key or k=$key")
        if value.startswith("$"):
            acc = Accessor.parse(value)
            labels.append(_Label(key, None, acc))
            used.append(acc)
        else:
            labels.append(_Label(key, value, None))
    for item in opts.label_keys:
        if not item.startswith("$"):
            raise ValueError(f"invalid label key {item!r}: the name must start with '$'")
        acc = Accessor.parse(item)
        labels.append(_Label(_label_name(acc.normalized_name()), None, acc))
        used.append(acc)
    return labels, used


def _kv_value(value: Any) -> str:
    """One value as Fluent Bit's key_value line format prints it."""
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.1f}" if value == int(value) else f"{value:.16g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return '"[' + " ".join(_kv_value(v) for v in value) + ']"'
    if isinstance(value, dict):
        return '"map[' + " ".join(f"{k}:{_kv_value(v)}" for k, v in value.items()) + ']"'
    return f'"{value}"'


class LokiOutput(HttpOutput):
    plugin = "loki"

    def __init__(self, *, opts: LokiOptions, client: HttpClient, **kw: Any) -> None:
        super().__init__(client=client, **kw)
        self.opts = opts
        self.labels, used = parse_labels(opts)
        self.dynamic = (
            any(lb.accessor is not None for lb in self.labels) or opts.auto_kubernetes_labels
        )
        self.static_labels = {
            lb.name: lb.static for lb in self.labels if lb.static is not None
        } or dict(DEFAULT_LABELS)
        remove = [Accessor.parse(k if k.startswith("$") else "$" + k) for k in opts.remove_keys]
        if remove:  # Fluent Bit drops the label keys from the line only with Remove_Keys set
            remove += used
        self.remove = remove
        self.headers = {"X-Scope-OrgID": opts.tenant_id} if opts.tenant_id else {}
        self.single = opts.drop_single_key.lower()

    def _labels_of(self, rec: Record) -> dict[str, str]:
        out: dict[str, str] = {}
        for lb in self.labels:
            if lb.static is not None:
                out[lb.name] = lb.static
                continue
            assert lb.accessor is not None
            text = lb.accessor.string(rec)
            if text:
                out[lb.name] = text
        if self.opts.auto_kubernetes_labels:
            k8s = rec.get("kubernetes")
            k8s_labels = k8s.get("labels") if isinstance(k8s, dict) else None
            if isinstance(k8s_labels, dict):
                for k, v in k8s_labels.items():
                    if isinstance(v, str):
                        out[_label_name(str(k))] = v
        return out or dict(DEFAULT_LABELS)

    def _line(self, rec: Record) -> str:
        body = {k: v for k, v in rec.items() if k != "date"}
        for acc in self.remove:
            body = acc.without(body)
        if self.single in ("on", "true", "raw") and len(body) == 1:
            (value,) = body.values()
            if self.opts.line_format == "key_value":
                return value if isinstance(value, str) else _kv_value(value)
            if self.single == "raw" and isinstance(value, str):
                return value
            return orjson.dumps(value).decode()
        if self.opts.line_format == "key_value":
            return " ".join(f"{k}={_kv_value(v)}" for k, v in body.items())
        return orjson.dumps(body).decode()

    def encode(self, records: list[Record]) -> bytes:
        streams: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        for rec in records:
            labels = self._labels_of(rec) if self.dynamic else self.static_labels
            key = tuple(labels.items())
            ts = rec.get("date", 0.0)
            ns = round(float(ts) * 1_000_000) * 1000 if isinstance(ts, int | float) else 0
            streams.setdefault(key, []).append([str(ns), self._line(rec)])
        payload = {"streams": [{"stream": dict(k), "values": v} for k, v in streams.items()]}
        return orjson.dumps(payload)

    async def deliver(self, payload: bytes, records: list[Record]) -> None:
        await self.client.request(
            "POST", self.opts.uri, payload, content_type="application/json", headers=self.headers
        )


def create(section: Section, *, name: str, matcher: Matcher, delivery: Delivery) -> LokiOutput:
    opts = build(LokiOptions, section, prefix_keys=NET_PREFIX)
    try:
        parse_labels(opts)
        for k in opts.remove_keys:
            Accessor.parse(k)
    except ValueError as exc:
        key = "Labels" if section.get("labels") else "Label_Keys"
        prop = section.get(key) or section.get("remove_keys")
        raise ConfigError(
            str(exc),
            file=section.file,
            line=prop.line if prop else section.line,
            key=prop.key if prop else key,
        ) from None
    extra = {"Authorization": f"Bearer {opts.bearer_token}"} if opts.bearer_token else {}
    client = HttpClient(
        opts, section, port=opts.port, extra_headers=extra, secrets=(opts.bearer_token,)
    )
    return LokiOutput(opts=opts, client=client, name=name, matcher=matcher, delivery=delivery)
