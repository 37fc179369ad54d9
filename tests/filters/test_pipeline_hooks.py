"""The pipeline's side of rewrite_tag (copies are chunks that hold their original until they
are delivered; a filter's own copies pass it; rules feeding each other stop) and of waiting
filters (a chunk waits for its filter's lookup, every later chunk waits behind it, in order)."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

from shipper.chunk import Chunk, Record
from shipper.config.classic import parse_classic_text
from shipper.config.service import ServiceOptions
from shipper.match import Matcher
from shipper.pipeline import Pipeline
from shipper.plugins import FILTERS, Context, Filter


class Out:
    """An output that holds what it is given until the test delivers it."""

    def __init__(self, match: str) -> None:
        self.matcher = Matcher.build(match, None)
        self.held: list[Chunk] = []

    def submit(self, chunk: Chunk) -> None:
        chunk.hold()
        self.held.append(chunk)

    def got(self) -> list[tuple[str, list[Record]]]:
        return [(c.tag, list(c.records)) for c in self.held]

    def deliver(self) -> None:
        held, self.held = self.held, []
        for c in held:
            c.release()


def filters(text: str) -> list[Filter]:
    doc = parse_classic_text(textwrap.dedent(text), file="f.conf", env={})
    return [
        FILTERS[s.plugin](s, Context(service=ServiceOptions(), name=f"{s.plugin}.{i}"))
        for i, s in enumerate(doc.sections)
    ]


def pipeline(flts: list[Filter], *outs: Out) -> Pipeline:
    return Pipeline(ServiceOptions(), [], flts, list(outs))  # type: ignore[arg-type]


def test_original_waits_for_every_copy() -> None:
    flts = filters("""
        [FILTER]
            Name rewrite_tag
            Match app.*
            Rule $log ^E err.$TAG true
            Rule $log ^W warn.$TAG false
    """)
    main, err, warn = Out("app.*"), Out("err.*"), Out("warn.*")
    pipe = pipeline(flts, main, err, warn)
    done: list[Chunk] = []
    chunk = Chunk("app.x", [{"log": "E1"}, {"log": "I2"}, {"log": "W3"}], 30, done.append)
    pipe.emit(chunk)
    assert main.got() == [("app.x", [{"log": "E1"}, {"log": "I2"}])]
    assert err.got() == [("err.app.x", [{"log": "E1"}])]
    assert warn.got() == [("warn.app.x", [{"log": "W3"}])]
    main.deliver()
    err.deliver()
    assert done == []  # the warn copy is not delivered yet
    warn.deliver()
    assert done == [chunk]


def test_own_copies_pass_and_loops_stop() -> None:
    flts = filters("""
        [FILTER]
            Name rewrite_tag
            Match *
            Rule $log . x.$TAG true
    """)
    out = Out("*")
    pipeline(flts, out).emit(Chunk("t", [{"log": "a"}], 1))
    assert sorted(t for t, _ in out.got()) == ["t", "x.t"]  # the copy is not rewritten again
    flts = filters("""
        [FILTER]
            Name rewrite_tag
            Match a.*
            Rule $log . b.$TAG false
        [FILTER]
            Name rewrite_tag
            Match b.*
            Rule $log . a.$TAG false
    """)
    out = Out("*")
    done: list[Chunk] = []
    pipeline(flts, out).emit(Chunk("a.t", [{"log": "a"}], 1, done.append))
    ((tag, recs),) = out.got()  # stopped after MAX_REEMIT_DEPTH, the record kept, not lost
    assert recs == [{"log": "a"}] and tag.endswith("a.t") and tag.count("a.b.") == 4
    out.deliver()
    assert len(done) == 1


class Lookup:
    """A waiting filter: tag -> a future the test completes."""

    def __init__(self) -> None:
        self.name = "lookup.0"
        self.matcher = Matcher.build("*", None)
        self.known: dict[str, str] = {}
        self.pending: dict[str, asyncio.Future[None]] = {}
        self.prefetched: list[str] = []

    def ready(self, tag: str) -> asyncio.Future[None] | None:
        if tag in self.known:
            return None
        return self.pending.setdefault(tag, asyncio.get_running_loop().create_future())

    def prefetch(self, tag: str) -> None:
        self.prefetched.append(tag)

    def apply(self, records: list[Record], tag: str) -> list[Record]:
        return [{**r, "meta": self.known.get(tag)} for r in records]

    def learn(self, tag: str, value: str) -> None:
        self.known[tag] = value
        self.pending.pop(tag).set_result(None)


async def test_waiting_filter_keeps_order_and_never_blocks_the_caller() -> None:
    look = Lookup()
    out = Out("*")
    pipe = pipeline([look], out)  # type: ignore[list-item]
    look.known["b"] = "B"
    pipe.emit(Chunk("b", [{"n": 0}], 1))  # known: straight through
    pipe.emit(Chunk("a", [{"n": 1}], 1))  # waits
    pipe.emit(Chunk("b", [{"n": 2}], 1))  # known, but behind "a": waits too
    pipe.emit(Chunk("a", [{"n": 3}], 1))
    assert [r[0]["n"] for _, r in out.got()] == [0]
    assert look.prefetched == ["b", "a"]  # queued chunks start their lookups at once
    look.learn("a", "A")
    for _ in range(50):
        await asyncio.sleep(0)
        if len(out.got()) == 4:
            break
    got: list[tuple[str, Any]] = [(t, r[0]["meta"]) for t, r in out.got()]
    assert got == [("b", "B"), ("a", "A"), ("b", "B"), ("a", "A")]
    assert [r[0]["n"] for _, r in out.got()] == [0, 1, 2, 3]
