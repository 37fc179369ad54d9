"""What the filters share: splitting a value the way Fluent Bit does, and errors that name
the offending line."""

from __future__ import annotations

import asyncio
import re
from typing import Protocol, runtime_checkable

from shipper.chunk import Record
from shipper.config.model import ConfigError, Prop, Section
from shipper.parsers.onigmo import TranslateError, translate


def split_quoted(text: str, limit: int) -> list[str]:
    """Fluent Bit's flb_utils_split_quoted: space-separated tokens, double quotes group (with
    \\" and \\\\ escapes); after `limit - 1` splits the rest is the last token."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        if i >= n:
            break
        if len(tokens) == limit - 1:
            tokens.append(text[i:].rstrip())
            break
        if text[i] == '"':
            i += 1
            buf: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\':
                    i += 1
                buf.append(text[i])
                i += 1
            i += 1  # closing quote
            tokens.append("".join(buf))
        else:
            j = i
            while j < n and text[j] != " ":
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


def prop_error(prop: Prop, message: str) -> ConfigError:
    return ConfigError(message, file=prop.file, line=prop.line, key=prop.key)


def compile_regex(prop: Prop, pattern: str) -> re.Pattern[str]:
    """Fluent Bit's regular expressions are Onigmo's (Ruby syntax): translated as the
    parsers' are, so the same pattern means the same thing in every plugin."""
    try:
        return translate(pattern).regex
    except TranslateError as exc:
        raise prop_error(prop, f"bad regular expression {pattern!r}: {exc}") from None


# -- what a filter may offer besides apply(records, tag), found by the pipeline at build time --
Split = tuple[list[Record], list[tuple[str, list[Record]]]]


@runtime_checkable
class Splitting(Protocol):
    """A filter that re-emits records under new tags (rewrite_tag): `split` returns the
    records that stay, and (new tag, records) groups that enter the pipeline again."""

    def split(self, records: list[Record], tag: str) -> Split: ...


@runtime_checkable
class Waiting(Protocol):
    """A filter that may have to fetch something before it can apply to a tag (kubernetes):
    `ready` returns None when it can apply now, else a future that completes (it never
    fails, and it completes within the filter's own timeout) when it can."""

    def ready(self, tag: str) -> asyncio.Future[None] | None: ...

    def prefetch(self, tag: str) -> None:
        """A chunk of `tag` is queued behind others: start what `ready` would wait for."""


@runtime_checkable
class Resourceful(Protocol):
    """A filter with resources (an HTTP session) opened before the inputs start."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...


def refuse(section: Section, unsupported: dict[str, str]) -> None:
    """Keys Fluent Bit knows that are not supported here: an error naming the key and what
    to do instead (`unsupported`: lower-case key -> advice). A key set to its Fluent Bit
    default that means "off" passes."""
    for prop in section.props:
        advice = unsupported.get(prop.name)
        if advice is None:
            continue
        if prop.value.strip().lower() in ("off", "false", "no", "0", ""):
            continue
        raise prop_error(prop, f"{prop.key} is not supported by shipper: {advice}")
