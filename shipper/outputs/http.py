"""The `http` output: records as JSON (array, lines or stream) in POST/PUT bodies.

Content types as Fluent Bit's out_http sends them (plugins/out_http/http.c): `json` and
`json_stream` go as application/json, `json_lines` as application/x-ndjson. `json_stream` is
the objects back to back with no separator. Works against ClickHouse's HTTP interface with
`URI /?query=INSERT%20INTO%20logs%20FORMAT%20JSONEachRow` and `Format json_lines`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from shipper.chunk import Chunk, Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.formats import (
    DateFormat,
    chunks_json,
    date_format_opt,
    date_key_opt,
    encode_json_array,
    encode_json_lines,
)
from shipper.match import Matcher
from shipper.outputs.base import Delivery
from shipper.outputs.httpclient import NET_PREFIX, HttpClient, HttpOptions, HttpOutput

CONTENT_TYPES = {
    "json": "application/json",
    "json_stream": "application/json",
    "json_lines": "application/x-ndjson",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpOutputOptions(HttpOptions):
    port: int = opt("Port", "int", 80, help="TCP port of the server.")
    uri: str = opt("URI", "str", "/", help="Request path (and query), sent as written.")
    http_method: str = opt(
        "http_method", "str", "post", choices=("post", "put"), help="POST or PUT."
    )
    format: str = opt(
        "Format",
        "str",
        "msgpack",
        choices=("json", "json_lines", "json_stream", "msgpack", "gelf"),
        help="Body format: json (array), json_lines (NDJSON), json_stream "
        "(objects back to back). msgpack and gelf are not supported.",
    )
    json_date_key: str = date_key_opt()
    json_date_format: str = date_format_opt()


class HttpJsonOutput(HttpOutput):
    plugin = "http"

    def __init__(self, *, opts: HttpOutputOptions, client: HttpClient, **kw: Any) -> None:
        super().__init__(client=client, **kw)
        self.opts = opts
        self.date = DateFormat.build(opts.json_date_key, opts.json_date_format)
        self.method = opts.http_method.upper()
        self.content_type = CONTENT_TYPES[opts.format]

    def encode_chunks(self, batch: list[Chunk]) -> bytes | None:
        return chunks_json(batch, self.date, self.opts.format)

    def encode(self, records: list[Record]) -> bytes:
        if self.opts.format == "json_lines":
            return encode_json_lines(records, self.date)
        if self.opts.format == "json":
            return encode_json_array(records, self.date)
        dumps = orjson.dumps
        return b"".join([dumps(r) for r in self.date.apply(records)])

    async def deliver(self, payload: bytes, records: list[Record]) -> None:
        await self.client.request(
            self.method, self.opts.uri, payload, content_type=self.content_type
        )


def create(section: Section, *, name: str, matcher: Matcher, delivery: Delivery) -> HttpJsonOutput:
    opts = build(HttpOutputOptions, section, prefix_keys=NET_PREFIX)
    if opts.format in ("msgpack", "gelf"):
        prop = section.get("format")
        raise ConfigError(
            f"Format {opts.format} is not supported here (Fluent Bit's default "
            "is msgpack): set Format json, json_lines or json_stream",
            file=section.file,
            line=prop.line if prop else section.line,
            key="Format",
        )
    client = HttpClient(opts, section, port=opts.port)
    return HttpJsonOutput(opts=opts, client=client, name=name, matcher=matcher, delivery=delivery)
