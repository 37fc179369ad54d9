"""One command for the whole benchmark: `python -m benchmarks.run [options]`.

Generates the workload, runs the agent as a user would (`shipper -c <generated config>`) for
every scenario and parsing variant, optionally alternating with another agent (`--vs`), and
writes OUT/results.md, OUT/results.json and OUT/results.png (with matplotlib). See
benchmarks/README.md for what every figure means.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import cgroups, probe, profile, report
from benchmarks.configs import EXTRA_VARIANTS, FLUENT_BIT, VARIANTS
from benchmarks.procs import REPO, AgentSpec, default_agent_command
from benchmarks.scenarios import EXTRA_SCENARIOS, SCENARIOS, Bench, Run, Settings

SMOKE = {
    "lines": 2000,
    "files": 3,
    "rate": 1000.0,
    "duration": 1.0,
    "idle_duration": 0.5,
    "many_files": 20,
    "many_rate": 10.0,
    "flush": 0.2,
    "settle": 0.3,
    "stall": 6.0,
    "ceiling_duration": 1.0,
    "ceiling_start": 1000.0,
    "ceiling_steps": 2,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = Settings()
    p.add_argument("--lines", type=int, default=d.lines, help="backlog lines (all files)")
    p.add_argument("--files", type=int, default=d.files, help="files of the backlog, live, idle")
    p.add_argument("--rate", type=float, default=d.rate, help="live writer lines/s (all files)")
    p.add_argument("--duration", type=float, default=d.duration, help="live/many writer seconds")
    p.add_argument(
        "--idle-duration",
        type=float,
        default=d.idle_duration,
        help="seconds of the idle CPU window",
    )
    p.add_argument("--many-files", type=int, default=d.many_files)
    p.add_argument("--many-rate", type=float, default=d.many_rate, help="lines/s per file")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (the default) and "
        f"{', '.join(EXTRA_SCENARIOS)}",
    )
    p.add_argument(
        "--limits",
        action="append",
        metavar="LIMITS",
        help="run the agents inside cgroup limits, Kubernetes-style: cpu=100m,memory=128Mi "
        "('none': unconstrained); repeat to compare, e.g. --limits cpu=100m,memory=128Mi "
        "--limits none",
    )
    p.add_argument(
        "--ceiling-duration",
        type=float,
        default=d.ceiling_duration,
        help="seconds of each step of the ceiling search",
    )
    p.add_argument("--ceiling-start", type=float, default=d.ceiling_start, help="lines/s")
    p.add_argument("--ceiling-steps", type=int, default=d.ceiling_steps)
    p.add_argument("--ceiling-p99-ms", type=float, default=d.ceiling_p99_ms)
    p.add_argument(
        "--ceiling-budget", type=float, default=d.ceiling_budget, help="seconds per search"
    )
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="ray (multiline.parser ray, the default Ray keys), plain (Ray_Metadata off), "
        "parser (plain plus a regex Parser; not by default)",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs of each; medians are reported")
    p.add_argument("--flush", type=float, default=d.flush, help="[SERVICE] Flush seconds")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    p.add_argument("--work", type=Path, help="where data goes (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the data, configs and logs")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: a quick self-test")
    p.add_argument(
        "--agent",
        default=default_agent_command(),
        help="the agent under test; {config} is the config path",
    )
    p.add_argument("--vs", metavar="CMD", help="another agent, e.g. 'fluent-bit -c {config}'")
    p.add_argument("--vs-label", help="its name in the tables (default: the command's name)")
    p.add_argument(
        "--vs-same-config",
        action="store_true",
        help="give --vs shipper's own configs (compare two shipper builds) instead "
        "of the Fluent Bit variant",
    )
    p.add_argument(
        "--profile",
        choices=("py-spy", "cprofile", "probe"),
        help="run shipper under a profiler and summarize where the time goes",
    )
    p.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    args = p.parse_args(argv)
    if args.smoke:
        for k, v in SMOKE.items():
            if getattr(args, k, None) == getattr(d, k, None):
                setattr(args, k, v)
    return args


def _units(
    args: argparse.Namespace, shipper: AgentSpec, vs: AgentSpec | None, repeat: int
) -> list[tuple[str, AgentSpec]]:
    """(variant, agent) in the order of one scenario; reversed on odd repeats (alternation)."""
    variants = [v for v in args.variants.split(",") if v]
    units = [(v, shipper) for v in variants]
    if vs is not None:
        if vs.fluent_bit_config:
            units.insert(1 if len(units) > 1 else len(units), (FLUENT_BIT, vs))
        else:
            units = [u for v in variants for u in ((v, shipper), (v, vs))]
    return units[::-1] if repeat % 2 else units


def labels(s: Settings) -> dict[str, str]:
    return {
        "ceiling": f"live ceiling: {s.ceiling_duration:g} s, p99 < {s.ceiling_p99_ms:g} ms, 0 lost",
        "null": f"backlog {s.lines:,} lines -> /dev/null",
        "stdout": f"backlog {s.lines:,} lines -> stdout reader",
        "http": f"backlog {s.lines:,} lines -> http sink",
        "live": f"live {s.rate:,.0f} lines/s, {s.files} files",
        "idle": f"idle, {s.files} files",
        "many": f"{s.many_files:,} files x {s.many_rate:g} lines/s",
    }


def _git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            text=True,
            capture_output=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "shipper"],
            cwd=REPO,
            text=True,
            capture_output=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + (" (shipper/ modified)" if dirty else "")


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model or platform.machine()}), Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def _say(line: str) -> None:
    print(line, flush=True)


def _brief(r: Run) -> str:
    parts = [r.status]
    for name, fmt in (
        ("lines_per_s", "{:,.0f} lines/s"),
        ("cpu_per_1m", "{:.3f} CPU s/1M"),
        ("cpu_pct", "{:.2f}% CPU"),
        ("peak_rss_mb", "{:.1f} MB"),
        ("cg_peak_mb", "cgroup peak {:.1f} MB"),
        ("failcnt", "failcnt {}"),
        ("oom_kills", "OOM kills {}"),
        ("throttled_pct", "throttled {:.0f}%"),
        ("p99_ms", "p99 {:.1f} ms"),
        ("lost", "lost {}"),
        ("duplicated", "dup {}"),
    ):
        v = getattr(r, name)
        if v is not None:
            parts.append(fmt.format(v))
    parts.append(f"({r.extra.get('run_s', 0):.1f} s)")
    return ", ".join(parts) + (f" [{r.note}]" if r.note else "")


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (and SIGINT, which a shell ignores in background jobs) unwind the run: the agent
    # under test is stopped and its cgroup removed on the way out.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    settings = Settings(
        lines=args.lines,
        files=args.files,
        rate=args.rate,
        duration=args.duration,
        idle_duration=args.idle_duration,
        many_files=args.many_files,
        many_rate=args.many_rate,
        flush=args.flush,
        seed=args.seed,
        profile=args.profile,
        py_spy=args.py_spy,
        ceiling_duration=args.ceiling_duration,
        ceiling_start=args.ceiling_start,
        ceiling_steps=args.ceiling_steps,
        ceiling_p99_ms=args.ceiling_p99_ms,
        ceiling_budget=args.ceiling_budget,
    )
    try:
        limits = [cgroups.Limits.parse(t) for t in args.limits or ["none"]]
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    settings.cold_cache = any(not lim.none for lim in limits)
    if args.smoke:
        settings.settle, settings.stall = float(SMOKE["settle"]), float(SMOKE["stall"])
    scenarios = [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS + EXTRA_SCENARIOS:
            known = ", ".join(SCENARIOS + EXTRA_SCENARIOS)
            raise SystemExit(f"unknown scenario {s!r} (known: {known})")
    for v in args.variants.split(","):
        if v and v not in (*VARIANTS, *EXTRA_VARIANTS):
            known = ", ".join((*VARIANTS, *EXTRA_VARIANTS))
            raise SystemExit(f"unknown variant {v!r} (known: {known})")
    shipper = AgentSpec("shipper", args.agent, fluent_bit_config=False)
    vs = None
    if args.vs:
        label = args.vs_label or Path(shlex.split(args.vs)[0]).name
        if label == "shipper":
            label = "vs-shipper"
        vs = AgentSpec(label, args.vs, fluent_bit_config=not args.vs_same_config)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        for old in [
            *args.out.glob("profile-*.txt"),
            *args.out.glob("profile-*.pstats"),
            *args.out.glob("probe-*.json"),
        ]:
            old.unlink()
    work = args.work or Path(tempfile.mkdtemp(prefix="shipper-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(settings, work, args.out)
    names = labels(settings)
    plan = [
        (rep, sc, lim, v, a)
        for rep in range(args.repeat)
        for sc in scenarios
        for lim in (limits if rep % 2 == 0 else limits[::-1])
        for v, a in _units(args, shipper, vs, rep)
    ]
    _say(f"benchmark: {len(plan)} runs, data in {work}, results in {args.out}")
    runs: list[Run] = []
    started = time.time()
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        for i, (rep, sc, lim, variant, agent) in enumerate(plan, 1):
            if sc in ("null", "stdout", "http") and bench.workload_info.get("backlog") is None:
                _say(
                    f"generating the backlog: {settings.lines:,} lines in {settings.files} "
                    "files ..."
                )
                bench.backlog()
            run = bench.run(sc, variant, agent, rep, lim)
            runs.append(run)
            where = "" if lim.none else f" in {lim.text}"
            _say(f"[{i}/{len(plan)}] {sc} {variant} {agent.label}{where}: {_brief(run)}")
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    rows = report.aggregate(runs)
    ratio_rows = report.ratios(rows, "shipper", vs.label, args.vs_same_config) if vs else []
    meta: dict[str, Any] = {
        "command": "python -m benchmarks.run "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "machine": _machine(),
        "git": _git_rev(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "elapsed_s": round(time.time() - started, 1),
        "settings": asdict(settings),
        "workload": bench.workload_info,
        "labels": names,
        "agent": args.agent,
        "vs": args.vs,
        "repeat": args.repeat,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "limits": [lim.text for lim in limits],
    }
    md = _markdown(meta, rows, ratio_rows, names, vs.label if vs else None)
    if args.profile:
        md += _profiles(args.out)
    (args.out / "results.md").write_text(md)
    report.write_json(args.out / "results.json", meta, runs, rows, ratio_rows)
    report.write_chart(args.out / "results.png", rows, names, _say)
    print("\n" + md, flush=True)
    bad = [r for r in runs if r.status in ("failed", "incomplete") or r.lost or r.duplicated]
    for r in bad:
        _say(f"problem: {r.scenario} {r.variant} {r.agent}: {_brief(r)}")
    return 1 if bad else 0


def _markdown(
    meta: dict[str, Any],
    rows: list[report.Row],
    ratio_rows: list[report.Row],
    names: dict[str, str],
    vs: str | None,
) -> str:
    wl = meta["workload"].get("backlog")
    parts = [
        "# shipper benchmark",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}, git {meta['git']}  ",
        f"Machine: {meta['machine']}; load average {meta['load_before'][0]:g} before, "
        f"{meta['load_after'][0]:g} after  ",
        f"Flush {meta['settings']['flush']:g}; medians of {meta['repeat']} run(s) each "
        "(lost/dup: the worst run).",
    ]
    if wl:
        parts.append(
            f"Backlog: {wl['lines']:,} lines ({wl['marked']:,} records), "
            f"{wl['bytes'] / 1e6:.1f} MB, {wl['avg_line_bytes']} B/line, "
            f"{wl['files']} files."
        )
    if any(lim != "none" for lim in meta["limits"]):
        parts.append(
            f"Limits: {'; '.join(meta['limits'])} (cgroup per agent run; the backlog's page "
            "cache dropped before each backlog run)."
        )
    parts += ["", "## Results", "", report.results_table(rows, names), ""]
    limited = report.limits_table(rows, names)
    if limited:
        parts += ["## Inside the limits: what the cgroup counted", "", limited, ""]
    if ratio_rows and vs:
        parts += [
            f"## Ratios: shipper / {vs}",
            "",
            "Below 1 is better for CPU, RSS, latency and start-up; above 1 for lines/s.",
            "",
            report.ratio_table(ratio_rows, names),
            "",
        ]
    parts += ["What the figures mean: benchmarks/README.md.", ""]
    return "\n".join(parts)


def _profiles(out: Path) -> str:
    parts = ["## Profiles", ""]
    for path in sorted([*out.glob("profile-*.txt"), *out.glob("profile-*.pstats")]):
        parts += [f"### {path.name}", "", profile.summarize(path), ""]
    for path in sorted(out.glob("probe-*.json")):
        parts += [f"### {path.name}", "", probe.summarize(path), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
