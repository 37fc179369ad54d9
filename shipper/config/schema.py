"""Declarative key tables: each plugin's options are a frozen dataclass whose fields carry the
Fluent Bit key name, type, default and help. The same table validates a Section and documents
the plugin (`shipper -i tail -h`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, TypeVar

from shipper.config.model import ConfigError, Prop, Section

T = TypeVar("T")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
}
_TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected on/off, true/false or yes/no, got {text!r}")


def parse_size(text: str) -> int:
    """Fluent Bit sizes: `32k`, `5MB`, `1g`, plain bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"expected a size such as 32k, 5M or 1G, got {text!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_time(text: str) -> float:
    """Seconds, optionally with a unit: `5`, `0.5`, `250ms`, `2m`, `1h`."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _TIME_UNITS:
        raise ValueError(f"expected a duration such as 5, 0.5, 250ms or 2m, got {text!r}")
    return float(m.group(1)) * _TIME_UNITS[m.group(2).lower()]


def parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def parse_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def parse_str(text: str) -> str:
    return text.strip()


PARSERS: dict[str, Callable[[str], Any]] = {
    "str": parse_str,
    "int": parse_int,
    "float": parse_float,
    "bool": parse_bool,
    "size": parse_size,
    "time": parse_time,
    "list": parse_list,
}


def opt(
    key: str,
    kind: str,
    default: Any = None,
    *,
    help: str,
    multi: bool = False,
    choices: tuple[str, ...] = (),
    required: bool = False,
    convert: Callable[[str], Any] | None = None,
) -> Any:
    """A dataclass field that is also a row of the key table.

    kind: one of PARSERS. multi: the key may repeat (value is a tuple of parsed values).
    convert: a custom parser for the raw text (raises ValueError with a readable message).
    """
    if kind not in PARSERS and convert is None:
        raise TypeError(f"unknown option kind {kind}")
    meta = {
        "key": key,
        "kind": kind,
        "help": help,
        "multi": multi,
        "choices": choices,
        "required": required,
        "convert": convert,
    }
    if multi:
        return dataclasses.field(default=tuple(default or ()), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# Keys every plugin section accepts (handled by the pipeline, not the plugin).
COMMON_KEYS = {
    "input": {
        "name",
        "tag",
        "alias",
        "log_level",
        "mem_buf_limit",
        "storage.type",
        "threaded",
        "routable",
        "storage.pause_on_chunks_overlimit",
    },
    "filter": {"name", "match", "match_regex", "alias", "log_level"},
    "output": {
        "name",
        "match",
        "match_regex",
        "alias",
        "log_level",
        "retry_limit",
        "workers",
        "storage.total_limit_size",
    },
    "service": set(),
    "parser": {"name"},
    "multiline_parser": {"name"},
}


def key_table(cls: type[Any]) -> list[dict[str, Any]]:
    """The key rows of an options dataclass (for `shipper -i PLUGIN -h`)."""
    rows = []
    for f in dataclasses.fields(cls):
        if "key" in f.metadata:
            rows.append({"field": f.name, **f.metadata, "default": f.default})
    return rows


def _convert(meta: dict[str, Any], prop: Prop) -> Any:
    fn = meta["convert"] or PARSERS[meta["kind"]]
    try:
        value = fn(prop.value)
    except ValueError as exc:
        raise ConfigError(
            f"bad value: {exc}", file=prop.file, line=prop.line, key=prop.key
        ) from None
    if meta["choices"] and str(value).lower() not in meta["choices"]:
        raise ConfigError(
            f"bad value {prop.value!r}: expected one of {', '.join(meta['choices'])}",
            file=prop.file,
            line=prop.line,
            key=prop.key,
        )
    return value.lower() if meta["choices"] and isinstance(value, str) else value


def build(
    cls: type[T],
    section: Section,
    *,
    extra_keys: set[str] | None = None,
    prefix_keys: tuple[str, ...] = (),
) -> T:
    """Validate `section` against the key table of `cls` and return the frozen options.

    Unknown keys are an error naming file, line and key. `prefix_keys` lets a plugin accept
    families such as `Header_*`; `extra_keys` adds keys handled elsewhere.
    """
    by_key: dict[str, dataclasses.Field[Any]] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if "key" in f.metadata:
            by_key[f.metadata["key"].lower()] = f
    allowed = COMMON_KEYS.get(section.kind, set()) | (extra_keys or set())
    values: dict[str, Any] = {}
    multi: dict[str, list[Any]] = {}
    for prop in section.props:
        field = by_key.get(prop.name)
        if field is None:
            if prop.name in allowed or any(prop.name.startswith(p) for p in prefix_keys):
                continue
            plugin = section.plugin or section.kind
            raise ConfigError(
                f"unknown key for {section.kind} plugin '{plugin}'",
                file=prop.file,
                line=prop.line,
                key=prop.key,
            )
        value = _convert(dict(field.metadata), prop)
        if field.metadata["multi"]:
            multi.setdefault(field.name, []).append(value)
        else:
            values[field.name] = value  # the last one wins, as in Fluent Bit
    for name, items in multi.items():
        values[name] = tuple(items)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.metadata.get("required") and f.name not in values:
            raise ConfigError(
                f"missing required key for {section.kind} plugin '{section.plugin}'",
                file=section.file,
                line=section.line,
                key=f.metadata["key"],
            )
    return cls(**values)
