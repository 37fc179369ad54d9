"""Ray's structured lines -> the record keys of its text formats (one schema, text or JSON).

- RAY_BACKEND_LOG_JSON=1 (C++) and Ray's structured logging (`ray.LoggingConfig(encoding=
  "JSON")`, Serve's JSON): `levelname` -> level, `filename:lineno` -> source, `process` -> pid,
  `timestamp_ns` (else `asctime`) -> date, `exc_text` after the message as the text form has
  the traceback; every other key (job_id, worker_id, node_id, actor_id, task_name, Serve's
  deployment/replica/request_id, user extras) as it is.
- Event framework lines (events/, export_events/): `timestamp` -> date, `severity` -> level,
  `pid`/`source_pid` -> pid, custom_fields flattened.
- Ray's TextFormatter (`ray.LoggingConfig(encoding="TEXT")`) ends a message with the same
  context as ` key=value` pairs, `timestamp_ns` last: split_context takes them out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "LEVELS",
    "Fields",
    "apply_context",
    "backend_json",
    "driver_job",
    "event_json",
    "split_context",
]

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

_ASCTIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[,.](\d{3})$", re.ASCII)
# JSON keys that become fields under other names (or not at all).
_BACKEND_KEYS = frozenset(
    {
        "asctime",
        "levelname",
        "message",
        "filename",
        "lineno",
        "component",
        "process",
        "timestamp_ns",
        "exc_text",
    }
)
_EVENT_KEYS = frozenset({"timestamp", "severity", "pid", "source_pid", "message", "custom_fields"})
# After a traceback the context is on its last line.
_CONTEXT_END = re.compile(r" timestamp_ns=(\d+)$")
_CONTEXT_PAIR = re.compile(r" ([A-Za-z_][A-Za-z0-9_]*)=(\S*)$")


def _int(v: Any) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v.isascii() and v.isdigit():
        return int(v)
    return None


def backend_json(
    obj: dict[str, Any],
    now: float,
    epoch: Callable[[str], float | None],
    reserved: frozenset[str],
) -> Fields:
    """A C++ or Python JSON log line; `epoch` places `asctime` (the lines' time zone); keys in
    `reserved` are never taken from the line."""
    date = now
    asctime = obj.get("asctime")
    if isinstance(asctime, str):
        m = _ASCTIME.match(asctime)
        if m is not None:
            sec = epoch(m.group(1))
            if sec is not None:
                date = sec + int(m.group(2)) / 1000
    ns = obj.get("timestamp_ns")
    if isinstance(ns, int) and not isinstance(ns, bool) and ns > 0:
        date = ns / 1e9  # the same instant as asctime, to the microsecond
    f: Fields = {"date": date}
    lvl = obj.get("levelname")
    if isinstance(lvl, str) and lvl.upper() in LEVELS:
        f["level"] = LEVELS[lvl.upper()]
    pid = obj.get("process")
    if isinstance(pid, int) and not isinstance(pid, bool):
        f["pid"] = pid
    fn, ln = obj.get("filename"), obj.get("lineno")
    if fn is not None:
        f["source"] = f"{fn}:{ln}" if ln is not None else str(fn)
    msg = obj.get("message")
    exc = obj.get("exc_text")
    if msg is not None or exc:
        text = "" if msg is None else msg if isinstance(msg, str) else str(msg)
        if isinstance(exc, str) and exc:
            # As logging's text form writes it: the traceback on the lines after.
            text = f"{text}\n{exc}"
        f["message"] = text
    for k, v in obj.items():
        if k not in _BACKEND_KEYS and k not in reserved and k not in f:
            f[k] = v
    return f


def event_json(obj: dict[str, Any], now: float, reserved: frozenset[str]) -> Fields:
    """An event framework line: the event's own time, severity, message and ids."""
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
    pid = _int(obj.get("pid"))
    if pid is None:
        pid = _int(obj.get("source_pid"))  # the JOBS events' name for it
    if pid is not None:
        f["pid"] = pid
    msg = obj.get("message")
    if msg is not None:
        f["message"] = msg if isinstance(msg, str) else str(msg)
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


def split_context(message: str, reserved: frozenset[str]) -> tuple[str, Fields] | None:
    """Ray's TextFormatter context (` job_id=... task_name=... timestamp_ns=...` at the end
    of a message) -> (the message without it, its fields with `date` from timestamp_ns), or
    None when the message has none. Keys in `reserved` stay in the message."""
    m = _CONTEXT_END.search(message)
    if m is None:
        return None
    fields: Fields = {"date": int(m.group(1)) / 1e9}
    end = m.start()
    pairs: list[tuple[str, str]] = []
    while True:
        p = _CONTEXT_PAIR.search(message, 0, end)
        if p is None or p.group(1) in reserved or p.group(1) == "timestamp_ns":
            break
        pairs.append((p.group(1), p.group(2)))
        end = p.start()
    for k, v in reversed(pairs):
        fields[k] = v
    return message[:end], fields


def apply_context(rec: Fields, reserved: frozenset[str]) -> None:
    """split_context on a record's message, its keys into the record (the line's values win
    over the file name's and the marker lines')."""
    msg = rec.get("message")
    if type(msg) is not str or " timestamp_ns=" not in msg:
        return
    split = split_context(msg, reserved)
    if split is not None:
        rec["message"], fields = split
        rec.update(fields)


def driver_job(rec: Fields, known: str | None) -> str | None:
    """A job driver's log: once a line says the job id (Ray's logging context, JSON), the
    file's later records carry it. Fills `rec` in; the id to remember from now on."""
    job = rec.get("job_id")
    if isinstance(job, str):
        return job
    if job is None and known is not None:
        rec["job_id"] = known
    return known
