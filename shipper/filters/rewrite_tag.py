"""The `rewrite_tag` filter (Fluent Bit's): re-emit records under a new tag.

`Rule $KEY REGEX NEW_TAG KEEP`, repeatable, tried in order until one matches: KEY is a record
accessor (`$name`, `$ss['s1']['s2']`) whose value must be a string (a number, boolean, map or
array never matches, as in Fluent Bit); REGEX is searched in it. NEW_TAG may hold `$TAG` (the
tag), `$TAG[n]` (its n-th dot-separated part), `$0`..`$9` (the regex's groups), record
accessors (`$key['sub']`) and `${ENV}` (expanded when the config is read). KEEP `true` keeps
the original record under its tag as well.

A re-emitted record enters the pipeline again from the first filter under its new tag (the
pipeline does that, see pipeline.py: its own chunk, whose delivery the original chunk waits
for before it is acknowledged). This filter lets its own re-emitted records pass: a rule that
matches its own new tag cannot loop. `Emitter_Name` names the counters of the re-emitted
records (fluentbit_input_records_total{name=...}). `Emitter_Mem_Buf_Limit` is accepted and
checked, but records are never dropped or paused for it: a copy holds its original, so the
original input's `Mem_Buf_Limit` bounds them all and pauses reading instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipper import telemetry
from shipper.accessor import Accessor
from shipper.chunk import Record
from shipper.config.model import ConfigError, Prop, Section
from shipper.config.schema import build, opt, parse_bool
from shipper.filters.common import Split, compile_regex, prop_error, split_quoted
from shipper.match import Matcher

_PLACEHOLDER = re.compile(r"\$(?:TAG\[(\d+)\]|TAG|(\d)|([A-Za-z_][^\s.$\[]*(?:\[[^\]]*\])*))")


@dataclass(frozen=True, slots=True, kw_only=True)
class RewriteTagOptions:
    rule: tuple[str, ...] = opt(
        "Rule", "str", (), multi=True, help="$KEY REGEX NEW_TAG KEEP (tried in order)."
    )
    emitter_name: str | None = opt(
        "Emitter_Name", "str", None, help="Name of the re-emitted records' counters."
    )
    emitter_mem_buf_limit: int = opt(
        "Emitter_Mem_Buf_Limit",
        "size",
        10 * 1024 * 1024,
        help="Accepted; the original input's Mem_Buf_Limit bounds re-emitted records.",
    )
    emitter_storage_type: str = opt(
        "Emitter_Storage.type", "str", "memory", choices=("memory",), help="memory only."
    )


@dataclass(frozen=True, slots=True)
class Piece:
    """One part of NEW_TAG: literal text, the tag, a part of it, a regex group, a record key."""

    text: str = ""
    tag_part: int | None = None  # -1: the whole tag
    group: int | None = None
    accessor: Accessor | None = None

    def render(self, tag: str, m: re.Match[str], rec: Record) -> str:
        if self.accessor is not None:
            return self.accessor.string(rec) or ""
        if self.group is not None:
            return (m.group(self.group) or "") if self.group <= m.re.groups else ""
        if self.tag_part is not None:
            if self.tag_part < 0:
                return tag
            parts = tag.split(".")
            return parts[self.tag_part] if self.tag_part < len(parts) else ""
        return self.text


def _tag_template(text: str, prop: Prop) -> list[Piece]:
    pieces: list[Piece] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        if m.start() > pos:
            pieces.append(Piece(text=text[pos : m.start()]))
        part, group, key = m.group(1), m.group(2), m.group(3)
        if part is not None:
            pieces.append(Piece(tag_part=int(part)))
        elif group is not None:
            pieces.append(Piece(group=int(group)))
        elif key is not None:
            try:
                pieces.append(Piece(accessor=Accessor.parse("$" + key)))
            except ValueError as exc:
                raise prop_error(prop, str(exc)) from None
        else:
            pieces.append(Piece(tag_part=-1))
        pos = m.end()
    if pos < len(text):
        pieces.append(Piece(text=text[pos:]))
    return pieces


@dataclass(frozen=True, slots=True)
class Rule:
    accessor: Accessor
    regex: re.Pattern[str]
    tag: list[Piece]
    keep: bool

    def new_tag(self, tag: str, rec: Record) -> tuple[str, bool] | None:
        text = self.accessor.lookup(rec)
        if not isinstance(text, str):  # Fluent Bit matches strings only
            return None
        m = self.regex.search(text)
        if m is None:
            return None
        return "".join(p.render(tag, m, rec) for p in self.tag), self.keep


class RewriteTagFilter:
    plugin = "rewrite_tag"

    def __init__(self, *, name: str, matcher: Matcher, rules: list[Rule], emitter: str) -> None:
        self.name = name
        self.matcher = matcher
        self.rules = rules
        self.emitter = telemetry.REGISTRY.input(emitter)

    def split(self, records: list[Record], tag: str) -> Split:
        kept: list[Record] = []
        groups: dict[str, list[Record]] = {}
        for rec in records:
            for rule in self.rules:
                hit = rule.new_tag(tag, rec)
                if hit is not None:
                    new_tag, keep = hit
                    # the copy is its own dict: later filters may change either one
                    groups.setdefault(new_tag, []).append(dict(rec) if keep else rec)
                    if keep:
                        kept.append(rec)
                    break
            else:
                kept.append(rec)
        if groups:
            self.emitter.records += sum(len(g) for g in groups.values())
        return kept, list(groups.items())

    def apply(self, records: list[Record], tag: str) -> list[Record]:
        """Without the pipeline (no re-emission): the records that stay."""
        return self.split(records, tag)[0]


def _rule(prop: Prop) -> Rule:
    parts = split_quoted(prop.value.strip(), 5)
    if len(parts) != 4:
        raise prop_error(prop, "expected $KEY REGEX NEW_TAG KEEP (four fields)")
    key, regex, new_tag, keep = parts
    try:
        acc = Accessor.parse(key)
        keep_flag = parse_bool(keep)
    except ValueError as exc:
        raise prop_error(prop, str(exc)) from None
    return Rule(acc, compile_regex(prop, regex), _tag_template(new_tag, prop), keep_flag)


def create(section: Section, *, name: str, matcher: Matcher) -> RewriteTagFilter:
    opts = build(RewriteTagOptions, section)
    rules = [_rule(p) for p in section.props if p.name == "rule"]
    if not rules:
        raise ConfigError(
            "rewrite_tag needs at least one Rule", file=section.file, line=section.line, key="Rule"
        )
    emitter = opts.emitter_name or f"emitter_for_{name}"
    return RewriteTagFilter(name=name, matcher=matcher, rules=rules, emitter=emitter)
