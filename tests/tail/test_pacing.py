"""Reading that waits for acknowledgements (the output is the bottleneck, as inside a CPU
quota) is not idleness: no back-off, no write wake-up armed, and it resumes with a big pass
once a quarter of its window is free, not with a pass per acknowledgement (shipper/budget.py,
shipper/tail/pacing.py)."""

from __future__ import annotations

import asyncio

from shipper.budget import RESUME_FRACTION, InputBudget
from shipper.tail.pacing import (
    IDLE_TICK,
    MIN_TICK,
    PASS_READ,
    WINDOW,
    Pass,
    Wake,
    arm_wake,
    next_tick,
    per_file_read,
)
from shipper.telemetry import InputStats


def test_reading_fills_the_window_then_waits_for_a_quarter_of_it() -> None:
    woken: list[int] = []
    budget = InputBudget(
        limit=64 * 1024 * 1024,
        stats=InputStats("t"),
        wake=lambda: woken.append(budget.in_flight),
        window=WINDOW,
    )
    assert budget.room() == WINDOW
    budget.charge(WINDOW - 1)
    assert budget.room() == 1  # not waiting yet: reading goes on up to the window
    budget.charge(1)
    assert budget.room() <= 0  # full: wait
    budget.release(64 * 1024)  # one acknowledged chunk: not enough to read again
    assert woken == [] and budget.room() <= 0
    budget.release(WINDOW // RESUME_FRACTION - 64 * 1024)
    assert woken == [WINDOW - WINDOW // RESUME_FRACTION]  # a quarter free: wake the reader
    room = budget.room()
    assert room == WINDOW // RESUME_FRACTION
    # as much as a quarter of the window holds (records take ~4x their bytes), at most a pass
    assert per_file_read(room, 20, 32768) == min(PASS_READ, room // 4) // 20


def test_waiting_is_no_back_off_and_arms_no_wake() -> None:
    tick = MIN_TICK
    for _ in range(10):
        tick = next_tick(Pass.WAIT, tick, 20)
        assert not arm_wake(Pass.WAIT, tick)
    assert tick == MIN_TICK
    idle = MIN_TICK
    for _ in range(10):
        idle = next_tick(Pass.IDLE, idle, 20)
    assert idle == IDLE_TICK and arm_wake(Pass.IDLE, idle)


def test_a_tiny_mem_buf_limit_still_reads() -> None:
    budget = InputBudget(limit=1, stats=InputStats("t"), wake=lambda: None)
    assert budget.room() == 1
    budget.charge(1)
    assert budget.room() <= 0
    budget.release(1)
    assert budget.room() == 1


async def test_the_wake_ends_a_sleep_early_or_at_its_timeout() -> None:
    """Pacer's wait between passes: a set before or during the sleep ends it at once (a
    kick, an acknowledgement); else it lasts its seconds, and no timer is left behind."""
    loop = asyncio.get_running_loop()
    wake = Wake()
    wake.set()
    t0 = loop.time()
    await wake.sleep(5.0)  # already set
    assert loop.time() - t0 < 1.0
    wake.clear()
    assert not wake.is_set()
    loop.call_later(0.05, wake.set)
    t0 = loop.time()
    await wake.sleep(5.0)
    assert 0.04 <= loop.time() - t0 < 1.0 and wake.is_set()
    wake.clear()
    t0 = loop.time()
    await wake.sleep(0.1)  # nobody sets it
    assert loop.time() - t0 >= 0.09 and not wake.is_set()
    wake.set()  # after the sleep: nothing waits, nothing breaks
    assert wake.is_set()
