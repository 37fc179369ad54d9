"""The benchmark harness never rots: its smoke mode runs here, as a user runs it.

`python -m benchmarks.run --smoke` (tiny sizes, every scenario, Ray parsing on and off) must
report every figure of every scenario, with no line lost or duplicated. A second run checks
`--vs` (another agent, alternating, figures as ratios), using shipper itself as the other
agent, and a third `--limits` (the seed sidecar's cpu 100m / memory 128Mi, in a cgroup of its
own, skipped where no cgroup can be made). The counting logic the figures rest on is checked
directly too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.configs import Output, render
from benchmarks.report import FIGURES, LIMIT_FIGURES
from benchmarks.scenarios import SCENARIOS
from benchmarks.tally import LineSplitter, Tally, percentile

REPO = Path(__file__).resolve().parent.parent


def _bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--smoke",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (out / "results.md").read_text().count("| scenario |") >= 1
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    return data


def _check_row(row: dict[str, Any]) -> None:
    if row["status"] == "skipped":  # the http output may not exist in this checkout yet
        assert row["scenario"] == "http", row
        assert "unknown output plugin" in row["note"].lower(), row
        return
    assert row["status"] == "ok", row
    for figure in FIGURES[row["scenario"]]:
        assert row[figure] is not None, (row["scenario"], row["variant"], figure)
    if "lost" in FIGURES[row["scenario"]]:
        assert row["lost"] == 0, row
        assert row["duplicated"] == 0, row
        assert row["unexpected"] == 0, row


@pytest.mark.timeout(120)
def test_smoke_reports_every_figure_with_nothing_lost(tmp_path: Path) -> None:
    data = _bench(tmp_path)
    rows = data["summary"]
    assert {(r["scenario"], r["variant"]) for r in rows} == {
        (s, v) for s in SCENARIOS for v in ("ray", "plain")
    }
    for row in rows:
        _check_row(row)
    assert data["meta"]["workload"]["backlog"]["lines"] == 2000
    assert data["meta"]["elapsed_s"] < 60


@pytest.mark.timeout(120)
def test_smoke_vs_prints_ratios(tmp_path: Path) -> None:
    data = _bench(
        tmp_path,
        "--scenarios",
        "stdout,live",
        "--variants",
        "plain",
        "--vs",
        f"{sys.executable} -m shipper -c {{config}}",
        "--vs-label",
        "again",
    )
    agents = {(r["variant"], r["agent"]) for r in data["summary"]}
    assert agents == {("plain", "shipper"), ("fluent-bit", "again")}
    for row in data["summary"]:
        _check_row(row)
    ratios = {r["scenario"]: r for r in data["ratios"]}
    assert set(ratios) == {"stdout", "live"}
    assert ratios["live"]["agent"] == "shipper / again"
    for name in ("lines_per_s", "cpu_per_1m", "p50_ms", "p99_ms"):
        assert isinstance(ratios["live"][name], float), name
    assert "## Ratios: shipper / again" in (tmp_path / "out" / "results.md").read_text()


@pytest.mark.timeout(120)
def test_smoke_inside_sidecar_limits(tmp_path: Path) -> None:
    data = _bench(
        tmp_path,
        "--scenarios",
        "stdout,ceiling",
        "--variants",
        "ray",
        "--limits",
        "cpu=100m,memory=128Mi",
    )
    runs = data["runs"]
    if all(r["status"] == "skipped" for r in runs):
        assert all("no cgroup" in r["note"] for r in runs), runs
        pytest.skip(runs[0]["note"])
    assert data["meta"]["limits"] == ["cpu=100m,memory=128Mi"]
    rows = {r["scenario"]: r for r in data["summary"]}
    assert set(rows) == {"stdout", "ceiling"}
    for row in rows.values():
        assert row["limits"] == "cpu=100m,memory=128Mi"
        _check_row(row)
        for figure in LIMIT_FIGURES:
            assert row[figure] is not None, (row["scenario"], figure)
        assert row["oom_kills"] == 0, row
        assert 0 < row["cg_peak_mb"] < 128, row
    assert rows["ceiling"]["lines_per_s"] >= 1000  # the smoke's first step: 1,000 lines/s
    steps = next(r["extra"]["steps"] for r in runs if r["scenario"] == "ceiling")
    assert len(steps) == 2 and steps[0]["passed"], steps
    assert all(s["cgroup_removed"] is True for s in steps), steps
    for r in runs:  # each run had a group of its own, with the quota, and it is gone
        stats = r["extra"]["cgroup_stats"]
        assert stats["nr_periods"] > 0 and stats["peak_bytes"] > 0, stats
        assert r["extra"]["cgroup_removed"] is True, r
        for d in r["extra"]["cgroup"].split(", "):
            assert not Path(d).exists(), d
    assert "## Inside the limits" in (tmp_path / "out" / "results.md").read_text()


def test_tally_counts_each_line_once_and_finds_loss_and_duplicates() -> None:
    t = Tally()
    ray_record = b'{"log":"[x] msg seq=0.1","message":"msg seq=0.1"}\n'  # marker twice
    joined = b'{"log":"head seq=0.2\\nTraceback ...\\n  File \\"a.py\\"","x":1}\n'
    split = LineSplitter()
    data = ray_record + joined + b'{"log":"again seq=0.2"}\n{"log":"x seq=7.1"}\n'
    blocks = [split.push(data[:30]), split.push(data[30:]), split.finish()]
    for block in blocks:
        if block:
            t.feed(block, 0.0)
    s = t.summary({0: 3})
    assert (s.received, s.distinct, s.lost, s.duplicated, s.unexpected) == (4, 3, 1, 1, 1)


def test_tally_latency_from_write_times() -> None:
    t = Tally(timed=True)
    t.feed(b'{"log":"a seq=0.1@1000000"}\n{"log":"b seq=0.2@1500000"}\n', 2.0)
    lat = t.summary({0: 2}).latency()
    assert lat == {"p50_ms": 500.0, "p99_ms": 1000.0, "max_ms": 1000.0}
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0


def test_fluent_bit_variant_has_no_shipper_only_keys() -> None:
    common: dict[str, Any] = {
        "glob": "/tmp/ray/session_latest/logs/*",
        "flush": 1.0,
        "output": Output("http", 9999),
    }
    fb = render(variant="fluent-bit", **common)
    assert "ray_metadata" not in fb.lower() and "multiline.parser" not in fb.lower()
    assert "Ray_Metadata      off" in render(variant="plain", **common)
    assert "multiline.parser  ray" in render(variant="ray", **common)
    for line in fb.splitlines():  # classic format: sections in column 1, entries indented
        assert not line or line.startswith(("[", "#", "    ")), line
