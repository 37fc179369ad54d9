"""Wiring: inputs -> filters -> router (Match) -> outputs, built from a config Document.

The router gives each chunk to every output whose Match covers its tag; each output holds the
chunk until it is delivered, and the chunk's acknowledgement reaches the input only when all
of them let go. Building validates the whole configuration before anything is read.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from shipper.chunk import Chunk
from shipper.config.model import ConfigError, Document, Section
from shipper.config.schema import build
from shipper.config.service import ServiceOptions
from shipper.outputs.base import Output
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


@dataclass(slots=True)
class Pipeline:
    service: ServiceOptions
    inputs: list[Input]
    filters: list[Filter]
    outputs: list[Output]

    @classmethod
    def build(cls, doc: Document, *, outputs: Sequence[Output] = ()) -> Pipeline:
        """Validate every section and build every plugin; ConfigError on the first problem.
        `outputs`: built in code, after the document's own (`shipper tail`'s terminal)."""
        service = service_of(doc)
        counters: Counter[str] = Counter()
        built: dict[str, list[object]] = {"input": [], "filter": [], "output": []}
        for section in doc.sections:
            if section.kind not in built:
                continue  # parsers: built-in here, their sections are accepted as written
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
            instance = table[plugin](section, Context(service=service, name=name))
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
        tag = chunk.tag
        for flt in self.filters:
            if flt.matcher.matches(tag):
                chunk.records = flt.apply(chunk.records, tag)
        if chunk.count:
            for out in self.outputs:
                if out.matcher.matches(tag):
                    out.submit(chunk)
        chunk.release()

    async def start(
        self, *, on_fatal: Callable[[str], None] | None = None
    ) -> list[asyncio.Task[None]]:
        for out in self.outputs:
            out.on_fatal = on_fatal
            await out.start()
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
            await asyncio.wait_for(asyncio.gather(*(o.drain() for o in self.outputs)), grace)
        except TimeoutError:
            drained = False
            log.warning(
                "Grace (%.1fs) ran out with records still in flight; their offsets are not stored",
                grace,
            )
        for out in self.outputs:
            await out.stop()
        for inp in self.inputs:
            inp.close()
        return drained
