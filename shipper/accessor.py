"""Fluent Bit record accessors: `$key`, `$key['sub']["sub2"][0]`, or a plain `key`.

Used by filters (grep, modify conditions) and outputs (loki labels) to reach into nested
records. Parsing happens once at configuration time and raises ValueError with a readable
message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shipper.chunk import Record

_HEAD = re.compile(r"\$?([^\[\]$'\"\s]+)")
_SUB = re.compile(r"""\[\s*(?:'([^']*)'|"([^"]*)"|(\d+))\s*\]""")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Accessor:
    text: str
    path: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> Accessor:
        text = text.strip()
        m = _HEAD.match(text)
        if not m or (text.startswith("$") and len(text) > 1 and text[1].isdigit()):
            raise ValueError(f"invalid record accessor {text!r}")
        path: list[str | int] = [m.group(1)]
        pos = m.end()
        while pos < len(text):
            sub = _SUB.match(text, pos)
            if not sub:
                raise ValueError(f"invalid record accessor {text!r} (at {text[pos:]!r})")
            if sub.group(3) is not None:
                path.append(int(sub.group(3)))
            else:
                path.append(sub.group(1) if sub.group(1) is not None else sub.group(2))
            pos = sub.end()
        return cls(text, tuple(path))

    @property
    def key(self) -> str:
        """The top-level key."""
        return str(self.path[0])

    def normalized_name(self) -> str:
        """Fluent Bit's label name for `$a['b'][0]`: `a_b_0`."""
        return "_".join(str(p) for p in self.path)

    def lookup(self, record: Record) -> Any:
        """The value, or `MISSING` (compare with `is Accessor.MISSING`)."""
        cur: Any = record
        for part in self.path:
            if isinstance(part, int):
                if not isinstance(cur, list) or part >= len(cur):
                    return _MISSING
                cur = cur[part]
            else:
                if not isinstance(cur, dict):
                    return _MISSING
                cur = cur.get(part, _MISSING)
                if cur is _MISSING:
                    return _MISSING
        return cur

    def exists(self, record: Record) -> bool:
        return self.lookup(record) is not _MISSING

    def string(self, record: Record) -> str | None:
        """The value as text (numbers and booleans as Fluent Bit prints them), or None when
        it is absent or not a scalar."""
        value = self.lookup(record)
        return scalar_text(value)

    def without(self, record: Record) -> Record:
        """A copy of `record` without this key (nested containers copied on the way)."""
        if len(self.path) == 1:
            key = self.path[0]
            if key not in record:
                return record
            return {k: v for k, v in record.items() if k != key}
        if not self.exists(record):
            return record
        out = dict(record)
        cur: Any = out
        for part in self.path[:-1]:
            nxt = cur[part]
            nxt = list(nxt) if isinstance(nxt, list) else dict(nxt)
            cur[part] = nxt
            cur = nxt
        last = self.path[-1]
        if isinstance(cur, list) and isinstance(last, int):
            del cur[last]
        elif isinstance(cur, dict):
            cur.pop(last, None)
        return out


MISSING = _MISSING


def scalar_text(value: Any) -> str | None:
    if value is _MISSING or value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return str(value)
