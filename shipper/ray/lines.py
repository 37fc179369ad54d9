"""Ray's line formats -> record fields. This is the per-line hot path.

One compiled regex per format, picked by the line's first character, so a free-text line costs a
string index and a set lookup. Fields found: `date` (float epoch seconds from the line's own
local-time stamp), `level` (DEBUG INFO WARNING ERROR FATAL for every format), `pid`, `tid`
(ints), `source` (`file.cc:103`), `message`; JSON lines add their own keys.

Formats (docs/ray-logs.md, tests/fixtures/ray-session-2.60):
- C++ spdlog   `[2026-11-28 10:07:08,319 I 15251 15251] (raylet) file.cc:103: msg`
- Python       `2026-11-28 10:07:08,319<TAB>INFO (component) file.py:95 -- msg`
- glog (abseil/gRPC) `I1128 10:07:08.319117   15251 file.cc:1403] msg`: no year, no pid
- Python logging's default (`logging.basicConfig()`) `ERROR:mytask:msg`: `level`, `logger`;
  no time of its own (the read time)
- Ray Serve `INFO 2026-11-28 10:07:08,319 <component> <id> [<request_id>] -- msg`:
  `component_name` and `component_id`, or for a replica `deployment` and `replica` (as
  Serve's JSON has them), `request_id`
- JSON objects: RAY_BACKEND_LOG_JSON (C++), Ray's structured logging (`ray.LoggingConfig(
  encoding="JSON")`, Serve's JSON) and the event framework (events/, export_events/), mapped
  onto the keys of the text formats (`levelname` -> level, `filename:lineno` -> source,
  `process` -> pid, `timestamp_ns`/`asctime`/`timestamp` -> date, `exc_text` appended to the
  message as the text form has the traceback).

`parse` never raises: a line that does not fit a format returns None, and the caller ships it
as free text.
"""

from __future__ import annotations

import calendar
import re
import time

import orjson

from shipper.ray.structured import LEVELS, Fields, backend_json, event_json

__all__ = ["DRIVER_PREFIX", "LEVELS", "LineParser", "unprefixed"]


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
# logging.basicConfig()'s `%(levelname)s:%(name)s:%(message)s`; logger names have no blanks.
_BASIC = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL):([^\s:]+):")
# Serve's ServeFormatter: `%(levelname)s %(asctime)s <component> <id> [%(request_id)s ]-- `.
_SERVE = re.compile(
    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) "
    r"(\S+) (\S+) (?:(\S+) )?--(?: |\Z)",
    re.ASCII,
)

# What a driver prints for its workers' lines (Ray's log monitor -> driver): `(name pid=N[,
# ip=A]) line`, the prefix in color when Ray decides so; a job driver's log is that output.
DRIVER_PREFIX = re.compile(
    r"(?:\x1b\[\d+m)?\(([^\s()]+)(?: pid=(\d+))?(?:, ip=[^\s()]+)?\)(?:\x1b\[0m)? ", re.ASCII
)

_FIRST_PY = frozenset("0123456789")
_FIRST_GLOG = frozenset("IWEF")
_FIRST_NAME = frozenset("DIWEC")  # a level name (basicConfig's and Serve's lines)
# Serve's components other than replicas (the driver's own Serve client logs as `serve`).
_SERVE_PROCESSES = frozenset({"controller", "proxy", "serve"})

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
    `forwarded`: lines may be a driver's copies of its workers' (`(name pid=N) line`): a job
    driver's log, stdin; elsewhere such a line is text like any other.
    """

    __slots__ = ("_cache", "_forwarded_lines", "_ints", "_offset", "_prefix", "_reserved")

    def __init__(
        self,
        tz_offset: float | None = None,
        *,
        prefix_component: bool = False,
        reserved: frozenset[str] = frozenset(),
        forwarded: bool = False,
    ) -> None:
        self._offset = None if tz_offset is None else tz_offset * 3600.0  # in seconds
        self._prefix = prefix_component
        self._forwarded_lines = forwarded
        # Shared by every parser of the same zone: with thousands of files each writing now
        # and then, a per-parser cache missed once a second per file (mktime each time).
        self._cache = _EPOCHS.setdefault(self._offset, {})
        self._ints: dict[str, int] = {}
        self._reserved = _ALWAYS_RESERVED | reserved

    @property
    def reserved(self) -> frozenset[str]:
        """Keys a line's own key=value or JSON keys may not set."""
        return self._reserved

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
        """Python logging's NAME:..., forwarded worker lines, glog and JSON lines (rarer than
        the two header formats above)."""
        if c in _FIRST_NAME and not line[1:2].isdigit():
            g = self._named(line, now)
        elif (c == "\x1b" or c == "(") and self._forwarded_lines:
            g = self._forwarded(line, now)
        elif c in _FIRST_GLOG:
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
        if c in _FIRST_NAME and not line[1:2].isdigit():
            return _BASIC.match(line) is not None or _SERVE.match(line) is not None
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

    def _forwarded(self, line: str, now: float) -> Fields | None:
        """A worker's line as its driver prints it: the prefix's `origin` (the task, actor or
        daemon Ray names there) and `pid`, and the fields of the line itself."""
        m = DRIVER_PREFIX.match(line)
        if m is None:
            return None
        rest = line[m.end() :]
        inner = None if rest[:1] in ("\x1b", "(") else self.parse(rest, now)
        f: Fields = {"date": now, "message": rest} if inner is None else inner
        f["origin"] = m.group(1)
        if m.group(2) is not None:
            f["pid"] = int(m.group(2))
        return f

    def _named(self, line: str, now: float) -> Fields | None:
        """A line that starts with a level name: basicConfig's or Serve's."""
        m = _BASIC.match(line)
        if m is not None:
            return {
                "date": now,
                "level": LEVELS[m.group(1)],
                "logger": m.group(2),
                "message": line[m.end() :],
            }
        m = _SERVE.match(line)
        if m is None:
            return None
        lvl, ts, ms, comp, cid, rid = m.groups()
        sec = self._epoch(ts)
        f: Fields = {
            "date": now if sec is None else (sec * 1000.0 + _MS[ms]) / 1000.0,
            "level": LEVELS[lvl],
        }
        if comp in _SERVE_PROCESSES:
            f["component_name"] = comp
            f["component_id"] = cid
        else:
            # A replica writes its deployment and replica id there; Serve's JSON names them
            # so, with component_name `replica`.
            f["component_name"] = "replica"
            f["deployment"] = comp
            f["replica"] = cid
        if rid is not None:
            f["request_id"] = rid
        f["message"] = line[m.end() :]
        return f

    def _json(self, line: str, now: float) -> Fields | None:
        try:
            obj = orjson.loads(line)
        except Exception:  # orjson.JSONDecodeError, or a str it cannot encode (surrogates)
            return None
        if not isinstance(obj, dict):
            return None
        try:
            if "asctime" in obj and "levelname" in obj:
                f = backend_json(obj, now, self._epoch, self._reserved)
                comp = obj.get("component")
                if self._prefix and isinstance(comp, str) and comp:
                    _add_component(f, comp)
                return f
            if "event_id" in obj or ("source_type" in obj and "timestamp" in obj):
                return event_json(obj, now, self._reserved)
        except Exception:  # values of unexpected types: ship the line as free text
            return None
        return None


def unprefixed(line: str) -> str:
    """A driver's copy of a worker's line without its `(name pid=N) ` prefix."""
    m = DRIVER_PREFIX.match(line)
    return line if m is None else line[m.end() :]


def _add_component(f: Fields, comp: str) -> None:
    """The `(component)` prefix of a stdin line -> component (+ worker_id for core workers)."""
    if comp.startswith("python-core-"):
        kind, _, wid = comp[len("python-core-") :].partition("-")
        if kind in ("worker", "driver") and wid:
            f["component"] = "core_" + kind
            f["worker_id"] = wid
            return
    f["component"] = comp
