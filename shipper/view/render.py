"""`shipper tail`: records -> one readable line each, and the filters a person asks for.

A line is `HH:MM:SS.mmm  who  LEVEL  message`; the lines after the first of a multi-line
record (tracebacks, debug dumps) follow, indented, so a record stays one block. `who` is the
component plus what tells two of its kind apart: `worker[task pid=15425]` (as Ray's own
driver output names a worker), `core_worker[pid=15425]`, `dashboard[NodeHead]`,
`event[RAYLET]`, `serve[app1_Hello h1l0i75e]` (a replica: deployment and replica id),
`serve[proxy 10.0.0.1]`, `job_driver[raysubmit_x work pid=553]` (a worker's line the driver
printed). The message is prefixed by the Python logger's name (`mytask: caught ...`) or the
event's label (`RAY_WORKER_FAILURE: ...`) when the record has one, and followed by a Serve
request id. Records without a level of their own (worker prints) get one from what they
are: a Python traceback is ERROR, `WARNING:name:msg` (logging's default format) is WARNING,
anything else shows no level and counts as INFO for `--level`.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

log = logging.getLogger(__name__)

LEVEL_RANK = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "FATAL": 50}
_LEVEL_ALIASES = {"WARN": "WARNING", "CRITICAL": "FATAL", "TRACE": "DEBUG"}
_SHOWN = {"DEBUG": "DEBUG", "INFO": "INFO ", "WARNING": "WARN ", "ERROR": "ERROR", "FATAL": "FATAL"}
_NO_LEVEL = "     "
# The `who` column grows to the widest name seen (up to WHO_MAX; a longer one pushes only its
# own line's message right), so that levels and messages line up without wasting a fixed width.
WHO_MIN, WHO_MAX = 12, 32
INDENT = "    "  # continuation lines of a multi-line record

_TRACEBACK = "Traceback (most recent call last):"
_PY_DEFAULT = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL):[^:\s]*:")
# Escape sequences in a message would repaint the terminal; other control characters are
# shown, not obeyed. Tabs stay.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_LEVEL_COLOUR = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "FATAL": "\x1b[1;31m",
}
_PALETTE = (
    "\x1b[36m",
    "\x1b[35m",
    "\x1b[34m",
    "\x1b[33m",
    "\x1b[32m",
    "\x1b[96m",
    "\x1b[95m",
    "\x1b[94m",
    "\x1b[93m",
    "\x1b[92m",
)


def want_colour(mode: str, stream: IO[str] | IO[bytes], env: Mapping[str, str]) -> bool:
    """`--color auto|always|never`; auto: a terminal, unless NO_COLOR (no-color.org) or
    TERM=dumb; FORCE_COLOR turns it on when piped. NO_COLOR wins, as in CPython's own."""
    if mode != "auto":
        return mode == "always"
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    if env.get("TERM") == "dumb":
        return False
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError):
        return False


def parse_level(text: str) -> str:
    """A level name as typed (`warn`, `Error`, `critical`) -> the record vocabulary."""
    name = text.strip().upper()
    name = _LEVEL_ALIASES.get(name, name)
    if name not in LEVEL_RANK:
        raise ValueError(f"unknown level {text!r} (debug, info, warning, error, fatal)")
    return name


def level_of(rec: Mapping[str, Any]) -> str | None:
    """The record's level, or what its text says it is (see the module docstring)."""
    level = rec.get("level")
    if isinstance(level, str) and level in LEVEL_RANK:
        return level
    text = rec.get("log")
    if not isinstance(text, str):
        return None
    if text.startswith(_TRACEBACK):
        return "ERROR"
    m = _PY_DEFAULT.match(text)
    if m is not None:
        return _LEVEL_ALIASES.get(m.group(1), m.group(1))
    return None


def who_of(rec: Mapping[str, Any]) -> str:
    comp = str(rec.get("component") or "?")
    pid = rec.get("pid")
    if comp in ("worker", "io_worker"):
        name = rec.get("actor_name") or rec.get("task_name")
        detail = f"{name} pid={pid}" if name else f"pid={pid}"
    elif comp in ("core_worker", "core_driver"):
        detail = f"pid={pid}"
    elif comp == "dashboard":
        detail = str(rec.get("module") or "")
    elif comp == "event":
        detail = str(rec.get("source_type") or rec.get("source") or "")
    elif comp == "job_driver":
        detail = str(rec.get("submission_id") or "")
        origin = rec.get("origin")
        if origin:
            detail += f" {origin} pid={pid}" if pid is not None else f" {origin}"
    elif comp == "serve":
        if rec.get("component_name") == "replica":
            detail = f"{rec.get('deployment') or ''} {rec.get('replica') or ''}".strip()
        else:
            name, cid = rec.get("component_name"), rec.get("component_id")
            detail = " ".join(str(x) for x in (name, cid) if x)
    else:
        detail = ""
    return f"{comp}[{detail}]" if detail else comp


def text_of(rec: Mapping[str, Any]) -> str:
    """What the record says: its message (else the line), after the Python logger's name or
    the event's label when it has one."""
    text = rec.get("message")
    if not isinstance(text, str):
        return str(rec.get("log", ""))
    first = rec.get("logger") or rec.get("label")
    return f"{first}: {text}" if isinstance(first, str) and first else text


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """--component (fnmatch patterns), --level (minimum), --job, --grep: all must match."""

    components: tuple[str, ...] = ()
    min_level: str | None = None
    job: str | None = None
    grep: re.Pattern[str] | None = None

    def __call__(self, rec: Mapping[str, Any]) -> bool:
        if self.components:
            comp = str(rec.get("component", ""))
            if not any(fnmatch.fnmatchcase(comp, p) for p in self.components):
                return False
        if self.min_level is not None:
            level = level_of(rec) or "INFO"
            if LEVEL_RANK[level] < LEVEL_RANK[self.min_level]:
                return False
        if self.job is not None:
            job = self.job
            if (
                str(rec.get("job_id", "")).lower() != job
                and str(rec.get("submission_id", "")).lower() != job
            ):
                return False
        if self.grep is not None:
            text = rec.get("log")
            if not isinstance(text, str) or self.grep.search(text) is None:
                return False
        return True

    @classmethod
    def build(
        cls, components: Iterable[str], level: str | None, job: str | None, grep: str | None
    ) -> RecordFilter:
        comps = tuple(p.strip() for c in components for p in c.split(",") if p.strip())
        return cls(
            comps,
            parse_level(level) if level else None,
            job.strip().lower() if job else None,
            re.compile(grep) if grep else None,
        )


class Renderer:
    """One record -> its text block (with a trailing newline)."""

    def __init__(self, *, colour: bool) -> None:
        self.colour = colour
        self.width = WHO_MIN
        self._comp_colour: dict[str, str] = {}

    def fit(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Widen the `who` column for a block of records printed together (the history)."""
        for rec in records:
            self.width = max(self.width, min(len(who_of(rec)), WHO_MAX))

    def _c(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.colour and code else text

    def banner(self, session: str, *, new: bool) -> str:
        text = f"── {'new session' if new else 'session'} {session} ──"
        return self._c(_BOLD, text) + "\n"

    def render(self, rec: Mapping[str, Any], when: float) -> str:
        # Whole milliseconds first: 1795860379.243 % 1 is 0.24299..., which truncates to 242.
        sec, ms = divmod(round(when * 1000), 1000)
        stamp = time.strftime("%H:%M:%S", time.localtime(sec)) + f".{ms:03d}"
        level = level_of(rec)
        who = who_of(rec)
        self.width = max(self.width, min(len(who), WHO_MAX))
        lines = _clean(text_of(rec)).split("\n")
        request = rec.get("request_id")
        if isinstance(request, str) and request:
            lines[0] += self._c(_DIM, f"  request_id={_clean(request)}")
        comp = str(rec.get("component", ""))
        head = " ".join(
            (
                self._c(_DIM, stamp),
                self._c(self._colour_of(comp), who.ljust(self.width)),
                self._c(_LEVEL_COLOUR.get(level or "", ""), _SHOWN[level] if level else _NO_LEVEL),
                lines[0],
            )
        )
        if len(lines) == 1:
            return head.rstrip() + "\n"
        rest = "".join(f"{INDENT}{line}".rstrip() + "\n" for line in lines[1:])
        return head.rstrip() + "\n" + rest

    def _colour_of(self, comp: str) -> str:
        code = self._comp_colour.get(comp)
        if code is None:
            # Stable across runs: the same component always has the same colour.
            code = self._comp_colour[comp] = _PALETTE[zlib.crc32(comp.encode()) % len(_PALETTE)]
        return code


def _clean(text: str) -> str:
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    return _CONTROL.sub(_caret, text) if _CONTROL.search(text) else text


def _caret(m: re.Match[str]) -> str:
    c = ord(m.group(0))
    return "^?" if c == 0x7F else "^" + chr(c + 64)
