"""Record encodings shared by outputs: JSON lines and arrays, and json_date_key/_format."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from shipper.chunk import Chunk, Record
from shipper.config.schema import opt

_UTC = dt.UTC


def _iso8601(t: float) -> str:
    return dt.datetime.fromtimestamp(t, _UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _java_sql(t: float) -> str:
    return dt.datetime.fromtimestamp(t, _UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


_CONVERT: dict[str, Callable[[float], Any]] = {
    "double": float,
    "epoch": int,
    "epoch_ms": lambda t: int(t * 1000),
    "iso8601": _iso8601,
    "java_sql_timestamp": _java_sql,
}


@dataclass(frozen=True, slots=True)
class DateFormat:
    """Where and how the record's `date` is written. `key` None: left out."""

    key: str | None
    convert: Callable[[float], Any]
    identity: bool  # key 'date', seconds as a float: records go out as they are

    @classmethod
    def build(cls, key: str, fmt: str) -> DateFormat:
        k = None if key.strip().lower() in ("false", "off", "") else key.strip()
        fmt = fmt.lower()
        return cls(k, _CONVERT[fmt], k == "date" and fmt == "double")

    def apply(self, records: list[Record]) -> list[Record]:
        """Records as this format wants them (new dicts only when something changes)."""
        if self.identity:
            return records
        out: list[Record] = []
        key, conv = self.key, self.convert
        for rec in records:
            rest = {k: v for k, v in rec.items() if k != "date"}
            if key is None:
                out.append(rest)
            else:
                out.append({key: conv(rec.get("date", 0.0)), **rest})
        return out


def encode_json_lines(records: list[Record], date: DateFormat) -> bytes:
    dumps = orjson.dumps
    recs = date.apply(records)
    return b"\n".join([dumps(r) for r in recs]) + b"\n"


def encode_json_array(records: list[Record], date: DateFormat) -> bytes:
    return orjson.dumps(date.apply(records))


def chunks_lines(batch: list[Chunk], date: DateFormat) -> list[bytes] | None:
    """The batch's JSON lines as the chunks hold them (pieces of whole lines); None when a
    chunk has none or the date must be rewritten."""
    if not date.identity:
        return None
    parts: list[bytes] = []
    for chunk in batch:
        if chunk.json is None:
            return None
        parts += chunk.json
    return parts


def chunks_json(batch: list[Chunk], date: DateFormat, fmt: str) -> bytes | None:
    """The batch in `fmt` (json_lines, json, json_stream) made from the chunks' JSON lines
    without decoding them; None when a chunk has none or the date must be rewritten."""
    parts = chunks_lines(batch, date)
    if parts is None:
        return None
    body = b"".join(parts)
    if fmt == "json_lines":
        return body
    if fmt == "json":
        return b"[" + body[:-1].replace(b"\n", b",") + b"]"
    if fmt == "json_stream":
        return body.replace(b"\n", b"")
    return None


def date_key_opt() -> Any:
    """The `json_date_key` row of an output's key table."""
    return opt(
        "json_date_key", "str", "date", help="Key of the record time; 'false' leaves it out."
    )


def date_format_opt() -> Any:
    """The `json_date_format` row of an output's key table."""
    return opt(
        "json_date_format",
        "str",
        "double",
        choices=tuple(_CONVERT),
        help="How the record time is written.",
    )
