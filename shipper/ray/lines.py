"""Ray's line formats -> record fields. This is the per-line hot path.

One compiled regex per format, picked by the line's first character, so a free-text line costs a
string index and a set lookup. Fields found: `date` (float epoch seconds from the line's own
local-time stamp), `level` (DEBUG INFO WARNING ERROR FATAL for every format), `pid`, `tid`
(ints), `source` (`file.cc:103`), `message`; JSON lines add their own keys.

Formats (docs/ray-logs.md, tests/fixtures/ray-session-2.60):
- C++ spdlog   `[2026-11-28 10:07:08,319 I 15251 15251] (raylet) file.cc:103: msg`
- Python       `2026-11-28 10:07:08,319<TAB>INFO (component) file.py:95 -- msg`
- glog (abseil/gRPC) `I1128 10:07:08.319117   15251 file.cc:1403] msg`: no year, no pid
- RAY_BACKEND_LOG_JSON objects and event-framework JSON lines.

`parse` never raises: a line that does not fit a format returns None, and the caller ships it
as free text.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from typing import Any

import orjson

__all__ = ["LEVELS", "LineParser"]

Fields = dict[str, Any]

# One level vocabulary for all formats. spdlog letters: T(race) D I W E C(ritical = RAY FATAL);
# glog: I W E F; Python names; event severities; JSON backend letters.
LEVELS: dict[str, str] = {
    "T": "DEBUG",
    "D": "DEBUG",
    "I": "INFO",
    "W": "WARNING",
    "E": "ERROR",
    "C": "FATAL",
    "F": "FATAL",
    "TRACE": "DEBUG",
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARNING",
    "WARN": "WARNING",
    "ERROR": "ERROR",
    "CRITICAL": "FATAL",
    "FATAL": "FATAL",
}

# re.ASCII: `\d` must mean 0-9 only (int() and the ms table take the groups as they are).
# The message is never a group: letting sre scan it costs more than the header, so it is
# sliced off at m.end().
_CPP = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ([TDIWEC]) (\d+) (\d+)\] "
    r"(?:\(([^)\s]+)\) )?([^\s:]+:\d+): ?",
    re.ASCII,
)
_PY = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\t"
    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL|WARN|FATAL|TRACE) "
    r"(?:\(([^)\s]+)\) )?(\S+:\d+|\(unknown file\):\d+) --(?: |\Z)",
    re.ASCII,
)
_GLOG = re.compile(
    r"([IWEF])(\d\d)(\d\d) (\d\d:\d\d:\d\d)\.(\d{6}) +(\d+) ([^\s:]+:\d+)\] ?", re.ASCII
)
_ASCTIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[,.](\d{3})$", re.ASCII)

_FIRST_PY = frozenset("0123456789")
_FIRST_GLOG = frozenset("IWEF")

# JSON keys that become fields under other names (or not at all).
_BACKEND_KEYS = frozenset({"asctime", "levelname", "message", "filename", "lineno", "component"})
_EVENT_KEYS = frozenset({"timestamp", "severity", "pid", "message", "custom_fields"})
# Keys a JSON line may never set: they belong to the record frame or to the name parser.
_ALWAYS_RESERVED = frozenset(
    {"date", "log", "session", "component", "level", "pid", "tid", "source", "message"}
)

# "000".."999" -> milliseconds: a dict hit is cheaper than int(). The date is then
# (sec * 1000 + ms) / 1000: exact operands and one rounding, so it is the double nearest to
# the written `sec.ms`, the same number a JSON reader gets from the fast path's text
# (shipper/ray/fast.py), where `sec + ms / 1000` could be one ulp off.
_MS: dict[str, float] = {f"{i:03d}": float(i) for i in range(1000)}

_CACHE_MAX = 4096  # distinct seconds remembered; a day of steady logging evicts a few times


# `YYYY-mm-dd HH:MM:SS` -> epoch seconds, per time zone offset (None: local time).
_EPOCHS: dict[float | None, dict[str, float]] = {}


class LineParser:
    """Parses one line at a time; holds the timestamp cache (so: one per source or thread).

    `tz_offset` is the local time's offset east of UTC, in hours (the tail input's
    `Time_Offset`); None means this machine's time zone (with its DST rules) as `time.mktime`
    sees it. Ray writes local time with no zone, so only the deployment knows which one.
    `prefix_component`: report the `(component)` prefix of C++/Python lines (and the JSON
    `component` key) as `component`; only a stdin source wants it, a file's name says it better.
    `reserved`: extra keys JSON lines must not set (the path key, the offset key).
    """

    __slots__ = ("_cache", "_ints", "_offset", "_prefix", "_reserved")

    def __init__(
        self,
        tz_offset: float | None = None,
        *,
        prefix_component: bool = False,
        reserved: frozenset[str] = frozenset(),
    ) -> None:
        self._offset = None if tz_offset is None else tz_offset * 3600.0  # in seconds
        self._prefix = prefix_component
        # Shared by every parser of the same zone: with thousands of files each writing now
        # and then, a per-parser cache missed once a second per file (mktime each time).
        self._cache = _EPOCHS.setdefault(self._offset, {})
        self._ints: dict[str, int] = {}
        self._reserved = _ALWAYS_RESERVED | reserved

    # -- timestamps --------------------------------------------------------------------------

    def epoch(self, ts: str) -> float | None:
        """`YYYY-mm-dd HH:MM:SS` in the lines' time zone -> epoch seconds, None if invalid."""
        return self._epoch(ts)

    def _epoch(self, ts: str) -> float | None:
        """`YYYY-mm-dd HH:MM:SS` local time -> epoch seconds (cached per second)."""
        sec = self._cache.get(ts)
        if sec is None:
            try:
                tt = (
                    int(ts[0:4]),
                    int(ts[5:7]),
                    int(ts[8:10]),
                    int(ts[11:13]),
                    int(ts[14:16]),
                    int(ts[17:19]),
                )
                sec = self._to_epoch(tt)
            except (ValueError, OverflowError, OSError):
                return None
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[ts] = sec
        return sec

    def _to_epoch(self, tt: tuple[int, int, int, int, int, int]) -> float:
        if not (1 <= tt[1] <= 12 and 1 <= tt[2] <= 31 and tt[3] < 24 and tt[4] < 60 and tt[5] < 62):
            raise ValueError(tt)  # mktime would silently normalise 2026-13-45
        if self._offset is None:
            return time.mktime((*tt, 0, 0, -1))
        return calendar.timegm((*tt, 0, 0, 0)) - self._offset

    def _glog_epoch(self, mo: str, d: str, hms: str, now: float) -> float | None:
        # glog has no year: take the current one, or last year's for a stamp that would lie
        # in the future (a December line read in January).
        if self._offset is None:
            year = time.localtime(now).tm_year
        else:
            year = time.gmtime(now + self._offset).tm_year
        sec = self._epoch(f"{year:04d}-{mo}-{d} {hms}")
        if sec is not None and sec > now + 86400:
            sec = self._epoch(f"{year - 1:04d}-{mo}-{d} {hms}")
        return sec

    # -- formats -----------------------------------------------------------------------------

    def parse(self, line: str, now: float, base: Fields | None = None) -> Fields | None:
        """Fields of a line with a Ray header, or None for free text. Never raises.

        With `base`, the fields are set on a copy of it: a caller that builds records passes
        its record frame and gets the record in one dict (keys of `base` keep their place;
        JSON lines never overwrite them).
        """
        c = line[:1]
        if c == "[":
            m = _CPP.match(line)
            if m is None:
                return None
            ts, ms, lvl, pid, tid, comp, src = m.groups()
            sec = self._cache.get(ts)
            if sec is None:
                sec = self._epoch(ts)
            ints = self._ints
            p = ints.get(pid)
            if p is None:
                p = self._int(pid)
            t = ints.get(tid)
            if t is None:
                t = self._int(tid)
            f: Fields = {} if base is None else base.copy()
            f["date"] = now if sec is None else (sec * 1000.0 + _MS[ms]) / 1000.0
            f["level"] = LEVELS[lvl]
            f["pid"] = p
            f["tid"] = t
            f["source"] = src
            f["message"] = line[m.end() :]
            if comp is not None and self._prefix:
                _add_component(f, comp)
            return f
        if c in _FIRST_PY:
            m = _PY.match(line)
            if m is None:
                return None
            ts, ms, lvl, comp, src = m.groups()
            sec = self._cache.get(ts)
            if sec is None:
                sec = self._epoch(ts)
            f = {} if base is None else base.copy()
            f["date"] = now if sec is None else (sec * 1000.0 + _MS[ms]) / 1000.0
            f["level"] = LEVELS[lvl]
            f["source"] = src
            f["message"] = line[m.end() :]
            if comp is not None and self._prefix:
                _add_component(f, comp)
            return f
        return self._parse_other(c, line, now, base)

    def _parse_other(self, c: str, line: str, now: float, base: Fields | None) -> Fields | None:
        """glog and JSON lines (rarer than the two header formats above)."""
        if c in _FIRST_GLOG:
            g = self._glog(line, now)
        elif c == "{":
            g = self._json(line, now)
        else:
            return None
        if g is None or base is None:
            return g
        f = base.copy()
        for k, v in g.items():
            # (`component` is in g only from a stdin prefix, which is meant to replace it)
            if k == "date" or k == "component" or k not in f:
                f[k] = v
        return f

    def _int(self, digits: str) -> int:
        # pids and tids repeat line after line: remember their int() (bounded, like _cache).
        if len(self._ints) >= _CACHE_MAX:
            self._ints.clear()
        v = self._ints[digits] = int(digits)
        return v

    def is_header(self, line: str) -> bool:
        """Does the line start a Ray record? (The multiline joiner's question, without fields.)"""
        c = line[:1]
        if c == "[":
            return _CPP.match(line) is not None
        if c in _FIRST_PY:
            return _PY.match(line) is not None
        if c in _FIRST_GLOG:
            return _GLOG.match(line) is not None
        # A JSON object on one line is a record of its own; parsing it just to say so would
        # cost more than the whole header check.
        return c == "{" and line.rstrip().endswith("}")

    def _glog(self, line: str, now: float) -> Fields | None:
        m = _GLOG.match(line)
        if m is None:
            return None
        lvl, mo, d, hms, us, tid, src = m.groups()
        try:
            sec = self._glog_epoch(mo, d, hms, now)
        except (ValueError, OverflowError, OSError):
            sec = None
        # glog's number is the thread id (absl GetTID), not the pid.
        return {
            "date": now if sec is None else sec + int(us) / 1e6,
            "level": LEVELS[lvl],
            "tid": int(tid),
            "source": src,
            "message": line[m.end() :],
        }

    def _json(self, line: str, now: float) -> Fields | None:
        try:
            obj = orjson.loads(line)
        except Exception:  # orjson.JSONDecodeError, or a str it cannot encode (surrogates)
            return None
        if not isinstance(obj, dict):
            return None
        try:
            if "asctime" in obj and "levelname" in obj:
                return self._backend_json(obj, now)
            if "event_id" in obj or ("source_type" in obj and "timestamp" in obj):
                return self._event_json(obj, now)
        except Exception:  # values of unexpected types: ship the line as free text
            return None
        return None

    def _backend_json(self, obj: dict[str, Any], now: float) -> Fields:
        """RAY_BACKEND_LOG_JSON=1: spdlog fields as JSON keys, plus context keys (node_id...)."""
        date = now
        asctime = obj.get("asctime")
        if isinstance(asctime, str):
            m = _ASCTIME.match(asctime)
            if m is not None:
                sec = self._epoch(m.group(1))
                if sec is not None:
                    date = sec + int(m.group(2)) / 1000
        f: Fields = {"date": date}
        lvl = obj.get("levelname")
        if isinstance(lvl, str) and lvl.upper() in LEVELS:
            f["level"] = LEVELS[lvl.upper()]
        fn, ln = obj.get("filename"), obj.get("lineno")
        if fn is not None:
            f["source"] = f"{fn}:{ln}" if ln is not None else str(fn)
        msg = obj.get("message")
        if msg is not None:
            f["message"] = msg if isinstance(msg, str) else str(msg)
        comp = obj.get("component")
        if self._prefix and isinstance(comp, str) and comp:
            _add_component(f, comp)
        reserved = self._reserved
        for k, v in obj.items():
            if k not in _BACKEND_KEYS and k not in reserved and k not in f:
                f[k] = v
        return f

    def _event_json(self, obj: dict[str, Any], now: float) -> Fields:
        """Event framework lines (events/, export_events/): epoch `timestamp`, `severity`..."""
        date = now
        ts = obj.get("timestamp")
        if isinstance(ts, int | float | str) and not isinstance(ts, bool):
            try:
                sec = float(ts)
            except (ValueError, OverflowError):
                sec = math.nan
            if math.isfinite(sec):
                date = sec
        f: Fields = {"date": date}
        sev = obj.get("severity")
        if isinstance(sev, str) and sev.upper() in LEVELS:
            f["level"] = LEVELS[sev.upper()]
        pid = obj.get("pid")
        if isinstance(pid, int) and not isinstance(pid, bool):
            f["pid"] = pid
        elif isinstance(pid, str) and pid.isascii() and pid.isdigit():
            f["pid"] = int(pid)
        msg = obj.get("message")
        if msg is not None:
            f["message"] = msg if isinstance(msg, str) else str(msg)
        reserved = self._reserved
        for k, v in obj.items():
            if k not in _EVENT_KEYS and k not in reserved and k not in f:
                f[k] = v
        # custom_fields (job_id, node_id, worker_id, ...) are what one filters events by.
        custom = obj.get("custom_fields")
        if isinstance(custom, dict):
            for k, v in custom.items():
                if isinstance(k, str) and k not in reserved and k not in f:
                    f[k] = v
        return f


def _add_component(f: Fields, comp: str) -> None:
    """The `(component)` prefix of a stdin line -> component (+ worker_id for core workers)."""
    if comp.startswith("python-core-"):
        kind, _, wid = comp[len("python-core-") :].partition("-")
        if kind in ("worker", "driver") and wid:
            f["component"] = "core_" + kind
            f["worker_id"] = wid
            return
    f["component"] = comp
