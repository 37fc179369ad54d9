"""shipper.ray.multiline: the python and ray joiners."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.ray.multiline import Group, Joiner, PythonJoiner, RayJoiner, make_joiner

pytestmark = pytest.mark.unit

# Fluent Bit's own example for its python multiline parser.
FB_TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/base/data/home/runtimes/python27/python27_lib/versions/third_party/'
    'webapp2-2.5.2/webapp2.py", line 1535, in __call__',
    "    rv = self.handle_exception(request, response, e)",
    '  File "/base/data/home/apps/s~nearfieldspy/1.378705245900539993/nearfieldspy.py", '
    "line 17, in start",
    "    return get()",
    '  File "/base/data/home/apps/s~nearfieldspy/1.378705245900539993/nearfieldspy.py", '
    "line 5, in get",
    "    raise Exception('spam', 'eggs')",
    "Exception: ('spam', 'eggs')",
]

# Python 3.11+: caret lines under the code line.
CARET_TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/tmp/rayjob/job6.py", line 32, in bad_logged',
    "    1 / 0",
    "    ~~^~~",
    "ZeroDivisionError: division by zero",
]


def run(j: Joiner, lines: list[str], heads: list[Any] | None = None) -> list[list[str]]:
    out: list[Group] = []
    for i, line in enumerate(lines):
        j.push(line, None if heads is None else heads[i], float(i), out)
    j.flush(out)
    return [g[2:] for g in out]


def test_python_fluent_bit_example() -> None:
    lines = ["before", *FB_TRACEBACK, "after"]
    assert run(PythonJoiner(), lines) == [["before"], FB_TRACEBACK, ["after"]]


def test_python_caret_lines_stay_in_the_traceback() -> None:
    assert run(PythonJoiner(), CARET_TRACEBACK * 2) == [CARET_TRACEBACK, CARET_TRACEBACK]


def test_python_exception_line_forms() -> None:
    for last in [
        "ray.exceptions.RayTaskError(ValueError): ray::bad() (pid=1, ip=x)",
        "KeyboardInterrupt",
        "module.sub.Error: x",
        "Error:",
    ]:
        tb = [*CARET_TRACEBACK[:-1], last]
        assert run(PythonJoiner(), [*tb, "next"]) == [tb, ["next"]], last


def test_python_cut_off_traceback() -> None:
    lines = [
        "Traceback (most recent call last):",
        '  File "a.py", line 1, in <module>',
        "",
        "other",
    ]
    assert run(PythonJoiner(), lines) == [lines[:2], [""], ["other"]]


def test_python_chained_exceptions_are_separate_records_as_in_fluent_bit() -> None:
    chained = [
        *CARET_TRACEBACK,
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        *FB_TRACEBACK,
    ]
    assert run(PythonJoiner(), chained) == [CARET_TRACEBACK, [""], [chained[6]], [""], FB_TRACEBACK]


def test_python_held_counts() -> None:
    j = PythonJoiner()
    out: list[Group] = []
    held = []
    for line in CARET_TRACEBACK:
        j.push(line, None, 0.0, out)
        held.append(j.held)
    # The exception line closes the record at once: nothing left to wait for.
    assert held == [1, 2, 3, 4, 0]
    assert [g[2:] for g in out] == [CARET_TRACEBACK]
    j.push("Traceback (most recent call last):", None, 0.0, out)
    assert j.held == 1
    j.flush(out)
    assert j.held == 0 and out[-1][2:] == ["Traceback (most recent call last):"]


def test_python_group_carries_first_time_and_head() -> None:
    out: list[Group] = []
    j = PythonJoiner()
    j.push("x", "HEAD", 5.0, out)
    for i, line in enumerate(CARET_TRACEBACK):
        j.push(line, None, 10.0 + i, out)
    assert out[0] == ["HEAD", 5.0, "x"]
    assert out[1][:2] == [None, 10.0]


H = "H"  # any non-None head stands for "this line has a Ray header"


def test_ray_continuations_join_the_headed_record() -> None:
    lines = [
        "h1",
        "cont a",
        "",
        "cont b",
        "h2",
        "h3",
        "Traceback (most recent call last):",
        '  File "x.py", line 1',
        "ValueError: x",
        "tail",
    ]
    heads = [H, None, None, None, H, H, None, None, None, None]
    assert run(RayJoiner(), lines, heads) == [lines[0:4], ["h2"], lines[5:]]


def test_ray_orphans_before_the_first_header() -> None:
    # A rotated file that starts mid-record: nothing to join to, each line ships alone,
    # except a traceback, which joins as in `python`.
    lines = ["[state-dump] a", "[state-dump] b", *CARET_TRACEBACK, "h", "c"]
    heads: list[Any] = [None] * (len(lines) - 2) + [H, None]
    assert run(RayJoiner(), lines, heads) == [
        ["[state-dump] a"],
        ["[state-dump] b"],
        CARET_TRACEBACK,
        ["h", "c"],
    ]


def test_ray_header_ends_an_open_traceback() -> None:
    lines = ["Traceback (most recent call last):", '  File "x.py", line 1', "h", "c"]
    assert run(RayJoiner(), lines, [None, None, H, None]) == [lines[:2], lines[2:]]


def test_ray_free_text_joins_only_tracebacks() -> None:
    lines = ["print 1", "  indented", *CARET_TRACEBACK, "print 2"]
    heads: list[Any] = [None] * len(lines)
    heads[0] = H  # a header in a worker file does not make the next lines its continuation
    assert run(RayJoiner(free_text=True), lines, heads) == [
        ["print 1"],
        ["  indented"],
        CARET_TRACEBACK,
        ["print 2"],
    ]


def test_ray_held_is_exact() -> None:
    j = RayJoiner()
    out: list[Group] = []
    j.push("h", H, 0.0, out)
    assert j.held == 1 and out == []
    j.push("c", None, 0.0, out)
    assert j.held == 2 and out == []
    j.push("h2", H, 0.0, out)
    assert j.held == 1 and [g[2:] for g in out] == [["h", "c"]]
    j.reset()
    assert j.held == 0
    j.flush(out)
    assert len(out) == 1


def test_make_joiner() -> None:
    assert make_joiner(()) is None
    assert isinstance(make_joiner(("python",)), PythonJoiner)
    assert isinstance(make_joiner(("ray",)), RayJoiner)
    assert isinstance(make_joiner(("python", "ray")), RayJoiner)
    assert isinstance(make_joiner(("Python",)), PythonJoiner)
    assert isinstance(make_joiner(("python", " RAY ")), RayJoiner)
    # Fluent Bit built-ins that the config accepts but nothing implements yet: no joining.
    assert make_joiner(("docker", "cri", "go", "java")) is None
    with pytest.raises(ValueError, match="nosuch"):
        make_joiner(("nosuch",))


_VOCAB = [
    "Traceback (most recent call last):",
    '  File "a.py", line 1, in f',
    "    x()",
    "    ^^^",
    "ValueError: v",
    "KeyError",
    "",
    "  ",
    "plain",
    "T",
    "\t",
    "h",
]


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.sampled_from(_VOCAB), st.booleans()), max_size=60),
    st.sampled_from(["python", "ray", "ray-free"]),
    st.integers(1, 7),
)
def test_push_many_equals_push_and_keeps_every_line(
    items: list[tuple[str, bool]], kind: str, step: int
) -> None:
    lines = [line for line, _ in items]
    heads = [H if h else None for _, h in items]

    def make() -> Joiner:
        if kind == "python":
            return PythonJoiner()
        return RayJoiner(free_text=kind == "ray-free")

    one, many = make(), make()
    out1: list[Group] = []
    out2: list[Group] = []
    for i, (line, head) in enumerate(zip(lines, heads, strict=True)):
        one.push(line, head, 0.0, out1)
        if i % step == step - 1 or i == len(lines) - 1:
            lo = i - i % step
            many.push_many(lines[lo : i + 1], heads[lo : i + 1], 0.0, out2)
            assert many.held == one.held
            # held is exact: what went out plus what is held is what came in.
            assert sum(len(g) - 2 for g in out2) + many.held == i + 1
    one.flush(out1)
    many.flush(out2)
    assert out1 == out2
    assert [line for g in out1 for line in g[2:]] == lines
    assert all(len(g) > 2 for g in out1)
