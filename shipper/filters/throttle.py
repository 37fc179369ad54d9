"""The `throttle` filter (Fluent Bit's): at most `Rate` records per `Interval` on average over
a sliding window of `Window` intervals; records over it are dropped.

The window is a ring of `Window` panes, one per `Interval`, counting the records let through.
A record passes when the panes' total, with it, stays within `Rate` times the number of panes
(while fewer than `Window` intervals have passed since the first record, only those count:
Fluent Bit's slow start). One window per filter instance, over every tag it matches, as in
Fluent Bit. Dropped records are counted (shipper_filter_throttled_total, and
fluentbit_filter_drop_records_total) and are acknowledged with their chunk: offsets move past
them. Panes roll on the monotonic clock when records arrive (no timer); `Print_Status` logs
the rate each time an interval ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shipper import telemetry
from shipper.chunk import Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.match import Matcher

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleOptions:
    rate: float = opt(
        "Rate", "float", 1.0, help="Records per Interval, on average over the Window."
    )
    window: int = opt("Window", "int", 5, help="How many intervals the average spans.")
    interval: float = opt("Interval", "time", 1.0, help="Length of one pane: 1s, 1.5m, 0.5h.")
    print_status: bool = opt(
        "Print_Status", "bool", False, help="Log the rate and the limits every interval."
    )


class Window:
    """The ring of panes. `clock` is injectable so that tests step time exactly."""

    def __init__(
        self, *, rate: float, size: int, interval: float, clock: Callable[[], float]
    ) -> None:
        self.rate = rate
        self.size = size
        self.interval = interval
        self.clock = clock
        self.panes = [0] * size
        self.total = 0
        self.start: float | None = None
        self.index = 0  # intervals since start, of the current pane

    def roll(self) -> bool:
        """Move to the pane of now; True when at least one interval ended."""
        now = self.clock()
        if self.start is None:
            self.start = now
            return False
        index = int((now - self.start) // self.interval)
        if index <= self.index:
            return False
        for i in range(self.index + 1, min(index, self.index + self.size) + 1):
            slot = i % self.size
            self.total -= self.panes[slot]
            self.panes[slot] = 0
        if index - self.index > self.size:
            self.panes = [0] * self.size
            self.total = 0
        self.index = index
        return True

    def admit(self) -> bool:
        filled = min(self.index + 1, self.size)
        if self.total + 1 > self.rate * filled:
            return False
        self.panes[self.index % self.size] += 1
        self.total += 1
        return True

    def average(self) -> float:
        return self.total / min(self.index + 1, self.size)


class ThrottleFilter:
    plugin = "throttle"

    def __init__(
        self,
        *,
        name: str,
        matcher: Matcher,
        opts: ThrottleOptions,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.matcher = matcher
        self.opts = opts
        self.window = Window(rate=opts.rate, size=opts.window, interval=opts.interval, clock=clock)
        self.stats = telemetry.REGISTRY.filter(name)
        self.log = logging.getLogger(f"shipper.{name}")
        self.dropped_in_pane = 0

    def apply(self, records: list[Record], tag: str) -> list[Record]:
        win = self.window
        if win.roll() and self.opts.print_status:
            self.log.info(
                "%s: rate %.1f records per %gs over %d intervals (limit %g), %d dropped in the"
                " last interval",
                tag,
                win.average(),
                win.interval,
                win.size,
                win.rate,
                self.dropped_in_pane,
            )
            self.dropped_in_pane = 0
        kept = [r for r in records if win.admit()]
        dropped = len(records) - len(kept)
        if dropped:
            self.dropped_in_pane += dropped
            self.stats.count("throttled", dropped)
        return kept


def create(section: Section, *, name: str, matcher: Matcher) -> ThrottleFilter:
    opts = build(ThrottleOptions, section)
    for key, value in (("Rate", opts.rate), ("Window", opts.window)):
        if value <= 0:
            prop = section.get(key)
            raise ConfigError(
                "must be more than 0",
                file=section.file,
                line=prop.line if prop else section.line,
                key=key,
            )
    if opts.interval <= 0:
        prop = section.get("interval")
        raise ConfigError(
            "must be more than 0",
            file=section.file,
            line=prop.line if prop else section.line,
            key="Interval",
        )
    return ThrottleFilter(name=name, matcher=matcher, opts=opts)
