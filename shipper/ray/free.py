"""User output's fast path: worker `.out/.err` lines to JSON lines, a run at a time.

A worker's stdout and stderr are free text: most lines are prints with no header, each a record
of its own. A run of such plain lines (see `next_special`) becomes the plain path's JSON lines
with the worker's constant keys around each line; Python logging's default lines
(`LEVEL:logger:message`) get their level and logger too. Marker lines, tracebacks and the
other special lines go through the per-line path (shipper/ray/encoder.py decides, in order).

Where the C helper is built (shipper/ray/_fastray.c `free_rows`), it does the same in one pass
over the bytes; tests/ray/test_fast.py compares the two.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from shipper.escape import escape_chunk, join_records
from shipper.extensions import optional
from shipper.ray.structured import LEVELS

__all__ = ["free_rows", "next_special"]

_native: Any = optional("shipper.ray._fastray")

# Lines of user output (worker stdout/stderr) that the per-line path treats apart: a Ray header
# (C++, Python, glog, JSON), a worker marker line, the start of a traceback, a line that starts
# with a level name (Python logging's default format, Serve's) and, where a driver's output is
# (`forwarded`), a `(name pid=N)` prefix.
_SPECIAL = rb"[\[{0-9:]|[IWEF][0-9]|Traceback|(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ]"
_SPECIAL_FIRST = {
    False: re.compile(rb"(?:" + _SPECIAL + rb")"),
    True: re.compile(rb"(?:[(\x1b]|" + _SPECIAL + rb")"),
}
_SPECIAL_LATER = {k: re.compile(rb"\n" + v.pattern) for k, v in _SPECIAL_FIRST.items()}
# basicConfig's `LEVEL:name:message` (lines.py's _BASIC), the name in printable ASCII here.
_BASIC = re.compile(rb"(DEBUG|INFO|WARNING|ERROR|CRITICAL):([!#-9;-\[\]-~]+):")


def next_special(complete: bytes, pos: int, forwarded: bool = False) -> int:
    """Where the first line at or after line start `pos` that is not plain text starts
    (see _SPECIAL), or -1."""
    if _SPECIAL_FIRST[forwarded].match(complete, pos) is not None:
        return pos
    m = _SPECIAL_LATER[forwarded].search(complete, pos)
    return -1 if m is None else m.start() + 1


def basic_line(line: bytes) -> bool:
    """Is this a basicConfig line (`LEVEL:logger:message`)? Not in a driver's output."""
    return _BASIC.match(line) is not None


def free_rows(
    complete: bytes,
    pos: int,
    head: bytes,
    tail: bytes,
    forwarded: bool = False,
    most: int = -1,
    joins: bool = False,
) -> tuple[list[bytes] | None, int, int]:
    """User output's plain lines from the line at `pos` up to the first special one (see
    next_special), each `head` + the line as a JSON string body + `tail`: (pieces, count,
    where it stopped or -1 at the end). Also a basicConfig line (not `forwarded`) with its
    level, logger and message when the next line is here and is not its traceback. `most`
    (when >= 1): take no more lines than that, and stop at the next one. With `joins` (the
    ray joiner), the C helper takes a Python traceback whole in the text as one record too;
    here it is a special line (the per-line path joins it: the same records, slower).
    `complete`: no CR, valid UTF-8 (escape.needs_per_line). Pieces None: escaping refused (a
    DEL next to control characters), those lines go per line; the C helper never refuses."""
    if _native is not None:
        out, n, nxt = _native.free_rows(complete, pos, head, tail, forwarded, most, joins)
        return ([out] if n else []), n, nxt
    size = len(complete)
    limit = size  # the end of the last line it may take
    if most >= 1:
        limit = pos - 1
        for _ in range(most):
            limit = complete.find(b"\n", limit + 1)
            if limit < 0:
                limit = size
                break
    pieces: list[bytes] = []
    count = 0
    while True:
        if pos > limit:
            return pieces, count, (-1 if limit >= size else pos)
        nxt = next_special(complete, pos, forwarded)
        if nxt != pos:
            stop = min(size if nxt < 0 else nxt - 1, limit)
            escaped = escape_chunk(complete[pos:stop])
            if escaped is None:
                if count:
                    return pieces, count, pos
                return None, 0, (-1 if stop >= size else stop + 1)
            run, n = join_records(*escaped, head, tail)
            pieces += run
            count += n
            if nxt < 0 or nxt > stop + 1 or stop >= limit:
                pos = stop + 1  # to the end, or `most` taken
                continue
        nl = complete.find(b"\n", nxt)
        m = None if forwarded or nl < 0 else _BASIC.match(complete, nxt, nl)
        if m is None or complete.startswith(b"Traceback", nl + 1):
            return pieces, count, nxt
        line = complete[nxt:nl]
        pieces.append(
            head
            + orjson.dumps(line.decode())[1:-1]
            + b'","level":"'
            + LEVELS[m.group(1).decode()].encode()
            + b'","logger":"'
            + m.group(2)
            + b'","message":"'
            + orjson.dumps(complete[m.end() : nl].decode())[1:-1]
            + tail
        )
        count += 1
        pos = nl + 1
