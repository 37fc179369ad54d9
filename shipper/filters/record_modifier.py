"""The `record_modifier` filter (Fluent Bit's): append fixed fields, remove or allowlist keys.

`Record KEY VALUE` appends KEY (the value may hold spaces; an existing KEY is replaced and
moves to the end, as a JSON reader of Fluent Bit's output sees it). `Remove_key KEY` and
`Allowlist_key KEY` (alias `Whitelist_key`) compare names case-insensitively, `KEY*` matches a
prefix; the two are exclusive. `Uuid_key KEY` adds a random UUID.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shipper.chunk import Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.filters.common import prop_error
from shipper.match import Matcher


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordModifierOptions:
    record: tuple[str, ...] = opt(
        "Record", "str", (), multi=True, help="KEY VALUE to append to every record."
    )
    remove_key: tuple[str, ...] = opt(
        "Remove_key", "str", (), multi=True, help="Key to remove (KEY* for a prefix)."
    )
    allowlist_key: tuple[str, ...] = opt(
        "Allowlist_key",
        "str",
        (),
        multi=True,
        help="Key to keep; all others go (KEY* for a prefix).",
    )
    whitelist_key: tuple[str, ...] = opt(
        "Whitelist_key", "str", (), multi=True, help="Old name of Allowlist_key."
    )
    uuid_key: tuple[str, ...] = opt(
        "Uuid_key", "str", (), multi=True, help="Key that receives a random UUID."
    )


@dataclass(frozen=True, slots=True)
class KeyPattern:
    text: str  # lower case
    prefix: bool

    @classmethod
    def of(cls, key: str) -> KeyPattern:
        key = key.strip()
        if key.endswith("*"):
            return cls(key[:-1].lower(), True)
        return cls(key.lower(), False)

    def matches(self, key: str) -> bool:
        low = key.lower()
        return low.startswith(self.text) if self.prefix else low == self.text


class RecordModifierFilter:
    plugin = "record_modifier"

    def __init__(
        self,
        *,
        name: str,
        matcher: Matcher,
        records: list[tuple[str, str]],
        remove: list[KeyPattern],
        allow: list[KeyPattern],
        uuid_keys: list[str],
    ) -> None:
        self.name = name
        self.matcher = matcher
        self.records = records
        self.remove = remove
        self.allow = allow
        self.uuid_keys = uuid_keys

    def _select(self, rec: Record) -> Record:
        if self.remove:
            drop = [k for k in rec if any(p.matches(k) for p in self.remove)]
            for k in drop:
                del rec[k]
        elif self.allow:
            drop = [k for k in rec if not any(p.matches(k) for p in self.allow)]
            for k in drop:
                del rec[k]
        return rec

    def apply(self, records: list[Record], tag: str) -> list[Record]:
        for rec in records:
            self._select(rec)
            for key, value in self.records:
                rec.pop(key, None)
                rec[key] = value
            for key in self.uuid_keys:
                rec.pop(key, None)
                rec[key] = str(uuid.uuid4())
        return records


def create(section: Section, *, name: str, matcher: Matcher) -> RecordModifierFilter:
    opts = build(RecordModifierOptions, section)
    records: list[tuple[str, str]] = []
    for prop in section.props:
        if prop.name == "record":
            parts = prop.value.strip().split(None, 1)
            if len(parts) != 2:
                raise prop_error(prop, "expected KEY VALUE")
            records.append((parts[0], parts[1]))
    allow = [*opts.allowlist_key, *opts.whitelist_key]
    if opts.remove_key and allow:
        raise ConfigError(
            "Remove_key and Allowlist_key are exclusive",
            file=section.file,
            line=section.line,
            key="Remove_key",
        )
    return RecordModifierFilter(
        name=name,
        matcher=matcher,
        records=records,
        remove=[KeyPattern.of(k) for k in opts.remove_key],
        allow=[KeyPattern.of(k) for k in allow],
        uuid_keys=[k.strip() for k in opts.uuid_key],
    )
