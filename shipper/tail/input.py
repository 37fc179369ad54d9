"""The `tail` input: scans, opens, reads, emits chunks, stores acknowledged offsets.

One asyncio task. Each turn: scan if asked (filesystem event) or due (Refresh_Interval), read
every open file in one thread hop (fstat + pread, big chunks), turn bytes into records, emit
one chunk per file and turn, let go of rotated or deleted files that stayed idle for
Rotate_Wait, and commit acknowledged offsets. Reading pauses while the records in flight
exceed Mem_Buf_Limit: the data waits on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable

from shipper import telemetry
from shipper.chunk import Chunk, Part
from shipper.lines import HandlerFactory, SourceContext
from shipper.tail import discovery, pacing
from shipper.tail.batch import PassBatch
from shipper.tail.checkpoints import Checkpoints
from shipper.tail.handover import TailState, export_files, revive
from shipper.tail.identity import (
    FINGERPRINT_BYTES,
    FileId,
    Released,
    read_fingerprint,
    start_offset,
    still_there,
)
from shipper.tail.options import TailOptions
from shipper.tail.reader import (
    LineRules,
    RangeAck,
    TailedFile,
    any_changed,
    bytes_behind,
    drain_partial,
    open_file,
    read_all,
)
from shipper.tail.wake import WriteWake

log = logging.getLogger(__name__)

RELEASED_TTL = 60.0  # seconds a released file may go unseen before it is forgotten


class TailInput:
    plugin = "tail"
    _adopted = False  # set by adopt(): the first scan is not a start (see run)

    def __init__(self, *, name: str, opts: TailOptions, factory: HandlerFactory) -> None:
        self.name = name
        self.opts = opts
        self.factory = factory
        self.stats = telemetry.REGISTRY.input(name)
        self.stats.buffer_limit = opts.mem_buf_limit
        self.stats.behind_probe = lambda: bytes_behind(self.files.values())
        self.files: dict[FileId, TailedFile] = {}
        self.released: dict[FileId, Released] = {}
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
        self.in_flight = 0
        self._waiting = False  # reading waits for acknowledgements (WINDOW, Mem_Buf_Limit)
        self._quiet = False  # the last pass found nothing new
        self._batch = PassBatch(self._settled)  # this pass's records, one chunk per tag
        self._dirty: set[TailedFile] = set()
        self._wake = asyncio.Event()
        self._scan_requested = True
        self._stopping = False
        self._failed_paths: set[str] = set()
        self._pins: dict[FileId, tuple[str, int, os.stat_result]] = {}  # see _scan
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher = discovery.Watcher(self._kick_threadsafe)
        self._idle_wake = WriteWake(self._wake.set)
        self._emit: Callable[[Chunk], None] = lambda chunk: None

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self, emit: Callable[[Chunk], None]) -> None:
        """Follow files until `stop` is called."""
        self._emit = emit
        self._loop = asyncio.get_running_loop()
        if self.db is not None:
            self.db.open()
        if self.opts.inotify_watcher:
            self._watcher.start()
        # after a hot reload, files new to us appeared while nobody read: read them from head
        await self._scan(initial=not self._adopted)
        log.info("%s: initial scan done, following %d file(s)", self.name, len(self.files))
        next_refresh = time.monotonic() + self.opts.refresh_interval
        tick = pacing.MIN_TICK
        while not self._stopping:
            now = time.monotonic()
            if self._scan_requested or now >= next_refresh:
                self._scan_requested = False
                await self._scan(initial=False)
                next_refresh = now + self.opts.refresh_interval
            busy = await self._read_pass()
            self._quiet = busy == "idle"
            if not self._quiet:
                self._idle_wake.disarm()
            if self.opts.exit_on_eof and busy == "idle" and self._at_eof():
                self._flush_out()
                log.info("%s: every file read to its end (Exit_On_Eof)", self.name)
                break
            self._housekeeping(time.monotonic())
            self._flush_out()
            self._commit()
            if busy == "more":
                await asyncio.sleep(0)  # a backlog: read on at once, but let outputs run
                continue
            tick = pacing.next_tick(busy, tick, len(self.files))
            if (
                pacing.arm_wake(busy, tick)
                and not self._idle_wake.armed
                and self.opts.inotify_watcher
            ):
                self._idle_wake.arm({os.path.dirname(f.real_path) for f in self.files.values()})
            wait = tick
            if self._idle_wake.armed and busy == "idle" and not self._any_held():
                wait = max(tick, min(pacing.ARMED_IDLE_TICK, next_refresh - time.monotonic()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def stop(self) -> None:
        """Stop reading (SIGTERM): what is in flight is still acknowledged and stored."""
        self._stopping = True
        self._wake.set()

    def finish(self, *, keep_held: bool) -> None:
        """After stop: emit what multi-line handlers hold, unless a DB will let the next run
        rebuild those records from the stored offset (no record split at a restart)."""
        if keep_held and self.db is not None:
            return
        now = time.time()
        for f in list(self.files.values()):
            records = f.flush_held(now)
            if records:
                self._emit_records(f, records, f.line_pos)
        self._flush_out()

    def close(self) -> None:
        self._idle_wake.disarm()
        self._watcher.stop()
        self._commit()
        for f in self.files.values():
            f.close()
        if self.db is not None:
            self.db.close()

    def _any_held(self) -> bool:
        return any(f.held for f in self.files.values())

    def _at_eof(self) -> bool:
        return all(f.read_pos >= f.size for f in self.files.values())

    @property
    def idle(self) -> bool:
        return self.in_flight == 0

    # -- hot reload (shipper.tail.handover) ----------------------------------------------
    def export_state(self) -> TailState:
        """After stop and drain, before close: open files and released ones go to a successor."""
        state = TailState(files=export_files(self.files), released=dict(self.released))
        self.files, self.released = {}, {}
        return state

    def adopt(self, state: TailState) -> None:
        """Before run: go on from the predecessor's acked offsets, with this input's options."""
        for h in state.files:
            ctx = SourceContext(
                path=h.path,
                real_path=h.real_path,
                path_key=self.opts.path_key,
                offset_key=self.opts.offset_key,
            )
            tag = discovery.expand_tag(self.opts.tag, h.path)
            self.files[h.fid] = revive(h, self.factory(ctx), tag, self._acknowledged)
        self.released.update(state.released)
        self.stats.files_open += len(state.files)
        self._adopted = True
        log.info("%s: took over %d open file(s)", self.name, len(state.files))

    # -- discovery ----------------------------------------------------------------------
    def _kick_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        self._scan_requested = True
        self._wake.set()

    async def _scan(self, *, initial: bool) -> None:
        # Open files listed under the same entry need no stat (discovery.expand), unless
        # Ignore_Older needs their mtime.
        pins = self._pins
        pinned = (
            {h[0]: (h[1], h[2]) for fid, h in pins.items() if fid in self.files}
            if not self.opts.ignore_older
            else None
        )
        found, dirs = await asyncio.to_thread(self._expand, pinned)
        self._watcher.update(dirs)
        self._pins = pins = {}
        seen: set[FileId] = set()
        mono = time.monotonic()
        cutoff = time.time() - self.opts.ignore_older if self.opts.ignore_older else None
        for path, item in found.items():
            if cutoff is not None and item.st.st_mtime < cutoff:
                continue
            fid = FileId.of(item.st)
            seen.add(fid)
            rel = self.released.get(fid)
            if rel is not None:
                rel.last_seen, rel.path = mono, path
                if item.st.st_size == rel.offset:
                    continue  # a rotated file we finished and that did not grow
            f = self.files.get(fid)
            if f is not None:
                # Still matched under the name it has (the same file under several names,
                # through a symlinked directory): not a rotation.
                known = found.get(f.cur_path)
                if f.cur_path != path and (known is None or FileId.of(known.st) != fid):
                    telemetry.file_rotated(self.stats, f.cur_path, path)
                    f.cur_path = path
                    f.last_change = mono  # Rotate_Wait counts from the rotation
                f.matched = True
            else:
                self._open(path, fid, initial=initial, open_path=item.open_path)
            if item.dino and fid in self.files:
                pins[fid] = (item.open_path, item.dino, item.st)
        for fid, f in self.files.items():
            if fid not in seen:
                if f.matched:  # just left the glob (session_latest re-pointed): Rotate_Wait
                    f.last_change = mono  # for a dying writer's last lines counts from now
                f.matched = False
        # A scan races with renames (listed as x.1, renamed to x.2 before the stat): one
        # miss proves nothing, so a released file is forgotten only after a long absence.
        ttl = max(RELEASED_TTL, 3 * self.opts.refresh_interval)
        for fid, rel in list(self.released.items()):
            if fid not in seen and mono - rel.last_seen > ttl and not still_there(fid, rel.path):
                del self.released[fid]
                if self.db is not None:
                    self.db.forget(fid)

    def _expand(
        self, pinned: discovery.Pinned | None
    ) -> tuple[dict[str, discovery.Found], set[str]]:
        return (
            discovery.expand(self.opts.path, self.opts.exclude_path, pinned),
            discovery.watch_dirs(self.opts.path) if self.opts.inotify_watcher else set(),
        )

    def _open(self, path: str, fid: FileId, *, initial: bool, open_path: str) -> None:
        try:
            fd = open_file(open_path)
        except OSError as exc:
            if path not in self._failed_paths:
                self._failed_paths.add(path)
                telemetry.file_error(self.stats, path, exc)
            return
        self._failed_paths.discard(path)
        st = os.fstat(fd)
        if FileId.of(st) != fid:  # replaced between the scan and now: next scan sees it
            os.close(fd)
            self._kick()
            return
        fingerprint = read_fingerprint(fd)
        offset, why = self._start_offset(fid, fingerprint, st.st_size, initial)
        rel = self.released.get(fid)
        if rel is not None and offset >= st.st_size and why == "released":
            os.close(fd)  # a rotated file we finished: nothing new, stay released
            return
        self.released.pop(fid, None)
        real = discovery.real_path_of(open_path)
        ctx = SourceContext(
            path=path, real_path=real, path_key=self.opts.path_key, offset_key=self.opts.offset_key
        )
        f = TailedFile(
            fid=fid,
            fd=fd,
            path=path,
            real_path=real,
            offset=offset,
            fingerprint=fingerprint,
            handler=self.factory(ctx),
            tag=discovery.expand_tag(self.opts.tag, path),
            notify=self._acknowledged,
        )
        f.last_change = time.monotonic()
        f.size = st.st_size
        self.files[fid] = f
        telemetry.file_opened(self.stats, path, offset, why)

    def _start_offset(
        self, fid: FileId, fingerprint: bytes, size: int, initial: bool
    ) -> tuple[int, str]:
        saved = self.db.get(fid) if self.db is not None else None
        known = self.released.get(fid)
        return start_offset(
            fingerprint,
            size,
            released=(known.fingerprint, known.offset) if known else None,
            saved=(saved.fingerprint, saved.offset) if saved else None,
            at_end=initial and not self.opts.read_from_head,
        )

    # -- reading ------------------------------------------------------------------------
    async def _read_pass(self) -> str:
        """Read every open file once. Returns 'more' (a backlog), 'data' or 'idle'."""
        # Reading runs at most WINDOW ahead of the outputs: more in flight would only cost
        # memory, the data waits on disk just as well. Mem_Buf_Limit caps even that.
        room = min(self.opts.mem_buf_limit, pacing.WINDOW) - self.in_flight
        self.stats.buffer_bytes = self.in_flight
        self._waiting = room <= 0
        if room <= 0:
            if self.in_flight >= self.opts.mem_buf_limit and not self.stats.paused:
                self.stats.paused = True
                log.debug(
                    "%s: paused at Mem_Buf_Limit (%d bytes in flight)", self.name, self.in_flight
                )
            return "idle"
        self.stats.paused = False
        files = [f for f in self.files.values() if f.fd >= 0]
        if not files:
            return "idle"
        lean = self._batch.lean()
        per_file = pacing.per_file_read(room, lean, len(files), self.opts.buffer_chunk_size)
        if self._quiet and not any_changed(files):
            return "idle"  # nothing grew: no thread hop (idle CPU is mostly the hop)
        results = await asyncio.to_thread(read_all, files, per_file)
        now = time.time()
        mono = time.monotonic()
        state = "idle"
        for f, (data, size, nlink, err) in zip(files, results, strict=True):
            if err:
                telemetry.file_error(self.stats, f.path, OSError(err, os.strerror(err)))
                continue
            f.size = size
            if nlink == 0 and not f.deleted:
                f.deleted = True
                f.last_change = mono  # drained until idle for Rotate_Wait from now
            if size < f.read_pos and not data:
                telemetry.file_truncated(self.stats, f.path, size, f.read_pos)
                f.truncated()
                f.last_change = mono
                state = "more"
                continue
            if not data:
                continue
            f.last_change = mono
            if len(data) == per_file:
                state = "more"
            elif state == "idle":
                state = "data"
            self.stats.bytes += len(data)
            records, end = f.ingest(data, self.rules, now)
            self._emit_records(f, records, end, len(data))
        return state

    def _emit_records(self, f: TailedFile, records: Part, end: int, nbytes: int = 0) -> None:
        """Queue a file's new records for this turn's chunk (see batch.py)."""
        cost, n = self._batch.add(f, records, end, nbytes)
        self.in_flight += cost
        self.stats.records += n

    def _flush_out(self) -> None:
        self._batch.flush(self._emit)

    def _settled(self, acks: list[RangeAck], nbytes: int) -> None:
        """A pass's chunk is done (PassAck): its files' offsets moved."""
        if self.db is not None:
            self._dirty.update([a.file for a in acks])
        self._released(nbytes)

    def _acknowledged(self, f: TailedFile, nbytes: int) -> None:
        if self.db is not None:
            self._dirty.add(f)
        self._released(nbytes)

    def _released(self, nbytes: int) -> None:
        self.in_flight -= nbytes
        if self._waiting and self.in_flight < min(self.opts.mem_buf_limit, pacing.WINDOW):
            self._wake.set()

    # -- housekeeping -------------------------------------------------------------------
    def _housekeeping(self, mono: float) -> None:
        now = time.time()
        # Nothing below happens to a file that grew within the shorter wait (the usual case)
        grew_after = mono - min(self.opts.multiline_flush, self.opts.rotate_wait)
        for fid, f in list(self.files.items()):
            if f.last_change > grew_after:
                continue
            idle_for = mono - f.last_change
            if f.held and idle_for >= self.opts.multiline_flush:
                records = f.flush_held(now)
                self._emit_records(f, records, f.line_pos)
            gone = f.deleted or not f.matched or f.cur_path != f.path
            if gone and f.read_pos >= f.size and idle_for >= self.opts.rotate_wait:
                self._emit_records(f, drain_partial(f, now), f.read_pos)
                if len(f.fingerprint) < FINGERPRINT_BYTES:  # it grew since it was opened
                    f.fingerprint = read_fingerprint(f.fd)
                f.close()
                del self.files[fid]
                why = "deleted" if f.deleted else "rotated or moved away"
                telemetry.file_closed(self.stats, f.path, why)
                if not f.deleted:
                    self.released[fid] = Released(f.fingerprint, f.read_pos, f.cur_path, mono)
                else:
                    self._dirty.add(f)  # _commit forgets its DB row

    def _commit(self) -> None:
        if self.db is None or not self._dirty:
            self._dirty.clear()
            if self.db is not None and self.db.pending:
                self.db.commit()  # a failed write (full or read-only disk): retry it
            return
        for f in self._dirty:
            if (
                len(f.fingerprint) < FINGERPRINT_BYTES
                and f.fd >= 0
                and f.acked_pos > len(f.fingerprint)
            ):
                f.fingerprint = read_fingerprint(f.fd)
            if f.deleted and f.fd < 0:
                self.db.forget(f.fid)
            else:
                self.db.set(f.fid, f.fingerprint, f.acked_pos, f.cur_path)
        self._dirty.clear()
        self.db.commit()
