"""Offsets in SQLite (WAL), keyed by file identity. All SQL of the package lives here.

Only acknowledged offsets are written: the tail input calls `set` from chunk acknowledgements
and `commit` once per loop turn, so a crash re-reads at most what was in flight. Beside the
offset a row keeps the file's size when last seen (a generation deleted before the next start
lost `size - offset` bytes) and an opaque state blob of its line handler (Ray's worker markers
in force, so a restart attributes the rest of the file and its successors as before).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass

from shipper.tail.identity import FileId

log = logging.getLogger(__name__)

RETRY_S = 1.0  # seconds between attempts while the DB cannot be written

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    fingerprint BLOB NOT NULL,
    offset INTEGER NOT NULL,
    name TEXT NOT NULL,
    updated REAL NOT NULL,
    size INTEGER,
    state BLOB,
    PRIMARY KEY (dev, ino)
)
"""
# Columns added after the first release: a DB written before them gets them on open.
_ADDED = (("size", "INTEGER"), ("state", "BLOB"))
_UPSERT = """
INSERT INTO files (dev, ino, fingerprint, offset, name, updated, size, state)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dev, ino) DO UPDATE SET fingerprint = excluded.fingerprint,
    offset = excluded.offset, name = excluded.name, updated = excluded.updated,
    size = excluded.size, state = excluded.state
"""
_SELECT_ALL = "SELECT dev, ino, fingerprint, offset, name, size, state, updated FROM files"
_SELECT_OLD = "SELECT dev, ino, fingerprint, offset, name, NULL, NULL, updated FROM files"
_DELETE = "DELETE FROM files WHERE dev = ? AND ino = ?"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    fingerprint: bytes
    offset: int
    name: str
    size: int | None = None  # the file's size when last seen (None: not known)
    state: bytes | None = None  # the line handler's exported state (see LineHandler)
    updated: float = 0.0  # time.time() of the write


class Checkpoints:
    """The offsets DB. Writes are batched: `set` marks, `commit` writes what changed."""

    def __init__(self, path: str, *, sync: str = "normal", journal_mode: str = "WAL") -> None:
        self.path = path
        self._sync = sync
        self._journal_mode = journal_mode
        self._conn: sqlite3.Connection | None = None
        self._saved: dict[FileId, Checkpoint] = {}
        self._dirty: dict[FileId, Checkpoint] = {}
        self._deleted: set[FileId] = set()
        self._failing = False
        self._read_only_tried = False
        self._retry_at = 0.0  # monotonic: while failing, when to try again

    def open(self) -> bool:
        """Connect and load the stored offsets. A DB that cannot be opened (missing
        directory, read-only or full disk) is reported once; shipping goes on and opening is
        tried again at every commit."""
        if self._conn is not None:
            return True
        conn = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA journal_mode={self._journal_mode}")
            conn.execute(f"PRAGMA synchronous={self._sync.upper()}")
            conn.execute(_SCHEMA)
            have = {row[1] for row in conn.execute("PRAGMA table_info(files)")}
            for col, kind in _ADDED:
                if col not in have:
                    conn.execute(f"ALTER TABLE files ADD COLUMN {col} {kind}")
            rows = conn.execute(_SELECT_ALL).fetchall()
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            if not self._read_only_tried:
                # A read-only volume: the stored offsets still say where to resume (else a
                # restart would re-send every file from its head).
                self._read_only_tried = True
                self._load_read_only()
            self._report(exc)
            return False
        self._conn = conn
        self._load(rows)
        return True

    def _load(
        self, rows: list[tuple[int, int, bytes, int, str, int | None, bytes | None, float]]
    ) -> None:
        for dev, ino, fp, off, name, size, state, updated in rows:
            cp = Checkpoint(bytes(fp), off, name, size, bytes(state) if state else None, updated)
            self._saved.setdefault(FileId(dev, ino), cp)

    def _load_read_only(self) -> None:
        if not os.path.exists(self.path):
            return
        try:
            conn = sqlite3.connect(f"file:{urllib.parse.quote(self.path)}?immutable=1", uri=True)
            try:
                try:
                    rows = conn.execute(_SELECT_ALL).fetchall()
                except sqlite3.OperationalError:  # written before the size/state columns
                    rows = conn.execute(_SELECT_OLD).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return
        self._load(rows)
        log.info("offsets read from %s (read-only) for %d file(s)", self.path, len(rows))

    def _report(self, exc: Exception) -> None:
        self._retry_at = time.monotonic() + RETRY_S
        if not self._failing:
            log.error("cannot store offsets in %s: %s (keeps shipping, will retry)", self.path, exc)
            self._failing = True

    def get(self, fid: FileId) -> Checkpoint | None:
        return self._dirty.get(fid) or self._saved.get(fid)

    def set(
        self,
        fid: FileId,
        fingerprint: bytes,
        offset: int,
        name: str,
        *,
        size: int | None = None,
        state: bytes | None = None,
    ) -> None:
        self._deleted.discard(fid)
        self._dirty[fid] = Checkpoint(fingerprint, offset, name, size, state, time.time())

    def saved(self) -> dict[FileId, Checkpoint]:
        """Every stored row (as loaded at open, with the changes since)."""
        return {**self._saved, **self._dirty}

    def forget(self, fid: FileId) -> None:
        self._dirty.pop(fid, None)
        if fid in self._saved:
            self._deleted.add(fid)

    @property
    def pending(self) -> bool:
        """Changes not stored yet (e.g. the last write failed)."""
        return bool(self._dirty or self._deleted)

    def commit(self, *, force: bool = False) -> None:
        """Write pending changes. A failing disk is reported once and retried (at most every
        RETRY_S unless forced), also when nothing new arrives: see tail.commits."""
        if not self._dirty and not self._deleted:
            return
        if self._failing and not force and time.monotonic() < self._retry_at:
            return
        if not self.open():
            return
        assert self._conn is not None
        now = time.time()
        rows = [
            (f.dev, f.ino, c.fingerprint, c.offset, c.name, now, c.size, c.state)
            for f, c in self._dirty.items()
        ]
        gone = [(f.dev, f.ino) for f in self._deleted]
        try:
            self._conn.execute("BEGIN")
            self._conn.executemany(_UPSERT, rows)
            self._conn.executemany(_DELETE, gone)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # Reconnect at the next attempt: a connection SQLite opened read-only (read-only
            # volume) stays read-only after the volume is fixed.
            with contextlib.suppress(sqlite3.Error):
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self._conn.close()
            self._conn = None
            self._report(exc)
            return
        if self._failing:
            log.info("offsets stored in %s again", self.path)
            self._failing = False
        self._saved.update(self._dirty)
        for fid in self._deleted:
            self._saved.pop(fid, None)
        self._dirty.clear()
        self._deleted.clear()

    def close(self) -> None:
        self.commit(force=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
