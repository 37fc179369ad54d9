"""Wiring: inputs -> filters -> router (Match) -> outputs, built from a config Document.

The router gives each chunk to every output whose Match covers its tag; each output holds the
chunk until it is delivered, and the chunk's acknowledgement reaches the input only when all
of them let go. Building validates the whole configuration before anything is read.

Two kinds of filter need more than `apply` (see filters/common.py). A splitting filter
(rewrite_tag) re-emits records under new tags: each copy is a chunk of its own that enters
the pipeline again and holds the original chunk until it is delivered, so the original's
acknowledgement (the stored offset) waits for every copy. A waiting filter (kubernetes) may
need a lookup before it can apply to a tag: the chunk is parked, in order, with every chunk
after it, until the lookup completes (or times out), so the inputs never block.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from shipper import telemetry
from shipper.chunk import Chunk, Record
from shipper.config.model import ConfigError, Document, Section
from shipper.config.schema import build
from shipper.config.service import ServiceOptions
from shipper.filters.common import Resourceful, Splitting, Waiting
from shipper.outputs.base import Output
from shipper.parsers.config import load_parsers
from shipper.plugins import Context, Filter, Input, registry

log = logging.getLogger(__name__)

_LEVELS = {
    "off": logging.CRITICAL + 10,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}


def service_of(doc: Document) -> ServiceOptions:
    sections = doc.of_kind("service")
    if not sections:
        return ServiceOptions()
    merged = Section(
        "service", tuple(p for s in sections for p in s.props), sections[0].file, sections[0].line
    )
    return build(ServiceOptions, merged)


def log_level(name: str) -> int:
    return _LEVELS.get(name.lower(), logging.INFO)


# Copies re-emitted from copies (two rewrite_tag filters feeding each other) stop here.
MAX_REEMIT_DEPTH = 8


def _releaser(original: Chunk) -> Callable[[Chunk], None]:
    def on_done(_copy: Chunk) -> None:
        original.release()

    return on_done


@dataclass(slots=True)
class _Step:
    flt: Filter
    stats: telemetry.FilterStats
    split: Splitting | None
    wait: Waiting | None


@dataclass(slots=True)
class _Parked:
    chunk: Chunk
    index: int  # the filter it waits for (or, without `wait`, where it resumes)
    wait: asyncio.Future[None] | None


@dataclass(slots=True)
class Pipeline:
    service: ServiceOptions
    inputs: list[Input]
    filters: list[Filter]
    outputs: list[Output]
    _steps: list[_Step] = field(default_factory=list)
    _parked: collections.deque[_Parked] = field(default_factory=collections.deque)
    _drainer: asyncio.Task[None] | None = None
    _depth: int = 0

    def __post_init__(self) -> None:
        self._steps = [
            _Step(
                f,
                telemetry.REGISTRY.filter(f.name),
                f if isinstance(f, Splitting) else None,
                f if isinstance(f, Waiting) else None,
            )
            for f in self.filters
        ]

    @classmethod
    def build(cls, doc: Document, *, outputs: Sequence[Output] = ()) -> Pipeline:
        """Validate every section and build every plugin; ConfigError on the first problem.
        `outputs`: built in code, after the document's own (`shipper tail`'s terminal)."""
        service = service_of(doc)
        parsers = load_parsers(doc)  # every [PARSER] and Parsers_File, validated
        counters: Counter[str] = Counter()
        built: dict[str, list[object]] = {"input": [], "filter": [], "output": []}
        for section in doc.sections:
            if section.kind not in built:
                continue  # [PARSER]/[MULTILINE_PARSER]: load_parsers built them
            plugin = section.plugin
            table = registry(section.kind)
            if not plugin:
                raise ConfigError(
                    f"[{section.kind.upper()}] section without Name",
                    file=section.file,
                    line=section.line,
                    key="Name",
                )
            if plugin not in table:
                prop = section.get("name")
                known = ", ".join(sorted(table)) or "none"
                raise ConfigError(
                    f"unknown {section.kind} plugin '{plugin}' (known: {known})",
                    file=section.file,
                    line=prop.line if prop else section.line,
                    key="Name",
                )
            alias = section.get("alias")
            name = alias.value.strip() if alias else f"{plugin}.{counters[plugin]}"
            counters[plugin] += 1
            instance = table[plugin](section, Context(service=service, name=name, parsers=parsers))
            level = section.get("log_level")
            if level is not None:
                logging.getLogger(f"shipper.{name}").setLevel(log_level(level.value.strip()))
            built[section.kind].append(instance)
        built["output"] += outputs
        if not built["input"]:
            raise ConfigError("no [INPUT] section", file=doc.source)
        if not built["output"]:
            raise ConfigError("no [OUTPUT] section", file=doc.source)
        return cls(
            service,
            cast(list[Input], built["input"]),
            cast(list[Filter], built["filter"]),
            cast(list[Output], built["output"]),
        )

    def emit(self, chunk: Chunk) -> None:
        """Filters, then route to every matching output, then drop the router's own hold."""
        if self._parked:  # behind a chunk that waits: keep the order
            self._parked.append(_Parked(chunk, 0, None))
            for step in self._steps:
                if step.wait is not None and step.flt.matcher.matches(chunk.tag):
                    step.wait.prefetch(chunk.tag)  # its lookup runs while it queues
            return
        parked = self._run(chunk, 0, waited=False)
        if parked is not None:
            self._parked.append(parked)
            if self._drainer is None or self._drainer.done():
                self._drainer = asyncio.get_running_loop().create_task(self._unpark())

    def _run(self, chunk: Chunk, start: int, *, waited: bool) -> _Parked | None:
        steps = self._steps
        for i in range(start, len(steps)):
            step = steps[i]
            flt = step.flt
            if flt is chunk.emitter or not flt.matcher.matches(chunk.tag):
                continue
            if step.wait is not None and not (waited and i == start):
                pending = step.wait.ready(chunk.tag)
                if pending is not None:
                    return _Parked(chunk, i, pending)
            before = chunk.count
            if step.split is not None:
                kept, copies = step.split.split(chunk.records, chunk.tag)
                chunk.records = kept
                self._reemit(chunk, before, copies, step)
            else:
                chunk.records = flt.apply(chunk.records, chunk.tag)
            stats, after = step.stats, chunk.count
            stats.records += before
            if after < before:
                stats.drop_records += before - after
            elif after > before:
                stats.add_records += after - before
            if not after:
                break
        self._route(chunk)
        return None

    def _route(self, chunk: Chunk) -> None:
        if chunk.count:
            tag = chunk.tag
            for out in self.outputs:
                if out.matcher.matches(tag):
                    out.submit(chunk)
        chunk.release()

    def _reemit(
        self, chunk: Chunk, count: int, copies: list[tuple[str, list[Record]]], step: _Step
    ) -> None:
        if not copies:
            return
        if self._depth >= MAX_REEMIT_DEPTH:
            log.error(
                "[%s] records re-emitted %d times in a row (rewrite_tag rules feed each other):"
                " %d records stay under tag %s",
                step.flt.name,
                self._depth,
                sum(len(r) for _, r in copies),
                chunk.tag,
            )
            chunk.records = chunk.records + [r for _, recs in copies for r in recs]
            return
        self._depth += 1
        try:
            for tag, records in copies:
                # bytes only for the outputs' batch sizes: the input accounts for the original
                nbytes = max(1, chunk.nbytes * len(records) // max(1, count))
                copy = Chunk(tag, records, nbytes, on_done=_releaser(chunk))
                copy.emitter = step.flt
                chunk.hold()  # released when the copy is delivered everywhere
                step.stats.emit_records += len(records)
                self.emit(copy)
        finally:
            self._depth -= 1

    async def _unpark(self) -> None:
        parked = self._parked
        while parked:
            head = parked[0]
            if head.wait is not None:
                await asyncio.wait({head.wait})  # completes by the filter's own timeout
            try:
                nxt = self._run(head.chunk, head.index, waited=head.wait is not None)
            except Exception:  # a bug in a filter must not stall every chunk behind this one
                log.exception("a filter failed on a chunk of %s: routed as it is", head.chunk.tag)
                self._route(head.chunk)
                nxt = None
            if nxt is None:
                parked.popleft()
            else:
                parked[0] = nxt

    async def start(
        self, *, on_fatal: Callable[[str], None] | None = None
    ) -> list[asyncio.Task[None]]:
        for out in self.outputs:
            out.on_fatal_call(on_fatal)
            await out.start()
        for flt in self.filters:
            if isinstance(flt, Resourceful):
                await flt.start()
        return [
            asyncio.create_task(inp.run(self.emit), name=f"input-{inp.name}") for inp in self.inputs
        ]

    async def shutdown(
        self, tasks: list[asyncio.Task[None]], *, grace: float, keep_held: bool = True
    ) -> bool:
        """Stop reading, deliver what is in flight within `grace`, store offsets.

        Returns False when Grace ran out before everything was delivered (what was not
        acknowledged is not stored, so a DB re-reads it next time).
        """
        for inp in self.inputs:
            inp.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for inp in self.inputs:
            inp.finish(keep_held=keep_held)
        drained = True
        try:
            await asyncio.wait_for(self._settle(), grace)
        except TimeoutError:
            drained = False
            log.warning(
                "Grace (%.1fs) ran out with records still in flight; their offsets are not stored",
                grace,
            )
        for out in self.outputs:
            await out.stop()
        for flt in self.filters:
            if isinstance(flt, Resourceful):
                await flt.close()
        for inp in self.inputs:
            inp.close()
        return drained

    async def _settle(self) -> None:
        if self._drainer is not None:
            await self._drainer  # parked chunks reach the outputs first
        await asyncio.gather(*(o.drain() for o in self.outputs))
