"""[PARSER] and [MULTILINE_PARSER] definitions: from the configuration and from every
`Parsers_File` of [SERVICE], validated into a ParserSet that plugins look parsers up in.

Fluent Bit's rules: `Parsers_File` may repeat; a relative name is tried from the working
directory, then from the main configuration file's directory; a file that cannot be read
stops the start (here: an error naming the [SERVICE] line). A parser name defined twice is an
error. Names are case-sensitive. Keys Fluent Bit would ignore are refused by name here.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shipper.config.model import ConfigError, Document, Prop, Section
from shipper.config.schema import build, opt
from shipper.parsers.decoders import ACTIONS, BACKENDS, DecodeRule
from shipper.parsers.formats import FORMATS, TYPES, Parser
from shipper.parsers.onigmo import TranslateError, translate
from shipper.parsers.timefmt import TimeFormat, parse_offset

log = logging.getLogger(__name__)

_DECODER_KEYS = ("decode_field", "decode_field_as")


@dataclass(frozen=True, slots=True, kw_only=True)
class ParserOptions:
    name: str = opt("Name", "str", "", required=True, help="The name inputs and filters use.")
    format: str = opt("Format", "str", "", required=True, choices=FORMATS, help="The format.")
    regex: str | None = opt("Regex", "str", None, help="Ruby regular expression (named groups).")
    time_key: str = opt("Time_Key", "str", "time", help="Field holding the record's time.")
    time_format: str | None = opt("Time_Format", "str", None, help="strptime format, %L: fraction.")
    time_keep: bool = opt("Time_Keep", "bool", False, help="Keep the time field in the record.")
    time_strict: bool = opt(
        "Time_Strict",
        "bool",
        True,
        help="Off: a time that fits only part of Time_Format still counts.",
    )
    time_offset: str | None = opt("Time_Offset", "str", None, help="UTC offset, e.g. +0200.")
    time_system_timezone: bool = opt(
        "Time_System_Timezone", "bool", False, help="Times without a zone are in local time."
    )
    time_zone: str | None = opt("Time_Zone", "str", None, help="IANA zone of times without one.")
    types: str | None = opt("Types", "str", None, help="KEY:TYPE ... (integer, float, bool, hex).")
    skip_empty_values: bool = opt(
        "Skip_Empty_Values", "bool", True, help="regex: leave out empty captures."
    )
    logfmt_no_bare_keys: bool = opt(
        "Logfmt_No_Bare_Keys", "bool", False, help="logfmt: refuse lines with keys alone."
    )


@dataclass(frozen=True, slots=True)
class MultilineRule:
    states: tuple[str, ...]
    regex: str  # Ruby syntax, compiled by the multiline filter
    next_state: str
    file: str
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MultilineSpec:
    """A [MULTILINE_PARSER] of type regex: its state rules (the filter compiles them)."""

    name: str
    rules: tuple[MultilineRule, ...]
    flush_timeout: float
    file: str
    line: int


@dataclass(slots=True)
class ParserSet:
    parsers: dict[str, Parser] = field(default_factory=dict)
    multiline: dict[str, MultilineSpec] = field(default_factory=dict)

    def get(self, name: str, prop: Prop) -> Parser:
        """The parser a `Parser NAME` line names, or an error at that line."""
        parser = self.parsers.get(name.strip())
        if parser is None:
            known = (
                ", ".join(sorted(self.parsers)) or "none (add [PARSER] sections or Parsers_File)"
            )
            raise ConfigError(
                f"unknown parser '{name.strip()}' (defined: {known})",
                file=prop.file,
                line=prop.line,
                key=prop.key,
            )
        return parser


def _err(section: Section, key: str, message: str) -> ConfigError:
    prop = section.get(key)
    return ConfigError(
        message,
        file=prop.file if prop else section.file,
        line=prop.line if prop else section.line,
        key=prop.key if prop else key,
    )


def _types(section: Section, text: str) -> tuple[tuple[str, str], ...]:
    """`KEY:TYPE KEY:TYPE`. Commas separate too: Fluent Bit splits on blanks only, so its own
    parsers_extra.conf `a:integer,b:integer` types nothing there; here it means what it says."""
    out = []
    for item in text.replace(",", " ").split():
        key, sep, kind = item.partition(":")
        if not sep or not key or kind.lower() not in TYPES:
            raise _err(
                section,
                "types",
                f"bad type {item!r}: expected KEY:TYPE with TYPE one of {', '.join(TYPES)}",
            )
        out.append((key, kind.lower()))
    return tuple(out)


def _decoders(section: Section) -> dict[str, tuple[DecodeRule, ...]]:
    """Decode_Field / Decode_Field_As lines: BACKEND FIELD [ACTION], per field in order."""
    out: dict[str, list[DecodeRule]] = {}
    for prop in section.props:
        if prop.name not in _DECODER_KEYS:
            continue
        parts = prop.value.split()
        as_value = prop.name == "decode_field_as"
        problem = ""
        if len(parts) not in (2, 3):
            problem = "expected BACKEND FIELD [ACTION]"
        elif parts[0].lower() not in BACKENDS:
            problem = f"unknown decoder {parts[0]!r} (supported: {', '.join(BACKENDS)})"
        elif not as_value and parts[0].lower() != "json":
            problem = "Decode_Field takes the json decoder only (Decode_Field_As for the others)"
        elif len(parts) == 3 and parts[2].lower() not in ACTIONS:
            problem = f"unknown action {parts[2]!r} (supported: {', '.join(ACTIONS)})"
        if problem:
            raise ConfigError(problem, file=prop.file, line=prop.line, key=prop.key)
        action = parts[2].lower() if len(parts) == 3 else ""
        out.setdefault(parts[1], []).append(DecodeRule(as_value, parts[0].lower(), action))
    return {k: tuple(v) for k, v in out.items()}


def build_parser(section: Section) -> Parser:
    opts = build(ParserOptions, section, extra_keys=set(_DECODER_KEYS))
    name = opts.name
    regex = None
    names: tuple[str, ...] = ()
    numbers: tuple[int, ...] = ()
    direct = False
    if opts.format == "regex":
        if opts.regex is None:
            raise _err(section, "regex", f"parser '{name}' has Format regex but no Regex")
        try:
            tr = translate(opts.regex)
        except TranslateError as exc:
            raise _err(section, "regex", f"parser '{name}': {exc}") from None
        regex, names = tr.regex, tr.names
        numbers = tuple(tr.regex.groupindex[gid] for gid in tr.ids)
        direct = tr.direct
        if not names:
            log.warning(
                "%s:%d: parser '%s' has no named group (?<name>...): it never yields fields",
                section.file,
                section.line,
                name,
            )
    elif opts.regex is not None:
        raise _err(section, "regex", f"Regex is used by Format regex only (this is {opts.format})")
    time_format = _time_format(section, opts)
    types = _types(section, opts.types) if opts.types else ()
    if types and opts.format == "json":
        log.warning(
            "%s:%d: parser '%s': Types has no effect on Format json (as in Fluent Bit)",
            section.file,
            section.line,
            name,
        )
    return Parser(
        name=name,
        format=opts.format,
        regex=regex,
        group_names=names,
        group_numbers=numbers,
        direct=direct,
        time_key=opts.time_key,
        time_format=time_format,
        time_keep=opts.time_keep,
        time_strict=opts.time_strict,
        types=types,
        skip_empty=opts.skip_empty_values,
        no_bare_keys=opts.logfmt_no_bare_keys,
        decoders=_decoders(section),
        file=section.file,
        line=section.line,
    )


def _time_format(section: Section, opts: ParserOptions) -> TimeFormat | None:
    """Time_Format with Time_Offset, Time_Zone or Time_System_Timezone, checked."""
    if opts.time_format is None:
        if opts.time_zone is not None:
            raise _err(section, "time_zone", "Time_Zone requires Time_Format")
        return None
    offset, zone = 0, None
    if opts.time_offset is not None:
        try:
            offset = parse_offset(opts.time_offset)
        except ValueError as exc:
            raise _err(section, "time_offset", str(exc)) from None
    if opts.time_zone is not None:
        if opts.time_system_timezone or opts.time_offset is not None:
            raise _err(
                section,
                "time_zone",
                "Time_Zone cannot be combined with Time_Offset or Time_System_Timezone",
            )
        try:
            zone = ZoneInfo(opts.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _err(section, "time_zone", f"unknown time zone {opts.time_zone!r}") from None
    try:
        return TimeFormat.compile(
            opts.time_format,
            offset=offset,
            local=opts.time_system_timezone,
            zone=zone,
            lenient=not opts.time_strict,
        )
    except ValueError as exc:
        raise _err(section, "time_format", str(exc)) from None


def compile_rule(pattern: str) -> re.Pattern[str]:
    """A multi-line rule's regex (Fluent Bit writes them `/.../`; bare ones are accepted)."""
    return translate(pattern if pattern.startswith("/") else f"/{pattern}/").regex


def slist_tokens(text: str) -> list[str]:
    """Fluent Bit's flb_slist_split_tokens: blank-separated, a double-quoted token ends at a
    quote without a backslash before it, and only \\" is unescaped (a regex's \\\\ stays)."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        if i >= n:
            break
        if text[i] == '"':
            j = i + 1
            while j < n and (text[j] != '"' or text[j - 1] == "\\"):
                j += 1
            tokens.append(text[i + 1 : j].replace('\\"', '"'))
            i = j + 1
        else:
            j = text.find(" ", i)
            j = n if j < 0 else j
            tokens.append(text[i:j])
            i = j
    return tokens


def build_multiline(section: Section) -> MultilineSpec:
    name_prop = section.get("name")
    if name_prop is None:
        raise ConfigError(
            "[MULTILINE_PARSER] without Name", file=section.file, line=section.line, key="Name"
        )
    rules: list[MultilineRule] = []
    flush = 4.0  # Fluent Bit's default flush_timeout, in ms there: 4000
    for prop in section.props:
        if prop.name == "name":
            continue
        if prop.name == "type":
            if prop.value.strip().lower() != "regex":
                raise ConfigError(
                    f"multiline parser type {prop.value.strip()!r} is not supported "
                    "(supported: regex)",
                    file=prop.file,
                    line=prop.line,
                    key=prop.key,
                )
        elif prop.name == "flush_timeout":
            try:
                flush = float(prop.value) / 1000.0
            except ValueError:
                raise ConfigError(
                    "expected milliseconds", file=prop.file, line=prop.line, key=prop.key
                ) from None
        elif prop.name == "rule":
            parts = slist_tokens(prop.value)
            if len(parts) != 3:
                raise ConfigError(
                    'expected rule "STATE[,STATE]" "REGEX" "NEXT_STATE"',
                    file=prop.file,
                    line=prop.line,
                    key=prop.key,
                )
            states = tuple(s.strip() for s in parts[0].split(",") if s.strip())
            try:  # checked here: a parser no filter names yet must not hide a bad rule
                compile_rule(parts[1])
            except TranslateError as exc:
                raise ConfigError(
                    f"multiline parser '{name_prop.value.strip()}': {exc}",
                    file=prop.file,
                    line=prop.line,
                    key=prop.key,
                ) from None
            rules.append(MultilineRule(states, parts[1], parts[2].strip(), prop.file, prop.line))
        else:
            raise ConfigError(
                "unknown key for a multiline parser (supported: name, type, flush_timeout, rule)",
                file=prop.file,
                line=prop.line,
                key=prop.key,
            )
    if not rules:
        raise ConfigError(
            f"multiline parser '{name_prop.value.strip()}' has no rule",
            file=section.file,
            line=section.line,
            key="rule",
        )
    return MultilineSpec(
        name=name_prop.value.strip(),
        rules=tuple(rules),
        flush_timeout=flush,
        file=section.file,
        line=section.line,
    )


def _resolve(prop: Prop, source: str) -> str:
    path = prop.value.strip()
    if os.path.isabs(path) or os.path.exists(path):
        candidate = path
    else:  # Fluent Bit: the working directory first, then the configuration's directory
        candidate = os.path.join(os.path.dirname(os.path.abspath(source)), path)
    if not os.path.isfile(candidate):
        raise ConfigError(
            f"parsers file {path!r} does not exist"
            + (
                f" (looked in the working directory and {os.path.dirname(candidate)})"
                if candidate != path
                else ""
            ),
            file=prop.file,
            line=prop.line,
            key=prop.key,
        )
    return candidate


def load_parsers(doc: Document) -> ParserSet:
    """Every parser of the configuration and of its Parsers_File files."""
    from shipper.config.loader import load_config

    sections: list[Section] = list(doc.of_kind("parser")) + list(doc.of_kind("multiline_parser"))
    for svc in doc.of_kind("service"):
        for prop in svc.props:
            if prop.name != "parsers_file":
                continue
            path = _resolve(prop, doc.source)
            sub = load_config(path)
            for section in sub.sections:
                if section.kind not in ("parser", "multiline_parser"):
                    raise ConfigError(
                        f"a parsers file holds [PARSER] and [MULTILINE_PARSER] sections only, "
                        f"not [{section.kind.upper()}]",
                        file=section.file,
                        line=section.line,
                    )
                sections.append(section)
    out = ParserSet()
    for section in sections:
        if section.kind == "parser":
            parser = build_parser(section)
            _unique(out.parsers.get(parser.name), section, parser.name)
            out.parsers[parser.name] = parser
        else:
            spec = build_multiline(section)
            _unique(out.multiline.get(spec.name), section, spec.name)
            out.multiline[spec.name] = spec
    return out


def _unique(earlier: Parser | MultilineSpec | None, section: Section, name: str) -> None:
    if earlier is not None:
        raise _err(
            section, "name", f"parser '{name}' is already defined at {earlier.file}:{earlier.line}"
        )
