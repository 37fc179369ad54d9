"""Hot reload: the old pipeline hands over to a new, already validated one.

Order matters. The old inputs stop reading; their outputs deliver what is in flight (up to
Grace); then each tail input of the new pipeline adopts the open files of the old input that
follows the same Path, at their acknowledged offsets. Only then do the old outputs stop and
the old inputs close, and the new pipeline starts. So:
  - nothing is lost: a line not acknowledged is read again by the successor;
  - nothing is doubled: an acknowledged line is never read again, and multi-line records the
    old handlers still held are not emitted by them but rebuilt by the new handlers;
  - files keep their descriptors: a file rotated or deleted meanwhile is still read to its end.
If Grace runs out, what was not acknowledged is read again (at-least-once, as at a restart).
"""

from __future__ import annotations

import asyncio
import logging

from shipper.pipeline import Pipeline
from shipper.plugins import Input
from shipper.tail.handover import key_of
from shipper.tail.input import TailInput

log = logging.getLogger(__name__)


def pair_inputs(old: list[Input], new: list[Input]) -> list[tuple[TailInput, TailInput]]:
    """Old tail input -> the new one following the same Path (first come, first paired)."""
    free = [n for n in new if isinstance(n, TailInput)]
    pairs: list[tuple[TailInput, TailInput]] = []
    for o in old:
        if not isinstance(o, TailInput):
            continue
        for n in free:
            if key_of(n.opts) == key_of(o.opts):
                pairs.append((o, n))
                free.remove(n)
                break
        else:
            log.info(
                "%s (Path %s) is not in the new configuration: it stops",
                o.name,
                ",".join(key_of(o.opts)),
            )
    return pairs


async def hand_over(old: Pipeline, tasks: list[asyncio.Task[None]], new: Pipeline) -> bool:
    """Stop `old` and give its files to `new` (not started yet). False if Grace ran out."""
    pairs = pair_inputs(old.inputs, new.inputs)
    handed = {id(o) for o, _ in pairs}
    for inp in old.inputs:
        inp.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    for inp in old.inputs:
        # An input that goes away delivers what its handlers hold; one that is handed over
        # must not: its successor reads those lines again and builds the records whole.
        if id(inp) not in handed:
            inp.finish(keep_held=True)
    grace = old.service.grace
    drained = True
    try:
        await asyncio.wait_for(asyncio.gather(*(o.drain() for o in old.outputs)), grace)
    except TimeoutError:
        drained = False
        log.warning(
            "reload: Grace (%.1fs) ran out with records in flight; the new "
            "configuration reads them again",
            grace,
        )
    # Before the old outputs stop: stopping releases the batch being sent, and its offsets
    # must not count as delivered.
    for o, n in pairs:
        n.adopt(o.export_state())
    for out in old.outputs:
        await out.stop()
    for inp in old.inputs:
        inp.close()
    return drained
