"""Reading that waits for acknowledgements (the output is the bottleneck, as inside a CPU
quota) is not idleness: no back-off, no write wake-up armed, and it resumes with a big pass
once a quarter of its window is free, not with a pass per acknowledgement (shipper/budget.py,
shipper/tail/pacing.py)."""

from __future__ import annotations

from shipper.budget import RESUME_FRACTION, InputBudget
from shipper.tail.pacing import (
    IDLE_TICK,
    MIN_TICK,
    PASS_READ,
    WINDOW,
    Pass,
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
