"""What the filters share: splitting a value the way Fluent Bit does, and errors that name
the offending line."""

from __future__ import annotations

import re

from shipper.config.model import ConfigError, Prop


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
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise prop_error(prop, f"bad regular expression {pattern!r}: {exc}") from None
