"""What the OS knows about a process tree: CPU time, peak RSS, I/O counters, open files.

CPU is utime+stime of every live process in the tree plus cutime+cstime (children already
reaped), from /proc/PID/stat: threads are included, and so are child processes, alive or
waited for. A process that wraps the agent (a shell, py-spy) is part of the tree.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()  # fields from `state` on (comm may hold spaces)


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a scan of /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f is not None:
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def io_counters(pids: list[int]) -> tuple[int, int]:
    """(rchar, wchar) summed over `pids`: bytes read and written by any system call."""
    r = w = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io", "rb") as fh:
                for line in fh:
                    if line.startswith(b"rchar:"):
                        r += int(line.split()[1])
                    elif line.startswith(b"wchar:"):
                        w += int(line.split()[1])
        except OSError:
            continue
    return r, w


def hwm_kb(pids: list[int]) -> int:
    """Peak resident set size (VmHWM) summed over `pids`, in KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"VmHWM:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def open_files_under(pids: list[int], prefix: str) -> int:
    """How many descriptors of `pids` point at files below `prefix`."""
    n = 0
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                    n += 1
            except OSError:
                continue
    return n


@dataclass(frozen=True, slots=True)
class Exit:
    code: int | None  # None: had to be killed
    cpu_s: float  # whole life, from wait4 (includes reaped children)


def wait_exit(pid: int, timeout: float) -> Exit | None:
    """wait4 with a deadline; None if still running."""
    end = time.monotonic() + timeout
    while True:
        got, status, ru = os.wait4(pid, os.WNOHANG)
        if got == pid:
            return Exit(os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime)
        if time.monotonic() >= end:
            return None
        time.sleep(0.02)
