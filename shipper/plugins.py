"""The plugin table: one row per plugin, (kind, Fluent Bit name, module, key table).

A plugin's module has a `create` function and its key table (an options dataclass, see
config/schema.opt), which validates its section and is what `shipper -o NAME -h` shows. The
keys every plugin of a kind accepts (Match, Alias, Retry_Limit, Workers...) are declared once
(config/schema: InputCommon, FilterCommon, OutputCommon). Modules are imported only when a
configuration uses them (aiohttp alone is slow to import).

`create` by kind:
  input   create(section, *, name) -> Input
  filter  create(section, *, name, matcher) -> Filter
  output  create(section, *, name, matcher, delivery) -> Output
and `parsers` (the config's [PARSER]s) too where the row says so.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shipper.chunk import Chunk, Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import COMMON, OutputCommon, build
from shipper.config.service import ServiceOptions
from shipper.match import Matcher
from shipper.outputs.base import Delivery
from shipper.parsers.config import ParserSet

log = logging.getLogger(__name__)


class Input(Protocol):
    name: str

    async def run(self, emit: Callable[[Chunk], None]) -> None: ...
    def stop(self) -> None: ...
    def finish(self, *, keep_held: bool) -> None: ...
    def close(self) -> None: ...


class Filter(Protocol):
    name: str
    matcher: Matcher

    def apply(self, records: list[Record], tag: str) -> list[Record]: ...


@dataclass(frozen=True, slots=True)
class Plugin:
    kind: str  # input, filter, output
    name: str  # as a config names it (Name), lower case
    module: str  # has `create` (see above) ...
    options: str  # ... and this key table class
    parsers: bool = False  # its create() also takes the config's parsers


PLUGINS: tuple[Plugin, ...] = (
    Plugin("input", "tail", "shipper.inputs.tail", "TailOptions", parsers=True),
    Plugin("input", "stdin", "shipper.inputs.stdin", "StdinOptions", parsers=True),
    Plugin("filter", "modify", "shipper.filters.modify", "ModifyOptions"),
    Plugin("filter", "record_modifier", "shipper.filters.record_modifier", "RecordModifierOptions"),
    Plugin("filter", "grep", "shipper.filters.grep", "GrepOptions"),
    Plugin("filter", "parser", "shipper.filters.parser", "ParserFilterOptions", parsers=True),
    Plugin("filter", "multiline", "shipper.filters.multiline", "MultilineFilterOptions", True),
    Plugin("filter", "nest", "shipper.filters.nest", "NestOptions"),
    Plugin("filter", "rewrite_tag", "shipper.filters.rewrite_tag", "RewriteTagOptions"),
    Plugin("filter", "throttle", "shipper.filters.throttle", "ThrottleOptions"),
    Plugin("filter", "kubernetes", "shipper.filters.kubernetes", "KubernetesOptions"),
    Plugin("output", "stdout", "shipper.outputs.stdout", "StdoutOptions"),
    Plugin("output", "http", "shipper.outputs.http", "HttpOutputOptions"),
    Plugin("output", "loki", "shipper.outputs.loki", "LokiOptions"),
    Plugin("output", "es", "shipper.outputs.es", "EsOptions"),
    Plugin("output", "opentelemetry", "shipper.outputs.otlp", "OtlpOptions"),
    Plugin("output", "file", "shipper.outputs.file", "FileOptions"),
    Plugin("output", "null", "shipper.outputs.null", "NullOptions"),
    Plugin("output", "counter", "shipper.outputs.counter", "CounterOptions"),
    Plugin("output", "forward", "shipper.outputs.forward", "ForwardOptions"),
    Plugin("output", "kafka", "shipper.outputs.kafka", "KafkaOptions"),
)


@dataclass(frozen=True, slots=True)
class Context:
    """What builders may need besides the section."""

    service: ServiceOptions
    name: str  # instance name, e.g. tail.0
    parsers: ParserSet = field(default_factory=ParserSet)  # [PARSER]s and Parsers_File


Builder = Callable[[Section, Context], Any]


def _build(plugin: Plugin, section: Section, ctx: Context) -> Any:
    """Validate the section's common keys, then let the plugin's module build it."""
    common = build(COMMON[plugin.kind], section, strict=False)
    mod = importlib.import_module(plugin.module)
    extra: dict[str, Any] = {"parsers": ctx.parsers} if plugin.parsers else {}
    if plugin.kind == "input":
        return mod.create(section, name=ctx.name, **extra)
    matcher = matcher_of(section)
    if plugin.kind == "filter":
        return mod.create(section, name=ctx.name, matcher=matcher, **extra)
    delivery = delivery_of(common, ctx)
    return mod.create(section, name=ctx.name, matcher=matcher, delivery=delivery, **extra)


def registry(kind: str) -> dict[str, Builder]:
    """Plugin name -> builder, for one kind."""
    return {p.name: functools.partial(_build, p) for p in PLUGINS if p.kind == kind}


INPUTS = registry("input")
FILTERS = registry("filter")
OUTPUTS = registry("output")


def delivery_of(common: OutputCommon, ctx: Context) -> Delivery:
    return Delivery(
        flush=ctx.service.flush,
        retry_limit=common.retry_limit,
        backoff_base=ctx.service.scheduler_base,
        backoff_cap=ctx.service.scheduler_cap,
        workers=common.workers,
    )


def matcher_of(section: Section) -> Matcher:
    match = section.get("match")
    regex = section.get("match_regex")
    if regex is not None:
        try:
            return Matcher.build(None, regex.value.strip())
        except Exception as exc:  # re.error
            raise ConfigError(
                f"bad regular expression: {exc}", file=regex.file, line=regex.line, key=regex.key
            ) from None
    if match is None:
        log.warning(
            "%s:%d: [%s] %s has no Match: it will receive no records",
            section.file,
            section.line,
            section.kind.upper(),
            section.plugin,
        )
    return Matcher.build(match.value.strip() if match else None, None)


def key_table_of(kind: str, plugin: str) -> type[Any] | None:
    """The key table of a plugin (`shipper -i tail -h`), or the [SERVICE] one."""
    if kind == "service":
        return ServiceOptions
    for p in PLUGINS:
        if p.kind == kind and p.name == plugin.lower():
            table: type[Any] = getattr(importlib.import_module(p.module), p.options)
            return table
    return None
