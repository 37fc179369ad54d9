"""Multi-line joiners: which consecutive lines of one source make one record.

Two parsers, by the names `multiline.parser` takes (docs/ray-logs.md):

- `python`: Fluent Bit's built-in python parser. `Traceback (most recent call last):` opens a
  record, indented lines (`  File ...`, the code under it) continue it, and the exception line
  (`ValueError: msg`) closes it. Any other line is a record of its own.
  One deliberate difference: Fluent Bit only takes `File` lines and the one code line after
  each, so the `~~^~~` caret lines of Python 3.11+ (indented too) would split a traceback in
  three; here every indented line inside a traceback continues it.
- `ray`: in files whose lines carry a Ray header (C++, Python, glog, JSON), a line without a
  header joins the record before it (debug-state dumps, autoscaler status, logged tracebacks).
  Where no headed record is open (free text before the first header, a rotated file that
  starts mid-record, stdin) and always in free-text files (`free_text=True`: worker `.out/.err`,
  where user prints carry no header), Python tracebacks are joined as `python` does. In
  free-text files a headed line (Python logging's, Ray's, Serve's) is held for one line: a
  traceback right after it is its `logger.exception` traceback and joins it. A job driver's
  log (`prefixed=True`) holds its workers' lines behind `(name pid=N) `: the same rules apply
  behind the prefix, to lines of one worker.

A joiner never looks at a line twice and never looks ahead: a record that may still grow is
held, and goes out on the next record start or on `flush` (the reader's flush timeout).
`held` is the number of lines held; the reader's safe offset depends on it being exact.

The caller passes each line with its `head`: whatever it made of the line's Ray header (parsed
fields, a record, True) or None for a line without one. Emitted groups are lists
`[head of the first line, now when the first line came, line, line, ...]`: one list per record,
so that holding a record costs no more than the list itself.
"""

from __future__ import annotations

import re
from typing import Any

from shipper.ray.lines import DRIVER_PREFIX

__all__ = [
    "NOT_IMPLEMENTED",
    "PARSERS",
    "Group",
    "Joiner",
    "PythonJoiner",
    "RayJoiner",
    "make_joiner",
]

Group = list[Any]

PARSERS = frozenset({"python", "ray"})
# Fluent Bit built-ins the config accepts but that are not written yet (they join nothing).
NOT_IMPLEMENTED = frozenset({"docker", "cri", "go", "java"})

_TRACEBACK = "Traceback (most recent call last):"
# Fluent Bit's exception-line rule, `^(?:[^\s.():]+\.)*[^\s.():]+:`, widened to two forms
# Python also prints: a bare class name (`KeyboardInterrupt`) and Ray's wrapped class
# (`ray.exceptions.RayTaskError(ValueError): ...`).
_EXC_LINE = re.compile(r"(?:[^\s.():]+\.)*[^\s.():]+(?::|\s*$|\([\w.]*\):)")


def _is_traceback_start(line: str) -> bool:
    return line.startswith(_TRACEBACK) and (
        len(line) == len(_TRACEBACK) or line[len(_TRACEBACK) :].isspace()
    )


class Joiner:
    """Common frame: the held group (`_cur`, None when nothing is held) and the traceback
    machine. `_tb`: the held group is (or has become) a traceback; without it, a held group
    is a headed record (`_cur[0]` its head)."""

    __slots__ = ("_cur", "_pre", "_prefixed", "_tb")

    def __init__(self, *, prefixed: bool = False) -> None:
        self._cur: Group | None = None
        self._tb = False
        self._prefixed = prefixed  # lines may start with a driver's `(name pid=N) ` prefix
        self._pre = ""  # the held group's prefix

    @property
    def held(self) -> int:
        cur = self._cur
        return 0 if cur is None else len(cur) - 2

    def push(self, line: str, head: Any, now: float, out: list[Group]) -> None:
        """One line, in order; completed groups are appended to `out`."""
        raise NotImplementedError

    def push_many(self, lines: list[str], heads: list[Any], now: float, out: list[Group]) -> None:
        """`push` for each line (`heads[i]` goes with `lines[i]`)."""
        push = self.push
        for line, head in zip(lines, heads, strict=True):
            push(line, head, now, out)

    def flush(self, out: list[Group]) -> None:
        """Emit what is held, whatever state it is in."""
        if self._cur is not None:
            out.append(self._cur)
            self._cur = None
        self._tb = False  # (else a headed line held next would take a traceback line as ending one)

    def reset(self) -> None:
        """Drop what is held (the file was truncated under us)."""
        self._cur = None
        self._tb = False

    def _python(
        self, line: str, head: Any, now: float, out: list[Group], hold_heads: bool = False
    ) -> None:
        """The traceback machine, for a line that no headed record takes. `hold_heads`: a
        headed line waits for a traceback that may follow it (see the module doc)."""
        body, pre, header = line, "", head is not None
        if self._prefixed and header and "origin" in head:
            # A driver's copy of a worker's line: the machine looks behind the prefix, and
            # only lines of the same worker continue a record.
            m = DRIVER_PREFIX.match(line)
            if m is not None:
                pre, body = line[: m.end()], line[m.end() :]
                header = "level" in head
        cur = self._cur
        if cur is not None:
            if not header and pre == self._pre:
                if self._tb:
                    c = body[:1]
                    if (c == " " or c == "\t") and not body.isspace():
                        cur.append(line)
                        return
                    if _EXC_LINE.match(body) is not None:
                        cur.append(line)
                        out.append(cur)
                        self._cur = None
                        self._tb = False
                        return
                elif body[:1] == "T" and _is_traceback_start(body):
                    cur.append(line)  # the headed line's own traceback
                    self._tb = True
                    return
            # Not a traceback line after all: what we hold is a cut-off traceback (or a
            # headed line without one).
            out.append(cur)
            self._cur = None
            self._tb = False
        if body[:1] == "T" and _is_traceback_start(body):
            self._cur = [head, now, line]
            self._tb = True
            self._pre = pre
        elif hold_heads and head is not None:
            self._cur = [head, now, line]
            self._pre = pre
        else:
            out.append([head, now, line])


class PythonJoiner(Joiner):
    """Fluent Bit's `python` multiline parser (with the caret-line fix, see module doc)."""

    __slots__ = ()

    def push(self, line: str, head: Any, now: float, out: list[Group]) -> None:
        self._python(line, head, now, out)


class RayJoiner(Joiner):
    """The `ray` multiline parser: header-less lines continue the headed record before them."""

    __slots__ = ("_free",)

    def __init__(self, *, free_text: bool = False, prefixed: bool = False) -> None:
        super().__init__(prefixed=prefixed)
        self._free = free_text

    def push(self, line: str, head: Any, now: float, out: list[Group]) -> None:
        cur = self._cur
        if self._free:
            self._python(line, head, now, out, True)
        elif head is not None:
            if cur is not None:
                out.append(cur)
            self._cur = [head, now, line]
            self._tb = False
        elif cur is not None and cur[0] is not None:
            cur.append(line)
        else:
            self._python(line, None, now, out)

    def push_many(self, lines: list[str], heads: list[Any], now: float, out: list[Group]) -> None:
        # The hot loop of a Ray log file, inlined: a header line closes the held record and
        # opens the next, a line without one continues it.
        if self._free:
            cur = self._cur
            for line, head in zip(lines, heads, strict=True):
                if cur is None and head is None and line[:1] != "T":
                    out.append([head, now, line])
                else:
                    self._python(line, head, now, out, True)
                    cur = self._cur
            return
        cur = self._cur
        for line, head in zip(lines, heads, strict=True):
            if head is not None:
                if cur is not None:
                    out.append(cur)
                cur = [head, now, line]
            elif cur is not None and cur[0] is not None:
                cur.append(line)
            else:
                self._cur = cur
                self._tb = cur is not None  # (only a traceback is held without a head here)
                self._python(line, None, now, out)
                cur = self._cur
        self._cur = cur
        self._tb = cur is not None and cur[0] is None


def make_joiner(
    parsers: tuple[str, ...], *, free_text: bool = False, prefixed: bool = False
) -> Joiner | None:
    """The joiner for a `multiline.parser` list (names as Fluent Bit: any case), None for no
    joining.

    `ray` includes what `python` does, so it wins when both are named. Fluent Bit's other
    built-ins (`docker`, `cri`, `go`, `java`) are accepted by the config and join nothing
    here yet; any other name is a ValueError.
    """
    names = {p.strip().lower() for p in parsers}
    unknown = sorted(names - PARSERS - NOT_IMPLEMENTED)
    if unknown:
        raise ValueError(
            f"unknown multiline parser {unknown[0]!r} (known: {', '.join(sorted(PARSERS))})"
        )
    if "ray" in names:
        return RayJoiner(free_text=free_text, prefixed=prefixed)
    if "python" in names:
        return PythonJoiner()
    return None
