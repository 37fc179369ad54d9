"""The `parser` filter: parse one field of each record with named [PARSER]s.

As Fluent Bit's filter_parser: `Key_Name` (a key, or a record accessor `$a['b']`) holding a
string; `Parser` may repeat and the first that matches wins; the record becomes the parsed
fields, plus the original key with `Preserve_Key`, plus every other original field with
`Reserve_Data` (after the parsed ones; on a clash the original value is kept, as the last of
Fluent Bit's duplicate keys wins downstream). The parsed time, if any, becomes the record's
time (`date`). A record without the key, or that no parser matches, passes unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shipper.accessor import MISSING, Accessor
from shipper.chunk import Record
from shipper.config.model import Section
from shipper.config.schema import build, opt
from shipper.filters.common import prop_error
from shipper.match import Matcher
from shipper.parsers.config import ParserSet
from shipper.parsers.formats import Parser

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParserFilterOptions:
    key_name: str = opt("Key_Name", "str", "", required=True, help="Field to parse.")
    parser: tuple[str, ...] = opt(
        "Parser", "str", (), multi=True, required=True, help="Parser name; repeat: first match."
    )
    preserve_key: bool = opt("Preserve_Key", "bool", False, help="Keep Key_Name in the result.")
    reserve_data: bool = opt("Reserve_Data", "bool", False, help="Keep the other fields too.")
    unescape_key: bool = opt("Unescape_Key", "bool", False, help="Deprecated; accepted.")


class ParserFilter:
    plugin = "parser"

    def __init__(
        self, *, name: str, matcher: Matcher, opts: ParserFilterOptions, parsers: list[Parser]
    ) -> None:
        self.name = name
        self.matcher = matcher
        self.parsers = parsers
        self.key = opts.key_name
        self.accessor = Accessor.parse(opts.key_name) if opts.key_name.startswith("$") else None
        self.preserve = opts.preserve_key
        self.reserve = opts.reserve_data

    def apply(self, records: list[Record], tag: str) -> list[Record]:
        return [self.one(r) for r in records]

    def one(self, rec: Record) -> Record:
        value = rec.get(self.key) if self.accessor is None else self.accessor.lookup(rec)
        if not isinstance(value, str) or value is MISSING:
            return rec
        now = rec.get("date")
        for parser in self.parsers:
            got = parser.parse(value, now if isinstance(now, float | int) else None)
            if got is not None:
                break
        else:
            return rec
        fields, when = got
        out: Record = {"date": when if when is not None else rec.get("date")}
        out.update(fields)
        if self.reserve:
            for k, v in rec.items():
                if k != "date" and (self.preserve or self.accessor or k != self.key):
                    out[k] = v
        elif self.preserve and self.accessor is None:
            out[self.key] = value
        if out["date"] is None:
            del out["date"]
        else:
            out["date"] = when if when is not None else rec.get("date")
        return out


def create(section: Section, *, name: str, matcher: Matcher, parsers: ParserSet) -> ParserFilter:
    opts = build(ParserFilterOptions, section)
    if opts.key_name.startswith("$"):
        try:
            Accessor.parse(opts.key_name)
        except ValueError as exc:
            prop = section.get("key_name")
            assert prop is not None
            raise prop_error(prop, str(exc)) from None
    if opts.unescape_key:
        log.warning(
            "%s:%d: Unescape_Key is deprecated and has no effect", section.file, section.line
        )
    chosen = [parsers.get(p.value, p) for p in section.props if p.name == "parser"]
    return ParserFilter(name=name, matcher=matcher, opts=opts, parsers=chosen)
