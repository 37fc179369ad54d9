from __future__ import annotations

from pathlib import Path

import pytest


def tail_config(path: str, *, output: str = "", service: str = "", **keys: object) -> str:
    """A classic config: one tail input with `keys`, one stdout output."""
    lines = [
        "[SERVICE]",
        "    Flush 0.2",
        "    Grace 5",
        "    Log_Level debug",
        service,
        "[INPUT]",
        "    Name tail",
        f"    Path {path}",
        "    Tag t",
        "    Refresh_Interval 1",
        "    Rotate_Wait 1",
    ]
    lines += [f"    {k} {v}" for k, v in keys.items()]
    lines += ["[OUTPUT]", "    Name stdout", "    Match *", output]
    return "\n".join(line for line in lines if line) + "\n"


@pytest.fixture
def conf(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(path: str, **keys: object) -> str:
        p = tmp_path / "shipper.conf"
        p.write_text(tail_config(path, **keys))
        return str(p)

    return make
