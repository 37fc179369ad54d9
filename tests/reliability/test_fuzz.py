"""Fuzzing, end to end: arbitrary configuration files through the real CLI, arbitrary values
for every known key through the whole pipeline build, and arbitrary bytes in Ray-named files
through a running agent. An error message or a result, never a traceback.

(The parsers' own unit-level fuzz lives with them in tests/config and tests/ray.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import logging
import os
import pkgutil
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import shipper
from shipper.cli import main as cli_main
from shipper.config.classic import parse_classic_text
from shipper.config.model import ConfigError
from shipper.config.yaml_format import load_yaml
from shipper.pipeline import Pipeline
from shipper.plugins import registry
from tests.reliability.harness import (
    LONG,
    ROOT,
    AgentProc,
    Row,
    classic,
    tail_input,
    write_conf,
)

# no `explain` phase: on a failure it imports modules that raise DeprecationWarnings, which
# this project's pytest settings turn into errors hiding the real failure
NO_EXPLAIN = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
FUZZ = settings(
    deadline=None,
    database=None,
    phases=NO_EXPLAIN,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)


def _all_keys() -> dict[str, list[str]]:
    """Every key of every options table in the package, by kind of value."""
    keys: dict[str, set[str]] = {}
    for mod in pkgutil.walk_packages(shipper.__path__, "shipper."):
        if mod.name.startswith(("shipper.view", "shipper.__main__")):
            continue
        try:
            m = importlib.import_module(mod.name)
        except Exception:  # a module being written by someone else
            continue
        for obj in vars(m).values():
            if isinstance(obj, type) and dataclasses.is_dataclass(obj):
                for f in dataclasses.fields(obj):
                    if "key" in f.metadata:
                        keys.setdefault(f.metadata["kind"], set()).add(f.metadata["key"])
    return {k: sorted(v) for k, v in keys.items()}


KEYS = _all_keys()
ALL_KEYS = sorted({k for v in KEYS.values() for k in v})
PLUGINS = {kind: sorted(registry(kind)) for kind in ("input", "filter", "output")}

EDGE_VALUES = [
    "0",
    "-1",
    "1",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "-inf",
    "1e-300",
    "0x10",
    "99999999999999999999999999",
    "1.5",
    "5M",
    "5m",
    "5MB",
    "0k",
    "-5k",
    "1G",
    "on",
    "off",
    "true",
    "false",
    "yes",
    "no",
    "2",
    "maybe",
    "",
    " ",
    "*",
    "**",
    "/",
    "/dev/null",
    "/proc/self/mem",
    ".",
    "..",
    "${HOME}",
    "${UNSET_VAR}",
    "${",
    "a,b,,c",
    ",",
    "json",
    "json_lines",
    "msgpack",
    "gzip",
    "x" * 5000,
    "\u00e9\u00e8",
    "\U0001f600",
    "\\",
    "'",
    '"',
    "#",
    ";",
    "[INPUT]",
    "@INCLUDE x",
    "250ms",
    "2m",
    "1h",
    "10s",
    "0.0",
    "-0",
    "1_000",
    "\uff11\uff12",
]  # fullwidth digits
VALUES = st.one_of(
    st.sampled_from(EDGE_VALUES),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"),
        max_size=30,
    ),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)


@st.composite
def sections(draw: Any) -> tuple[str, str, list[tuple[str, str]]]:
    kind = draw(st.sampled_from(["service", "input", "output", "filter"]))
    name = (
        draw(st.one_of(st.sampled_from(PLUGINS.get(kind, []) or ["x"]), VALUES))
        if kind != "service"
        else ""
    )
    props = draw(
        st.lists(
            st.tuples(
                st.one_of(
                    st.sampled_from(ALL_KEYS),
                    st.sampled_from(
                        [
                            "Match",
                            "Tag",
                            "Alias",
                            "Workers",
                            "Retry_Limit",
                            "Log_Level",
                            "Mem_Buf_Limit",
                        ]
                    ),
                ),
                VALUES,
            ),
            max_size=6,
        )
    )
    return kind, name, props


def render_classic(secs: list[tuple[str, str, list[tuple[str, str]]]]) -> str:
    out = []
    for kind, name, props in secs:
        out.append(f"[{kind.upper()}]")
        if kind != "service":
            out.append(f"    Name {name}")
        out += [f"    {k} {v}" for k, v in props]
    return "\n".join(out) + "\n"


def render_yaml(secs: list[tuple[str, str, list[tuple[str, str]]]]) -> str:
    import json

    out: list[str] = []
    service = [p for k, _, ps in secs if k == "service" for p in ps]
    if service:
        out.append("service:")
        out += [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in service]
    out.append("pipeline:")
    for kind in ("input", "filter", "output"):
        items = [(n, ps) for k, n, ps in secs if k == kind]
        if not items:
            continue
        out.append(f"  {kind}s:")
        for n, ps in items:
            out.append(f"    - name: {json.dumps(n)}")
            out += [f"      {json.dumps(k)}: {json.dumps(v)}" for k, v in ps]
    return "\n".join(out) + "\n"


CONFIGS = st.lists(sections(), min_size=1, max_size=4)
# a working config (tail -> stdout) with a few hostile extras: some of these are valid
_BASE = [
    ("input", "tail", [("Path", "/tmp/shipper-fuzz-nothing/*.log")]),
    ("output", "stdout", [("Match", "*")]),
]
VALIDISH = st.lists(st.tuples(st.sampled_from(ALL_KEYS), VALUES), max_size=2).flatmap(
    lambda extra: st.sampled_from([0, 1]).map(
        lambda i: [(k, n, ps + (extra if j == i else [])) for j, (k, n, ps) in enumerate(_BASE)]
    )
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _build(text: str, path: Path, yaml: bool) -> None:
    path.write_text(text)
    try:
        doc = (
            load_yaml(str(path), env={})
            if yaml
            else parse_classic_text(text, file=str(path), env={})
        )
        Pipeline.build(doc)
    except ConfigError as exc:
        assert str(exc)


@settings(FUZZ, max_examples=1500 if LONG else 400)
@given(CONFIGS, st.booleans())
def test_every_key_any_value_builds_or_config_error(
    fuzz_dir: Path,
    secs: Any,  # type: ignore[no-untyped-def]
    yaml: bool,
) -> None:
    """Known plugins and keys with hostile values: Pipeline.build gives a pipeline or a
    ConfigError naming the problem; any other exception is a bug."""
    text = render_yaml(secs) if yaml else render_classic(secs)
    _build(text, fuzz_dir / ("f.yaml" if yaml else "f.conf"), yaml)


def _dry_run_in_process(path: Path) -> tuple[int, str]:
    err = io.StringIO()
    # The CLI sets up the `shipper` logger for a process of its own: put it back afterwards,
    # or later tests' caplog would see nothing.
    logger = logging.getLogger("shipper")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        with (
            open(os.devnull, "w") as out,
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(out),
        ):
            rc = cli_main(["--dry-run", "-c", str(path)])
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    return rc, err.getvalue()


# Pieces of configs, joined at random: section headers, keys, YAML, and hostile bytes.
FRAGMENTS = [
    "[INPUT]",
    "[OUTPUT]",
    "[SERVICE]",
    "[FILTER]",
    "    Name tail",
    "    Name stdout",
    "    Path /tmp/x/*",
    "    Match *",
    "@INCLUDE ",
    "@SET a=",
    "${a}",
    "pipeline:",
    "  inputs:",
    "    - name: tail",
    "      path: x",
    "includes:",
    "  - x.yaml",
    "env:",
    "  A: 1",
    "- ",
    ": ",
    "&a",
    "*a",
    "!!python/object",
    "\t",
    "  ",
    "\n",
    "\r\n",
    "\ufeff",
    "\x00",
    "#",
    "'",
    '"',
]

RAW_TEXT = st.one_of(
    st.just(_BASE).map(render_classic),
    VALIDISH.map(render_classic),
    VALIDISH.map(render_yaml),
    CONFIGS.map(render_classic),
    CONFIGS.map(render_yaml),
    st.text(max_size=400),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join),
)


@settings(FUZZ, max_examples=1000 if LONG else 300)
@given(RAW_TEXT, st.sampled_from([".conf", ".yaml", ".yml", ""]))
def test_dry_run_in_process_never_raises(fuzz_dir: Path, text: str, ext: str) -> None:  # type: ignore[no-untyped-def]
    """`shipper --dry-run -c FILE` through cli.main: 0 or 1, never an exception."""
    path = fuzz_dir / f"c{ext}"
    path.write_text(
        text, encoding="utf-8", errors="surrogatepass"
    ) if "\ud800" not in text else path.write_bytes(text.encode("utf-8", "replace"))
    rc, err = _dry_run_in_process(path)
    assert rc in (0, 1)
    assert "Traceback" not in err, err
    if rc == 1:
        assert "error" in err.lower(), err


@pytest.mark.parametrize("fmt", ["classic", "yaml"])
def test_include_with_a_nul_byte(fuzz_dir: Path, fmt: str) -> None:
    """Found by test_dry_run_in_process_never_raises: `@INCLUDE \\x00    Path /tmp/x/*`."""
    if fmt == "classic":
        path = fuzz_dir / "nul-include.conf"
        path.write_bytes(b"@INCLUDE a\x00b/x*\n")
    else:
        path = fuzz_dir / "nul-include.yaml"
        path.write_bytes(b'includes:\n  - "a\\0b/x*"\n')
    rc, err = _dry_run_in_process(path)
    assert rc == 1 and "error" in err, err


@pytest.mark.parametrize("plugin", ["stdout", "http", "es"])
def test_workers_not_an_int(fuzz_dir: Path, plugin: str) -> None:
    """Found by test_dry_run_in_process_never_raises: `Workers 1e309` on any output (it was a
    ValueError traceback; now a ConfigError naming the key)."""
    path = fuzz_dir / f"workers-{plugin}.conf"
    path.write_text(
        f"[INPUT]\n    Name tail\n    Path /tmp/none/*.log\n[OUTPUT]\n"
        f"    Name {plugin}\n    Match *\n    Format json_lines\n    Workers abc\n"
    )
    rc, err = _dry_run_in_process(path)
    assert rc == 1 and "Workers" in err, err


@pytest.mark.timeout(300)
@settings(
    deadline=None,
    database=None,
    max_examples=60 if LONG else 25,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.one_of(RAW_TEXT.map(lambda t: t.encode("utf-8", "replace")), st.binary(max_size=300)),
    st.sampled_from([".conf", ".yaml"]),
)
def test_dry_run_subprocess_never_traceback(fuzz_dir: Path, data: bytes, ext: str) -> None:  # type: ignore[no-untyped-def]
    """The real entry point, `python -m shipper --dry-run -c <fuzzed file>`: exit 0 or 1 with
    a message, never a Python traceback on stderr."""
    path = fuzz_dir / f"e2e{ext}"
    path.write_bytes(data)
    r = subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run", "-c", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode in (0, 1), (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip() if r.returncode == 1 else r.stdout.strip()


def test_fuzz_summary_row(fuzz_dir: Path, results) -> None:  # type: ignore[no-untyped-def]
    """The results table's fuzz row, from a run of its own (not from counts that the other
    tests of this module leave behind, which depended on their order): a seeded corpus, the
    seed config in both formats and random joins of FRAGMENTS, through the CLI in process
    and through the real entry point. Every run exits 0 or 1 with something said, never a
    traceback; the seed config is valid and garbage is rejected."""
    rng = random.Random(20261207)
    corpus = [(render_classic(_BASE), ".conf"), (render_yaml(_BASE), ".yaml")]
    for i in range(38):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randrange(1, 30)))
        corpus.append((text, ".yaml" if i % 2 else ".conf"))
    in_process: Counter[int] = Counter()
    for i, (text, ext) in enumerate(corpus):
        path = fuzz_dir / f"summary-{i}{ext}"
        path.write_bytes(text.encode("utf-8", "replace"))
        rc, err = _dry_run_in_process(path)
        assert rc in (0, 1) and "Traceback" not in err, (text, err[-2000:])
        assert rc == 0 or "error" in err.lower(), (text, err[-2000:])
        in_process[rc] += 1
    assert in_process[0] >= 2 and in_process[1] >= 1, in_process
    subprocess_rc: Counter[int] = Counter()
    for i, (text, ext) in enumerate(corpus[:4]):
        path = fuzz_dir / f"summary-e2e-{i}{ext}"
        path.write_bytes(text.encode("utf-8", "replace"))
        r = subprocess.run(
            [sys.executable, "-m", "shipper", "--dry-run", "-c", str(path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert r.stderr.strip() if r.returncode == 1 else r.stdout.strip()
        subprocess_rc[r.returncode] += 1
    assert subprocess_rc[0] == 2  # the seed config, classic and YAML
    results.add(
        Row(
            "fuzz: configs (classic+YAML) via cli and `--dry-run` subprocess",
            note=f"seeded corpus of {len(corpus)}: {in_process[0]} valid, {in_process[1]} "
            f"rejected with a message in process; {sum(subprocess_rc.values())} subprocess "
            f"runs ({subprocess_rc[0]} valid); 0 tracebacks",
        )
    )


# -- hostile values that pass validation, for real -------------------------------------------

RUNTIME_EDGES = [
    ("input", "Refresh_Interval", "0"),
    ("input", "Refresh_Interval", "-1"),
    ("input", "Rotate_Wait", "0"),
    ("input", "Rotate_Wait", "-5"),
    ("input", "Mem_Buf_Limit", "0"),
    ("input", "Mem_Buf_Limit", "1"),
    ("input", "Buffer_Max_Size", "0"),
    ("input", "Buffer_Max_Size", "1"),
    ("input", "Buffer_Chunk_Size", "0"),
    ("input", "Ignore_Older", "0"),
    ("input", "Multiline_Flush", "0"),
    ("input", "Refresh_Interval", "nan"),
    ("input", "Rotate_Wait", "inf"),
    ("service", "Flush", "0"),
    ("service", "Flush", "-1"),
    ("service", "Grace", "0"),
    ("service", "Grace", "-1"),
    ("service", "Flush", "nan"),
    ("service", "scheduler.base", "0"),
    ("service", "Flush", "inf"),
]


@pytest.mark.parametrize(
    ("where", "key", "value"), RUNTIME_EDGES, ids=[f"{k}={v}" for _, k, v in RUNTIME_EDGES]
)
@pytest.mark.timeout(60)
def test_hostile_value_runs_or_refuses(
    tmp_path: Path,
    where: str,
    key: str,  # type: ignore[no-untyped-def]
    value: str,
) -> None:
    """A value the key table lets through must not crash the agent later: it either refuses
    at start (exit 1, a message) or ships lines."""
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(20)))
    inp = tail_input(str(log), **({key: value} if where == "input" else {}))
    svc = {key: value} if where == "service" else {}
    cfg = write_conf(
        tmp_path / "s.conf", classic([inp], [{"Name": "stdout", "Match": "*"}], service=svc)
    )
    with AgentProc(["-c", cfg]) as agent:
        from tests.reliability.harness import wait_until

        wait_until(
            lambda: agent.count() >= 20 or not agent.alive(),
            30,
            lambda: f"20 lines or an exit; stderr:\n{agent.err_text()[-2000:]}",
        )
        rc = agent.stop()
        err = agent.err_text()
    assert "Traceback" not in err, err[-3000:]
    if agent.count() < 20:
        assert rc == 1 and "error" in err, (rc, err[-2000:])
    else:
        assert rc == 0, (rc, err[-2000:])


# -- arbitrary bytes in Ray-named files, through a running agent -----------------------------

RAY_FILES = [
    "raylet.out",
    "gcs_server.err",
    "worker-0123abcd-01000000-4242.out",
    "worker-0123abcd-ffffffff-4243.err",
    "python-core-worker-0123abcd_4242.log",
    "events/event_GCS.log",
    "dashboard.log",
    "monitor.out",
    "job-driver-raysubmit_x.log",
    "unknown-thing.txt",
]
RAY_FRAGMENTS = [
    "[2026-11-28 10:07:08,319 I 15251 15251] (raylet) file.cc:103: ",
    "[2026-11-28 10:07:08,319 E 1 2] x.cc:1: ",
    "[9999-99-99 99:99:99,999 Z 0 0] ",
    "2026-11-28 10:07:08,319\tINFO file.py:95 -- ",
    "2026-13-45 25:61:61,000\tERROR x.py:1 -- ",
    "I1128 10:07:08.319117   15251 file.cc:1403] ",
    "E9999 99:99:99.999999 1 x] ",
    '{"asctime": "2026-11-28 10:07:08,319", "levelname": "INFO", "message": "m"}',
    '{"timestamp": 99999999999999999999, "severity": "ERROR", "pid": "x"}',
    '{"timestamp": -1, "custom_fields": {"a": [1, {"b": null}]}}',
    '{"log": "x", "date": 1}',
    "Traceback (most recent call last):",
    '  File "x.py", line 1, in <module>',
    "ValueError: boom",
    ":job_id:01000000",
    ":task_name:f",
    ":actor_name:A",
    ":job_id:",
    ":task_attempt_start:",
    "\t",
    " ",
    "(raylet)",
    "--",
    "{",
    "}",
    "[",
    "]",
    "\\",
    "\x00",
    "\u2028",
    "\ufeff",
    "\U0001f600",
    "\x1b[31m",
    "9" * 40,
    "-" * 100,
]
RAY_LINE = st.one_of(
    st.lists(st.sampled_from(RAY_FRAGMENTS), max_size=5).map("".join),
    st.text(
        alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)),
        max_size=60,
    ),
)
RAW_LINE = st.one_of(
    RAY_LINE.map(lambda s: s.encode()), st.binary(max_size=60).map(lambda b: b.replace(b"\n", b""))
)


@pytest.mark.slow
@pytest.mark.timeout(300)
@settings(
    deadline=None,
    database=None,
    max_examples=8 if LONG else 3,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(st.lists(st.tuples(st.sampled_from(RAY_FILES), RAW_LINE), min_size=50, max_size=300))
def test_agent_ships_arbitrary_ray_lines(
    tmp_path_factory: pytest.TempPathFactory,  # type: ignore[no-untyped-def]
    lines: list[tuple[str, bytes]],
) -> None:
    """Ray_Metadata on, multiline.parser ray: whatever the bytes, the agent keeps running,
    every record is JSON, and every line's text is in some record (marker lines of worker
    files excepted: they set fields instead)."""
    base = tmp_path_factory.mktemp("ray")
    logs = base / "session_2026-11-28_10-07-08_000000_1" / "logs"
    (logs / "events").mkdir(parents=True)
    by_file: dict[str, list[bytes]] = {}
    for name, raw in lines:
        by_file.setdefault(name, []).append(raw)
    for name, raws in by_file.items():
        (logs / name).write_bytes(b"".join(r + b"\n" for r in raws))
    end = "END-OF-FUZZ"
    cfg = write_conf(
        base / "s.conf",
        classic(
            [
                tail_input(
                    f"{logs}/*, {logs}/events/*.log",
                    Ray_Metadata="on",
                    **{"multiline.parser": "ray", "Multiline_Flush": "0.2"},
                )
            ],
            [{"Name": "stdout", "Match": "*"}],
        ),
    )
    with AgentProc(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        for name in by_file:
            with open(logs / name, "ab") as f:
                f.write(f"[2026-11-28 10:07:09,000 I 1 1] x.cc:1: {end}\n".encode())
        from tests.reliability.harness import wait_until

        wait_until(
            lambda: sum(end in x for x in agent.snapshot()) >= len(by_file) or not agent.alive(),
            60,
            lambda: f"the end markers; stderr:\n{agent.err_text()[-2000:]}",
        )
        rc = agent.stop()
        err = agent.err_text()
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err and "stopped unexpectedly" not in err, err[-3000:]
    assert not agent.bad_lines, agent.bad_lines[:3]
    shipped = "\n".join(agent.snapshot())
    for name, raw in lines:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if name.startswith("worker-") and text.startswith(":"):
            continue  # a marker line: it sets task_name/actor_name/job_id
        assert text in shipped, (name, raw)
