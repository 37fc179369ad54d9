"""The C library through ctypes, loaded once (allocator tuning, inotify); None where there is
none to load (find_library runs ldconfig: not something to repeat)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
