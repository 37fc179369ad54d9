"""The plugin registry: Fluent Bit plugin names -> how to build them from a Section.

Each builder validates its section against the plugin's key table and returns a ready,
not yet started, instance. New plugins register here and nowhere else.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shipper.chunk import Chunk, Record
from shipper.config.model import ConfigError, Prop, Section
from shipper.config.schema import build, parse_int
from shipper.config.service import ServiceOptions
from shipper.lines import HandlerFactory
from shipper.match import Matcher
from shipper.outputs.base import Delivery, Output
from shipper.outputs.stdout import StdoutOptions, StdoutOutput
from shipper.tail.input import TailInput
from shipper.tail.options import TailOptions

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
class Context:
    """What builders may need besides the section."""

    service: ServiceOptions
    name: str  # instance name, e.g. tail.0


def _handler_factory(opts: TailOptions) -> HandlerFactory:
    from shipper.ray.handler import handler_factory

    return handler_factory(
        ray_metadata=opts.ray_metadata, multiline=opts.multiline_parser, tz_offset=opts.time_offset
    )


def _multiline_names(section: Section, opts: TailOptions) -> None:
    known = {"python", "ray", "docker", "cri", "go", "java"}
    for name in opts.multiline_parser:
        if name.lower() not in known:
            prop = section.get("multiline.parser")
            raise ConfigError(
                f"unknown multiline parser '{name}' (known: python, ray)",
                file=section.file,
                line=prop.line if prop else section.line,
                key="multiline.parser",
            )


def build_tail(section: Section, ctx: Context) -> Input:
    opts = build(TailOptions, section)
    _multiline_names(section, opts)
    return TailInput(name=ctx.name, opts=opts, factory=_handler_factory(opts))


def parse_retry_limit(prop: Prop | None) -> int | None:
    """Retry_Limit: a number, `false`/`no_limits` (for ever), `no_retries` (0)."""
    if prop is None:
        return None
    text = prop.value.strip().lower()
    if text in ("false", "no_limits", "off"):
        return None
    if text == "no_retries":
        return 0
    try:
        value = parse_int(text)
    except ValueError as exc:
        raise ConfigError(
            f"bad value: {exc} (or false, no_limits, no_retries)",
            file=prop.file,
            line=prop.line,
            key=prop.key,
        ) from None
    if value < 0:
        raise ConfigError("must be 0 or more", file=prop.file, line=prop.line, key=prop.key)
    return value


def parse_workers(prop: Prop | None) -> int:
    """Workers: concurrent deliveries of one output (1 to 64)."""
    if prop is None:
        return 1
    try:
        value = parse_int(prop.value)
    except ValueError as exc:
        raise ConfigError(
            f"bad value: {exc}", file=prop.file, line=prop.line, key=prop.key
        ) from None
    if not 1 <= value <= 64:
        raise ConfigError("must be between 1 and 64", file=prop.file, line=prop.line, key=prop.key)
    return value


def delivery_of(section: Section, ctx: Context) -> Delivery:
    return Delivery(
        flush=ctx.service.flush,
        retry_limit=parse_retry_limit(section.get("retry_limit")),
        backoff_base=ctx.service.scheduler_base,
        backoff_cap=ctx.service.scheduler_cap,
        workers=parse_workers(section.get("workers")),
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


def build_stdout(section: Section, ctx: Context) -> Output:
    opts = build(StdoutOptions, section)
    if opts.format == "msgpack":
        prop = section.get("format")
        raise ConfigError(
            "Format msgpack is not supported here: use json_lines or json",
            file=section.file,
            line=prop.line if prop else section.line,
            key="Format",
        )
    return StdoutOutput(
        opts=opts, name=ctx.name, matcher=matcher_of(section), delivery=delivery_of(section, ctx)
    )


INPUTS: dict[str, Callable[[Section, Context], Input]] = {"tail": build_tail}
FILTERS: dict[str, Callable[[Section, Context], Filter]] = {}
OUTPUTS: dict[str, Callable[[Section, Context], Output]] = {"stdout": build_stdout}


def registry(kind: str) -> dict[str, Callable[[Section, Context], Any]]:
    tables: dict[str, dict[str, Callable[[Section, Context], Any]]] = {
        "input": INPUTS,
        "filter": FILTERS,
        "output": OUTPUTS,
    }
    return tables[kind]


# -- plugins imported only when a config uses them (aiohttp alone costs 0.15 s at start) ------
def _lazy_output(module: str) -> Callable[[Section, Context], Output]:
    def build_output(section: Section, ctx: Context) -> Output:
        mod = importlib.import_module(module)
        out: Output = mod.create(
            section, name=ctx.name, matcher=matcher_of(section), delivery=delivery_of(section, ctx)
        )
        return out

    return build_output


def _lazy_filter(module: str) -> Callable[[Section, Context], Filter]:
    def build_filter(section: Section, ctx: Context) -> Filter:
        flt: Filter = importlib.import_module(module).create(
            section, name=ctx.name, matcher=matcher_of(section)
        )
        return flt

    return build_filter


def build_stdin(section: Section, ctx: Context) -> Input:
    from shipper.inputs.stdin import StdinInput

    return StdinInput.from_section(section, ctx.name)


INPUTS["stdin"] = build_stdin
OUTPUTS.update(
    {
        name: _lazy_output(f"shipper.outputs.{mod}")
        for name, mod in [
            ("http", "http"),
            ("loki", "loki"),
            ("es", "es"),
            ("opentelemetry", "otlp"),
        ]
    }
)
FILTERS.update(
    {
        name: _lazy_filter(f"shipper.filters.{name}")
        for name in ("modify", "record_modifier", "grep")
    }
)

# The key table of each plugin ("module:class"), for `shipper -i tail -h`.
KEY_TABLES: dict[str, dict[str, str]] = {
    "input": {
        "tail": "shipper.tail.options:TailOptions",
        "stdin": "shipper.inputs.stdin:StdinOptions",
    },
    "output": {
        "stdout": "shipper.outputs.stdout:StdoutOptions",
        "http": "shipper.outputs.http:HttpOutputOptions",
        "loki": "shipper.outputs.loki:LokiOptions",
        "es": "shipper.outputs.es:EsOptions",
        "opentelemetry": "shipper.outputs.otlp:OtlpOptions",
    },
    "filter": {
        "modify": "shipper.filters.modify:ModifyOptions",
        "record_modifier": "shipper.filters.record_modifier:RecordModifierOptions",
        "grep": "shipper.filters.grep:GrepOptions",
    },
    "service": {"service": "shipper.config.service:ServiceOptions"},
}


def key_table_of(kind: str, plugin: str) -> type[Any] | None:
    ref = KEY_TABLES.get(kind, {}).get(plugin.lower())
    if ref is None:
        return None
    module, cls = ref.split(":")
    table: type[Any] = getattr(importlib.import_module(module), cls)
    return table
