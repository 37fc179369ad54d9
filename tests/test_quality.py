"""The code's own checks, run with the suite: mypy --strict on shipper/, ruff lint and format."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.timeout(300)
def test_mypy_strict() -> None:
    out = _run("mypy")  # files and strictness come from pyproject.toml
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_lint() -> None:
    out = _run("ruff", "check", "shipper", "tests", "benchmarks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format() -> None:
    out = _run("ruff", "format", "--check", "shipper", "tests", "benchmarks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_modules_stay_small() -> None:
    """One concern per module, readable in one sitting: at most 400 lines. A module that
    grows past it is split by concern (as tail/commits.py and outputs/secrets.py were), not
    cut at the line."""
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "shipper").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not big, big


# Attribute writes to objects other than `self`/`cls` that are meant: (module, target object)
# -> why. Everything else changes another part's state and must be a method of that part.
FOREIGN_WRITES_ALLOWED = {
    # telemetry's event functions update the counters of the stats classes it defines
    ("shipper/telemetry.py", "stats"): "telemetry owns InputStats/OutputStats",
    ("shipper/telemetry.py", "REGISTRY"): "telemetry's own registry",
    # an input counts its records and bytes into its own InputStats (hot path: no call)
    ("shipper/tail/input.py", "self.stats"): "the input's own counters",
    ("shipper/inputs/stdin.py", "self.stats"): "the input's own counters",
    # the input budget keeps its input's buffer gauges (Mem_Buf_Limit) current
    ("shipper/budget.py", "stats"): "the input's buffer gauges",
    # a rewrite_tag filter counts what it re-emits into its emitter's input stats
    ("shipper/filters/rewrite_tag.py", "self.emitter"): "the emitter's record counter",
    # the filter stage counts each filter's records into that filter's stats
    ("shipper/pipeline.py", "stats"): "a filter's counters",
    ("shipper/pipeline.py", "step.stats"): "a filter's counters",
    # Chunk.records is a property: its setter is the filter stage's interface (it recounts)
    ("shipper/pipeline.py", "chunk"): "Chunk.records setter",
    # a wrapping handler's setter forwards the LineHandler protocol's attribute to its inner one
    ("shipper/parsers/handler.py", "self._inner"): "held_lines forwarded to the wrapped handler",
    # the time format's directive functions fill the parse state parse() made for them
    ("shipper/parsers/timefmt.py", "p"): "the parse state of one parse() call",
    # a logging.Filter redacts the LogRecord it is given (that is the logging API)
    ("shipper/outputs/secrets.py", "record"): "logging.Filter rewriting its record",
    # ctypes prototypes are declared on the foreign function objects themselves
    ("shipper/memory.py", "mallopt"): "ctypes prototype",
    ("shipper/tail/wake.py", "lib.inotify_init1"): "ctypes prototype",
    ("shipper/tail/wake.py", "lib.inotify_add_watch"): "ctypes prototype",
    # the library loggers we configure are process-wide stdlib objects
    ("shipper/logs.py", "root"): "root logger",
    ("shipper/outputs/kafka.py", "client"): "the kafka library's logger",
}


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of a module or function, without those of the functions defined in it."""
    nodes: list[ast.AST] = []
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        nodes.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            todo.extend(ast.iter_child_nodes(node))
    return nodes


def _created_locally(nodes: list[ast.AST]) -> set[str]:
    """Names a function binds to an object it makes there (`x = Class(...)`, `cls(...)`):
    writing their attributes is setting them up."""
    made: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            callee = node.value.func
            name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
            if name == "cls" or name[:1].isupper():
                made.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return made


def _is_setattr(node: ast.AST) -> bool:
    """`setattr(obj, ...)` or `object.__setattr__(obj, ...)`."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id == "setattr") or (
        isinstance(f, ast.Attribute) and f.attr == "__setattr__"
    )


def foreign_writes(
    source: str, rel: str, allowed: Mapping[tuple[str, str], str] = FOREIGN_WRITES_ALLOWED
) -> list[str]:
    """`obj.attr = ...` (also `+=`, tuple targets, `setattr(obj, ...)`) where obj is not
    self/cls or an object the same function made."""
    tree = ast.parse(source, rel)
    bad: list[str] = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for scope in [tree, *scopes]:
        nodes = _own_nodes(scope)
        ok = {"self", "cls"} | _created_locally(nodes)
        for node in nodes:
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            elif _is_setattr(node):
                assert isinstance(node, ast.Call)
                obj = ast.unparse(node.args[0])
                if obj not in ok and (rel, obj) not in allowed:
                    bad.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
                continue
            else:
                continue
            while targets:
                t = targets.pop()
                if isinstance(t, ast.Tuple | ast.List):
                    targets.extend(t.elts)
                    continue
                if not isinstance(t, ast.Attribute):
                    continue
                obj = ast.unparse(t.value)
                if obj in ok or (rel, obj) in allowed:
                    continue
                bad.append(f"{rel}:{t.lineno}: {ast.unparse(t)}")
    return sorted(set(bad))


def test_no_part_writes_another_parts_attributes() -> None:
    """State is changed by the part that owns it, through a method that says what happens."""
    bad = [
        line
        for p in sorted((ROOT / "shipper").rglob("*.py"))
        for line in foreign_writes(p.read_text(), str(p.relative_to(ROOT)))
    ]
    assert not bad, "\n".join(bad)


def test_every_allowed_foreign_write_is_still_there() -> None:
    """The allow-list stays as small as the code: an entry nothing needs any more goes."""
    for rel, obj in FOREIGN_WRITES_ALLOWED:
        writes = foreign_writes((ROOT / rel).read_text(), rel, allowed={})
        assert any(w.split(": ", 1)[1].startswith(obj + ".") for w in writes), (rel, obj)


def test_the_foreign_write_check_catches_one() -> None:
    """The check above is not vacuous: another part's field written from outside is found,
    an object the function made itself is not."""
    src = (
        "def truncated(f, mono):\n"
        "    f.last_change = mono\n"
        "    c = FollowedFile()\n"
        "    c.size = 1\n"
        "    c.ledger.acked = 0\n"
        "    setattr(f, 'size', 0)\n"
        "    setattr(self, 'size', 0)\n"
    )
    found = foreign_writes(src, "shipper/x.py")
    assert found == [
        "shipper/x.py:2: f.last_change",
        "shipper/x.py:5: c.ledger.acked",
        "shipper/x.py:6: setattr(f, 'size', 0)",
    ]
