"""The `grep` filter: keep or drop records by regular expressions on their values.

`Regex KEY REGEX` keeps matching records, `Exclude KEY REGEX` drops them; KEY is a record key
or a record accessor (`$kubernetes['labels']['app']`). The regex searches anywhere in the
value (numbers and booleans are matched as text). `Logical_Op`:
  - legacy (default): rules in order; a Regex that does not match drops the record, an Exclude
    that matches drops it, the first Regex that matches keeps it (Fluent Bit's exact order).
  - AND / OR: all rules of one kind (Regex or Exclude, not both); Regex keeps the record when
    all / any match, Exclude drops it when all / any match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipper.accessor import Accessor
from shipper.chunk import Record
from shipper.config.model import Section
from shipper.config.schema import build, opt
from shipper.filters.common import compile_regex, prop_error
from shipper.match import Matcher


@dataclass(frozen=True, slots=True, kw_only=True)
class GrepOptions:
    regex: tuple[str, ...] = opt(
        "Regex", "str", (), multi=True, help="KEY REGEX: keep records whose KEY matches."
    )
    exclude: tuple[str, ...] = opt(
        "Exclude", "str", (), multi=True, help="KEY REGEX: drop records whose KEY matches."
    )
    logical_op: str = opt(
        "Logical_Op",
        "str",
        "legacy",
        choices=("legacy", "and", "or"),
        help="How several rules combine.",
    )


@dataclass(frozen=True, slots=True)
class Rule:
    keep: bool  # Regex (True) or Exclude (False)
    accessor: Accessor
    regex: re.Pattern[str]

    def matches(self, rec: Record) -> bool:
        text = self.accessor.string(rec)
        return text is not None and self.regex.search(text) is not None


class GrepFilter:
    plugin = "grep"

    def __init__(self, *, name: str, matcher: Matcher, rules: list[Rule], op: str) -> None:
        self.name = name
        self.matcher = matcher
        self.rules = rules
        self.op = op

    def keeps(self, rec: Record) -> bool:
        if not self.rules:
            return True
        if self.op == "legacy":
            for rule in self.rules:
                if rule.matches(rec):
                    return rule.keep  # the first matching Regex keeps, an Exclude drops
                if rule.keep:
                    return False
            return True
        want_all = self.op == "and"
        hits = (r.matches(rec) for r in self.rules)
        found = all(hits) if want_all else any(hits)
        return found if self.rules[0].keep else not found

    def apply(self, records: list[Record], tag: str) -> list[Record]:
        keeps = self.keeps
        return [r for r in records if keeps(r)]


def create(section: Section, *, name: str, matcher: Matcher) -> GrepFilter:
    opts = build(GrepOptions, section)
    rules: list[Rule] = []
    for prop in section.props:
        if prop.name not in ("regex", "exclude"):
            continue
        parts = prop.value.strip().split(None, 1)
        if len(parts) != 2:
            raise prop_error(prop, "expected KEY REGEX")
        try:
            acc = Accessor.parse(parts[0])
        except ValueError as exc:
            raise prop_error(prop, str(exc)) from None
        rule = Rule(prop.name == "regex", acc, compile_regex(prop, parts[1]))
        if opts.logical_op != "legacy" and rules and rules[0].keep != rule.keep:
            raise prop_error(
                prop,
                f"Logical_Op {opts.logical_op.upper()} takes either Regex "
                "or Exclude rules, not both",
            )
        rules.append(rule)
    return GrepFilter(name=name, matcher=matcher, rules=rules, op=opts.logical_op)
