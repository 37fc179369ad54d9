"""The Ray fast path: a chunk of a Ray daemon's log straight to JSON lines, in whole-chunk steps.

For the files whose lines carry Ray's headers (C++ spdlog in `raylet.out`, core worker logs...;
Python logging in `dashboard.log`, `monitor.log`...), the per-line path costs a regex match, a
dict and an `orjson.dumps` per line in the interpreter. Here the chunk is escaped once (see
shipper/escape.py: lines end in DEL), one `findall` of the header regex runs over the escaped
text and yields every line's fields already JSON-escaped, `zip` turns the rows into columns, and
the records are the columns interleaved with the constant pieces of the record (by slice
assignment) and joined once. Per line, nothing runs in the interpreter.

Where the C helper is built (shipper/ray/_fastray.c, optional at install; the environment
variable SHIPPER_NO_EXTENSIONS=1 turns it off), it does the regex's and the interleaving's work
in one pass over the bytes: the same rows taken, the same records (tests/ray/test_fast.py runs
every case both ways and compares the two row for row).

The fast regexes accept a subset of what shipper/ray/lines.py accepts, with the same groups:
no backslash inside the header's free-form tokens (so the escaped and the raw text agree
there), pids without leading zeros. A line they do not take, and the header line before it
(whose record it may continue), go through the handler's per-line path, in order; so does a
date `_epoch` cannot place. (The C helper joins a logged traceback to its record itself, see
_fastray.c `continues`.) The chunk's last line may be continued by the next read: with the
`ray` joiner, when it has a header (and a date to place) it is left unread for that read
(`Plan.defer`, LineHandler.unread); otherwise it goes per line and the joiner holds it.

User output (worker `.out/.err`) has a fast path of its own: shipper/ray/free.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from shipper.escape import escape_chunk
from shipper.extensions import optional

__all__ = ["FastRay", "Plan", "encode_items", "native"]

_native: Any = optional("shipper.ray._fastray")


def native() -> bool:
    """Is the C helper in use (shipper/ray/_fastray.c)?"""
    return _native is not None


_TS = rb"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})"
# Free-form tokens exclude the backslash (escapes) and DEL (the line separator).
_CPP_HEAD = (
    rb"\[" + _TS + rb" ([TDIWEC]) (0|[1-9]\d{0,17}) (0|[1-9]\d{0,17})\] "
    rb"(?:\([^)\s\\\x7f]+\) )?([^\s:\\\x7f]+:\d+): ?"
)
# The tab after the milliseconds is escaped: the two bytes `\t`.
_PY_HEAD = (
    _TS + rb"\\t(DEBUG|INFO|WARNING|ERROR|CRITICAL|WARN|FATAL|TRACE) "
    rb"(?:\([^)\s\\\x7f]+\) )?([^\s\\\x7f]+:\d+|\(unknown file\):\d+) --(?: |(?=\x7f))"
)

_LEVELS: dict[bytes, bytes] = {
    b"T": b"DEBUG",
    b"D": b"DEBUG",
    b"I": b"INFO",
    b"W": b"WARNING",
    b"E": b"ERROR",
    b"C": b"FATAL",
    b"DEBUG": b"DEBUG",
    b"INFO": b"INFO",
    b"WARNING": b"WARNING",
    b"WARN": b"WARNING",
    b"ERROR": b"ERROR",
    b"CRITICAL": b"FATAL",
    b"FATAL": b"FATAL",
    b"TRACE": b"DEBUG",
    b"": b"",
}

_CACHE_MAX = 4096
_HEADER_START = re.compile(rb"\n([\[0-9])")


@dataclass(frozen=True, slots=True)
class _Format:
    rows: re.Pattern[bytes]  # one match per line: (line, ts, ms, level, fields..., message)
    head: re.Pattern[bytes]  # the header alone (the chunk's last line)
    fields: tuple[str, ...]  # the line's keys between level and message, in record order
    numeric: frozenset[str]  # of those, the ones written as JSON numbers

    @classmethod
    def of(cls, head: bytes, fields: tuple[str, ...], numeric: frozenset[str]) -> _Format:
        return cls(
            re.compile(rb"((?:" + head + rb")?([^\x7f]*))\x7f"),
            re.compile(head + rb"[^\x7f]*\Z"),
            fields,
            numeric,
        )


CPP = _Format.of(_CPP_HEAD, ("pid", "tid", "source"), frozenset({"pid", "tid"}))
PY = _Format.of(_PY_HEAD, ("source",), frozenset())


class _Seconds(dict[bytes, bytes | None]):
    """`YYYY-mm-dd HH:MM:SS` -> the epoch second as JSON text; None where the per-line path
    must decide (a date `epoch` cannot place, before 1970, or not a whole second)."""

    def __init__(self, epoch: Callable[[str], float | None]) -> None:
        super().__init__()
        self._epoch = epoch

    def __missing__(self, ts: bytes) -> bytes | None:
        if len(self) >= _CACHE_MAX:
            self.clear()
        sec = self._epoch(ts.decode()) if ts else None
        text = None if sec is None or sec < 0 or sec != int(sec) else b"%d" % int(sec)
        self[ts] = text
        return text


_SECONDS: dict[float | None, _Seconds] = {}  # per time zone offset (None: local time)


@dataclass(slots=True)
class Plan:
    """A chunk cut into runs: `fast` ranges of rows encoded here, the rest per line."""

    fmt: _Format
    runs: list[tuple[bool, int, int]]  # (fast, first row, end row); the last row is never fast
    lines: int
    defer: bool  # the last row is in no run: a header line left for the next read
    # Either the rows' fields (pure Python: columns, epoch seconds per row) ...
    columns: list[tuple[bytes, ...]] | None = None
    seconds: list[bytes | None] | None = None
    # ... or their records already made by the C helper, and each row's end in them
    # (native long longs).
    out: bytes = b""
    ends: bytes | None = None
    # The usual chunk from the C helper: every row fast but the deferred last, all in `out`.
    whole: bool = False


class FastRay:
    """The fast path of one source (built by RayHandler when its records allow it)."""

    __slots__ = ("_consts", "_joins", "_seconds")

    def __init__(
        self,
        *,
        frame_tail: bytes,
        rest: Callable[[frozenset[str]], bytes],
        epoch: Callable[[str], float | None],
        zone: float | None,
        joins: bool,
    ) -> None:
        """`frame_tail`: the frame's keys after date and log, encoded (`,"k":v...`); `rest`:
        for the keys a line sets, what the record has after the message, encoded; `joins`:
        a line without a header continues the record before it (the `ray` parser); `zone`:
        the lines' time zone offset that `epoch` applies (None: local time)."""
        # One cache per zone for all sources (each would miss once a second otherwise).
        seconds = _SECONDS.get(zone)
        if seconds is None:
            seconds = _SECONDS[zone] = _Seconds(epoch)
        self._seconds = seconds
        self._joins = joins
        self._consts: dict[int, tuple[bytes, ...]] = {}
        for fmt in (CPP, PY):
            keys = frozenset({"level", "message", *fmt.fields})
            consts = [b'{"date":', b".", b',"log":"', b'"' + frame_tail + b',"level":"']
            prev_text = True  # the level is a string
            for name in fmt.fields:
                opener = b'"' if prev_text else b""
                text = name not in fmt.numeric
                consts.append(opener + b',"' + name.encode() + b'":' + (b'"' if text else b""))
                prev_text = text
            consts.append((b'"' if prev_text else b"") + b',"message":"')
            consts.append(b'"' + rest(keys) + b"}\n")
            self._consts[id(fmt)] = tuple(consts)

    @classmethod
    def for_source(
        cls,
        *,
        frame: dict[str, Any],
        name_rest: dict[str, object],
        name_fill: tuple[tuple[str, object], ...],
        epoch: Callable[[str], float | None],
        zone: float | None,
        joins: bool,
    ) -> FastRay:
        """The fast path of a source whose records are `frame` (date and log first), the
        line's fields, `name_rest`, and `name_fill` for the keys the line does not set."""
        rest_items = list(name_rest.items())

        def rest(line_keys: frozenset[str]) -> bytes:
            return encode_items(rest_items + [(k, v) for k, v in name_fill if k not in line_keys])

        return cls(
            frame_tail=encode_items(list(frame.items())[2:]),
            rest=rest,
            epoch=epoch,
            zone=zone,
            joins=joins,
        )

    def plan(self, complete: bytes) -> Plan | None:
        """Cut a chunk of complete lines, or None when the whole chunk goes per line."""
        first = complete[:1]
        if first != b"[" and not first.isdigit():
            # The chunk begins inside a record (a traceback): the format is the next header's.
            m = _HEADER_START.search(complete)
            first = b"" if m is None else m.group(1)
        fmt = CPP if first == b"[" else PY if first.isdigit() else None
        if fmt is None:
            return None
        escaped = escape_chunk(complete)
        if escaped is None or escaped[1] != b"\x7f":
            return None
        body = escaped[0]  # `"line\x7fline\x7f...line"`
        last = body.rfind(b"\x7f")
        # With the `ray` joiner the last line's record may go on in the next read. A header
        # line is left for that read (it starts the next chunk: no per-line work for it);
        # any other goes per line, held by the joiner, and so does the line before it.
        # (Only with a date it can place: else the date is the read time, not a later one.)
        tail_at = last + 1 if last >= 0 else 1  # where the last line starts
        columns: list[tuple[bytes, ...]] | None = None
        seconds: list[bytes | None] | None = None
        if _native is not None:
            # The C pass looks at the last line's header too (`tail`): cheaper than the regex.
            out, ends_raw, bad, tail_sec = _native.rows(
                body, 1, tail_at, fmt is CPP, self._seconds, self._consts[id(fmt)], self._joins
            )
            defer = tail_sec is not None
            if last < 0:
                return Plan(fmt, [], 1, defer) if defer else None
            n = len(ends_raw) // 8 + 1
            ends: bytes | None = ends_raw
        else:
            head = fmt.head.match(body, tail_at, len(body) - 1) if self._joins else None
            defer = head is not None and self._seconds[head.group(1)] is not None
            if last < 0:
                return Plan(fmt, [], 1, defer) if defer else None
            out, ends = b"", None
            rows = fmt.rows.findall(body, 1, last + 1)
            n = len(rows) + 1
            columns = list(zip(*rows, strict=True))
            seconds = list(map(self._seconds.__getitem__, columns[1]))
            bad = _indices_of_none(seconds)  # no fast header, or a date to decide per line
        runs: list[tuple[bool, int, int]]
        if not bad and (defer or not self._joins):  # the usual chunk: one run
            runs = [(True, 0, n - 1)] if n > 1 else []
            if not defer:
                runs.append((False, n - 1, n))
            whole = defer and ends is not None
            return Plan(fmt, runs, n, defer, columns, seconds, out, ends, whole)
        runs = _runs(bad, n, defer=defer, joins=self._joins)
        return Plan(fmt, runs, n, defer, columns, seconds, out, ends)

    def encode_rows(self, plan: Plan, start: int, end: int) -> bytes:
        """Rows [start, end) of a plan (all fast) as JSON lines."""
        if plan.ends is not None:
            ends = memoryview(plan.ends).cast("q")
            return plan.out[ends[start - 1] if start else 0 : ends[end - 1]]
        fmt = plan.fmt
        consts = self._consts[id(fmt)]
        cols = plan.columns
        assert cols is not None and plan.seconds is not None
        k = end - start
        nf = len(fmt.fields)
        width = 2 * nf + 11
        out: list[bytes | None] = [None] * (k * width)
        out[0::width] = [consts[0]] * k
        out[1::width] = plan.seconds[start:end]
        out[2::width] = [consts[1]] * k
        out[3::width] = cols[2][start:end]  # milliseconds
        out[4::width] = [consts[2]] * k
        out[5::width] = cols[0][start:end]  # the whole line
        out[6::width] = [consts[3]] * k
        out[7::width] = list(map(_LEVELS.__getitem__, cols[3][start:end]))
        for f in range(nf):
            out[8 + 2 * f :: width] = [consts[4 + f]] * k
            out[9 + 2 * f :: width] = cols[4 + f][start:end]
        out[8 + 2 * nf :: width] = [consts[4 + nf]] * k
        out[9 + 2 * nf :: width] = cols[4 + nf][start:end]  # the message
        out[10 + 2 * nf :: width] = [consts[5 + nf]] * k
        return b"".join(out)  # type: ignore[arg-type]


def _runs(bad: list[int], n: int, *, defer: bool, joins: bool) -> list[tuple[bool, int, int]]:
    """The runs of a chunk of `n` rows whose rows `bad` go per line (see Plan.runs)."""
    slow = set(bad)
    if joins:
        # A row may be continued by the line after it: then it goes per line too.
        slow.update(i - 1 for i in bad if i > 0)
        if not defer:
            slow.update((n - 2, n - 1))
    else:
        slow.add(n - 1)  # the row passes above cover lines ending in DEL; it has none
    runs: list[tuple[bool, int, int]] = []
    start = 0
    for i in sorted(slow):
        if i > start:
            runs.append((True, start, i))
        if runs and not runs[-1][0] and runs[-1][2] == i:
            runs[-1] = (False, runs[-1][1], i + 1)
        else:
            runs.append((False, i, i + 1))
        start = i + 1
    if start < n - 1:  # deferred: the rows up to the last
        runs.append((True, start, n - 1))
    return runs


def _indices_of_none(seq: list[bytes | None]) -> list[int]:
    found: list[int] = []
    i = -1
    try:
        while True:
            i = seq.index(None, i + 1)
            found.append(i)
    except ValueError:
        return found


def encode_items(items: list[tuple[str, object]]) -> bytes:
    """`,"k":v` for each item, as orjson writes them inside an object."""
    return b"".join(b"," + orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in items)
