"""The `tail` input: scans, opens, reads, emits chunks, stores acknowledged offsets.

One asyncio task. Each turn: scan if asked (filesystem event) or due (Refresh_Interval), read
every open file in one thread hop (fstat + pread, big chunks), turn bytes into records, emit
one chunk per tag and turn, let go of rotated or deleted files that stayed idle for
Rotate_Wait, and commit acknowledged offsets. Reading pauses while the records in flight
exceed Mem_Buf_Limit: the data waits on disk.

The parts: FileTable (which files, reconciled with each scan), FollowedFile (one file, with
its LineSplitter and AckLedger), Pacer (when to scan and read), InputBudget (Mem_Buf_Limit),
PassBatch (one chunk per tag and pass), Commits (offsets to the DB), Lag (copytruncate and
the rotation ring). This module only orchestrates them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable

from shipper import telemetry
from shipper.budget import InputBudget
from shipper.chunk import Chunk, Part
from shipper.lines import HandlerFactory, SourceContext
from shipper.tail import discovery
from shipper.tail.batch import PassBatch
from shipper.tail.catchup import CatchUp
from shipper.tail.checkpoints import Checkpoints
from shipper.tail.commits import Commits
from shipper.tail.copies import ring_age
from shipper.tail.followed import FollowedFile
from shipper.tail.handover import TailState
from shipper.tail.identity import (
    FINGERPRINT_BYTES,
    FileId,
    describe_start,
    read_fingerprint,
    start_offset,
)
from shipper.tail.lag import Lag
from shipper.tail.ledger import RangeAck
from shipper.tail.options import TailOptions
from shipper.tail.pacing import FINAL_READ, WINDOW, Pacer, Pass, per_file_read
from shipper.tail.pagecache import Dropper
from shipper.tail.reader import any_changed, bytes_behind, open_file
from shipper.tail.splitter import LineRules, LineSplitter
from shipper.tail.table import FileTable

log = logging.getLogger(__name__)

Scan = tuple[dict[str, discovery.Found], set[str], dict[str, str]]


class TailInput:
    plugin = "tail"
    _adopted = False  # set by adopt(): the first scan is not a start (see run)

    def __init__(self, *, name: str, opts: TailOptions, factory: HandlerFactory) -> None:
        self.name = name
        self.opts = opts
        self.factory = factory
        self.stats = telemetry.REGISTRY.input(name)
        self.table = FileTable()
        self.stats.behind_probe = lambda: bytes_behind(self.table.files.values())
        self.rules = LineRules(
            max_line=opts.buffer_max_size,
            skip_long=opts.skip_long_lines,
            skip_empty=opts.skip_empty_lines,
            want_offsets=opts.offset_key is not None,
        )
        self.db = (
            Checkpoints(opts.db, sync=opts.db_sync, journal_mode=opts.db_journal_mode)
            if opts.db
            else None
        )
        self._commits = Commits(self.db)  # acknowledged offsets to the DB
        self.pacer = Pacer(refresh_interval=opts.refresh_interval, write_wake=opts.inotify_watcher)
        self._pages = Dropper(enabled=opts.file_cache_advise)  # see pagecache.py
        # Reading runs at most WINDOW ahead of the outputs: more in flight would only cost
        # memory, the data waits on disk just as well. Mem_Buf_Limit caps even that.
        self.budget = InputBudget(
            limit=opts.mem_buf_limit, stats=self.stats, wake=self.pacer.wake.set, window=WINDOW
        )
        self._catch_up = CatchUp()
        # Set once every file found at the start is read to the size it had then and its
        # records are delivered (acknowledged): `shipper tail` ends its history there.
        self.caught_up = self._catch_up.event
        self._quiet = False  # the last pass found nothing new
        self._batch = PassBatch(self._settled)  # this pass's records, one chunk per tag
        self._stopping = False
        self._failed_paths: set[str] = set()
        self._nothing_matched = False  # said so once; said again after something matched
        self._sessions: dict[str, str] = {}  # session_latest link -> the session it names
        self._watcher = discovery.Watcher(self.pacer.kick_threadsafe)
        self._emit: Callable[[Chunk], None] = lambda chunk: None
        self.lag = Lag()  # copytruncate, the rotation ring, moved files (see lag.py)

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self, emit: Callable[[Chunk], None]) -> None:
        """Follow files until `stop` is called."""
        self._emit = emit
        self.pacer.start()
        if self.db is not None:
            self.db.open()
            self.lag.load_db(self.db.saved())
        if self.opts.inotify_watcher:
            self._watcher.start()
        # after a hot reload, files new to us appeared while nobody read: read them from head
        seen = await self._scan(initial=not self._adopted)
        for fid, item in self.lag.after_start(self, seen, adopted=self._adopted):
            self._open(fid, item, initial=False)  # Ray's log monitor moved it to old/
            if fid in self.table.files:
                self.table.files[fid].unmatched(time.monotonic())  # read to its end, let go
        self._catch_up.start(self.table.files.values())
        log.info("%s: initial scan done, following %d file(s)", self.name, len(self.table.files))
        while not self._stopping:
            if self.pacer.scan_due():
                await self._scan(initial=False)
            found = await self._read_pass()
            self._quiet = found is Pass.IDLE
            if self.opts.exit_on_eof and self._quiet and self.table.at_eof():
                self._flush_out()
                log.info("%s: every file read to its end (Exit_On_Eof)", self.name)
                break
            self._housekeeping(time.monotonic())
            self._flush_out()
            self._commits.commit()
            if found is not Pass.BACKLOG:  # (while draining a backlog, acks do it)
                self._catch_up.recheck()
            await self.pacer.pause(
                found, files=len(self.table.files), dirs=self.table.dirs, held=self.table.any_held
            )
        deadline = time.monotonic() + FINAL_READ
        while self._stopping and time.monotonic() < deadline:
            # SIGTERM (a preStop `ray stop`): what writers wrote last goes out with the rest
            found = await self._read_pass()
            self._flush_out()
            if found is Pass.IDLE:
                break
            if found is Pass.WAIT:  # the window is full: an acknowledgement wakes us
                await self.pacer.wait_for_room()

    def stop(self) -> None:
        """Stop reading (SIGTERM): what is in flight is still acknowledged and stored."""
        self._stopping = True
        self.pacer.wake.set()

    def finish(self, *, keep_held: bool) -> None:
        """After stop: emit what multi-line handlers hold and a last line without newline,
        unless a DB will let the next run rebuild them from the stored offset (no record
        split at a restart)."""
        if keep_held and self.db is not None:
            return
        now = time.time()
        for f in list(self.table.files.values()):
            records, end = f.splitter.drain(now)
            if records:
                self._emit_records(f, records, end)
        self._flush_out()

    def close(self) -> None:
        self.pacer.close()
        self._watcher.stop()
        self._commits.last(self.table.files.values())
        for f in self.table.files.values():
            f.close()
        if self.db is not None:
            self.db.close()

    # -- hot reload (shipper.tail.handover) ----------------------------------------------
    def export_state(self) -> TailState:
        """After stop and drain, before close: open files and released ones go to a successor."""
        files, released = self.table.take_all()
        return TailState(files=[f.export() for f in files if f.fd >= 0], released=released)

    def adopt(self, state: TailState) -> None:
        """Before run: go on from the predecessor's acked offsets, with this input's options."""
        for h in state.files:
            splitter = self._splitter(h.path, h.real_path, h.offset, skipping=h.skipping)
            tag = discovery.expand_tag(self.opts.tag, h.path)
            self.table.add(
                FollowedFile.adopt(h, splitter=splitter, tag=tag, notify=self._acknowledged)
            )
        self.table.remember(state.released)
        telemetry.files_adopted(self.stats, len(state.files))
        self._adopted = True

    # -- discovery ----------------------------------------------------------------------
    async def _scan(self, *, initial: bool) -> set[FileId]:
        # Open files listed under the same entry need no stat (discovery.expand), unless
        # Ignore_Older needs their mtime.
        pinned = self.table.pinned() if not self.opts.ignore_older else None
        found, dirs, sessions = await asyncio.to_thread(self._expand, pinned)
        self._watcher.update(dirs)
        self._note_scan(found, sessions)
        cutoff = time.time() - self.opts.ignore_older if self.opts.ignore_older else None
        mono = time.monotonic()
        events = self.table.reconcile(found, mono, cutoff)
        lag = self.lag
        lag.begin_scan()
        for f, old in events.rotated:
            telemetry.file_rotated(self.stats, old, f.cur_path)
            lag.left(old, f)
        # Oldest ring generation first: a successor finds its predecessor open (lag.opened)
        for fid, item in sorted(events.opened, key=lambda e: -ring_age(e[1].path)):
            if not lag.known_copy(fid, item.st.st_size, mono):
                self._open(fid, item, initial=initial)
        if self.db is not None:
            for fid in events.forgotten:
                self.db.forget(fid)
        seen = {FileId.of(item.st) for item in found.values()}
        lag.forget_unseen(seen, self.table.ttl, mono)
        return seen

    def _expand(self, pinned: discovery.Pinned | None) -> Scan:
        opts = self.opts
        return (
            discovery.expand(opts.path, opts.exclude_path, pinned),
            discovery.watch_dirs(opts.path) if opts.inotify_watcher else set(),
            discovery.session_targets(opts.path),
        )

    def _note_scan(self, found: dict[str, discovery.Found], sessions: dict[str, str]) -> None:
        """Say what a scan changed that a person watching wants to know."""
        for link, target in sessions.items():
            if self._sessions.get(link) != target:
                telemetry.session_switched(self.stats, link, target)
        self._sessions = sessions
        if not found and not self.table.files and not self._nothing_matched:
            telemetry.nothing_matches(self.stats, self.opts.path)
        self._nothing_matched = not found

    def _open(self, fid: FileId, item: discovery.Found, *, initial: bool) -> None:
        path = item.path
        try:
            fd = open_file(item.open_path)
        except OSError as exc:
            if path not in self._failed_paths:
                self._failed_paths.add(path)
                telemetry.file_error(self.stats, path, exc)
            return
        self._failed_paths.discard(path)
        st = os.fstat(fd)
        if FileId.of(st) != fid:  # replaced between the scan and now: next scan sees it
            os.close(fd)
            self.pacer.kick()
            return
        fingerprint = read_fingerprint(fd)
        offset, why = self._start_offset(fid, fingerprint, st.st_size, initial)
        if why == "released" and offset >= st.st_size:
            os.close(fd)  # a rotated file we finished: nothing new, stay released
            return
        if why not in ("released", "db") and self.lag.copy_of(self, path, fid, fingerprint, st):
            os.close(fd)  # a copy of a followed file: its lines are read there (lag.py)
            return
        real = discovery.real_path_of(item.open_path)
        f = FollowedFile(
            fid=fid,
            fd=fd,
            path=path,
            real_path=real,
            fingerprint=fingerprint,
            splitter=self._splitter(path, real, offset),
            tag=discovery.expand_tag(self.opts.tag, path),
            notify=self._acknowledged,
            size=st.st_size,
        )
        self.lag.opened(self, f, why, self.db.get(fid) if self.db else None)
        self.table.add(f, item)
        telemetry.file_opened(self.stats, path, describe_start(offset, why, initial=initial))

    def _splitter(
        self, path: str, real_path: str, offset: int, *, skipping: bool = False
    ) -> LineSplitter:
        opts = self.opts
        ctx = SourceContext(
            path=path, real_path=real_path, path_key=opts.path_key, offset_key=opts.offset_key
        )
        return LineSplitter(
            handler=self.factory(ctx),
            rules=self.rules,
            offset=offset,
            skipping=skipping,
            on_long=functools.partial(telemetry.long_line, self.stats, path, self.rules.max_line),
        )

    def _start_offset(
        self, fid: FileId, fingerprint: bytes, size: int, initial: bool
    ) -> tuple[int, str]:
        saved = self.db.get(fid) if self.db is not None else None
        known = self.table.released.get(fid)
        return start_offset(
            fingerprint,
            size,
            released=(known.fingerprint, known.offset) if known else None,
            saved=(saved.fingerprint, saved.offset) if saved else None,
            at_end=initial and not self.opts.read_from_head,
        )

    # -- reading ------------------------------------------------------------------------
    async def _read_pass(self) -> Pass:
        """Read every open file once."""
        room = self.budget.room()
        if room <= 0:
            return Pass.WAIT
        if self.lag.waiting and self.lag.after_pass(self, time.monotonic()):
            self._quiet = False
        files = [f for f in self.table.files.values() if f.fd >= 0]
        waiting = self.lag.waiting  # files that go on after their copy or predecessor
        if waiting:
            files = [f for f in files if f.fid not in waiting]
        if not files:
            return Pass.IDLE
        per_file = per_file_read(room, len(files), self.opts.buffer_chunk_size)
        if self._quiet and not any_changed(files):
            return Pass.IDLE  # nothing grew: no thread hop (idle CPU is mostly the hop)
        results = await self._pages.read(files, per_file)
        now = time.time()
        mono = time.monotonic()
        found = Pass.IDLE
        for f, (data, size, nlink, err) in zip(files, results, strict=True):
            if err:
                telemetry.file_error(self.stats, f.path, OSError(err, os.strerror(err)))
                continue
            if not data and size < f.read_pos:  # truncated: its rest may be in a copy
                telemetry.file_truncated(self.stats, f.path, size, f.read_pos)
                self.lag.truncated(self, f, size, nlink, mono)
                found = Pass.BACKLOG
                continue
            was = f.observe(size, nlink, len(data), mono)
            if was is not None:
                telemetry.file_truncated(self.stats, f.path, size, was)
                found = Pass.BACKLOG
                continue
            if not data:
                continue
            if len(data) == per_file:
                found = Pass.BACKLOG
            elif found is Pass.IDLE:
                found = Pass.DATA
            self.stats.bytes += len(data)
            records, end = f.splitter.ingest(data, now)
            self._emit_records(f, records, end, len(data))
            if len(f.fingerprint) < FINGERPRINT_BYTES and f.read_pos > len(f.fingerprint):
                f.refresh_fingerprint()  # what a copy of it would start with (lag.py)
        return found

    def _emit_records(self, f: FollowedFile, records: Part, end: int, nbytes: int = 0) -> None:
        """Queue a file's new records for this turn's chunk (see batch.py)."""
        cost, n = self._batch.add(f, records, end, nbytes)
        self.budget.charge(cost)
        self.stats.records += n

    def _flush_out(self) -> None:
        self._batch.flush(self._emit)

    def _settled(self, acks: list[RangeAck[FollowedFile]], nbytes: int) -> None:
        """A pass's chunk is done (PassAck): its files' offsets moved."""
        if self.db is not None or self._catch_up.pending:
            files = [a.ledger.owner for a in acks]
            self._commits.mark(files)
            self._catch_up.check(files)
        self.budget.release(nbytes)

    def _acknowledged(self, f: FollowedFile, nbytes: int) -> None:
        self._commits.mark((f,))
        if self._catch_up.pending:
            self._catch_up.check([f])
        self.budget.release(nbytes)

    # -- housekeeping -------------------------------------------------------------------
    def _housekeeping(self, mono: float) -> None:
        now = time.time()
        opts = self.opts
        # Nothing below happens to a file that grew within the shorter wait (the usual case)
        grew_after = mono - min(opts.multiline_flush, opts.rotate_wait)
        for f in list(self.table.files.values()):
            if f.last_change > grew_after:
                continue
            idle_for = mono - f.last_change
            if f.splitter.held and idle_for >= opts.multiline_flush:
                self._emit_records(f, *f.splitter.flush_held(now))
            if f.gone and f.read_pos >= f.size and idle_for >= opts.rotate_wait:
                self._release(f, now, mono)

    def _release(self, f: FollowedFile, now: float, mono: float) -> None:
        """Let go of a rotated, moved or deleted file read to its end and idle since."""
        self._emit_records(f, *f.splitter.drain(now))
        f.refresh_fingerprint()  # it may have grown since it was opened
        f.close()
        self.table.release(f, mono)
        telemetry.file_released(
            self.stats, f.path, "deleted" if f.deleted else "rotated or moved away"
        )
        self._commits.mark((f,))  # its final size (see lag.after_start), or forget a deleted one
