"""How often the tail input scans and reads, and how much per pass.

The figures behind each number are in benchmarks/RESULTS.md ("Figures behind the code's numbers").
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable

from shipper.tail.wake import WriteWake

MIN_TICK = 0.04  # seconds between passes while files grow: latency vs CPU per pass
PASS_COST = 5e-4  # seconds of tick per open file: thousands of files, fewer passes
MAX_ACTIVE_TICK = 1.0
IDLE_TICK = 1.0  # the wait doubles up to this while nothing grows ...
ARM_TICK = 0.15  # ... and from this wait on, a write wakes the loop (wake.py)
ARMED_IDLE_TICK = 4.0  # armed and nothing held: polling is only a safety net (NFS)
FINAL_READ = 2.0  # seconds of read passes at SIGTERM, for what writers wrote last
WINDOW = 8 * 1024 * 1024  # records in flight before reading waits for acknowledgements
READ_LIMIT = 256 * 1024  # bytes read from one file per pass ...
PASS_READ = 1024 * 1024  # ... and from all files together (in chunks of batch.CHUNK_READ)


class Pass(enum.Enum):
    """What a read pass found."""

    BACKLOG = "backlog"  # a file had more than one pass reads: read on at once
    DATA = "data"  # new lines
    IDLE = "idle"  # nothing new
    WAIT = "wait"  # reading waits for acknowledgements: not idleness (no back-off, no
    # write wake-up armed; an acknowledgement wakes the next pass, see budget.py)


def next_tick(found: Pass, tick: float, files: int) -> float:
    """The wait before the next pass, after one that found DATA, IDLE or WAIT.

    What a pass costs beyond its lines grows with the files, not with the lines: with
    thousands of files, pass less often (lines wait longer, CPU stays low)."""
    active = min(MAX_ACTIVE_TICK, max(MIN_TICK, PASS_COST * files))
    if found is Pass.WAIT:
        return max(active, tick)
    return active if found is Pass.DATA else max(active, min(IDLE_TICK, tick * 2))


def arm_wake(found: Pass, tick: float) -> bool:
    """Should a write wake the next pass early (wake.py)? Only while idle: with thousands of
    growing files the active tick is long too, and a wake-up per write made a pass per write."""
    return found is Pass.IDLE and tick >= ARM_TICK


def per_file_read(room: int, files: int, chunk_size: int) -> int:
    """Bytes to read from each file this pass. Records take ~4x their raw bytes in memory:
    read no more than fits the budget `room`, and keep each pass small: big passes cost more
    in page faults than they save."""
    per_pass = min(room // 4, PASS_READ)
    return max(4096, min(max(READ_LIMIT, chunk_size), per_pass // files))


class Wake:
    """asyncio.Event's set/clear, with a wait that ends at a timeout: a timer and a future,
    where asyncio.wait_for would make a task, its callbacks and a cancellation every pass."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def sleep(self, seconds: float) -> None:
        """Until `set`, or `seconds` at most."""
        if self._flag:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(seconds, _done, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Pacer:
    """The tail loop's clock: when to scan (Refresh_Interval, or at once when `kick`ed by a
    filesystem event), how long to wait after a pass, and the write wake-up while idle."""

    def __init__(self, *, refresh_interval: float, write_wake: bool) -> None:
        self.wake = Wake()  # set: the next pass runs now
        self.idle_wake = WriteWake(self.wake.set)
        self._write_wake = write_wake
        self._refresh = refresh_interval
        self._next_scan = 0.0
        self._scan_requested = True
        self._tick = MIN_TICK
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """On the loop, before the first scan (events may kick it from then on)."""
        self._loop = asyncio.get_running_loop()
        self._next_scan = time.monotonic() + self._refresh

    def kick(self) -> None:
        """Scan at once (a file or directory appeared, moved or went)."""
        self._scan_requested = True
        self.wake.set()

    def kick_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.kick)

    def scan_due(self) -> bool:
        now = time.monotonic()
        if not self._scan_requested and now < self._next_scan:
            return False
        self._scan_requested = False
        self._next_scan = now + self._refresh
        return True

    async def pause(
        self, found: Pass, *, files: int, dirs: Callable[[], set[str]], held: Callable[[], bool]
    ) -> None:
        """Wait after a pass: not at all after a BACKLOG (but let the outputs run), else the
        tick, with the write wake-up armed once idle long enough (on the directories `dirs`).
        A record waiting for its Multiline_Flush (`held`) keeps the plain tick."""
        if found is not Pass.IDLE:
            self.idle_wake.disarm()
        if found is Pass.BACKLOG:
            await asyncio.sleep(0)
            return
        tick = self._tick = next_tick(found, self._tick, files)
        wake = self.idle_wake
        if arm_wake(found, tick) and not wake.armed and self._write_wake:
            wake.arm(dirs())
        wait = IDLE_TICK if found is Pass.WAIT else tick  # an acknowledgement wakes it
        if wake.armed and found is Pass.IDLE and not held():
            wait = max(tick, min(ARMED_IDLE_TICK, self._next_scan - time.monotonic()))
        await self._sleep(wait)

    async def wait_for_room(self) -> None:
        """Reading waits for acknowledgements (after the run loop: SIGTERM's last reads):
        until one wakes the loop, at most IDLE_TICK."""
        self.idle_wake.disarm()
        await self._sleep(IDLE_TICK)

    async def _sleep(self, seconds: float) -> None:
        self.wake.clear()
        await self.wake.sleep(seconds)

    def close(self) -> None:
        self.idle_wake.disarm()
