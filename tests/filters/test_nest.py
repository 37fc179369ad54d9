"""The `nest` filter against Fluent Bit's documented examples (docs: pipeline/filters/nest):
the same input records, the same output records, key order included."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from shipper.config.classic import parse_classic_text
from shipper.config.model import ConfigError
from shipper.config.service import ServiceOptions
from shipper.plugins import FILTERS, Context, Filter

# the `mem` input's record of the docs' examples
MEM = {
    "Mem.total": 4050908,
    "Mem.used": 714984,
    "Mem.free": 3335924,
    "Swap.total": 1046524,
    "Swap.used": 0,
    "Swap.free": 1046524,
}


def chain(*bodies: str) -> list[Filter]:
    text = "".join(
        "[FILTER]\n" + textwrap.indent(textwrap.dedent(b).strip(), "    ") + "\n" for b in bodies
    )
    doc = parse_classic_text(text, file="f.conf", env={})
    ctx = Context(service=ServiceOptions(), name="nest.0")
    return [FILTERS[s.plugin](s, ctx) for s in doc.sections]


def run(filters: list[Filter], rec: dict[str, Any]) -> list[tuple[str, Any]]:
    records = [dict(rec)]
    for flt in filters:
        records = flt.apply(records, "mem.local")
    (out,) = records
    return list(out.items())  # order matters: Fluent Bit appends the moved keys


def test_intro_nest_and_lift() -> None:
    nest = chain("Name nest\nMatch *\nOperation nest\nWildcard Key*\nNest_under NestKey")
    rec = {"Key1": "Value1", "Key2": "Value2", "OtherKey": "Value3"}
    assert run(nest, rec) == [
        ("OtherKey", "Value3"),
        ("NestKey", {"Key1": "Value1", "Key2": "Value2"}),
    ]
    lift = chain("Name nest\nMatch *\nOperation lift\nNested_under NestKey")
    nested = {"OtherKey": "Value3", "NestKey": {"Key1": "Value1", "Key2": "Value2"}}
    assert dict(run(lift, nested)) == rec


def test_example_1_nest_with_remove_prefix() -> None:
    flt = chain("""
        Name nest
        Match *
        Operation nest
        Wildcard Mem.*
        Nest_under Memstats
        Remove_prefix Mem.
    """)
    assert run(flt, MEM) == [
        ("Swap.total", 1046524),
        ("Swap.used", 0),
        ("Swap.free", 1046524),
        ("Memstats", {"total": 4050908, "used": 714984, "free": 3335924}),
    ]


def test_example_2_nest_and_lift_undo() -> None:
    flt = chain(
        """
        Name nest
        Match *
        Operation nest
        Wildcard Mem.*
        Wildcard Swap.*
        Nest_under Stats
        Add_prefix NESTED
        """,
        """
        Name nest
        Match *
        Operation lift
        Nested_under Stats
        Remove_prefix NESTED
        """,
    )
    assert run(flt, MEM) == list(MEM.items())
    assert run(flt[:1], MEM) == [("Stats", {"NESTED" + k: v for k, v in MEM.items()})]


DEEP = [
    "Name nest\nMatch *\nOperation nest\nWildcard Mem.*\nNest_under LAYER1",
    "Name nest\nMatch *\nOperation nest\nWildcard LAYER1*\nNest_under LAYER2",
    "Name nest\nMatch *\nOperation nest\nWildcard LAYER2*\nNest_under LAYER3",
]
SWAP = [("Swap.total", 1046524), ("Swap.used", 0), ("Swap.free", 1046524)]


def test_example_3_nest_three_levels_deep() -> None:
    mem = {"Mem.total": 4050908, "Mem.used": 714984, "Mem.free": 3335924}
    assert run(chain(*DEEP), MEM) == [*SWAP, ("LAYER3", {"LAYER2": {"LAYER1": mem}})]


def test_example_4_lift_with_prefixes() -> None:
    flt = chain(
        *DEEP,
        "Name nest\nMatch *\nOperation lift\nNested_under LAYER3\nAdd_prefix Lifted3_",
        "Name nest\nMatch *\nOperation lift\nNested_under Lifted3_LAYER2\n"
        "Add_prefix Lifted3_Lifted2_",
        "Name nest\nMatch *\nOperation lift\nNested_under Lifted3_Lifted2_LAYER1\n"
        "Add_prefix Lifted3_Lifted2_Lifted1_",
    )
    assert run(flt, MEM) == [
        *SWAP,
        ("Lifted3_Lifted2_Lifted1_Mem.total", 4050908),
        ("Lifted3_Lifted2_Lifted1_Mem.used", 714984),
        ("Lifted3_Lifted2_Lifted1_Mem.free", 3335924),
    ]


def test_untouched_records() -> None:
    nest = chain("Name nest\nMatch *\nOperation nest\nWildcard nope*\nNest_under N")
    assert run(nest, {"a": 1}) == [("a", 1)]
    lift = chain("Name nest\nMatch *\nOperation lift\nNested_under a")
    assert run(lift, {"a": "not a map", "b": 2}) == [("a", "not a map"), ("b", 2)]
    exact = chain("Name nest\nMatch *\nOperation nest\nWildcard a\nNest_under N")
    assert run(exact, {"a": 1, "ab": 2}) == [("ab", 2), ("N", {"a": 1})]


@pytest.mark.parametrize(
    "body, key",
    [
        ("Operation nest\nNest_under N", "Wildcard"),
        ("Operation nest\nWildcard a*", "Nest_under"),
        ("Operation lift", "Nested_under"),
        ("Operation flatten\nWildcard a", "Operation"),
        ("Wildcard a\nNest_under b", "Operation"),
        ("Operation nest\nWildcard a\nNest_under b\nRecursive on", "Recursive"),
    ],
)
def test_bad_sections_name_the_key(body: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        chain("Name nest\nMatch *\n" + body)
    assert err.value.key == key and err.value.file == "f.conf"
