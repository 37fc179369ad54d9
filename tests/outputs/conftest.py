"""Config and data helpers for output tests (the agent runs as a user runs it: the CLI)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

Value = str | int | float | Sequence[str]

FAST_SERVICE: dict[str, Value] = {
    "Flush": "0.2",
    "Grace": "5",
    "Log_Level": "debug",
    "scheduler.base": "0.2",
    "scheduler.cap": "2",
}


def tail_input(path: str | Path, **keys: Value) -> dict[str, Value]:
    base: dict[str, Value] = {
        "Name": "tail",
        "Path": str(path),
        "Tag": "app.log",
        "Read_from_Head": "on",
        "Refresh_Interval": "1",
        "Ray_Metadata": "off",
    }
    base.update(keys)
    return base


def section(kind: str, keys: Mapping[str, Value]) -> str:
    lines = [f"[{kind}]"]
    for key, value in keys.items():
        values = [value] if isinstance(value, str | int | float) else list(value)
        lines += [f"    {key} {v}" for v in values]
    return "\n".join(lines)


def write_config(
    path: Path,
    *,
    inputs: Iterable[Mapping[str, Value]],
    outputs: Iterable[Mapping[str, Value]],
    filters: Iterable[Mapping[str, Value]] = (),
    service: Mapping[str, Value] | None = None,
) -> Path:
    svc = dict(FAST_SERVICE)
    svc.update(service or {})
    parts = [section("SERVICE", svc)]
    parts += [section("INPUT", i) for i in inputs]
    parts += [section("FILTER", f) for f in filters]
    parts += [section("OUTPUT", o) for o in outputs]
    path.write_text("\n\n".join(parts) + "\n")
    return path


def append_lines(path: Path, lines: Iterable[str]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def run_shipper(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`shipper ARGS` as a user runs it, to its exit."""
    return subprocess.run(
        [sys.executable, "-m", "shipper", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_refused(tmp_path: Path, log: Path, out: Mapping[str, Value], key: str) -> None:
    """`shipper --dry-run` exits 1 on an output `out` and names the file, the line of `key`
    and the key."""
    cfg = write_config(tmp_path / "c.conf", inputs=[tail_input(log)], outputs=[out])
    res = run_shipper("--dry-run", "-c", str(cfg))
    assert res.returncode == 1, (out, res.stderr)
    line = cfg.read_text().splitlines().index(f"    {key} {out[key]}") + 1
    assert f"{cfg}:{line}" in res.stderr and key in res.stderr, res.stderr
