"""Counters and gauges, one small object per plugin instance, and one function per internal
event that logs it once and counts it. The HTTP server renders these under Fluent Bit's metric
names; nothing else reads them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from shipper.config.model import ConfigError

log = logging.getLogger("shipper")

START_TIME = time.time()

# Error times kept per output for the health check's HC_Period window. Past this many, older
# ones fall off: the check only compares the count with HC_Errors_Count (default 5).
HC_WINDOW_MAX = 10_000


def _times() -> deque[float]:
    return deque(maxlen=HC_WINDOW_MAX)


@dataclass(slots=True)
class InputStats:
    name: str  # "tail.0"
    records: int = 0
    bytes: int = 0
    files_opened: int = 0
    files_closed: int = 0
    files_rotated: int = 0
    long_lines: int = 0  # cut or skipped at the line limit
    session_switches: int = 0
    files_open: int = 0  # gauge
    # the reader lagged (shipper/tail/lag.py): copytruncate and the rotation ring
    copies_recovered: int = 0  # truncations whose unread rest was read from the copy
    copy_bytes: int = 0
    copies_missed: int = 0  # truncations with unread bytes and no copy found
    missed_bytes: int = 0  # unread bytes of those (lost)
    rotated_lost_files: int = 0  # generations deleted before they were read to their end
    rotated_lost_bytes: int = 0
    bytes_behind: dict[str, int] = field(default_factory=dict)  # gauge per path
    buffer_bytes: int = 0  # gauge: bytes in flight
    buffer_limit: int = 0
    paused: bool = False
    # set by the input: bytes_behind measured at scrape time (see metrics)
    behind_probe: Callable[[], dict[str, int]] | None = None

    def carry_over(self, prev: InputStats) -> None:
        """Add the counters of the instance this one replaces at a reload (not the gauges)."""
        self.records += prev.records
        self.bytes += prev.bytes
        self.files_opened += prev.files_opened
        self.files_closed += prev.files_closed
        self.files_rotated += prev.files_rotated
        self.long_lines += prev.long_lines
        self.session_switches += prev.session_switches
        for key in _LAG_COUNTERS:
            setattr(self, key, getattr(self, key) + getattr(prev, key))


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
    error_times: deque[float] = field(default_factory=_times)  # monotonic, for HC_Period
    retry_failure_times: deque[float] = field(default_factory=_times)

    def carry_over(self, was: OutputStats) -> None:
        """Add the counters of the instance this one replaces at a reload (not the gauges)."""
        self.proc_records += was.proc_records
        self.proc_bytes += was.proc_bytes
        self.errors += was.errors
        self.retries += was.retries
        self.retries_failed += was.retries_failed
        self.dropped_records += was.dropped_records
        # the health window spans the reload: a reload does not make an agent healthy
        self.error_times.extendleft(reversed(was.error_times))
        self.retry_failure_times.extendleft(reversed(was.retry_failure_times))


@dataclass(slots=True)
class FilterStats:
    """Fluent Bit's filter counters (records in, dropped, added, re-emitted) and a filter's
    own counters (`extra`, rendered as shipper_filter_<key>_total)."""

    name: str  # "throttle.0"
    records: int = 0
    drop_records: int = 0
    add_records: int = 0
    emit_records: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.extra[key] = self.extra.get(key, 0) + n


Mark = tuple[int, int]


@dataclass(slots=True)
class Registry:
    """Every plugin instance's stats. A reload builds the new pipeline's instances (their stats
    land after `mark()`) while the old one still runs; `rollback` forgets them when the new
    config is refused, `retire` drops the old ones once the new pipeline takes over."""

    inputs: list[InputStats] = field(default_factory=list)
    outputs: list[OutputStats] = field(default_factory=list)
    reloads: int = 0
    reloads_refused: int = 0
    # by name: a reload's instance of the same name carries on counting (no mark/retire)
    filters: dict[str, FilterStats] = field(default_factory=dict)

    def filter(self, name: str) -> FilterStats:
        return self.filters.setdefault(name, FilterStats(name))

    def input(self, name: str) -> InputStats:
        stats = InputStats(name)
        self.inputs.append(stats)
        return stats

    def output(self, name: str) -> OutputStats:
        stats = OutputStats(name)
        self.outputs.append(stats)
        return stats

    def mark(self) -> Mark:
        return len(self.inputs), len(self.outputs)

    def rollback(self, mark: Mark) -> None:
        del self.inputs[mark[0] :]
        del self.outputs[mark[1] :]

    def retire(self, mark: Mark) -> None:
        """Keep only the stats made after `mark`. Counters carry over to the instance of the
        same name, so that a reload does not reset them (Prometheus would see a restart);
        gauges do not: the new instance measures its own state."""
        old_in = {s.name: s for s in self.inputs[: mark[0]]}
        old_out = {s.name: s for s in self.outputs[: mark[1]]}
        del self.inputs[: mark[0]]
        del self.outputs[: mark[1]]
        for i in self.inputs:
            prev = old_in.get(i.name)
            if prev is not None:
                i.carry_over(prev)
        for o in self.outputs:
            was = old_out.get(o.name)
            if was is not None:
                o.carry_over(was)

    def live_inputs(self) -> list[InputStats]:
        """One per name: during a reload the running instance, not its successor."""
        return _first_per_name(self.inputs)

    def live_outputs(self) -> list[OutputStats]:
        return _first_per_name(self.outputs)


_S = TypeVar("_S", InputStats, OutputStats)


def _first_per_name(stats: list[_S]) -> list[_S]:
    seen: set[str] = set()
    out: list[_S] = []
    for s in stats:
        if s.name not in seen:
            seen.add(s.name)
            out.append(s)
    return out


REGISTRY = Registry()

_LAG_COUNTERS = (
    "copies_recovered",
    "copy_bytes",
    "copies_missed",
    "missed_bytes",
    "rotated_lost_files",
    "rotated_lost_bytes",
)


def _plugin_log(name: str) -> logging.Logger:
    return logging.getLogger(f"shipper.{name}")


def nothing_matches(stats: InputStats, patterns: tuple[str, ...]) -> None:
    _plugin_log(stats.name).info("waiting for %s: nothing matches yet", ", ".join(patterns))


def session_switched(stats: InputStats, link: str, target: str) -> None:
    stats.session_switches += 1
    _plugin_log(stats.name).info("%s now -> %s", link, target)


def file_opened(stats: InputStats, path: str, how: str) -> None:
    stats.files_opened += 1
    stats.files_open += 1
    _plugin_log(stats.name).info("following %s (%s)", path, how)


def files_adopted(stats: InputStats, count: int) -> None:
    stats.files_open += count
    _plugin_log(stats.name).info("took over %d open file(s)", count)


def file_released(stats: InputStats, path: str, why: str) -> None:
    stats.files_closed += 1
    stats.files_open -= 1
    stats.bytes_behind.pop(path, None)
    _plugin_log(stats.name).info("released %s (%s)", path, why)


def file_rotated(stats: InputStats, old: str, new: str) -> None:
    stats.files_rotated += 1
    _plugin_log(stats.name).debug("rotated %s -> %s", old, new)


def file_truncated(stats: InputStats, path: str, size: int, offset: int) -> None:
    _plugin_log(stats.name).info(
        "%s truncated (size %d < offset %d): reading from 0", path, size, offset
    )


def copy_recovered(stats: InputStats, path: str, copy: str, start: int, end: int) -> None:
    stats.copies_recovered += 1
    stats.copy_bytes += end - start
    _plugin_log(stats.name).info(
        "%s truncated with %d bytes unread: reading them from its copy %s [%d, %d)",
        path,
        end - start,
        copy,
        start,
        end,
    )


def copy_missed(stats: InputStats, path: str, unread: int) -> None:
    stats.copies_missed += 1
    stats.missed_bytes += unread
    _plugin_log(stats.name).warning(
        "%s truncated with %d bytes unread and no copy found next to it: those bytes are lost",
        path,
        unread,
    )


def rotated_lost(stats: InputStats, path: str, lost: int) -> None:
    stats.rotated_lost_files += 1
    stats.rotated_lost_bytes += lost
    _plugin_log(stats.name).warning(
        "%s was deleted or truncated before it was read to its end: %d bytes lost", path, lost
    )


def file_error(stats: InputStats, path: str, err: OSError) -> None:
    _plugin_log(stats.name).warning("cannot read %s: %s", path, err.strerror or err)


def long_line(stats: InputStats, path: str, limit: int, lines: int, skipped: bool) -> None:
    stats.long_lines += lines
    what = "skipped" if skipped else "cut there"
    _plugin_log(stats.name).warning(
        "%s: %d line(s) longer than the line limit (%d bytes) %s", path, lines, limit, what
    )


def output_retry(stats: OutputStats, attempt: int, delay: float, reason: str) -> None:
    stats.retries += 1
    stats.errors += 1
    stats.error_times.append(time.monotonic())
    stats.consecutive_errors += 1
    _plugin_log(stats.name).warning(
        "delivery failed (%s); retry %d in %.2fs", reason, attempt, delay
    )


def output_dropped(stats: OutputStats, records: int, reason: str) -> None:
    stats.errors += 1
    stats.error_times.append(time.monotonic())
    stats.dropped_records += records
    stats.consecutive_errors += 1
    _plugin_log(stats.name).error("dropped %d records: %s", records, reason)


def output_retries_exhausted(stats: OutputStats, records: int, reason: str) -> None:
    stats.retries_failed += 1
    stats.retry_failure_times.append(time.monotonic())
    output_dropped(stats, records, f"retry limit reached ({reason})")


def output_delivered(stats: OutputStats, records: int, nbytes: int) -> None:
    stats.proc_records += records
    stats.proc_bytes += nbytes
    stats.consecutive_errors = 0


def reload_done(count: int, source: str) -> None:
    REGISTRY.reloads = count
    _plugin_log("reload").info("configuration reloaded from %s (reload %d)", source, count)


def reload_refused(err: Exception) -> None:
    REGISTRY.reloads_refused += 1
    # A ConfigError names file:line and key itself; anything else a plugin raised gets its type.
    what = str(err) if isinstance(err, ConfigError) else f"{type(err).__name__}: {err}"
    _plugin_log("reload").error("reload refused, the running configuration stays: %s", what)
