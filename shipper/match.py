"""Fluent Bit's tag routing: `Match` (wildcard `*`) and `Match_Regex`."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Matcher:
    pattern: re.Pattern[str] | None
    anywhere: bool = False  # Match_Regex is searched in the tag, as Fluent Bit's regex match

    @classmethod
    def build(cls, match: str | None, match_regex: str | None) -> Matcher:
        if match_regex:
            return cls(re.compile(match_regex), anywhere=True)
        if match is None:
            return cls(None)  # matches nothing, as in Fluent Bit when Match is absent
        # Fluent Bit's Match only knows '*'; '?' and '[' are literal there.
        escaped = fnmatch.translate(match.replace("[", "[[]").replace("?", "[?]"))
        return cls(re.compile(escaped))

    def matches(self, tag: str) -> bool:
        if self.pattern is None:
            return False
        if self.anywhere:
            return self.pattern.search(tag) is not None
        return self.pattern.fullmatch(tag) is not None
