"""The `null` output: accepts every record and throws it away (benchmarks, dry plumbing).

Acknowledging at once is the point: a pipeline measured with `null` shows the cost of reading,
parsing and filtering alone. The format keys Fluent Bit's out_null takes are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipper.chunk import Chunk, Record
from shipper.config.model import Section
from shipper.config.schema import build, opt
from shipper.formats import date_format_opt, date_key_opt
from shipper.match import Matcher
from shipper.outputs.base import Delivery, Output


@dataclass(frozen=True, slots=True, kw_only=True)
class NullOptions:
    format: str = opt(
        "Format",
        "str",
        "msgpack",
        choices=("msgpack", "json", "json_lines", "json_stream"),
        help="Accepted as Fluent Bit does; nothing is written.",
    )
    json_date_key: str = date_key_opt()
    json_date_format: str = date_format_opt()


class NullOutput(Output):
    plugin = "null"
    immediate = True

    def encode_chunks(self, batch: list[Chunk]) -> bytes | None:
        return b""  # never decode what is thrown away

    def encode(self, records: list[Record]) -> bytes:
        return b""

    async def send(self, payload: bytes, records: list[Record]) -> None:
        return None


def create(section: Section, *, name: str, matcher: Matcher, delivery: Delivery) -> NullOutput:
    build(NullOptions, section)
    return NullOutput(name=name, matcher=matcher, delivery=delivery)
