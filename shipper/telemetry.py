"""Counters and gauges, one small object per plugin instance, and one function per internal
event that logs it once and counts it. The HTTP server renders these under Fluent Bit's metric
names; nothing else reads them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("shipper")

START_TIME = time.time()


@dataclass(slots=True)
class InputStats:
    name: str  # "tail.0"
    records: int = 0
    bytes: int = 0
    files_opened: int = 0
    files_closed: int = 0
    files_rotated: int = 0
    files_open: int = 0  # gauge
    bytes_behind: dict[str, int] = field(default_factory=dict)  # gauge per path
    buffer_bytes: int = 0  # gauge: bytes in flight
    buffer_limit: int = 0
    paused: bool = False


@dataclass(slots=True)
class OutputStats:
    name: str  # "stdout.0"
    proc_records: int = 0
    proc_bytes: int = 0
    errors: int = 0
    retries: int = 0
    retries_failed: int = 0
    dropped_records: int = 0
    consecutive_errors: int = 0  # for the health check


@dataclass(slots=True)
class Registry:
    inputs: list[InputStats] = field(default_factory=list)
    outputs: list[OutputStats] = field(default_factory=list)
    reloads: int = 0

    def input(self, name: str) -> InputStats:
        stats = InputStats(name)
        self.inputs.append(stats)
        return stats

    def output(self, name: str) -> OutputStats:
        stats = OutputStats(name)
        self.outputs.append(stats)
        return stats


REGISTRY = Registry()


def _plugin_log(name: str) -> logging.Logger:
    return logging.getLogger(f"shipper.{name}")


def file_opened(stats: InputStats, path: str, offset: int, why: str) -> None:
    stats.files_opened += 1
    stats.files_open += 1
    _plugin_log(stats.name).debug("open %s at offset %d (%s)", path, offset, why)


def file_closed(stats: InputStats, path: str, why: str) -> None:
    stats.files_closed += 1
    stats.files_open -= 1
    stats.bytes_behind.pop(path, None)
    _plugin_log(stats.name).debug("close %s (%s)", path, why)


def file_rotated(stats: InputStats, old: str, new: str) -> None:
    stats.files_rotated += 1
    _plugin_log(stats.name).debug("rotated %s -> %s", old, new)


def file_truncated(stats: InputStats, path: str, size: int, offset: int) -> None:
    _plugin_log(stats.name).info("%s truncated (size %d < offset %d): reading from 0",
                                 path, size, offset)


def file_error(stats: InputStats, path: str, err: OSError) -> None:
    _plugin_log(stats.name).warning("cannot read %s: %s", path, err.strerror or err)


def long_line(stats: InputStats, path: str, size: int, skipped: bool) -> None:
    what = "skipped" if skipped else "truncated"
    _plugin_log(stats.name).warning("%s: line longer than Buffer_Max_Size (%d bytes) %s",
                                    path, size, what)


def session_switched(stats: InputStats, link: str, target: str) -> None:
    _plugin_log(stats.name).info("%s now points to %s", link, target)


def output_retry(stats: OutputStats, attempt: int, delay: float, reason: str) -> None:
    stats.retries += 1
    stats.errors += 1
    stats.consecutive_errors += 1
    _plugin_log(stats.name).warning("delivery failed (%s); retry %d in %.2fs", reason,
                                    attempt, delay)


def output_dropped(stats: OutputStats, records: int, reason: str) -> None:
    stats.errors += 1
    stats.dropped_records += records
    stats.consecutive_errors += 1
    _plugin_log(stats.name).error("dropped %d records: %s", records, reason)


def output_retries_exhausted(stats: OutputStats, records: int, reason: str) -> None:
    stats.retries_failed += 1
    output_dropped(stats, records, f"retry limit reached ({reason})")


def output_delivered(stats: OutputStats, records: int, nbytes: int) -> None:
    stats.proc_records += records
    stats.proc_bytes += nbytes
    stats.consecutive_errors = 0
