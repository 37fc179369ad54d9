"""Whole-chunk JSON escaping: many lines' JSON string bodies in a few C-level passes.

A reader's fast path turns a chunk of complete lines into JSON lines without a str, a dict
or an `orjson.dumps` call per line. JSON escaping is character by character, so escaping
the whole chunk as one string gives every line's JSON string body exactly as orjson writes
it for that line alone. The newlines are first swapped for DEL (0x7f), which orjson leaves
as it is, so that they stay one byte that marks line ends and nothing else (as the two bytes
`\\n` they are ambiguous after a backslash, and replacing a two-byte token costs ten times
more). A chunk that already holds a DEL is escaped by hand instead. A chunk that is not
valid UTF-8 or holds a CR returns None: the per-line path replaces bad bytes, strips CRs.
"""

from __future__ import annotations

import orjson

# Control characters orjson escapes, other than tab (escaped here) and newline (the line
# separator), for the by-hand path. (Deleting them with bytes.translate and comparing
# lengths is ten times faster than a regex search.)
_UNSAFE = bytes([*range(0x00, 0x09), *range(0x0B, 0x20)])


def escape_chunk(complete: bytes) -> tuple[bytes, bytes] | None:
    """`complete` (lines joined by newlines) as one JSON string, quotes included, with
    every line's text escaped, and the byte that now separates the lines; None when the
    chunk needs the per-line path."""
    if b"\r" in complete:
        return None
    if b"\x7f" in complete:
        return _by_hand(complete)
    try:
        text = complete.replace(b"\n", b"\x7f").decode("utf-8")
    except UnicodeDecodeError:
        return None  # invalid bytes become U+FFFD on the per-line path
    return orjson.dumps(text), b"\x7f"


def _by_hand(complete: bytes) -> tuple[bytes, bytes] | None:
    if not complete.isascii():
        try:
            complete.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if len(complete.translate(None, _UNSAFE)) != len(complete):
        return None
    complete = complete.replace(b"\\", b"\\\\")
    if b'"' in complete:
        complete = complete.replace(b'"', b'\\"')
    if b"\t" in complete:
        complete = complete.replace(b"\t", b"\\t")
    return b'"' + complete + b'"', b"\n"


def needs_per_line(complete: bytes) -> bool:
    """Does a chunk hold a CR or invalid UTF-8 (the per-line path strips, replaces)?"""
    if b"\r" in complete:
        return True
    if complete.isascii():
        return False
    try:
        complete.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def join_records(
    body: bytes, newline: bytes, prefix: bytes, suffix: bytes
) -> tuple[list[bytes], int]:
    """Each line of an escaped chunk between `prefix` (ending in the opening quote of the
    line's string) and `suffix` (starting with its closing quote, ending in a newline): the
    records' JSON lines, in pieces, and how many there are."""
    sep = suffix + prefix
    out = body.replace(newline, sep)
    count = (len(out) - len(body)) // (len(sep) - len(newline)) + 1
    return [prefix[:-1], out, suffix[1:]], count


def longest_line_over(complete: bytes, limit: int) -> bool:
    """Is any line of `complete` longer than `limit` bytes? A few jumps per chunk, not a
    step per line: from each position, the last newline within limit+1 bytes."""
    end = len(complete)
    if end <= limit:
        return False
    pos = 0
    while end - pos > limit:
        nl = complete.rfind(b"\n", pos, pos + limit + 1)
        if nl < 0:
            return True
        pos = nl + 1
    return False
