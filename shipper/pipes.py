"""Standard output as a pipe: let it hold a whole flush.

A container's stdout is a pipe (or FIFO) its runtime reads. Linux gives a pipe 64 KiB, so a
flush of megabytes crosses it in dozens of writes, each waiting for the reader and then for
the writer to be scheduled again. Inside a CPU quota that second wait is the rest of a
throttled period (up to 90 ms at 100m): the writer then uses a fraction of its quota and still
falls behind. A pipe of 1 MiB (what an unprivileged process may ask for by default,
/proc/sys/fs/pipe-max-size) takes a flush in one or two writes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat

log = logging.getLogger(__name__)

PIPE_SIZE = 1024 * 1024


def widen(fd: int, size: int = PIPE_SIZE) -> int | None:
    """Grow the pipe or FIFO behind `fd` to `size` bytes (never shrink it). Returns its size
    now, or None when `fd` is not a pipe. A refusal (a lower pipe-max-size, the per-user pipe
    quota) leaves it as it was: the agent works the same, only with more wake-ups."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        current: int = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
        if current >= size:
            return current
        grown: int = fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except OSError as exc:
        log.debug("cannot grow the pipe on fd %d to %d bytes: %s", fd, size, exc)
        try:
            return int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
        except OSError:
            return None
    log.debug("pipe on fd %d grown from %d to %d bytes", fd, current, grown)
    return grown


_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


def write_all(fd: int, pieces: list[bytes]) -> None:
    """Write the pieces in order, whole, with as few system calls as the pipe allows
    (writev of up to IOV_MAX pieces; after a short write, on from where it stopped)."""
    i, n = 0, len(pieces)
    cur: bytes | memoryview = pieces[0] if pieces else b""  # what is left of pieces[i]
    while i < n:
        batch = [cur, *pieces[i + 1 : i + _IOV_MAX]]
        done = os.writev(fd, batch)
        for piece in batch:
            if done < len(piece):
                cur = memoryview(piece)[done:]
                break
            done -= len(piece)
            i += 1
            cur = pieces[i] if i < n else b""
