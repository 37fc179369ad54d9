"""A parser's decoders (`Decode_Field`, `Decode_Field_As`), as flb_parser_decoder.c.

`Decode_Field_As BACKEND FIELD [ACTION]` replaces the field's text with what the backend
made of it; `Decode_Field json FIELD [ACTION]` adds the keys of the JSON object held in the
field to the record (after the others), the field itself unchanged. Backends: `json` (an
object only), `escaped` (\\n \\t \\" ... unescaped), `escaped_utf8` (also \\uXXXX). ACTION:
`try_next` (if this rule fails, try the next), `do_next` (run the next rule either way).
Per field at most one Decode_Field and one Decode_Field_As succeed, as there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

BACKENDS = ("json", "escaped", "escaped_utf8")
ACTIONS = ("try_next", "do_next")

_SIMPLE = {'"': '"', "'": "'", "\\": "\\", "/": "/", "n": "\n", "b": "\b", "t": "\t", "f": "\f"}
_SIMPLE["r"] = "\r"
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)


def _unescape(text: str, *, utf8: bool) -> str:
    def one(m: re.Match[str]) -> str:
        c = m.group(1)
        if c in _SIMPLE:
            return _SIMPLE[c]
        if utf8 and len(c) == 5:
            return chr(int(c[1:], 16))
        return m.group(0)

    return _ESCAPE.sub(one, text) if "\\" in text else text


def _decode(backend: str, text: str) -> Any:
    """The decoded value, or None when the backend cannot decode `text`."""
    if backend == "json":
        if not text.lstrip(" ").startswith(("{", "[")):
            return None
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        return obj if isinstance(obj, dict) else None
    return _unescape(text, utf8=backend == "escaped_utf8")


@dataclass(frozen=True, slots=True)
class DecodeRule:
    as_value: bool  # Decode_Field_As (else Decode_Field: merge the keys)
    backend: str
    action: str  # "", try_next, do_next


def apply_decoders(fields: dict[str, Any], rules: dict[str, tuple[DecodeRule, ...]]) -> None:
    """Decode in place: `rules` maps a field name to its rules in configuration order."""
    extra: dict[str, Any] | None = None
    for key, key_rules in rules.items():
        value = fields.get(key)
        if not isinstance(value, str):
            continue
        data: Any = value
        decoded = decoded_as = False
        merged: dict[str, Any] | None = None
        for rule in key_rules:
            if not rule.as_value and rule.action == "do_next" and decoded:
                continue
            if decoded_as and not isinstance(data, str):
                continue
            out = _decode(rule.backend, data) if isinstance(data, str) else None
            if out is None:
                if rule.action:
                    continue
                break
            if rule.as_value:
                data, decoded_as = out, True
            elif isinstance(out, dict):
                merged, decoded = out, True
            if rule.action != "do_next":
                break
        if decoded_as:
            fields[key] = data
        if merged is not None:
            extra = merged  # Fluent Bit keeps the last field's keys only
    if extra:
        fields.update(extra)
