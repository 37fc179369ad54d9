"""What a tail input hands to its successor at a hot reload, so no line is lost or doubled
even without a DB.

The old input has stopped reading and its outputs have drained. For every open file it hands
over the descriptor itself (a rotated or deleted file stays readable; an fd cannot be
re-opened by path) and the acknowledged offset, the only position known to be delivered:
the partial last line and lines a multi-line handler still holds are dropped and read again
by the successor, whose line handler is new (its options may have changed). Released files
go along too, so a rotated file already finished is not read again from its start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shipper.lines import LineHandler
from shipper.tail.identity import FINGERPRINT_BYTES, FileId, read_fingerprint
from shipper.tail.options import TailOptions
from shipper.tail.reader import TailedFile

if TYPE_CHECKING:
    from shipper.tail.identity import Released

log = logging.getLogger(__name__)


def key_of(opts: TailOptions) -> tuple[str, ...]:
    """Which new input continues which old one: the same Path patterns follow the same
    files. Everything else (Tag, parsers, limits) may change across the reload."""
    return tuple(sorted(p.strip() for p in opts.path))


@dataclass(frozen=True, slots=True, kw_only=True)
class HandedFile:
    fid: FileId
    fd: int  # owned by whoever holds this now
    path: str  # as first matched (the Path_Key value)
    cur_path: str  # where the last scan saw it
    real_path: str
    offset: int  # acked position: where the successor reads from
    fingerprint: bytes
    size: int
    deleted: bool
    skipping: bool  # the offset is inside a long line whose rest is dropped


@dataclass(slots=True)
class TailState:
    files: list[HandedFile] = field(default_factory=list)
    released: dict[FileId, Released] = field(default_factory=dict)


def export_files(files: dict[FileId, TailedFile]) -> list[HandedFile]:
    """Take the descriptors out of `files` (they are left with fd -1, so closing the old
    input does not close them) and describe each file at its acknowledged offset."""
    out: list[HandedFile] = []
    for f in files.values():
        if f.fd < 0:
            continue
        if len(f.fingerprint) < FINGERPRINT_BYTES:  # it may have grown since it was opened
            try:
                f.fingerprint = read_fingerprint(f.fd)
            except OSError as exc:
                log.debug("fingerprint of %s: %s", f.path, exc)
        rewound = f.read_pos - f.acked_pos
        if rewound:
            log.debug(
                "%s: handed over at acked offset %d (%d bytes to read again)",
                f.path,
                f.acked_pos,
                rewound,
            )
        out.append(
            HandedFile(
                fid=f.fid,
                fd=f.fd,
                path=f.path,
                cur_path=f.cur_path,
                real_path=f.real_path,
                offset=f.acked_pos,
                fingerprint=f.fingerprint,
                size=f.size,
                deleted=f.deleted,
                skipping=f.skipping and f.acked_pos == f.line_pos,
            )
        )
        f.fd = -1
    return out


def revive(
    h: HandedFile, handler: LineHandler, tag: str, notify: Callable[[TailedFile, int], None]
) -> TailedFile:
    """The successor's TailedFile: the same descriptor, read again from the acked offset by
    a fresh line handler (so nothing half-parsed crosses the reload)."""
    f = TailedFile(
        fid=h.fid,
        fd=h.fd,
        path=h.path,
        real_path=h.real_path,
        offset=h.offset,
        fingerprint=h.fingerprint,
        handler=handler,
        tag=tag,
        notify=notify,
    )
    f.cur_path, f.size, f.deleted, f.skipping = h.cur_path, h.size, h.deleted, h.skipping
    f.last_change = time.monotonic()  # Rotate_Wait counts from the handover
    return f
