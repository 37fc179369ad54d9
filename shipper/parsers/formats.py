"""One parser (a [PARSER] definition) and its four formats: regex, json, logfmt, ltsv.

`Parser.parse(text, now)` -> (fields, time) or None when the text does not fit the format;
`time` is the epoch from Time_Key/Time_Format, None when there is none (the caller keeps the
record's own time, as Fluent Bit keeps "now" for a zero time). Record shapes follow Fluent
Bit's flb_parser_*.c: which keys, in which order, which values when a time does not parse.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from shipper.parsers.decoders import DecodeRule, apply_decoders
from shipper.parsers.timefmt import TimeFormat

log = logging.getLogger(__name__)

Fields = dict[str, Any]
FORMATS = ("regex", "json", "logfmt", "ltsv")
TYPES = ("integer", "float", "bool", "string", "hex")

_INT = re.compile(r"\s*[+-]?\d+")
_FLOAT = re.compile(r"\s*[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf|nan)", re.I)
_HEX = re.compile(r"\s*(?:0[xX])?([0-9a-fA-F]+)")
# logfmt: an identifier byte is any byte above ' ' but '=' and '"' (Fluent Bit's table)
_LOGFMT_PAIR = re.compile(r'[^\x00-\x20="]+')
_LOGFMT_BARE = re.compile(r'[^\x00-\x20="]*')
_LTSV_LABEL = re.compile(r"[0-9A-Za-z_.\-]*")
_LTSV_FIELD = re.compile(r"[^\x00\t\n\r]*")


_I64 = (-(2**63), 2**63 - 1)


def _atoll(text: str) -> int:
    m = _INT.match(text)
    # atoll saturates; an int beyond 64 bits would also fail every JSON encoder downstream
    return min(max(int(m.group()), _I64[0]), _I64[1]) if m else 0


def _atof(text: str) -> float:
    m = _FLOAT.match(text)
    return float(m.group()) if m else 0.0


def _strtoull16(text: str) -> int:
    m = _HEX.match(text)
    return min(int(m.group(1), 16), 2**64 - 1) if m else 0


def cast(key: str, value: str, kind: str) -> Any:
    """Fluent Bit's flb_parser_typecast: C conversions (a prefix is enough, else 0); a bool
    that is neither true nor false stays a string (with a warning)."""
    if kind == "integer":
        return _atoll(value)
    if kind == "float":
        return _atof(value)
    if kind == "hex":
        return _strtoull16(value)
    if kind == "bool":
        low = value.lower()
        if low.startswith("true"):
            return True
        if low.startswith("false"):
            return False
        log.warning("[parser] key=%s cast error. save as string.", key)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Parser:
    name: str
    format: str
    regex: re.Pattern[str] | None = None
    group_names: tuple[str, ...] = ()
    group_numbers: tuple[int, ...] = ()  # the Python group number of each name
    direct: bool = False  # the Python groups carry the names: groupdict() is the record
    time_key: str = "time"
    time_format: TimeFormat | None = None
    time_keep: bool = False
    time_strict: bool = True
    types: tuple[tuple[str, str], ...] = ()
    skip_empty: bool = True
    no_bare_keys: bool = False
    decoders: dict[str, tuple[DecodeRule, ...]] = field(default_factory=dict)
    file: str = ""
    line: int = 0

    def parse(self, text: str, now: float | None = None) -> tuple[Fields, float | None] | None:
        got = _DO[self.format](self, text, now)
        if got is not None and self.decoders:
            apply_decoders(got[0], self.decoders)
        return got

    def bound(self) -> Callable[[str, float | None], tuple[Fields, float | None] | None]:
        """`parse` for a hot loop: a regex whose groups are the record gets a closure with
        nothing but the search and the dict (one Python call a line)."""
        regex = self.regex
        if regex is None or not self.direct or self.time_format or self.types or self.decoders:
            return self.parse
        search = regex.search
        if not self.skip_empty:
            return self.parse

        def fast(text: str, now: float | None = None) -> tuple[Fields, float | None] | None:
            m = search(text)
            if m is None:
                return None
            fields: Fields = m.groupdict()
            found = fields.values()
            if None in found or "" in found:  # Skip_Empty_Values
                fields = {k: v for k, v in fields.items() if v}
            return fields, None

        return fast

    def _time(self, value: str, now: float | None) -> float | None:
        assert self.time_format is not None
        t = self.time_format.parse(value, now)
        if t is None:
            if self.time_strict:
                log.warning(
                    "[parser:%s] invalid time format %s for '%s'",
                    self.name,
                    self.time_format.fmt,
                    value[:254],
                )
            return None
        return t

    def _typed(self, key: str, value: str) -> Any:
        for name, kind in self.types:
            if name == key:
                return cast(key, value, kind)
        return value


def _regex(p: Parser, text: str, now: float | None) -> tuple[Fields, float | None] | None:
    assert p.regex is not None
    m = p.regex.search(text)
    if m is None or not p.group_names:
        return None
    if p.direct and p.time_format is None and not p.types:  # the common case, in C mostly
        fields: Fields = m.groupdict()
        found = fields.values()
        if None in found or "" in found:
            if p.skip_empty:  # an empty or unmatched group is left out (on by default)
                fields = {k: v for k, v in fields.items() if v}
            else:
                fields = {k: v or "" for k, v in fields.items()}
        return fields, None
    values = m.group(*p.group_numbers) if len(p.group_numbers) > 1 else (m[p.group_numbers[0]],)
    fields = {}
    when: float | None = None
    for name, value in zip(p.group_names, values, strict=True):
        if not value:
            if p.skip_empty:
                continue
            value = ""
        if p.time_format is not None and name == p.time_key:
            t = p._time(value, now)
            if t is None:
                continue  # Fluent Bit drops a time key it cannot read
            when = t
            if not p.time_keep:
                continue
        fields[name] = p._typed(name, value) if p.types else value
    return fields, when


def _json(p: Parser, text: str, now: float | None) -> tuple[Fields, float | None] | None:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if p.time_format is None:
        return obj, None
    value = obj.get(p.time_key)
    if not isinstance(value, str):
        return obj, None
    t = p._time(value, now)
    if t is not None and not p.time_keep:
        del obj[p.time_key]
    return obj, t  # a time that does not parse: the key stays, the time is "now"


def _pairs_result(
    p: Parser, pairs: list[tuple[str, Any, bool]], now: float | None
) -> tuple[Fields, float | None] | None:
    """logfmt/ltsv: (key, value, raw string?) in order; a bad time fails the whole line."""
    fields: Fields = {}
    when: float | None = None
    for key, value, is_str in pairs:
        if p.time_format is not None and key == p.time_key and is_str and value:
            when = p.time_format.parse(value, now)
            if when is None:
                log.warning("[parser:%s] Invalid time format %s", p.name, p.time_format.fmt)
                return None
            if not p.time_keep:
                continue
        fields[key] = p._typed(key, value) if p.types and is_str else value
    return (fields, when) if fields else None


def _unescape(text: str) -> str:
    try:
        out: str = orjson.loads(b'"' + text.encode() + b'"')
        return out
    except orjson.JSONDecodeError:
        return text.replace('\\"', '"').replace("\\\\", "\\")


def _logfmt(p: Parser, text: str, now: float | None) -> tuple[Fields, float | None] | None:
    pairs: list[tuple[str, Any, bool]] = []
    i, n = 0, len(text)
    while i < n:
        m = _LOGFMT_PAIR.search(text, i)
        if m is None or text[i : m.start()].find("\n") >= 0:
            break
        key = m.group()
        i = m.end()
        if i < n and text[i] == "=":
            i += 1
            if i < n and text[i] == '"':
                j = i + 1
                escaped = False
                while j < n and text[j] != '"':
                    if text[j] == "\\":
                        escaped = True
                        j += 1
                    j += 1
                raw = text[i + 1 : min(j, n)]
                i = min(j + 1, n)
                pairs.append((key, _unescape(raw) if escaped else raw, True))
                continue
            v = _LOGFMT_BARE.match(text, i)
            value = v.group() if v else ""
            i += len(value)
            pairs.append((key, value if value else True, bool(value)))
        else:
            if p.no_bare_keys:
                return None
            pairs.append((key, True, False))
    return _pairs_result(p, pairs, now)


def _ltsv(p: Parser, text: str, now: float | None) -> tuple[Fields, float | None] | None:
    pairs: list[tuple[str, Any, bool]] = []
    i, n = 0, len(text)
    while i < n:
        label = _LTSV_LABEL.match(text, i)
        end = label.end() if label else i
        if end >= n or text[end] != ":":
            break
        field = _LTSV_FIELD.match(text, end + 1)
        value = field.group() if field else ""
        if end > i:
            pairs.append((text[i:end], value, True))
        i = end + 1 + len(value)
        if i < n and text[i] == "\t":
            i += 1
        if i < n and text[i] in "\r\n":
            break
    return _pairs_result(p, pairs, now)


_DO: dict[str, Callable[[Parser, str, float | None], tuple[Fields, float | None] | None]] = {
    "regex": _regex,
    "json": _json,
    "logfmt": _logfmt,
    "ltsv": _ltsv,
}
