"""The `multiline` filter: join records whose `multiline.key_content` continues a record.

Fluent Bit's regex multi-line engine (flb_ml_rule.c): a record whose content matches a rule
from `start_state` opens a group; while a group is open, a rule from its current state (start
rules excluded) appends the content (joined with a newline) and moves to the rule's next
state; a group whose next state can start over is complete at once; content no rule takes
closes the open group and then starts one or passes alone. A group goes out as its first
record with the joined content.

Parsers: the built-in `python`, `go` and `java` rule sets, [MULTILINE_PARSER] sections of
type regex, and the container runtimes' `docker` and `cri` (shipper/parsers/container.py:
the content is parsed and partial lines joined; these two are not mixed with the others in
one list). One stream per tag, as Fluent Bit's filter (give tail a per-file Tag, or use
`multiline.parser` on the tail input). Records join within one chunk: a chunk's records are
acknowledged together, so a group is never held past its chunk (Fluent Bit's `buffer off`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipper.chunk import Record
from shipper.config.model import Prop, Section
from shipper.config.schema import build, opt
from shipper.filters.common import prop_error
from shipper.match import Matcher
from shipper.parsers.config import MultilineSpec, ParserSet, compile_rule
from shipper.parsers.container import KINDS, ContainerJoiner
from shipper.parsers.onigmo import TranslateError

START = "start_state"
# Fluent Bit's built-in rule sets (src/multiline/flb_ml_parser_*.c): (from states, regex, next)
BUILTIN: dict[str, tuple[tuple[str, str, str], ...]] = {
    "python": (
        (START, r"^Traceback \(most recent call last\):$", "python"),
        ("python", r"^[\t ]+File ", "python_code"),
        ("python_code", r"[^\t ]", "python"),
        ("python", r"^(?:[^\s.():]+\.)*[^\s.():]+:", START),
    ),
    "go": (
        (START, r"\bpanic: ", "go_after_panic"),
        (START, r"http: panic serving", "go_goroutine"),
        ("go_after_panic", r"^$", "go_goroutine"),
        ("go_after_panic, go_after_signal, go_frame_1", r"^$", "go_goroutine"),
        ("go_after_panic", r"^\[signal ", "go_after_signal"),
        ("go_goroutine", r"^goroutine \d+ \[[^\]]+\]:$", "go_frame_1"),
        ("go_frame_1", r"^(?:[^\s.:]+\.)*[^\s.():]+\(|^created by ", "go_frame_2"),
        ("go_frame_2", r"^\s", "go_frame_1"),
    ),
    "java": (
        (
            "start_state, java_start_exception",
            r"(.)(?:Exception|Error|Throwable|V8 errors stack trace)[:\r\n]",
            "java_after_exception",
        ),
        ("java_after_exception", r"^[\t ]*nested exception is:[\t ]*", "java_start_exception"),
        ("java_after_exception", r"^[\r\n]*$", "java_after_exception"),
        ("java_after_exception, java", r"^[\t ]+(?:eval )?at ", "java"),
        (
            "java_after_exception, java",
            r"^[\t ]+--- End of inner exception stack trace ---$",
            "java",
        ),
        (
            "java_after_exception, java",
            r"^--- End of stack trace from previous location where exception was thrown ---$",
            "java",
        ),
        ("java_after_exception, java", r"^[\t ]*(?:Caused by|Suppressed):", "java_after_exception"),
        ("java_after_exception, java", r"^[\t ]*... \d+ (?:more|common frames omitted)", "java"),
    ),
}
_REFUSED = {
    "ray": "use `multiline.parser ray` on the tail input: it needs Ray's file names",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MultilineFilterOptions:
    parser: tuple[str, ...] = opt(
        "multiline.parser",
        "list",
        (),
        required=True,
        help="python, go, java, a [MULTILINE_PARSER] name, or docker, cri (comma-separated).",
    )
    key_content: str = opt("multiline.key_content", "str", "log", help="Key whose text is joined.")
    mode: str = opt("mode", "str", "parser", choices=("parser",), help="Only parser mode.")
    buffer: bool = opt("buffer", "bool", True, help="Accepted: records join within a chunk.")
    flush_ms: int = opt("flush_ms", "int", 2000, help="Accepted (no group outlives its chunk).")
    emitter_name: str | None = opt("emitter_name", "str", None, help="Accepted (no emitter).")
    emitter_storage_type: str = opt(
        "emitter_storage.type", "str", "memory", help="Accepted (no emitter)."
    )
    emitter_mem_buf_limit: int = opt(
        "emitter_mem_buf_limit", "size", 10 * 1024 * 1024, help="Accepted (no emitter)."
    )


@dataclass(frozen=True, slots=True)
class Rule:
    start: bool  # from start_state
    states: frozenset[str]
    regex: re.Pattern[str]
    next_state: str


class Machine:
    """One multi-line parser's compiled rules."""

    def __init__(self, name: str, rules: list[Rule]) -> None:
        self.name = name
        self.starts = [r for r in rules if r.start]
        states = {s for r in rules for s in r.states} | {r.next_state for r in rules}
        self.follow = {s: [r for r in rules if s in r.states and not r.start] for s in states}
        # Fluent Bit flushes a group at once when a start rule can follow its state
        self.ends = {s for s in states if any(s in r.states for r in self.starts)}

    def start_rule(self, text: str) -> Rule | None:
        for rule in self.starts:
            if rule.regex.search(text):
                return rule
        return None

    def next_rule(self, state: str, text: str) -> Rule | None:
        for rule in self.follow.get(state, ()):
            if rule.regex.search(text):
                return rule
        return None


class _Group:
    __slots__ = ("first", "lines", "machine", "state")

    def __init__(self, first: Record, text: str, machine: Machine, state: str) -> None:
        self.first = first
        self.lines = [text]
        self.machine = machine
        self.state = state

    def add(self, text: str, state: str) -> None:
        """A line that continues the record, after which the machine is in `state`."""
        self.lines.append(text)
        self.state = state


class MultilineFilter:
    plugin = "multiline"

    def __init__(
        self,
        *,
        name: str,
        matcher: Matcher,
        key: str,
        machines: list[Machine],
        containers: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.matcher = matcher
        self.key = key
        self.machines = machines
        self.containers = containers

    def apply(self, records: list[Record], tag: str) -> list[Record]:
        if self.containers:
            joiner = ContainerJoiner(self.containers, self.key)
            joined: list[Record] = []
            for rec in records:
                joiner.push(rec, joined)
            joiner.flush(joined)  # no group outlives its chunk
            return joined
        out: list[Record] = []
        group: _Group | None = None
        key = self.key
        for rec in records:
            text = rec.get(key)
            if not isinstance(text, str):
                self._close(group, out)
                group = None
                out.append(rec)
                continue
            if group is not None:
                rule = group.machine.next_rule(group.state, text)
                if rule is not None:
                    group.add(text, rule.next_state)
                    if rule.next_state in group.machine.ends:
                        self._close(group, out)
                        group = None
                    continue
                self._close(group, out)
                group = None
            for machine in self.machines:
                rule = machine.start_rule(text)
                if rule is not None:
                    group = _Group(rec, text, machine, rule.next_state)
                    if rule.next_state in machine.ends:
                        self._close(group, out)
                        group = None
                    break
            else:
                out.append(rec)
        self._close(group, out)
        return out

    def _close(self, group: _Group | None, out: list[Record]) -> None:
        if group is not None:
            rec = group.first
            if len(group.lines) > 1:
                rec = dict(rec)
                rec[self.key] = "\n".join(group.lines)
            out.append(rec)


def _compile(name: str, rules: list[tuple[str, str, str, Prop]]) -> Machine:
    compiled = []
    for states_text, pattern, next_state, where in rules:
        states = frozenset(s.strip() for s in states_text.split(",") if s.strip())
        try:
            regex = compile_rule(pattern)
        except TranslateError as exc:
            raise prop_error(where, f"multiline parser '{name}': {exc}") from None
        compiled.append(Rule(START in states, states, regex, next_state.strip()))
    if not any(r.start for r in compiled):
        raise prop_error(rules[0][3], f"multiline parser '{name}' has no rule from start_state")
    return Machine(name, compiled)


def _spec_rules(spec: MultilineSpec) -> list[tuple[str, str, str, Prop]]:
    return [
        (",".join(r.states), r.regex, r.next_state, Prop("rule", r.regex, r.file, r.line))
        for r in spec.rules
    ]


def create(section: Section, *, name: str, matcher: Matcher, parsers: ParserSet) -> MultilineFilter:
    opts = build(MultilineFilterOptions, section)
    prop = section.get("multiline.parser")
    assert prop is not None  # required
    machines = []
    containers = tuple(p.lower() for p in opts.parser if p.lower() in KINDS)
    if containers and len(containers) != len(opts.parser):
        raise prop_error(
            prop,
            "docker and cri parse container runtime lines: name them without other parsers "
            "(use a second multiline filter for python, go, java or your own)",
        )
    for pname in () if containers else opts.parser:
        if pname in parsers.multiline:
            machines.append(_compile(pname, _spec_rules(parsers.multiline[pname])))
        elif pname.lower() in BUILTIN:
            rules = [(s, r, n, prop) for s, r, n in BUILTIN[pname.lower()]]
            machines.append(_compile(pname.lower(), rules))
        else:
            hint = _REFUSED.get(pname.lower())
            known = ", ".join([*sorted(BUILTIN), *KINDS, *sorted(parsers.multiline)])
            raise prop_error(
                prop,
                f"multiline parser '{pname}' is not supported by the multiline filter"
                + (f" ({hint})" if hint else "")
                + f" (supported: {known})",
            )
    return MultilineFilter(
        name=name, matcher=matcher, key=opts.key_content, machines=machines, containers=containers
    )
