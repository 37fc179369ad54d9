"""LineHandler wrappers for inputs: `Parser` (ParsingHandler, tail and stdin) and
`multiline.parser docker, cri` (ContainerHandler, tail).

`Parser`: each record's `log` through a parser, as in_tail does. It wraps the input's own
LineHandler (plain or Ray-aware), so Ray's metadata (session,
component, path and offset keys) and multi-line joining still apply; the parser then turns
`log` into fields. The record becomes {date, parsed fields..., the rest}: `date` is the parsed
time when the parser found one, else the read time; a line the parser does not match keeps
`log` unchanged (Fluent Bit's fallback). Both are built only when their key is set (see
shipper/parsers/inputs.py): without them the input's handler, and its fast path, are untouched.
"""

from __future__ import annotations

import logging

from shipper.chunk import Encoded, Record
from shipper.lines import LineHandler
from shipper.parsers.container import ContainerJoiner
from shipper.parsers.formats import Parser

log = logging.getLogger(__name__)


class ParsingHandler:
    __slots__ = ("_inner", "_parse", "_parser", "_warned", "unread")

    def __init__(self, inner: LineHandler, parser: Parser) -> None:
        self._inner = inner
        self._parser = parser
        self._parse = parser.bound()
        self._warned = False
        self.unread = 0  # no fast path: feed gets every line

    @property
    def held_lines(self) -> int:
        return self._inner.held_lines

    @held_lines.setter
    def held_lines(self, value: int) -> None:  # the protocol declares a plain attribute
        self._inner.held_lines = value

    def encode(self, complete: bytes, now: float, first_at: float | None = None) -> Encoded | None:
        return None

    def feed(self, lines: list[str], now: float, offsets: list[int] | None = None) -> list[Record]:
        return self.apply(self._inner.feed(lines, now, offsets), now)

    def flush(self, now: float) -> list[Record]:
        return self.apply(self._inner.flush(now), now)

    def reset(self) -> None:
        self._inner.reset()

    def apply(self, records: list[Record], now: float) -> list[Record]:
        parse = self._parse
        for i, rec in enumerate(records):
            text = rec.get("log")
            if text.__class__ is not str:
                continue
            got = parse(text, now)
            if got is None:
                continue  # no match: the record keeps `log`, as Fluent Bit's tail
            fields, when = got
            if "date" in fields:
                self._date_clash()
                del fields["date"]
            date = rec.pop("date", now)
            del rec["log"]
            # path, offset and Ray keys after the fields; on a clash they win, as the keys
            # in_tail appends after the parsed map win downstream
            new: Record = {"date": date if when is None else when, **fields, **rec}
            if "\n" in text and self._partial(text):
                new.setdefault("log", text)  # a joined record the regex read only part of
            records[i] = new
        return records

    def _partial(self, text: str) -> bool:
        """Did a regex parser leave lines of this multi-line record unread? (Its `.` stops at
        a newline, as Onigmo's does; Fluent Bit never parses a joined record, so nothing of
        one may be lost here.)"""
        regex = self._parser.regex
        if regex is None:
            return False
        m = regex.search(text)
        return m is not None and m.end() < len(text.rstrip("\n"))

    def _date_clash(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "parser '%s' yields a field named 'date': the record time is kept under "
                "'date' (shipper's time key), the parsed value is dropped",
                self._parser.name,
            )


class ContainerHandler:
    """`multiline.parser docker, cri` on tail: the runtime's lines parsed and partial lines
    joined (shipper/parsers/container.py), after the input's own handler."""

    __slots__ = ("_inner", "_joiner", "unread")

    def __init__(self, inner: LineHandler, kinds: tuple[str, ...]) -> None:
        self._inner = inner
        self._joiner = ContainerJoiner(kinds)
        self.unread = 0

    @property
    def held_lines(self) -> int:
        return self._inner.held_lines + self._joiner.held

    @held_lines.setter
    def held_lines(self, value: int) -> None:  # the protocol declares a plain attribute
        self._inner.held_lines = value

    def encode(self, complete: bytes, now: float, first_at: float | None = None) -> Encoded | None:
        return None

    def feed(self, lines: list[str], now: float, offsets: list[int] | None = None) -> list[Record]:
        out: list[Record] = []
        push = self._joiner.push
        for rec in self._inner.feed(lines, now, offsets):
            push(rec, out)
        return out

    def flush(self, now: float) -> list[Record]:
        out: list[Record] = []
        for rec in self._inner.flush(now):
            self._joiner.push(rec, out)
        self._joiner.flush(out)
        return out

    def reset(self) -> None:
        self._inner.reset()
        self._joiner.reset()
