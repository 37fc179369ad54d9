"""Wake the idle tail loop on the next write: inotify IN_MODIFY, read by the event loop.

While files grow, the tail input polls them every pass (an event per write would cost more than
the poll); while they are quiet, polling backs off to IDLE_TICK and the first lines after a quiet
spell would wait for the next pass. So only while idle, one inotify instance watches the
directories of the followed files for writes; the event loop reads its descriptor (no thread),
and the first event wakes the loop, which then drops the watch. Without inotify (another OS,
out of instances or watches) arming fails quietly and polling alone decides.

watchdog (shipper/tail/discovery.py) keeps watching for creation, deletion and renames. A
second watchdog watch for writes was tried first and cost more than it saved
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
from collections.abc import Callable

from shipper.libc import libc

log = logging.getLogger(__name__)

_IN_MODIFY = 0x00000002


def _inotify() -> ctypes.CDLL | None:
    lib = libc()
    if lib is None:
        return None
    try:
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except AttributeError:  # not Linux
        return None
    return lib


class WriteWake:
    """`arm(dirs)`: call `wake` on the loop at the next write under `dirs`; `disarm()`."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._libc: ctypes.CDLL | None = None

    @property
    def armed(self) -> bool:
        return self._fd >= 0

    def arm(self, dirs: set[str]) -> bool:
        if self._fd >= 0:
            return True
        if self._libc is None:
            self._libc = _inotify()
        libc = self._libc
        if libc is None or not dirs:
            return False
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            log.debug("no inotify instance for idle wake-ups: %s", os.strerror(ctypes.get_errno()))
            return False
        for d in dirs:
            if libc.inotify_add_watch(fd, os.fsencode(d), _IN_MODIFY) < 0:
                log.debug("cannot watch %s for writes: %s", d, os.strerror(ctypes.get_errno()))
                os.close(fd)
                return False
        try:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(fd, self._ready)
        except (RuntimeError, NotImplementedError, OSError):
            os.close(fd)
            return False
        self._fd = fd
        return True

    def disarm(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(fd)
        os.close(fd)

    def _ready(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: drained
            while os.read(self._fd, 65536):
                pass
        self._wake()
