"""Acknowledged offsets stored in the DB: which files moved since the last commit, and what
their rows say (fingerprint, acknowledged offset, current name, size, handler state)."""

from __future__ import annotations

from collections.abc import Iterable

from shipper.tail.checkpoints import Checkpoints
from shipper.tail.followed import FollowedFile
from shipper.tail.lag import export_state


class Commits:
    """The tail input's DB writes; without a DB (`db` None) it does nothing."""

    __slots__ = ("_dirty", "db")

    def __init__(self, db: Checkpoints | None) -> None:
        self.db = db
        self._dirty: set[FollowedFile] = set()

    def mark(self, files: Iterable[FollowedFile]) -> None:
        """These files' rows changed (offset acknowledged, released, deleted)."""
        if self.db is not None:
            self._dirty.update(files)

    def commit(self) -> None:
        db = self.db
        if db is None:
            return
        if not self._dirty:
            if db.pending:
                db.commit()  # a failed write (full or read-only disk): retry it
            return
        for f in self._dirty:
            if f.ledger.acked > len(f.fingerprint):
                f.refresh_fingerprint()
            if f.deleted and f.fd < 0:
                db.forget(f.fid)
                continue
            state = export_state(f.splitter.handler)
            db.set(f.fid, f.fingerprint, f.ledger.acked, f.cur_path, size=f.size, state=state)
        self._dirty.clear()
        db.commit()

    def last(self, files: Iterable[FollowedFile]) -> None:
        """At close: every file's row with its size as it is now (see lag.after_start)."""
        if self.db is not None:
            for f in files:
                f.note_size()
                self._dirty.add(f)
        self.commit()
