"""Fluent Bit's `docker` and `cri` multi-line parsers: container runtimes' log lines, whose
long messages the runtime splits into partial lines, parsed and joined again.

- `docker`: a JSON line `{"log": "...", "stream": "stdout", "time": "..."}`; a `log` that does
  not end with a newline is partial and continues in the next line of the same stream.
- `cri`: `TIME STREAM P|F TEXT`; `P` is partial, `F` closes the message. The record is
  `{time, stream, _p, log}` (Fluent Bit's `_ml_cri` parser, Time_Keep on).

Both keep `time` in the record and make it the record's time; parts join with nothing in
between (the runtime cut the text, it did not add line breaks); a joined record is its first
part's fields with the whole text. Streams (stdout, stderr) join separately.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from shipper.chunk import Record
from shipper.parsers.timefmt import TimeFormat

KINDS = ("docker", "cri")
_CRI = re.compile(r"(?P<time>.+?) (?P<stream>stdout|stderr) (?P<_p>F|P) (?P<log>.*)", re.S)
# Fluent Bit's built-ins do not insist on the whole format (Time_Strict off)
_CRI_TIME = TimeFormat.compile("%Y-%m-%dT%H:%M:%S.%L%z", lenient=True)
_DOCKER_TIME = TimeFormat.compile("%Y-%m-%dT%H:%M:%S.%L", lenient=True)


def parse_line(kinds: tuple[str, ...], text: str) -> tuple[Record, float | None, bool] | None:
    """(fields, time, partial) by the first kind that reads `text`, or None."""
    for kind in kinds:
        if kind == "docker" and text.startswith("{"):
            try:
                obj: Any = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("log"), str):
                when = obj.get("time")
                t = _DOCKER_TIME.parse(when) if isinstance(when, str) else None
                return obj, t, not obj["log"].endswith("\n")
        elif kind == "cri":
            m = _CRI.fullmatch(text)
            if m is not None:
                fields: Record = m.groupdict()
                return fields, _CRI_TIME.parse(fields["time"]), fields["_p"] == "P"
    return None


class _Pending:
    __slots__ = ("first", "parts", "start")

    def __init__(self, first: Record, text: str, start: int) -> None:
        self.first = first
        self.parts = [text]
        self.start = start  # the number of the record that opened it


class ContainerJoiner:
    """Joins partial container records."""

    def __init__(self, kinds: tuple[str, ...], key: str = "log") -> None:
        self.kinds = kinds
        self.key = key
        self.pending: dict[Any, _Pending] = {}
        self.seq = 0  # records pushed

    @property
    def held(self) -> int:
        """Records from the oldest one held to the last pushed: an input may store no offset
        past the oldest, even when a later line of the other stream went out already."""
        if not self.pending:
            return 0
        return self.seq - min(p.start for p in self.pending.values())

    def push(self, rec: Record, out: list[Record]) -> None:
        """One record whose `key` holds a runtime's line; what is complete goes to `out`."""
        self.seq += 1
        text = rec.get(self.key)
        got = parse_line(self.kinds, text) if isinstance(text, str) else None
        if got is None:
            out.append(rec)  # not a container line: passes as it is
            return
        fields, when, partial = got
        new: Record = {k: v for k, v in rec.items() if k != self.key}
        if when is not None:
            new["date"] = when
        new.update(fields)
        group = fields.get("stream")
        pend = self.pending.get(group)
        if pend is None:
            if not partial:
                out.append(new)
                return
            self.pending[group] = _Pending(new, fields["log"], self.seq - 1)
            return
        pend.parts.append(fields["log"])
        if not partial:
            out.append(self._close(group))

    def flush(self, out: list[Record]) -> None:
        for group in list(self.pending):
            out.append(self._close(group))

    def reset(self) -> None:
        self.pending.clear()

    def _close(self, group: Any) -> Record:
        pend = self.pending.pop(group)
        rec = pend.first
        rec["log"] = "".join(pend.parts)
        return rec
