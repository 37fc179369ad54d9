"""The `modify` filter (Fluent Bit's): rules applied in the order written, to the records that
meet every `Condition`.

Rules: `Set K V` (overwrite; the key moves to the end), `Add K V` (only if K is absent),
`Remove K`, `Remove_wildcard PREFIX*`, `Remove_regex REGEX`, `Rename K NEW` (only if NEW is
absent; position kept), `Hard_rename K NEW` (overwrites NEW), `Copy K NEW` (only if NEW is
absent), `Hard_copy K NEW`, `Move_to_start PREFIX*`, `Move_to_end PREFIX*`. Values with
spaces are double-quoted: `Set greeting "hello world"`.

Conditions: `Key_exists K`, `Key_does_not_exist K`, `A_key_matches RE`, `No_key_matches RE`,
`Key_value_equals K V`, `Key_value_does_not_equal K V`, `Key_value_matches K RE`,
`Key_value_does_not_match K RE`, `Matching_keys_have_matching_values KRE VRE`,
`Matching_keys_do_not_have_matching_values KRE VRE`. K may be a record accessor.
Keys compare case-sensitively; regular expressions search anywhere in the text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shipper.accessor import Accessor, scalar_text
from shipper.chunk import Record
from shipper.config.model import Prop, Section
from shipper.config.schema import build, opt
from shipper.filters.common import compile_regex, prop_error, split_quoted
from shipper.match import Matcher

_ONE = ("remove", "remove_wildcard", "remove_regex", "move_to_start", "move_to_end")
_TWO = ("set", "add", "add_if_not_present", "rename", "hard_rename", "copy", "hard_copy")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifyOptions:
    set: tuple[str, ...] = opt("Set", "str", (), multi=True, help="KEY VALUE: set (overwrite).")
    add: tuple[str, ...] = opt("Add", "str", (), multi=True, help="KEY VALUE: add if absent.")
    add_if_not_present: tuple[str, ...] = opt(
        "Add_if_not_present", "str", (), multi=True, help="Old name of Add."
    )
    remove: tuple[str, ...] = opt("Remove", "str", (), multi=True, help="KEY: remove.")
    remove_wildcard: tuple[str, ...] = opt(
        "Remove_wildcard", "str", (), multi=True, help="PREFIX*: remove keys with that prefix."
    )
    remove_regex: tuple[str, ...] = opt(
        "Remove_regex", "str", (), multi=True, help="REGEX: remove keys matching it."
    )
    rename: tuple[str, ...] = opt(
        "Rename", "str", (), multi=True, help="KEY NEW: rename unless NEW exists."
    )
    hard_rename: tuple[str, ...] = opt(
        "Hard_rename", "str", (), multi=True, help="KEY NEW: rename, replacing NEW."
    )
    copy: tuple[str, ...] = opt(
        "Copy", "str", (), multi=True, help="KEY NEW: copy unless NEW exists."
    )
    hard_copy: tuple[str, ...] = opt(
        "Hard_copy", "str", (), multi=True, help="KEY NEW: copy, replacing NEW."
    )
    move_to_start: tuple[str, ...] = opt(
        "Move_to_start", "str", (), multi=True, help="PREFIX*: move matching keys first."
    )
    move_to_end: tuple[str, ...] = opt(
        "Move_to_end", "str", (), multi=True, help="PREFIX*: move matching keys last."
    )
    condition: tuple[str, ...] = opt(
        "Condition", "str", (), multi=True, help="TYPE ARGS: rules apply only when all hold."
    )


Rule = Callable[[Record], Record]
Condition = Callable[[Record], bool]


def _prefix(text: str) -> str:
    return text[:-1] if text.endswith("*") else text


def _rule(kind: str, a: str, b: str, prop: Prop) -> Rule:
    if kind in ("rename", "hard_rename", "copy", "hard_copy"):
        return _pair_rule(kind, a, b)
    if kind in ("remove_wildcard", "remove_regex", "move_to_start", "move_to_end"):
        return _keys_rule(kind, a, prop)
    if kind == "set":

        def set_(r: Record) -> Record:
            r.pop(a, None)
            r[a] = b
            return r

        return set_
    if kind in ("add", "add_if_not_present"):

        def add(r: Record) -> Record:
            if a not in r:
                r[a] = b
            return r

        return add

    def remove(r: Record) -> Record:
        r.pop(a, None)
        return r

    return remove


def _pair_rule(kind: str, a: str, b: str) -> Rule:
    """Rename or copy key `a` to `b` (hard_: over an existing `b`)."""
    hard = kind.startswith("hard_")
    if kind.endswith("rename"):

        def rename(r: Record) -> Record:
            if a not in r or (b in r and not hard) or a == b:
                return r
            return {(b if k == a else k): v for k, v in r.items() if k != b}

        return rename

    def copy(r: Record) -> Record:
        if a not in r or (b in r and not hard):
            return r
        value = r[a]
        r.pop(b, None)
        r[b] = value
        return r

    return copy


def _keys_rule(kind: str, a: str, prop: Prop) -> Rule:
    """Rules on every key a pattern matches: remove them, or move them first or last."""
    if kind == "remove_regex":
        rx = compile_regex(prop, a)
        return lambda r: {k: v for k, v in r.items() if not rx.search(k)}
    pre = _prefix(a)
    if kind == "remove_wildcard":
        return lambda r: {k: v for k, v in r.items() if not k.startswith(pre)}
    first = kind == "move_to_start"

    def move(r: Record) -> Record:
        hit = {k: v for k, v in r.items() if k.startswith(pre)}
        rest = {k: v for k, v in r.items() if not k.startswith(pre)}
        return {**hit, **rest} if first else {**rest, **hit}

    return move


_KEY_CONDITIONS = (
    "key_exists",
    "key_does_not_exist",
    "key_value_equals",
    "key_value_does_not_equal",
    "key_value_matches",
    "key_value_does_not_match",
)


def _key_condition(kind: str, a: str, b: str | None, prop: Prop) -> Condition:
    """Conditions on one key (a record accessor): exists, equals, matches, or not."""
    try:
        acc = Accessor.parse(a)
    except ValueError as exc:
        raise prop_error(prop, str(exc)) from None
    if kind == "key_exists":
        return acc.exists
    if kind == "key_does_not_exist":
        return lambda r: not acc.exists(r)
    if kind in ("key_value_equals", "key_value_does_not_equal"):
        neg = kind == "key_value_does_not_equal"
        return lambda r: acc.exists(r) and ((acc.string(r) == b) != neg)
    rx = compile_regex(prop, b or "")
    neg = kind == "key_value_does_not_match"

    def value_matches(r: Record) -> bool:
        if not acc.exists(r):
            return False
        text = acc.string(r)
        return (text is not None and rx.search(text) is not None) != neg

    return value_matches


def _condition(args: list[str], prop: Prop) -> Condition:
    kind = args[0].lower()
    if len(args) < 2:
        raise prop_error(prop, f"condition {args[0]} needs an argument")
    a = args[1]
    b = args[2] if len(args) > 2 else None
    needs_b = kind.startswith("key_value") or kind.startswith("matching_keys")
    if needs_b and b is None:
        raise prop_error(prop, f"condition {args[0]} needs two arguments")
    if kind in _KEY_CONDITIONS:
        return _key_condition(kind, a, b, prop)
    if kind in ("a_key_matches", "no_key_matches"):
        rx = compile_regex(prop, a)
        neg = kind == "no_key_matches"
        return lambda r: any(rx.search(k) for k in r) != neg
    if kind in ("matching_keys_have_matching_values", "matching_keys_do_not_have_matching_values"):
        krx, vrx = compile_regex(prop, a), compile_regex(prop, b or "")
        neg = kind.startswith("matching_keys_do_not")

        def keys_values(r: Record) -> bool:
            ok = True
            for k, v in r.items():
                if krx.search(k):
                    text = scalar_text(v)
                    if text is None or not vrx.search(text):
                        ok = False
                        break
            return ok != neg

        return keys_values
    raise prop_error(prop, f"unknown condition {args[0]!r}")


class ModifyFilter:
    plugin = "modify"

    def __init__(
        self, *, name: str, matcher: Matcher, rules: list[Rule], conditions: list[Condition]
    ) -> None:
        self.name = name
        self.matcher = matcher
        self.rules = rules
        self.conditions = conditions

    def apply(self, records: list[Record], tag: str) -> list[Record]:
        conds, rules = self.conditions, self.rules
        out: list[Record] = []
        for rec in records:
            if all(c(rec) for c in conds):
                for rule in rules:
                    rec = rule(rec)
            out.append(rec)
        return out


def create(section: Section, *, name: str, matcher: Matcher) -> ModifyFilter:
    build(ModifyOptions, section)  # validates the keys
    rules: list[Rule] = []
    conditions: list[Condition] = []
    for prop in section.props:
        kind = prop.name
        if kind == "condition":
            args = split_quoted(prop.value.strip(), 3)
            if not args:
                raise prop_error(prop, "expected a condition type and its arguments")
            conditions.append(_condition(args, prop))
            continue
        if kind not in _ONE and kind not in _TWO:
            continue
        args = split_quoted(prop.value.strip(), 3)
        want = 1 if kind in _ONE else 2
        if len(args) != want:
            shape = "KEY" if want == 1 else "KEY VALUE (double-quote values with spaces)"
            raise prop_error(prop, f"expected {shape}")
        rules.append(_rule(kind, args[0], args[1] if want == 2 else "", prop))
    return ModifyFilter(name=name, matcher=matcher, rules=rules, conditions=conditions)
