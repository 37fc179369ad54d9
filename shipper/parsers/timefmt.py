"""Fluent Bit's `Time_Format`: strptime directives plus `%L` (fractional seconds).

A format is compiled once into one regular expression and a list of field setters, instead of
calling `datetime.strptime` per record: strptime has no `%L`, wants the whole string to match
(Fluent Bit's flb_strptime stops where the format ends and ignores what follows) and is slow.

As in flb_strptime: a blank in the format matches any run of blanks (or none), names of months
and days are case-insensitive, full or abbreviated; `%z` takes `Z`, `+hh`, `+hhmm`, `+hh:mm`.
A format without a year gets the current one (Fluent Bit prepends `%Y `).
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

_MONTHS = [m.lower() for m in calendar.month_name[1:]]
_DAYS = [d.lower() for d in calendar.day_name]
_MONTH_RE = "|".join(sorted({*_MONTHS, *(m[:3] for m in _MONTHS)}, key=len, reverse=True))
_DAY_RE = "|".join(sorted({*_DAYS, *(d[:3] for d in _DAYS)}, key=len, reverse=True))


class _Parts:
    """What one match found (None: not in the format)."""

    __slots__ = (
        "day",
        "epoch",
        "frac",
        "hour",
        "minute",
        "month",
        "offset",
        "pm",
        "second",
        "yday",
        "year",
    )

    def __init__(self) -> None:
        self.year: int | None = None
        self.month: int | None = None
        self.day: int | None = None
        self.yday: int | None = None
        self.hour = 0
        self.minute = 0
        self.second = 0
        self.frac = 0.0
        self.offset: int | None = None  # seconds east of UTC, from %z
        self.epoch: int | None = None
        self.pm: bool | None = None


_Setter = Callable[[_Parts, str], None]


def _num(name: str) -> _Setter:
    def setter(p: _Parts, text: str) -> None:
        setattr(p, name, int(text))

    return setter


def _month_name(p: _Parts, text: str) -> None:
    low = text.lower()[:3]
    p.month = next(i for i, m in enumerate(_MONTHS, 1) if m.startswith(low))


def _year2(p: _Parts, text: str) -> None:
    y = int(text)
    p.year = y + (2000 if y < 69 else 1900)  # POSIX: 69-99 -> 19xx, 00-68 -> 20xx


def _frac(p: _Parts, text: str) -> None:
    p.frac = int(text) / 10 ** len(text)


def _pm(p: _Parts, text: str) -> None:
    p.pm = text.lower() == "pm"


def _tz(p: _Parts, text: str) -> None:
    p.offset = parse_offset(text)


def _tzname(p: _Parts, text: str) -> None:
    if text.upper() in ("UTC", "GMT", "Z"):
        p.offset = 0


def _epoch(p: _Parts, text: str) -> None:
    p.epoch = int(text)


def _ignore(p: _Parts, text: str) -> None:
    pass


_DIRECTIVES: dict[str, tuple[str, _Setter]] = {
    "Y": (r"([+-]?\d{1,4})", _num("year")),
    "y": (r"(\d{1,2})", _year2),
    "m": (r"(\d{1,2})", _num("month")),
    "d": (r"\s*(\d{1,2})", _num("day")),
    "e": (r"\s*(\d{1,2})", _num("day")),
    "H": (r"(\d{1,2})", _num("hour")),
    "k": (r"\s*(\d{1,2})", _num("hour")),
    "I": (r"(\d{1,2})", _num("hour")),
    "l": (r"\s*(\d{1,2})", _num("hour")),
    "M": (r"(\d{1,2})", _num("minute")),
    "S": (r"(\d{1,2})", _num("second")),
    "L": (r"(\d{1,9})", _frac),
    "j": (r"(\d{1,3})", _num("yday")),
    "b": (f"({_MONTH_RE})", _month_name),
    "B": (f"({_MONTH_RE})", _month_name),
    "h": (f"({_MONTH_RE})", _month_name),
    "a": (f"(?:{_DAY_RE})", _ignore),
    "A": (f"(?:{_DAY_RE})", _ignore),
    "p": (r"([AaPp][Mm])", _pm),
    "z": (r"(Z|[+-]\d\d(?::?\d\d)?)", _tz),
    "Z": (r"([A-Za-z]+)", _tzname),
    "s": (r"([+-]?\d+)", _epoch),
    "n": (r"\s*", _ignore),
    "t": (r"\s*", _ignore),
    "u": (r"\d", _ignore),
    "w": (r"\d", _ignore),
    "%": ("%", _ignore),
}
_COMPOSITE = {"T": "%H:%M:%S", "D": "%m/%d/%y", "F": "%Y-%m-%d", "R": "%H:%M", "r": "%I:%M:%S %p"}


def parse_offset(text: str) -> int:
    """`Z`, `+hh`, `+hhmm`, `-hh:mm` -> seconds east of UTC (ValueError if not one)."""
    if text in ("Z", "z"):
        return 0
    m = re.fullmatch(r"([+-])(\d\d)(?::?(\d\d))?", text.strip())
    if not m:
        raise ValueError(f"expected a UTC offset such as +0200, -05:00 or Z, got {text!r}")
    hours, minutes = int(m.group(2)), int(m.group(3) or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"UTC offset out of range: {text!r}")
    seconds = hours * 3600 + minutes * 60
    return -seconds if m.group(1) == "-" else seconds


@dataclass(frozen=True, slots=True)
class TimeFormat:
    """A compiled Time_Format. `parse` -> epoch seconds (float) or None when it does not fit."""

    fmt: str
    regex: re.Pattern[str]
    setters: tuple[_Setter, ...]
    has_year: bool
    has_tz: bool
    offset: int = 0  # Time_Offset: seconds east of UTC for times without a zone
    local: bool = False  # Time_System_Timezone
    zone: ZoneInfo | None = None  # Time_Zone

    @classmethod
    def compile(
        cls,
        fmt: str,
        *,
        offset: int = 0,
        local: bool = False,
        zone: ZoneInfo | None = None,
        lenient: bool = False,
    ) -> TimeFormat:
        """`lenient` (Time_Strict off): a text that fits only a prefix of the format gives
        the time read so far, as flb_strptime leaves it when Fluent Bit does not insist."""
        for short, full in _COMPOSITE.items():
            fmt_expanded = fmt.replace("%%", "\0")
            fmt = fmt_expanded.replace(f"%{short}", full).replace("\0", "%%")
        parts: list[str] = []
        setters: list[_Setter] = []
        i = 0
        while i < len(fmt):
            ch = fmt[i]
            if ch == "%" and i + 1 < len(fmt):
                d = fmt[i + 1]
                if d in "EO" and i + 2 < len(fmt):  # %Ey, %Od: POSIX modifiers, same fields
                    i += 1
                    d = fmt[i + 1]
                if d not in _DIRECTIVES:
                    raise ValueError(f"unsupported directive %{d} in time format {fmt!r}")
                pattern, setter = _DIRECTIVES[d]
                parts.append(pattern)
                if pattern.count("(") - pattern.count("(?:") > 0:
                    setters.append(setter)
                i += 2
            elif ch.isspace():
                parts.append(r"\s*")
                i += 1
            else:
                parts.append(re.escape(ch))
                i += 1
        stripped = fmt.replace("%%", "")
        pattern = "".join(parts)
        if lenient and parts:
            tail = ""
            for part in reversed(parts[1:]):
                tail = f"(?:{part}{tail})?"
            pattern = parts[0] + tail
        return cls(
            fmt=fmt,
            regex=re.compile(pattern, re.IGNORECASE),
            setters=tuple(setters),
            has_year=any(f"%{d}" in stripped for d in "YysF") or "%D" in stripped,
            has_tz=any(f"%{d}" in stripped for d in "zZs"),
            offset=offset,
            local=local,
            zone=zone,
        )

    def parse(self, text: str, now: float | None = None) -> float | None:
        m = self.regex.match(text)  # a prefix is enough, as flb_strptime
        if m is None:
            return None
        p = _Parts()
        for setter, value in zip(self.setters, m.groups(), strict=True):
            if value is not None:
                setter(p, value)
        if p.epoch is not None:
            return p.epoch + p.frac
        hour = p.hour if p.pm is None else p.hour % 12 + (12 if p.pm else 0)
        if self.has_year:
            year, month, day = p.year or 1970, p.month or 1, p.day or 1
        else:  # Fluent Bit: this year, and today unless the format names month and day
            today = time.localtime(now) if self.local else time.gmtime(now)
            year, month, day = today.tm_year, p.month or today.tm_mon, p.day or today.tm_mday
        try:
            if p.yday is not None and p.month is None:
                first = datetime(year, 1, 1) + timedelta(days=p.yday - 1)
                month, day = first.month, first.day
            stamp = datetime(year, month, day, hour, p.minute, p.second)
        except (ValueError, OverflowError):
            return None
        if p.offset is not None:
            return calendar.timegm(stamp.timetuple()) - p.offset + p.frac
        if self.zone is not None:
            return stamp.replace(tzinfo=self.zone).timestamp() + p.frac
        if self.local:
            return time.mktime((*stamp.timetuple()[:8], -1)) + p.frac
        return calendar.timegm(stamp.timetuple()) - self.offset + p.frac
