"""What a tail input hands to its successor at a hot reload, so no line is lost or doubled
even without a DB.

The old input has stopped reading and its outputs have drained. For every open file it hands
over the descriptor itself (a rotated or deleted file stays readable; an fd cannot be
re-opened by path) and the acknowledged offset, the only position known to be delivered:
the partial last line and lines a multi-line handler still holds are dropped and read again
by the successor, whose line handler is new (its options may have changed). Released files
go along too, so a rotated file already finished is not read again from its start.
(FollowedFile.export and FollowedFile.adopt do the per-file part.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shipper.tail.followed import HandedFile
from shipper.tail.identity import FileId, Released
from shipper.tail.options import TailOptions

__all__ = ["HandedFile", "TailState", "key_of"]


def key_of(opts: TailOptions) -> tuple[str, ...]:
    """Which new input continues which old one: the same Path patterns follow the same
    files. Everything else (Tag, parsers, limits) may change across the reload."""
    return tuple(sorted(p.strip() for p in opts.path))


@dataclass(slots=True)
class TailState:
    files: list[HandedFile] = field(default_factory=list)
    released: dict[FileId, Released] = field(default_factory=dict)
