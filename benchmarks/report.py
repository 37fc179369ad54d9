"""Results: medians over repeats, the markdown table, ratios to a --vs agent, JSON, a chart."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.scenarios import Run
from benchmarks.tally import median

NUMERIC = (
    "lines_per_s",
    "cpu_per_1m",
    "cpu_pct",
    "peak_rss_mb",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "startup_s",
    "cpu_s",
    "window_s",
    "total_cpu_s",
    "cg_peak_mb",
    "cg_cache_mb",
    "throttled_pct",
)
# The worst repeat counts, not the median.
WORST = ("lost", "duplicated", "unexpected", "failcnt", "oom_kills")
COLUMNS: tuple[tuple[str, str], ...] = (
    ("lines_per_s", "lines/s"),
    ("cpu_per_1m", "CPU s/1M lines"),
    ("cpu_pct", "CPU % core"),
    ("cpu_s", "CPU s (window)"),
    ("peak_rss_mb", "peak RSS MB"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("lost", "lost"),
    ("duplicated", "dup"),
    ("startup_s", "startup s"),
)
# Which figures each scenario produces (others are shown as "-").
FIGURES: dict[str, tuple[str, ...]] = {
    "null": ("lines_per_s", "cpu_per_1m", "cpu_s", "peak_rss_mb", "startup_s"),
    "stdout": (
        "lines_per_s",
        "cpu_per_1m",
        "cpu_s",
        "peak_rss_mb",
        "lost",
        "duplicated",
        "startup_s",
    ),
    "http": (
        "lines_per_s",
        "cpu_per_1m",
        "cpu_s",
        "peak_rss_mb",
        "lost",
        "duplicated",
        "startup_s",
    ),
    "live": (
        "lines_per_s",
        "cpu_per_1m",
        "cpu_pct",
        "cpu_s",
        "peak_rss_mb",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "lost",
        "duplicated",
        "startup_s",
    ),
    "idle": ("cpu_pct", "cpu_s", "peak_rss_mb", "lost", "duplicated", "startup_s"),
    "many": (
        "lines_per_s",
        "cpu_per_1m",
        "cpu_pct",
        "cpu_s",
        "peak_rss_mb",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "lost",
        "duplicated",
        "startup_s",
    ),
}
FIGURES["ceiling"] = FIGURES["live"]
# What a run inside --limits adds (the cgroup's own counters).
LIMIT_FIGURES = ("cg_peak_mb", "failcnt", "oom_kills")
LIMIT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("lines_per_s", "lines/s"),
    ("cpu_per_1m", "CPU s/1M lines"),
    ("peak_rss_mb", "peak RSS MB"),
    ("cg_peak_mb", "cgroup peak MB"),
    ("cg_cache_mb", "page cache MB"),
    ("failcnt", "failcnt"),
    ("oom_kills", "OOM kills"),
    ("throttled_pct", "periods throttled %"),
    ("p99_ms", "p99 ms"),
)
_STATUS_ORDER = ("ok", "incomplete", "skipped", "failed")


@dataclass(slots=True)
class Row:
    scenario: str
    variant: str
    agent: str
    repeats: int
    status: str
    note: str
    figures: dict[str, float | int | None]
    limits: str = "none"

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "variant": self.variant,
            "agent": self.agent,
            "limits": self.limits,
            "repeats": self.repeats,
            "status": self.status,
            "note": self.note,
            **self.figures,
        }


def aggregate(runs: list[Run]) -> list[Row]:
    groups: dict[tuple[str, str, str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.scenario, r.variant, r.agent, r.limits), []).append(r)
    rows = []
    for (scenario, variant, agent, limits), rs in groups.items():
        status = max((r.status for r in rs), key=_STATUS_ORDER.index)
        measured = [r for r in rs if r.status in ("ok", "incomplete")]
        figs: dict[str, float | int | None] = {}
        for name in NUMERIC:
            vals = [getattr(r, name) for r in measured if getattr(r, name) is not None]
            figs[name] = median(vals) if vals else None
        for name in WORST:
            ivals = [getattr(r, name) for r in measured if getattr(r, name) is not None]
            figs[name] = max(ivals) if ivals else None
        notes = sorted({r.note for r in rs if r.note})
        rows.append(Row(scenario, variant, agent, len(rs), status, "; ".join(notes), figs, limits))
    return rows


def _fmt(name: str, v: float | int | None) -> str:
    if v is None:
        return "-"
    if name == "lines_per_s":
        return f"{v:,.0f}"
    if name in WORST:
        return f"{int(v):,}"
    if name in ("cpu_per_1m", "cpu_s", "startup_s"):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _table(header: list[str], body: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(out)


def _limited(rows: list[Row]) -> bool:
    return any(r.limits != "none" for r in rows)


def results_table(rows: list[Row], labels: dict[str, str]) -> str:
    lim = _limited(rows)
    header = [
        "scenario",
        *(["limits"] if lim else []),
        "parsing",
        "agent",
        *(title for _, title in COLUMNS),
        "status",
    ]
    body = []
    for row in rows:
        shown = FIGURES.get(row.scenario, ())
        cells = [_fmt(n, row.figures.get(n)) if n in shown else "-" for n, _ in COLUMNS]
        status = row.status + (f" ({row.note})" if row.note else "")
        body.append(
            [
                labels.get(row.scenario, row.scenario),
                *([row.limits] if lim else []),
                row.variant,
                row.agent,
                *cells,
                status.replace("|", "/"),
            ]
        )
    return _table(header, body)


def limits_table(rows: list[Row], labels: dict[str, str]) -> str:
    """The rows run inside limits, with what their cgroup counted ("" when there are none)."""
    limited = [r for r in rows if r.limits != "none"]
    if not limited:
        return ""
    header = ["scenario", "limits", "parsing", "agent", *(t for _, t in LIMIT_COLUMNS)]
    body = []
    for row in limited:
        shown = (*FIGURES.get(row.scenario, ()), *LIMIT_FIGURES, "cg_cache_mb", "throttled_pct")
        cells = [_fmt(n, row.figures.get(n)) if n in shown else "-" for n, _ in LIMIT_COLUMNS]
        body.append(
            [labels.get(row.scenario, row.scenario), row.limits, row.variant, row.agent, *cells]
        )
    return _table(header, body)


def ratios(rows: list[Row], agent: str, vs: str, same_config: bool) -> list[Row]:
    """agent / vs for every figure, row by row (the vs row of the same scenario)."""
    by_key = {(r.scenario, r.variant, r.agent, r.limits): r for r in rows}
    out = []
    for r in rows:
        if r.agent != agent:
            continue
        other = by_key.get((r.scenario, r.variant if same_config else "fluent-bit", vs, r.limits))
        if other is None:
            continue
        figs: dict[str, float | int | None] = {}
        for name, _ in COLUMNS:
            a, b = r.figures.get(name), other.figures.get(name)
            if name not in WORST and a is not None and b:
                figs[name] = a / b
        figs["_lost"] = r.figures.get("lost")
        figs["_lost_vs"] = other.figures.get("lost")
        figs["_dup"] = r.figures.get("duplicated")
        figs["_dup_vs"] = other.figures.get("duplicated")
        out.append(
            Row(
                r.scenario,
                r.variant,
                f"{agent} / {vs}",
                r.repeats,
                "ok" if r.status == other.status == "ok" else f"{r.status}/{other.status}",
                "",
                figs,
                r.limits,
            )
        )
    return out


def ratio_table(rows: list[Row], labels: dict[str, str]) -> str:
    lim = _limited(rows)
    header = [
        "scenario",
        *(["limits"] if lim else []),
        "parsing",
        "ratio",
        *(t for n, t in COLUMNS if n not in WORST),
        "lost (a vs b)",
        "dup (a vs b)",
    ]
    body = []
    for row in rows:
        shown = FIGURES.get(row.scenario, ())
        cells = []
        for n, _ in COLUMNS:
            if n in WORST:
                continue
            v = row.figures.get(n)
            cells.append(f"{v:.2f}x" if n in shown and isinstance(v, float) else "-")

        def pair(a: str, b: str, r: Row = row) -> str:
            x, y = r.figures.get(a), r.figures.get(b)
            return "-" if x is None and y is None else f"{_fmt('lost', x)} vs {_fmt('lost', y)}"

        body.append(
            [
                labels.get(row.scenario, row.scenario),
                *([row.limits] if lim else []),
                row.variant,
                row.agent,
                *cells,
                pair("_lost", "_lost_vs"),
                pair("_dup", "_dup_vs"),
            ]
        )
    return _table(header, body)


def write_json(
    path: Path, meta: dict[str, Any], runs: list[Run], rows: list[Row], ratio_rows: list[Row]
) -> None:
    path.write_text(
        json.dumps(
            {
                "meta": meta,
                "summary": [r.as_dict() for r in rows],
                "ratios": [r.as_dict() for r in ratio_rows],
                "runs": [r.as_dict() for r in runs],
            },
            indent=2,
            default=str,
        )
    )


def write_chart(
    path: Path, rows: list[Row], labels: dict[str, str], say: Callable[[str], None]
) -> bool:
    """Throughput and latency side by side (PNG); False when matplotlib is missing."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        say(
            "chart skipped: matplotlib is not installed (pip install matplotlib to get "
            f"{path.name})"
        )
        return False
    thr = [
        r for r in rows if r.figures.get("lines_per_s") and r.scenario in ("null", "stdout", "http")
    ]
    lat = [r for r in rows if r.figures.get("p99_ms") is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.5))

    def name(r: Row) -> str:
        return f"{labels.get(r.scenario, r.scenario)}\n{r.variant} / {r.agent}"

    ax1.barh(
        [name(r) for r in thr],
        [float(r.figures["lines_per_s"] or 0) for r in thr],
        color=["tab:blue" if r.agent == "shipper" else "tab:orange" for r in thr],
    )
    ax1.set_xlabel("lines/s (higher is better)")
    ax1.set_title("Backlog throughput")
    ax1.invert_yaxis()
    ys = list(range(len(lat)))
    ax2.barh(
        [y - 0.2 for y in ys],
        [float(r.figures["p50_ms"] or 0) for r in lat],
        height=0.4,
        label="p50",
        color="tab:green",
    )
    ax2.barh(
        [y + 0.2 for y in ys],
        [float(r.figures["p99_ms"] or 0) for r in lat],
        height=0.4,
        label="p99",
        color="tab:red",
    )
    ax2.set_yticks(ys, [name(r) for r in lat])
    ax2.set_xlabel("write-to-emit latency, ms (lower is better)")
    ax2.set_title("Live latency")
    ax2.invert_yaxis()
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
