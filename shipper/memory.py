"""Allocator tuning for a process that frees and re-allocates the same few MB all the time.

Each read pass allocates a few MB of records and frees them once delivered. With glibc's
defaults the heap top is trimmed back to the OS and grown again on every pass, and large
buffers get fresh mmaps: about a page fault per line, which doubled the CPU cost of draining a
backlog (figures: benchmarks/RESULTS.md, "Figures behind the code's numbers"). The memory
kept is bounded by Mem_Buf_Limit, so keeping it costs nothing we did not budget for.
"""

from __future__ import annotations

import ctypes
import gc
import logging

from shipper.libc import libc

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
KEEP_BYTES = 32 * 1024 * 1024
# The cyclic GC's thresholds (CPython's: 700, 10, 10). The agent's objects are freed by
# reference counting (records, chunks, acknowledgements make no cycles), yet every 700 net
# container allocations ran a collection, dozens per read pass with thousands of files.
# Cycles (an exception's frames, asyncio internals) are still collected, after 20,000.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_allocator() -> bool:
    """Raise glibc's trim and mmap thresholds; a no-op elsewhere (musl, macOS)."""
    lib = libc()
    if lib is None:
        return False
    try:
        mallopt = lib.mallopt
    except AttributeError:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES)) and bool(
        mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)
    )
    log.debug("allocator thresholds raised: %s", ok)
    return ok


def tune_gc() -> None:
    """Collect cycles less often (see GC_THRESHOLDS)."""
    gc.set_threshold(*GC_THRESHOLDS)
