"""Declarative key tables: each plugin's options are a frozen dataclass whose fields carry the
Fluent Bit key name, type, default and help. The same table validates a Section and documents
the plugin (`shipper -i tail -h`). The keys common to every plugin of a kind (Match,
Retry_Limit, Workers...) are key tables too, at the end.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
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
    strict: bool = True,
) -> T:
    """Validate `section` against the key table of `cls` and return the frozen options.

    Unknown keys are an error naming file, line and key (unless not `strict`: the section's
    common keys, read apart from the plugin's). The keys every plugin of the section's kind
    accepts (COMMON_KEYS, below) are allowed. `prefix_keys` lets a plugin accept
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
            if (
                not strict
                or prop.name in allowed
                or any(prop.name.startswith(p) for p in prefix_keys)
            ):
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


# -- the keys every plugin of a kind accepts, handled by the pipeline rather than the plugin:
# declared as key tables like a plugin's, validated alike, shown by `shipper -o http -h`.

_COMPAT = "Accepted for compatibility with Fluent Bit; no effect here."


def parse_retry_limit(text: str) -> int | None:
    """Retry_Limit: a number, `false`/`no_limits` (for ever), `no_retries` (0)."""
    low = text.strip().lower()
    if low in ("false", "no_limits", "off"):
        return None
    if low == "no_retries":
        return 0
    try:
        value = parse_int(low)
    except ValueError as exc:
        raise ValueError(f"{exc} (or false, no_limits, no_retries)") from None
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def parse_workers(text: str) -> int:
    value = parse_int(text)
    if not 1 <= value <= 64:
        raise ValueError("must be between 1 and 64")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class InputCommon:
    name: str | None = opt("Name", "str", None, help="The plugin.")
    tag: str | None = opt("Tag", "str", None, help="Tag of the records.")
    alias: str | None = opt("Alias", "str", None, help="Instance name in logs and metrics.")
    log_level: str | None = opt("Log_Level", "str", None, help="This instance's log level.")
    mem_buf_limit: str | None = opt(
        "Mem_Buf_Limit", "str", None, help="Bytes of records in flight before reading pauses."
    )
    storage_type: str | None = opt("storage.type", "str", None, help=_COMPAT)
    threaded: str | None = opt("Threaded", "str", None, help=_COMPAT)
    routable: str | None = opt("Routable", "str", None, help=_COMPAT)
    storage_pause: str | None = opt("storage.pause_on_chunks_overlimit", "str", None, help=_COMPAT)


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterCommon:
    name: str | None = opt("Name", "str", None, help="The plugin.")
    match: str | None = opt("Match", "str", None, help="Tags this instance applies to (* ok).")
    match_regex: str | None = opt(
        "Match_Regex", "str", None, help="Tags this instance applies to, as a regex."
    )
    alias: str | None = opt("Alias", "str", None, help="Instance name in logs and metrics.")
    log_level: str | None = opt("Log_Level", "str", None, help="This instance's log level.")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputCommon:
    name: str | None = opt("Name", "str", None, help="The plugin.")
    match: str | None = opt("Match", "str", None, help="Tags this output receives (* ok).")
    match_regex: str | None = opt(
        "Match_Regex", "str", None, help="Tags this output receives, as a regex."
    )
    alias: str | None = opt("Alias", "str", None, help="Instance name in logs and metrics.")
    log_level: str | None = opt("Log_Level", "str", None, help="This instance's log level.")
    retry_limit: int | None = opt(
        "Retry_Limit",
        "int",
        None,
        convert=parse_retry_limit,
        help="Retries of a failed batch before it is dropped: a number, no_retries, or "
        "false/no_limits (default: for ever; the data waits on disk).",
    )
    workers: int = opt(
        "Workers", "int", 1, convert=parse_workers, help="Concurrent deliveries (1 to 64)."
    )
    storage_total_limit_size: str | None = opt(
        "storage.total_limit_size", "str", None, help=_COMPAT
    )


COMMON: dict[str, type[Any]] = {
    "input": InputCommon,
    "filter": FilterCommon,
    "output": OutputCommon,
}


def _keys(cls: type[Any]) -> set[str]:
    return {f.metadata["key"].lower() for f in dataclasses.fields(cls)}


# Keys a section of each kind accepts besides its plugin's own.
COMMON_KEYS: dict[str, set[str]] = {kind: _keys(cls) for kind, cls in COMMON.items()}
COMMON_KEYS.update({"service": set(), "parser": {"name"}, "multiline_parser": {"name"}})
