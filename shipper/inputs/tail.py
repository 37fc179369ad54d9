"""The `tail` input plugin: its key table and `create` (the tail core is shipper/tail/; the
Ray handlers it uses come from shipper/ray/, which shipper/tail/ never imports)."""

from __future__ import annotations

import logging

from shipper.config.model import ConfigError, Section
from shipper.config.schema import build
from shipper.parsers.config import ParserSet
from shipper.parsers.inputs import input_factory, refuse_old_tail_keys
from shipper.ray.handler import handler_factory
from shipper.ray.multiline import NOT_IMPLEMENTED, PARSERS
from shipper.tail.input import TailInput
from shipper.tail.options import TailOptions

__all__ = ["TailOptions", "create"]

log = logging.getLogger(__name__)

_CONTAINER = frozenset({"docker", "cri"})  # joined by shipper/parsers (input_factory)


def create(section: Section, *, name: str, parsers: ParserSet) -> TailInput:
    refuse_old_tail_keys(section)
    opts = build(TailOptions, section)
    _check_multiline(section, opts.multiline_parser)
    factory = handler_factory(
        ray_metadata=opts.ray_metadata, multiline=opts.multiline_parser, tz_offset=opts.time_offset
    )
    factory = input_factory(factory, section, opts.multiline_parser, parsers)
    return TailInput(name=name, opts=opts, factory=factory)


def _check_multiline(section: Section, names: tuple[str, ...]) -> None:
    prop = section.get("multiline.parser")
    line = prop.line if prop else section.line
    for parser in names:
        low = parser.strip().lower()
        if low not in PARSERS | NOT_IMPLEMENTED:
            raise ConfigError(
                f"unknown multiline parser '{parser}' (tail knows "
                f"{', '.join(sorted(PARSERS | _CONTAINER))}; a [MULTILINE_PARSER] works in the "
                "multiline filter)",
                file=section.file,
                line=line,
                key="multiline.parser",
            )
        if low in NOT_IMPLEMENTED - _CONTAINER:
            # accepted so that a Fluent Bit config runs, but said out loud
            log.warning(
                "%s:%d: multiline.parser %s is accepted but joins nothing on tail (tail joins "
                "with python, ray, docker and cri; go and java work in the multiline filter)",
                section.file,
                line,
                parser,
            )
