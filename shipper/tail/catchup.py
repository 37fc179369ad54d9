"""The "caught up" signal: every file found at the start is delivered up to the size it had
then. `shipper tail` ends its history there; anything may await it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from shipper.tail.followed import FollowedFile


class CatchUp:
    __slots__ = ("_targets", "event")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._targets: dict[FollowedFile, int] | None = None  # None: not started, or done

    @property
    def pending(self) -> bool:
        return self._targets is not None

    def start(self, files: Iterable[FollowedFile]) -> None:
        """The files of the first scan, at the sizes they had when opened."""
        self._targets = {f: f.size for f in files}
        self.check(list(self._targets))

    def check(self, files: Iterable[FollowedFile]) -> None:
        """Drop those of `files` read to their start size and acknowledged up to their last
        complete line there (an unterminated last line is not a record yet; a record the
        multi-line joiner still holds is not delivered yet). A file let go of is done."""
        targets = self._targets
        if targets is None:
            return
        for f in files:
            size = targets.get(f)
            if size is None:
                continue
            if f.fd < 0 or (
                f.read_pos >= size and f.ledger.acked >= min(size, f.splitter.line_pos)
            ):
                del targets[f]
        if not targets:
            self._targets = None
            self.event.set()

    def recheck(self) -> None:
        if self._targets is not None:
            self.check(list(self._targets))
