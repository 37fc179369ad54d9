"""The `ceiling` scenario: the highest live rate an agent sustains.

A step search over the live writer's rate (lines/s over --files files): each step is a whole
live run of its own (a fresh agent, --ceiling-duration seconds of writing). A step passes when
everything written was delivered (0 lost, 0 duplicated), the p99 write-to-emit latency is
under --ceiling-p99-ms and the writer itself kept to the rate. From --ceiling-start the rate
doubles while steps pass, halves while they fail, then bisects between the highest pass and
the lowest failure until they are within 15% or --ceiling-steps / --ceiling-budget run out.
The result row is the highest passing step (its latency, CPU and memory); every step is kept
in results.json (`extra.steps`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.scenarios import Run

CLOSE_ENOUGH = 1.15  # stop when the lowest failure is within 15% of the highest pass
# What the result row keeps of its own; every other field is the best step's.
_IDENTITY = frozenset(
    {"scenario", "variant", "agent", "repeat", "limits", "status", "note", "lines_per_s", "extra"}
)
WRITER_SLACK = 0.98  # the writer must have written at 98% of the offered rate


def passed(r: Run, offered: float, p99_ms: float) -> tuple[bool, str]:
    if r.status != "ok":
        return False, f"{r.status} {r.note}".strip()
    if r.lost or r.duplicated:
        return False, f"lost {r.lost}, dup {r.duplicated}"
    if r.p99_ms is None or r.p99_ms > p99_ms:
        return False, f"p99 {r.p99_ms} ms"
    if r.window_s and r.lines / r.window_s < WRITER_SLACK * offered:
        return False, f"the writer managed only {r.lines / r.window_s:,.0f} lines/s"
    return True, ""


def _round(rate: float) -> float:
    step = 1000.0 if rate >= 10_000 else 100.0
    return max(step, round(rate / step) * step)


def search(
    run: Run,
    step: Callable[[float], Run],
    *,
    start: float,
    steps: int,
    p99_ms: float,
    budget: float,
    step_s: float,
) -> None:
    """Fill `run` with the best passing step of the search (see the module docstring)."""
    began = time.monotonic()
    best: Run | None = None
    lo = hi = None
    rate = _round(start)
    log: list[dict[str, Any]] = []
    for _ in range(steps):
        if log and time.monotonic() - began + step_s > budget:
            run.note = "time budget reached"
            break
        r = step(rate)
        ok, why = passed(r, rate, p99_ms)
        log.append(
            {
                "rate": rate,
                "passed": ok,
                "why": why,
                "p99_ms": r.p99_ms,
                "lost": r.lost,
                "cpu_pct": r.cpu_pct,
                "peak_rss_mb": r.peak_rss_mb,
                "cg_peak_mb": r.cg_peak_mb,
                "failcnt": r.failcnt,
                "cgroup_removed": r.extra.get("cgroup_removed"),
            }
        )
        if ok:
            lo, best = rate, r
        else:
            hi = rate
        if lo is not None and hi is not None:
            if hi / lo <= CLOSE_ENOUGH:
                break
            rate = _round((lo + hi) / 2)
        else:
            rate = _round(rate * 2 if ok else rate / 2)
        if any(s["rate"] == rate for s in log):
            break
    run.extra["steps"] = log
    run.extra["lowest_failed_rate"] = hi
    if best is None:
        run.status = "incomplete"
        run.note = (run.note + "; no rate passed").strip("; ")
        run.lines_per_s = 0.0
        return
    for f in dataclasses.fields(best):  # the best step's figures, not the row's identity
        if f.name not in _IDENTITY:
            setattr(run, f.name, getattr(best, f.name))
    run.lines_per_s = lo
    run.extra["passed_rate"] = lo
    run.extra.update({k: v for k, v in best.extra.items() if k.startswith("cgroup")})
