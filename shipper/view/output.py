"""The terminal end of `shipper tail`'s pipeline: an Output that renders records for a person.

Two phases. History: while the tail input reads what the files already hold, matching records
are only kept (the last N by time, in a bounded heap), because files are read one after the
other and a person wants them merged in time order. Live: once the input has caught up
(`end_history`), the kept records are printed sorted, then every record as it arrives.

A record without a timestamp of its own (worker prints) is dated by the reader at read time;
in the history that is "now" for all of them, so there it is shown at, and sorted by, its
file's last modification instead: the closest the disk can say to when it was written.

Writes go through one daemon thread, as in the stdout output: a terminal or a pager that
stops reading blocks that thread, not the event loop (Ctrl-C still works), and the input
pauses at Mem_Buf_Limit because nothing is acknowledged. A closed pipe (`| head`) ends the
view quietly: `on_broken` asks the app to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import queue
import threading
from collections.abc import Callable

import orjson

from shipper.chunk import Record
from shipper.match import Matcher
from shipper.outputs.base import Delivery, Output
from shipper.view.render import RecordFilter, Renderer

log = logging.getLogger(__name__)

_Job = tuple[bytes, "asyncio.Future[None] | None"]


class TerminalOutput(Output):
    plugin = "terminal"
    immediate = True  # a person is watching: no Flush batching

    def __init__(
        self,
        *,
        renderer: Renderer | None,
        accept: RecordFilter,
        history: int | None,
        history_at_close: bool = False,
        fd: int = 1,
    ) -> None:
        """`renderer` None: records as JSON lines. `history`: records of the existing files
        to show (None: all, 0: none, the view starts live). `history_at_close`: the history
        ends with the input (--no-follow)."""
        super().__init__(
            name="terminal", matcher=Matcher.build("*", None), delivery=Delivery(flush=0.05)
        )
        self.renderer = renderer
        self.accept = accept
        self.limit = history
        self.in_history = history != 0
        self.history_at_close = history_at_close
        self.on_broken: Callable[[], None] = lambda: None  # see when_broken
        self.broken = False
        self._fd = fd
        self._kept: list[tuple[float, str, int, Record]] = []  # a min-heap when limited
        self._seq = 0
        self._session: str | None = None  # the newest session seen (names sort by time)
        self._announced: str | None = None
        self._mtimes: dict[str, float] = {}
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def when_broken(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the terminal's pipe is closed (`| head` is done)."""
        self.on_broken = callback

    # -- Output -------------------------------------------------------------------------
    def encode(self, records: list[Record]) -> bytes:
        parts: list[str] = []
        for rec in records:
            session = rec.get("session")
            if isinstance(session, str) and (self._session is None or session > self._session):
                self._session = session
                if not self.in_history:  # (the history announces its own at its end)
                    self._announce(session, parts)
            if not self.accept(rec):
                continue
            if self.in_history:
                self._keep(rec)
            else:
                parts.append(self._format(rec, float(rec.get("date", 0.0))))
        return "".join(parts).encode("utf-8", "replace")

    async def send(self, payload: bytes, records: list[Record]) -> None:
        if payload:
            await self._write(payload)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer, name="terminal-writer", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self.in_history and self.history_at_close:
            await self.end_history()
        self._jobs.put(None)

    # -- phases ---------------------------------------------------------------------------
    async def end_history(self) -> None:
        """Print the kept records in time order and go live."""
        if not self.in_history:
            return
        self.in_history = False
        kept, self._kept = sorted(self._kept), []
        self._mtimes.clear()
        if self.renderer is not None:
            self.renderer.fit(rec for _, _, _, rec in kept)
        parts: list[str] = []
        shown: str | None = None
        for when, _, _, rec in kept:
            session = rec.get("session")
            if isinstance(session, str) and (shown is None or session > shown):
                shown = session
                self._announce(session, parts)
            parts.append(self._format(rec, when))
        newest = self._session  # the newest seen, shown or not: the one followed now
        if newest is not None and (shown is None or newest > shown):
            self._announce(newest, parts)
        if parts:
            await self._write("".join(parts).encode("utf-8", "replace"))

    # -- internals ------------------------------------------------------------------------
    def _announce(self, session: str, parts: list[str]) -> None:
        if self.renderer is None:
            return  # JSON records carry `session` themselves
        parts.append(self.renderer.banner(session, new=self._announced is not None))
        self._announced = session

    def _format(self, rec: Record, when: float) -> str:
        if self.renderer is None:
            return orjson.dumps(rec).decode() + "\n"
        return self.renderer.render(rec, when)

    def _keep(self, rec: Record) -> None:
        when = float(rec.get("date", 0.0))
        path = rec.get("path")
        if _untimed(rec) and isinstance(path, str):  # no time of its own: see above
            mtime = self._mtimes.get(path)
            if mtime is None:
                try:
                    mtime = os.stat(path).st_mtime
                except OSError:
                    mtime = when
                self._mtimes[path] = mtime
            when = mtime
        # Ties go by file, then reading order: the same history whatever the read passes
        # interleaved (dicts are never compared).
        self._seq += 1
        item = (when, path if isinstance(path, str) else "", self._seq, rec)
        if self.limit is None:
            self._kept.append(item)
        elif len(self._kept) < self.limit:
            heapq.heappush(self._kept, item)
        else:
            heapq.heappushpop(self._kept, item)

    async def _write(self, data: bytes) -> None:
        if self.broken:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.put((data, fut))
        await fut

    def _writer(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            data, fut = job
            if not self.broken:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(self._fd, view) :]
                except OSError as exc:  # EPIPE: `| head` is done; EIO: the terminal is gone
                    self.broken = True
                    self._call(self._gone, exc)
            if fut is not None:
                self._call(_settle, fut)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                loop.call_soon_threadsafe(fn, *args)

    def _gone(self, exc: OSError) -> None:
        log.debug("output closed (%s): stopping", exc)
        # Later writes, ours or the interpreter's final flush of sys.stdout, go nowhere
        # instead of raising BrokenPipeError at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._fd)
            os.close(devnull)
        self.on_broken()


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _untimed(rec: Record) -> bool:
    """Is the record's date the read time? Its line had no header (no message), or only
    logging.basicConfig's `LEVEL:logger:` (a logger, no time), or a driver's prefix before
    plain text (an origin, no level)."""
    return "message" not in rec or "logger" in rec or ("origin" in rec and "level" not in rec)
