"""Names and contents that tell a file's copy or rotated generation (shipper/tail/lag.py).

logrotate's names: `x.log.1`, `x.log-20260101`, `x-20260101.log`, `x.log.1.old`; Ray's ring:
`x`, `x.1` ... `x.N`. A copy starts with the original's first bytes (its fingerprint).
"""

from __future__ import annotations

import os
import re
import stat

from shipper.tail.identity import FINGERPRINT_BYTES, FileId, same_content
from shipper.tail.reader import open_file

Copied = tuple[str, int, os.stat_result, bytes]  # path, open fd, stat, first bytes
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")  # copies we cannot read (logrotate compress)
_RING = re.compile(r"\.(\d+)$")


def ring_age(path: str) -> int:
    """The generation of a ring name: `x` 0, `x.1` 1, `x.3` 3."""
    m = _RING.search(path)
    return int(m.group(1)) if m else 0


def ring_base(path: str) -> str:
    return _RING.sub("", path)


def ring_next(path: str) -> str:
    return f"{ring_base(path)}.{ring_age(path) + 1}"


Key = tuple[bool, str, str]  # (by stem, directory, name or stem)


def own_keys(path: str) -> set[Key]:
    """A file's name, and its name without the extension (see origin_keys)."""
    d, a = os.path.split(path)
    return {(False, d, a), (True, d, a.rsplit(".", 1)[0] if "." in a else a)}


def origin_keys(path: str) -> list[Key]:
    """What `path` may be a copy of: a name it starts with, followed by `.`, `-` or `_`
    (`x.log.1`, `x.log-20260101`), or a stem followed by `-` or `_` and a digit (a date:
    `x-20260101.log`). Not a stem and a `.`: `w.err` is no copy of `w.out`, nor
    `dashboard_agent.log` of `dashboard.log`."""
    d, b = os.path.split(path)
    return [(False, d, b[:i]) for i, ch in enumerate(b) if ch in ".-_" and i > 0] + [
        (True, d, b[:i])
        for i, ch in enumerate(b[:-1])
        if ch in "-_" and i > 0 and b[i + 1].isdigit()
    ]


def rotated_name(orig: str, cand: str) -> bool:
    """Is `cand` a name logrotate or a ring gives a copy of `orig` (same directory)?
    `x.log.1`, `x.log-20260101`, `x-20260101.log`, `x.log.1.old`..."""
    return orig != cand and not own_keys(orig).isdisjoint(origin_keys(cand))


def find_copy(
    dirs: set[str], *, fingerprint: bytes, offset: int, orig: str, skip: set[FileId]
) -> Copied | None:
    """The copy of a truncated file: (path, open fd, stat, first bytes), or None.

    A regular file in `dirs` (not one of `skip`) whose first bytes are `fingerprint` and
    whose size reaches `offset`. A short fingerprint only counts under a rotated name; of
    several, the most recently written wins."""
    if not fingerprint:
        return None
    best: Copied | None = None
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.name.endswith(COMPRESSED):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_size < offset or FileId.of(st) in skip:
                continue
            if len(fingerprint) < FINGERPRINT_BYTES and not rotated_name(orig, e.path):
                continue
            try:
                fd = open_file(e.path)
            except OSError:
                continue
            try:
                head = os.pread(fd, FINGERPRINT_BYTES, 0)
                fst = os.fstat(fd)
            except OSError:
                os.close(fd)
                continue
            newer = best is None or fst.st_mtime_ns > best[2].st_mtime_ns
            if FileId.of(fst) == FileId.of(st) and same_content(fingerprint, head) and newer:
                if best is not None:
                    os.close(best[1])
                best = (e.path, fd, fst, head)
            else:
                os.close(fd)
    return best


def is_file(path: str, fid: FileId, fingerprint: bytes) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    if FileId.of(st) != fid:
        return False
    try:
        with open(path, "rb") as f:
            return same_content(fingerprint, f.read(FINGERPRINT_BYTES))
    except OSError:
        return False
