"""The scenarios: what each run does to the agent and what it measures.

  null    pre-written backlog -> stdout json_lines to /dev/null: lines/s, CPU, RSS
  stdout  backlog -> stdout json_lines to the counting reader: + lost and duplicated lines
  http    backlog -> `http` json_lines to the counting sink process: the same figures
  live    fresh files, a live writer at --rate over --files files for --duration:
          write-to-emit latency p50/p99/max, CPU % of one core, lost and duplicated lines
  idle    --files files that do not grow: CPU over --idle-duration seconds, RSS
  many    --many-files files at --many-rate lines/s each: CPU %, latency, lost, duplicated
  ceiling (not in the default set) the highest live rate the agent sustains for
          --ceiling-duration s with p99 write-to-emit under --ceiling-p99-ms and nothing
          lost: a step search over rates (benchmarks/ceiling.py)

With `--limits` each run's agent is in a cgroup of its own (benchmarks/cgroups.py) and the
run also reports what the kernel counted for it: memory usage and peak (page cache
included), failcnt, OOM kills, CPU throttling. The backlog's page cache is dropped before
each backlog run, so that every agent reads it from disk and the page cache it pulls in is
charged to its own group (the worst case, and the same for everyone).

Times: a backlog run's clock starts when the agent first has one of the log files open (its
start-up before that is `startup_s`) and stops when 99.9% of the output has arrived (the last
record of each file may be held for Multiline_Flush, a timer, not work); CPU is the process
tree's between those two points. Live runs measure CPU over the writer's window.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import ceiling, cgroups, configs, procstat, workload
from benchmarks.procs import Agent, AgentSpec, Sink, Writer
from benchmarks.tally import Summary

SCENARIOS = ("null", "stdout", "http", "live", "idle", "many")
EXTRA_SCENARIOS = ("ceiling",)  # run only when named in --scenarios
DONE_FRACTION = 0.999
POLL = 0.01


@dataclass(slots=True)
class Settings:
    lines: int = 1_000_000
    files: int = 20
    rate: float = 50_000.0
    duration: float = 20.0
    idle_duration: float = 30.0
    many_files: int = 2000
    many_rate: float = 10.0
    flush: float = 1.0
    seed: int = 1
    stall: float = 10.0  # seconds without progress before a run is given up as incomplete
    settle: float = 1.5  # seconds after the agent is ready before a live/idle window opens
    profile: str | None = None  # py-spy | cprofile
    py_spy: str = "py-spy"
    ceiling_duration: float = 60.0
    ceiling_start: float = 25_000.0
    ceiling_steps: int = 6
    ceiling_p99_ms: float = 1000.0
    ceiling_budget: float = 900.0  # seconds of one ceiling search, at most
    cold_cache: bool = False  # drop the backlog's page cache before each backlog run


@dataclass(slots=True)
class Run:
    scenario: str
    variant: str  # ray | plain | fluent-bit
    agent: str
    repeat: int
    limits: str = "none"  # the cgroup limits it ran in (cpu=100m,memory=128Mi)
    status: str = "ok"  # ok | incomplete | failed | skipped
    note: str = ""
    lines: int = 0  # physical lines the agent had to ship
    window_s: float | None = None
    lines_per_s: float | None = None
    cpu_s: float | None = None  # CPU seconds in the measured window
    cpu_per_1m: float | None = None
    cpu_pct: float | None = None  # % of one core over the window
    startup_s: float | None = None
    total_cpu_s: float | None = None  # whole life of the process, from wait4
    peak_rss_mb: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    lost: int | None = None
    duplicated: int | None = None
    unexpected: int | None = None
    exit_code: int | None = None
    # What the cgroup counted (runs with --limits): memory peak (page cache included) and the
    # largest page cache seen, times the limit was hit, OOM kills, % of CFS periods throttled.
    cg_peak_mb: float | None = None
    cg_cache_mb: float | None = None
    failcnt: int | None = None
    oom_kills: int | None = None
    throttled_pct: float | None = None
    config: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Bench:
    def __init__(self, settings: Settings, work: Path, out: Path) -> None:
        self.s = settings
        self.work = work
        self.out = out
        self._backlog: tuple[workload.Layout, dict[int, workload.Written]] | None = None
        self._n = 0
        self.workload_info: dict[str, Any] = {}
        self.limits = cgroups.Limits()  # of the run being made

    # -- data and files ----------------------------------------------------------------
    def backlog(self) -> tuple[workload.Layout, dict[int, workload.Written]]:
        """The pre-written backlog, generated once and shared by every backlog run."""
        if self._backlog is None:
            t = time.monotonic()
            layout = workload.make_layout(self.work / "backlog", self.s.files)
            written = workload.write_backlog(layout, self.s.lines, self.s.seed)
            self._backlog = (layout, written)
            self.workload_info["backlog"] = {
                **workload.describe(written),
                "generate_s": round(time.monotonic() - t, 2),
            }
        return self._backlog

    def _run_dir(self, name: str) -> Path:
        while True:  # a --work directory may hold an earlier invocation's runs
            self._n += 1
            d = self.work / "runs" / f"{self._n:03d}-{name}"
            try:
                d.mkdir(parents=True)
            except FileExistsError:
                continue
            return d

    def _launch(
        self,
        run: Run,
        agent: AgentSpec,
        d: Path,
        *,
        glob: str,
        output: configs.Output,
        stdout: str,
        timed: bool = False,
    ) -> Agent:
        cfg = configs.write(
            d / f"{run.variant}.conf",
            glob=glob,
            flush=self.s.flush,
            output=output,
            variant=run.variant,
            note=f"scenario {run.scenario}",
        )
        run.config = str(cfg)
        argv = agent.argv(cfg)
        group = None
        if not self.limits.none:
            try:
                group = cgroups.create(self.limits, f"shipper-bench-{os.getpid()}-{self._n}")
            except cgroups.Unavailable as exc:
                raise NoLimits(str(exc)) from exc
            run.extra["cgroup"] = group.path
        if self._profiled(agent) and self.s.profile == "cprofile":
            prof = self.out / f"profile-{run.scenario}-{run.variant}.pstats"
            argv = [argv[0], "-m", "cProfile", "-o", str(prof), *argv[1:]]
        if self._profiled(agent) and self.s.profile == "probe":
            if argv[1:3] != ["-m", "shipper"]:
                raise AgentGone(f"--profile probe needs a `python -m shipper` agent, not {argv}")
            prof = self.out / f"probe-{run.scenario}-{run.variant}-{run.limits}-{self._n:03d}.json"
            argv = [argv[0], "-m", "benchmarks.probe", "--probe-out", str(prof), *argv[3:]]
        if self._profiled(agent):
            run.note = f"profiled ({self.s.profile}): figures are not comparable"
        return Agent(
            argv,
            stdout=stdout,
            stderr=d / "agent.stderr",
            timed=timed,
            head=d / "stdout-head.txt",
            group=group,
        )

    def _profiled(self, agent: AgentSpec) -> bool:
        return bool(self.s.profile) and agent.label == "shipper"

    def _attach_profiler(self, run: Run, agent: AgentSpec, a: Agent, d: Path) -> None:
        """py-spy joins once the work starts (start-up is left out of the profile)."""
        if self._profiled(agent) and self.s.profile == "py-spy":
            prof = self.out / f"profile-{run.scenario}-{run.variant}.txt"
            a.attach(
                [
                    self.s.py_spy,
                    "record",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "-r",
                    "250",
                    "-o",
                    str(prof),
                ],
                d / "py-spy.log",
            )

    # -- scenarios ---------------------------------------------------------------------
    def run(
        self,
        scenario: str,
        variant: str,
        agent: AgentSpec,
        repeat: int,
        limits: cgroups.Limits | None = None,
    ) -> Run:
        self.limits = limits or cgroups.Limits()
        run = Run(scenario, variant, agent.label, repeat, self.limits.text)
        d = self._run_dir(f"{scenario}-{variant}-{agent.label}")
        started = time.monotonic()
        try:
            if scenario in ("null", "stdout", "http"):
                self._backlog_run(run, agent, d)
            elif scenario == "live":
                self._live_run(run, agent, d, self.s.files, self.s.rate, self.s.duration)
            elif scenario == "many":
                self._live_run(
                    run,
                    agent,
                    d,
                    self.s.many_files,
                    self.s.many_files * self.s.many_rate,
                    self.s.duration,
                )
            elif scenario == "idle":
                self._idle_run(run, agent, d)
            elif scenario == "ceiling":
                self._ceiling_run(run, agent, d)
            else:
                raise ValueError(f"unknown scenario {scenario!r}")
        except NoLimits as exc:
            run.status, run.note = "skipped", f"no cgroup for --limits: {exc}"
        except AgentGone as exc:
            tail = str(exc)
            run.status = "skipped" if "unknown output plugin" in tail.lower() else "failed"
            run.note = f"agent exited before the run: {tail}"[:300]
        run.extra["run_s"] = round(time.monotonic() - started, 2)
        return run

    def _backlog_run(self, run: Run, agent: AgentSpec, d: Path) -> None:
        layout, written = self.backlog()
        expected = {i: w.marked for i, w in written.items()}
        total_lines = sum(w.lines for w in written.values())
        total_bytes = sum(w.nbytes for w in written.values())
        marked = sum(expected.values())
        run.lines = total_lines
        sink = None
        output = configs.Output("stdout")
        if run.scenario == "http":
            (d / "expect.json").write_text(json.dumps(expected))
            sink = Sink(expect=d / "expect.json", stderr=d / "sink.stderr")
            output = configs.Output("http", sink.port)
        if self.s.cold_cache:
            workload.drop_cache(layout)
        a = self._launch(
            run,
            agent,
            d,
            glob=layout.glob,
            output=output,
            stdout="count" if run.scenario == "stdout" else "null",
        )
        prefix = str(layout.logs) + "/"
        t0 = cpu0 = None
        series: list[tuple[float, int]] = []
        last, last_change, rss_at = -1, time.time(), 0.0
        limit = time.time() + max(120.0, total_lines / 5_000)
        quiet = max(0.5, 2 * self.s.flush + 0.5)  # no output for this long: done
        try:
            while True:
                now = time.time()
                if a.exited():
                    raise AgentGone(a.stderr_tail())
                if t0 is None and procstat.open_files_under(a.tree(), prefix):
                    t0, cpu0 = now, a.cpu()
                    self._attach_profiler(run, agent, a, d)
                if now - rss_at > 0.1:
                    a.sample_rss()
                    rss_at = now
                if sink is not None:
                    value, done = sink.received, sink.received >= marked
                elif a.tally is not None:
                    value, done = a.tally.received, a.tally.distinct >= marked
                else:
                    rchar, value = procstat.io_counters(a.tree())
                    done = t0 is not None and rchar >= total_bytes and now - last_change >= quiet
                if value != last:
                    last, last_change = value, now
                    series.append((now, value))
                if done:
                    break
                if t0 is not None and now - last_change > max(self.s.stall, quiet + 2):
                    run.status, run.note = "incomplete", "no progress: gave up waiting"
                    break
                if now > limit:
                    run.status, run.note = "incomplete", "time limit reached"
                    break
                time.sleep(POLL)
            cpu1 = a.cpu()
        finally:
            ex = a.stop()
            summary = sink.stop() if sink is not None else None
        self._exit_figures(run, a, ex)
        if a.tally is not None:
            series = list(a.tally.progress)
            self._count_figures(run, a.tally.summary(expected), latency=False)
        elif summary:
            self._count_figures(
                run,
                Summary(
                    **{
                        k: summary[k]
                        for k in (  # type: ignore[arg-type]
                            "received",
                            "distinct",
                            "lost",
                            "duplicated",
                            "unexpected",
                        )
                    }
                ),
                latency=False,
            )
        if t0 is None or cpu0 is None or not series:
            run.status, run.note = "failed", "the agent never opened a log file or wrote nothing"
            return
        # The end: all but a tail of the output (at least 0.1%, at least two records per
        # file: the last record of each file can be held for Multiline_Flush, a timer).
        final = series[-1][1]
        per_record = final / marked if run.scenario == "null" else 1.0
        done_at = max(
            final / 2, final - max((1 - DONE_FRACTION) * final, 2 * len(layout.files) * per_record)
        )
        t_end = next(t for t, v in series if v >= done_at)
        run.startup_s = t0 - a.spawned
        run.window_s = max(t_end - t0, POLL)  # t0 and t_end are polled: +-POLL
        if run.window_s < 0.1:
            run.note = (run.note + "; under 0.1 s: too short to time").strip("; ")
        run.lines_per_s = total_lines * (done_at / final) / run.window_s
        run.cpu_s = cpu1 - cpu0
        run.cpu_per_1m = run.cpu_s / total_lines * 1e6
        run.extra["startup_cpu_s"] = cpu0

    def _wait_ready(self, a: Agent, prefix: str, n_files: int) -> float:
        """Until the agent has every file open (inotify watches and fds in place)."""
        limit = time.time() + 60.0
        while procstat.open_files_under(a.tree(), prefix) < n_files:
            if a.exited():
                raise AgentGone(a.stderr_tail())
            if time.time() > limit:
                raise AgentGone(f"did not open all {n_files} files within 60 s")
            time.sleep(0.05)
        return time.time()

    def _live_run(
        self, run: Run, agent: AgentSpec, d: Path, n_files: int, rate: float, duration: float
    ) -> None:
        layout = workload.make_layout(d, n_files)
        workload.write_headers(layout, self.s.seed)
        a = self._launch(
            run,
            agent,
            d,
            glob=layout.glob,
            output=configs.Output("stdout"),
            stdout="count",
            timed=True,
        )
        try:
            ready = self._wait_ready(a, str(layout.logs) + "/", n_files)
            run.startup_s = ready - a.spawned
            self._attach_profiler(run, agent, a, d)
            time.sleep(self.s.settle)
            spec = d / "writer.json"
            spec.write_text(
                json.dumps(
                    {
                        "paths": [str(layout.path(f)) for f in layout.files],
                        "files": [asdict(f) for f in layout.files],
                        "rate": rate,
                        "duration": duration,
                        "seed": self.s.seed,
                    }
                )
            )
            w = Writer(spec, d / "writer.stderr")
            cpu0, rss_at = a.cpu(), 0.0
            while not w.done():
                if time.time() - rss_at > 0.2:
                    a.sample_rss()
                    rss_at = time.time()
                time.sleep(POLL)
            cpu1 = a.cpu()
            result = w.wait()
            written = {int(k): int(v) for k, v in result["written"].items()}  # type: ignore[attr-defined]
            marked = sum(written.values())
            assert a.tally is not None
            last, last_change = -1, time.time()
            while a.tally.distinct < marked:
                if a.tally.received != last:
                    last, last_change = a.tally.received, time.time()
                if time.time() - last_change > max(self.s.stall, 2 * self.s.flush + 3):
                    run.status, run.note = "incomplete", "no progress: gave up waiting"
                    break
                if a.exited():
                    raise AgentGone(a.stderr_tail())
                time.sleep(POLL)
            a.sample_rss()
        finally:
            ex = a.stop()
        self._exit_figures(run, a, ex)
        window = float(result["t_end"]) - float(result["t_start"])  # type: ignore[arg-type]
        run.lines = int(result["lines"])  # type: ignore[call-overload]
        run.window_s = window
        run.cpu_s = cpu1 - cpu0
        run.cpu_pct = 100 * run.cpu_s / window
        run.cpu_per_1m = run.cpu_s / max(run.lines, 1) * 1e6
        summary = a.tally.summary(written)
        self._count_figures(run, summary, latency=True)
        run.lines_per_s = summary.distinct / window  # the offered rate, if all arrived
        run.extra["offered_lines_per_s"] = rate

    def _idle_run(self, run: Run, agent: AgentSpec, d: Path) -> None:
        layout = workload.make_layout(d, self.s.files)
        written = workload.write_headers(layout, self.s.seed, marked=5)
        expected = {i: w.marked for i, w in written.items()}
        a = self._launch(
            run, agent, d, glob=layout.glob, output=configs.Output("stdout"), stdout="count"
        )
        try:
            ready = self._wait_ready(a, str(layout.logs) + "/", self.s.files)
            run.startup_s = ready - a.spawned
            assert a.tally is not None
            limit = time.time() + max(self.s.stall, 2 * self.s.flush + 3)
            while a.tally.distinct < sum(expected.values()) and time.time() < limit:
                time.sleep(POLL)
            self._attach_profiler(run, agent, a, d)
            time.sleep(self.s.settle)
            t0, cpu0 = time.time(), a.cpu()
            end = t0 + self.s.idle_duration
            while time.time() < end:
                a.sample_rss()
                time.sleep(min(0.5, max(0.0, end - time.time())))
            t1, cpu1 = time.time(), a.cpu()
        finally:
            ex = a.stop()
        self._exit_figures(run, a, ex)
        run.window_s = t1 - t0
        run.cpu_s = cpu1 - cpu0
        run.cpu_pct = 100 * run.cpu_s / run.window_s
        self._count_figures(run, a.tally.summary(expected), latency=False)

    # -- figures -----------------------------------------------------------------------
    @staticmethod
    def _exit_figures(run: Run, a: Agent, ex: procstat.Exit) -> None:
        run.exit_code = ex.code
        run.total_cpu_s = ex.cpu_s
        # VmHWM polled while it ran: wait4's ru_maxrss would include the harness's own memory
        # (Linux counts the forked child's pre-exec image in it).
        run.peak_rss_mb = a.hwm_kb / 1024 if a.hwm_kb else None
        if ex.code not in (0, None) and run.status == "ok":
            run.note = (run.note + f"; exit code {ex.code}: {a.stderr_tail(2)}").strip("; ")
        if ex.code is None:
            run.note = (run.note + "; killed: did not stop within the grace period").strip("; ")
        if a.group is not None:
            st = a.group_stats
            run.extra["cgroup_stats"] = st
            run.extra["cgroup_removed"] = a.group_removed
            if st.get("peak_bytes") is not None:
                run.cg_peak_mb = (st["peak_bytes"] or 0) / 2**20
                run.cg_cache_mb = (st.get("peak_cache_bytes") or 0) / 2**20
                run.failcnt, run.oom_kills = st.get("failcnt"), st.get("oom_kills")
            if st.get("nr_periods"):
                run.throttled_pct = 100 * (st.get("nr_throttled") or 0) / (st["nr_periods"] or 1)
            if run.oom_kills:
                run.note = (run.note + f"; OOM-killed {run.oom_kills}x").strip("; ")
            if not a.group_removed:
                run.note = (run.note + "; its cgroup could not be removed").strip("; ")

    @staticmethod
    def _count_figures(run: Run, s: Summary, *, latency: bool) -> None:
        run.lost, run.duplicated, run.unexpected = s.lost, s.duplicated, s.unexpected
        if latency:
            lat = s.latency()
            run.p50_ms, run.p99_ms, run.max_ms = lat["p50_ms"], lat["p99_ms"], lat["max_ms"]
        run.extra["received"] = s.received

    def _ceiling_run(self, run: Run, agent: AgentSpec, d: Path) -> None:
        def step(rate: float) -> Run:
            sub = Run("live", run.variant, run.agent, run.repeat, run.limits)
            sd = self._run_dir(f"ceiling-{rate:.0f}-{run.variant}-{agent.label}")
            self._live_run(sub, agent, sd, self.s.files, rate, self.s.ceiling_duration)
            return sub

        ceiling.search(
            run,
            step,
            start=self.s.ceiling_start,
            steps=self.s.ceiling_steps,
            p99_ms=self.s.ceiling_p99_ms,
            budget=self.s.ceiling_budget,
            step_s=self.s.ceiling_duration + 3 * self.s.flush + 10,
        )


class NoLimits(Exception):
    """--limits was asked for and no cgroup can be made here."""


class AgentGone(Exception):
    """The agent exited (or never got going) before the measurement."""
