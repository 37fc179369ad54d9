"""The `tail` input plugin: its key table and `create` (the tail core is shipper/tail/; the
Ray handlers it uses come from shipper/ray/, which shipper/tail/ never imports)."""

from __future__ import annotations

from shipper.config.model import ConfigError, Section
from shipper.config.schema import build
from shipper.ray.handler import handler_factory
from shipper.ray.multiline import NOT_IMPLEMENTED, PARSERS
from shipper.tail.input import TailInput
from shipper.tail.options import TailOptions

__all__ = ["TailOptions", "create"]


def create(section: Section, *, name: str) -> TailInput:
    opts = build(TailOptions, section)
    for parser in opts.multiline_parser:
        if parser.strip().lower() not in PARSERS | NOT_IMPLEMENTED:
            prop = section.get("multiline.parser")
            raise ConfigError(
                f"unknown multiline parser '{parser}' (known: {', '.join(sorted(PARSERS))})",
                file=section.file,
                line=prop.line if prop else section.line,
                key="multiline.parser",
            )
    factory = handler_factory(
        ray_metadata=opts.ray_metadata, multiline=opts.multiline_parser, tz_offset=opts.time_offset
    )
    return TailInput(name=name, opts=opts, factory=factory)
