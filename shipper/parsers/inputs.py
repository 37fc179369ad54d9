"""What parsers add to an input's section: `Parser`, `multiline.parser docker, cri`, and the
refusal of in_tail's old multi-line keys. Inputs without any of them keep their handler
factory as it is (no wrapper, no per-line work)."""

from __future__ import annotations

from shipper.config.model import ConfigError, Section
from shipper.lines import HandlerFactory, LineHandler, SourceContext
from shipper.parsers.config import ParserSet
from shipper.parsers.container import KINDS
from shipper.parsers.formats import Parser
from shipper.parsers.handler import ContainerHandler, ParsingHandler

# in_tail's old multi-line keys: refused with what to write instead
_FIRSTLINE = (
    "the old multi-line mode is not supported: use the multiline filter with a "
    "[MULTILINE_PARSER] (its start_state rule is the first-line regex)"
)
_OLD_TAIL_KEYS = {
    "multiline": "the old multi-line mode is not supported: use multiline.parser (python, "
    "ray, docker, cri) or the multiline filter with a [MULTILINE_PARSER]",
    "parser_firstline": _FIRSTLINE,
    "docker_mode": "not supported: use multiline.parser docker (Docker's JSON lines, partial "
    "lines joined)",
    "docker_mode_flush": "not supported: use multiline.parser docker and Multiline_Flush",
    "docker_mode_parser": "not supported: use multiline.parser docker",
}


def refuse_old_tail_keys(section: Section) -> None:
    for prop in section.props:
        hint = _OLD_TAIL_KEYS.get(prop.name) or (
            _FIRSTLINE if prop.name.startswith("parser_") else None
        )
        if hint:
            raise ConfigError(hint, file=prop.file, line=prop.line, key=prop.key)


def container_kinds(section: Section, names: tuple[str, ...]) -> tuple[str, ...]:
    """The docker/cri names of `multiline.parser`; they do not mix with python or ray."""
    low = {n.strip().lower() for n in names}
    kinds = tuple(k for k in KINDS if k in low)
    if kinds and low & {"python", "ray"}:
        prop = section.get("multiline.parser")
        raise ConfigError(
            "docker and cri parse container runtime lines: name them without python or ray "
            "here, and join tracebacks with a multiline filter after them",
            file=section.file,
            line=prop.line if prop else section.line,
            key="multiline.parser",
        )
    return kinds


def input_factory(
    inner: HandlerFactory, section: Section, names: tuple[str, ...], parsers: ParserSet
) -> HandlerFactory:
    """`inner`, or `inner` wrapped for docker/cri joining and then `Parser`."""
    kinds = container_kinds(section, names)
    prop = section.get("parser")
    parser = parsers.get(prop.value, prop) if prop is not None else None
    if not kinds and parser is None:
        return inner

    def factory(ctx: SourceContext) -> LineHandler:
        return wrap(inner(ctx), kinds=kinds, parser=parser)

    return factory


def wrap(handler: LineHandler, *, kinds: tuple[str, ...], parser: Parser | None) -> LineHandler:
    if kinds:
        handler = ContainerHandler(handler, kinds)
    if parser is not None:
        handler = ParsingHandler(handler, parser)
    return handler
