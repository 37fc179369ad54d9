"""The `nest` filter (Fluent Bit's): move keys into a map, or lift a map's keys up.

`Operation nest`: keys matching any `Wildcard` (`Key*` is a prefix, else the exact name) move,
in their order, into a new map `Nest_under` appended at the end of the record; a record with
no matching key is left as it is. `Operation lift`: the map under `Nested_under` is replaced
by its keys, appended at the end; a record whose `Nested_under` is absent or not a map is left
as it is. Either way `Remove_prefix` is cut from each moved key that starts with it, then
`Add_prefix` is put in front. Where Fluent Bit would write a key twice into the record (a
lifted key that already exists at the top, a `Nest_under` key that already exists), the moved
value replaces the old one: a JSON object cannot hold a key twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shipper.chunk import Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.match import Matcher

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class NestOptions:
    operation: str = opt(
        "Operation", "str", None, choices=("nest", "lift"), required=True, help="nest or lift."
    )
    wildcard: tuple[str, ...] = opt(
        "Wildcard", "str", (), multi=True, help="nest: keys to move (`Key*` for a prefix)."
    )
    nest_under: str | None = opt("Nest_under", "str", None, help="nest: the new map's key.")
    nested_under: str | None = opt("Nested_under", "str", None, help="lift: the map to lift.")
    add_prefix: str = opt("Add_prefix", "str", "", help="Put in front of every moved key.")
    remove_prefix: str = opt(
        "Remove_prefix", "str", "", help="Cut from every moved key that starts with it."
    )


@dataclass(frozen=True, slots=True)
class Wildcard:
    text: str
    prefix: bool

    @classmethod
    def of(cls, text: str) -> Wildcard:
        return cls(text[:-1], True) if text.endswith("*") else cls(text, False)

    def matches(self, key: str) -> bool:
        return key.startswith(self.text) if self.prefix else key == self.text


class NestFilter:
    plugin = "nest"

    def __init__(self, *, name: str, matcher: Matcher, opts: NestOptions) -> None:
        self.name = name
        self.matcher = matcher
        self.lift = opts.operation == "lift"
        self.wildcards = [Wildcard.of(w) for w in opts.wildcard]
        self.under = (opts.nested_under if self.lift else opts.nest_under) or ""
        self.add = opts.add_prefix
        self.remove = opts.remove_prefix

    def _rename(self, key: str) -> str:
        if self.remove and key.startswith(self.remove):
            key = key[len(self.remove) :]
        return self.add + key

    def _nest(self, rec: Record) -> Record:
        wild = self.wildcards
        moved = {k: v for k, v in rec.items() if any(w.matches(k) for w in wild)}
        if not moved:
            return rec
        out = {k: v for k, v in rec.items() if k not in moved and k != self.under}
        out[self.under] = {self._rename(k): v for k, v in moved.items()}
        return out

    def _lift(self, rec: Record) -> Record:
        inner = rec.get(self.under)
        if not isinstance(inner, dict):
            return rec
        out = {k: v for k, v in rec.items() if k != self.under}
        for k, v in inner.items():
            new = self._rename(k)
            out.pop(new, None)
            out[new] = v
        return out

    def apply(self, records: list[Record], tag: str) -> list[Record]:
        one = self._lift if self.lift else self._nest
        return [one(r) for r in records]


def create(section: Section, *, name: str, matcher: Matcher) -> NestFilter:
    opts = build(NestOptions, section)

    def missing(key: str) -> ConfigError:
        return ConfigError(
            f"Operation {opts.operation} needs {key}", file=section.file, line=section.line, key=key
        )

    if opts.operation == "nest":
        if not opts.wildcard:
            raise missing("Wildcard")
        if not opts.nest_under:
            raise missing("Nest_under")
    elif not opts.nested_under:
        raise missing("Nested_under")
    other = ("nested_under",) if opts.operation == "nest" else ("wildcard", "nest_under")
    for prop in section.props:
        if prop.name in other:
            log.warning(
                "%s:%d: %s has no effect with Operation %s",
                prop.file,
                prop.line,
                prop.key,
                opts.operation,
            )
    return NestFilter(name=name, matcher=matcher, opts=opts)
