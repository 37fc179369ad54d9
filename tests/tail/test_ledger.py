"""AckLedger in process: the committed position is always the highest end up to which every
range is acknowledged, whatever order the acknowledgements come in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.tail.ledger import AckLedger, PassAck, RangeAck

pytestmark = pytest.mark.unit


def _contiguous(ends: list[int], done: set[int], start: int) -> int:
    acked = start
    for i, end in enumerate(ends):
        if i not in done:
            break
        acked = end
    return acked


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=30),
    order=st.randoms(use_true_random=False),
    start=st.integers(min_value=0, max_value=1000),
    batched=st.booleans(),
)
def test_acked_is_the_highest_contiguous_end(
    sizes: list[int], order: object, start: int, batched: bool
) -> None:
    released: list[int] = []
    ledger: AckLedger[str] = AckLedger("src", start, lambda owner, cost: released.append(cost))
    ends: list[int] = []
    acks: list[RangeAck[str]] = []
    pos = start
    for i, size in enumerate(sizes):
        pos += size
        ends.append(pos)
        acks.append(ledger.add(pos, cost=i + 1))
    assert ledger.end == pos and ledger.acked == start
    idx = list(range(len(acks)))
    order.shuffle(idx)  # type: ignore[attr-defined]
    done: set[int] = set()
    for i in idx:
        acks[i](None)
        done.add(i)
        assert ledger.acked == _contiguous(ends, done, start)
    assert ledger.acked == pos and not ledger.pending
    assert sorted(released) == list(range(1, len(sizes) + 1))  # each cost comes back once


def test_a_pass_ack_settles_ranges_of_several_ledgers_with_one_call() -> None:
    a: AckLedger[str] = AckLedger("a")
    b: AckLedger[str] = AckLedger("b")
    calls: list[tuple[list[str], int]] = []
    first = a.add(10)
    batch: PassAck[str] = PassAck(
        lambda acks, cost: calls.append(([x.ledger.owner for x in acks], cost))
    )
    batch.add(a, 25, 100)
    batch.add(b, 7, 50)
    batch(None)
    assert calls == [(["a", "b"], 150)]
    assert (a.acked, b.acked) == (0, 7)  # a's first range is not acknowledged yet
    first(None)
    assert a.acked == 25


def test_ranges_from_before_a_restart_do_not_move_the_position() -> None:
    released: list[int] = []
    ledger: AckLedger[str] = AckLedger("f", 0, lambda owner, cost: released.append(cost))
    old = ledger.add(500, cost=9)
    ledger.restart(0)  # truncated
    new = ledger.add(20, cost=1)
    old(None)
    assert ledger.acked == 0 and released == [9]  # its budget comes back all the same
    new(None)
    assert ledger.acked == 20
