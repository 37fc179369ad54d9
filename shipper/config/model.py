"""The neutral configuration structure both file formats (and the CLI) produce.

Every value remembers the file and line it came from, so that a validation error can name
them long after parsing.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTION_KINDS = ("service", "input", "filter", "output", "parser", "multiline_parser")


class ConfigError(Exception):
    """A configuration problem, located at file:line and naming the key when there is one."""

    def __init__(self, message: str, *, file: str = "", line: int = 0, key: str = "") -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [p for p in (where, f"key '{self.key}'" if self.key else "") if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


@dataclass(frozen=True, slots=True)
class Prop:
    """One `key value` line. `key` is as written; compare with `name` (lower case)."""

    key: str
    value: str
    file: str
    line: int

    @property
    def name(self) -> str:
        return self.key.lower()


@dataclass(frozen=True, slots=True)
class Section:
    """One `[INPUT]`/`[OUTPUT]`/... section (or YAML list item), kind in SECTION_KINDS."""

    kind: str
    props: tuple[Prop, ...]
    file: str
    line: int

    def get(self, name: str) -> Prop | None:
        """The last property called `name` (case-insensitive), as Fluent Bit's lookup does."""
        name = name.lower()
        for prop in reversed(self.props):
            if prop.name == name:
                return prop
        return None

    @property
    def plugin(self) -> str:
        prop = self.get("name")
        return prop.value.strip().lower() if prop else ""


@dataclass(frozen=True, slots=True)
class Document:
    """A whole parsed configuration: sections in file order (includes expanded)."""

    sections: tuple[Section, ...]
    source: str  # the top-level file, or "<default>" / "<command line>"

    def of_kind(self, kind: str) -> tuple[Section, ...]:
        return tuple(s for s in self.sections if s.kind == kind)
