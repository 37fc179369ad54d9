"""Model-based test of the tail input (hypothesis RuleBasedStateMachine, as Vector's
file-source tests): random sequences of writes (whole lines, partial lines, bursts),
rename-rotation, copytruncate, delete and re-create, `session_latest` re-pointed, agent
restarts (SIGTERM, SIGTERM while the output is stalled, SIGKILL) and a stalled output, all on
real files with a real agent and its offsets DB.

Invariants
  * every written line is delivered, except the losses inherent to what the test did (below);
  * nothing is delivered that was not written (no torn or merged lines);
  * no line twice within one agent run, nor across a graceful restart;
  * after a kill (or a stop whose Grace ran out) at most what was in flight is sent again:
    bounded by Mem_Buf_Limit + one read + the pipe;
  * offsets in the DB are never inside a line (never past a partial line) nor past the end.

Inherent losses, modelled rather than hidden (each is what Fluent Bit would do too):
  * copytruncate: lines appended between the copy and the truncation are in neither file;
    lines the agent had not read when the file was truncated are only in the copy (the copy
    is outside the glob, as logrotate's would be);
  * a file deleted, or left behind in an old session, while the agent is not running (or
    before it drained it: SIGTERM stops reading) takes its unread lines with it.
The model makes copytruncate "calm" when it can (waits for the agent to catch up first, as a
nightly logrotate on a quiet file would); with the agent stopped it cannot.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.reliability.harness import (
    LONG,
    STDOUT,
    AgentProc,
    Row,
    classic,
    db_rows,
    fd_targets,
    tail_input,
    wait_until,
)

MEM_BUF = 64 * 1024
READ_LIMIT = 256 * 1024
PIPE = 64 * 1024
DUP_BOUND = MEM_BUF + READ_LIMIT + PIPE  # bytes a kill may re-send
BACKUPS = 2
STREAMS = ("a", "b")
WAIT = 45.0  # deadline of every wait (a slow machine is slower, not red)


@dataclass(eq=False)
class PFile:
    """One physical file (inode) the model wrote to."""

    path: Path | None  # where it is now; None once deleted
    session: int
    lines: list[str] = field(default_factory=list)  # complete lines in it, in order


@dataclass
class Totals:
    examples: int = 0
    steps: Counter[str] = field(default_factory=Counter)
    written: int = 0
    delivered: int = 0
    lost: int = 0  # not explained by the model: a bug
    inherent: Counter[str] = field(default_factory=Counter)  # lines lost as modelled, by why
    duplicated: int = 0
    max_dup_bytes: int = 0
    peak_rss_kb: int = 0
    fds_end: int = 0


TOTALS = Totals()


class TailModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="shipper-model-"))
        self.archive = self.root / "archive"
        self.archive.mkdir()
        self.db = self.root / "offsets.db"
        self.link = self.root / "session_latest"
        self.session = 0
        self.current: dict[str, PFile | None] = dict.fromkeys(STREAMS)
        self.partial: dict[str, str | None] = dict.fromkeys(STREAMS)
        self.seq = 0
        self.written: list[str] = []
        self.home: dict[str, PFile] = {}
        self.maybe: dict[str, str] = {}  # line -> why it may be lost
        self.runs: list[tuple[list[str], str]] = []  # (logs, how the run ended)
        self.agent: AgentProc | None = None
        self.paused = False
        self.truncations: Counter[str] = Counter()
        self.cfg = self.root / "shipper.conf"
        self.cfg.write_text(
            classic(
                [
                    tail_input(
                        f"{self.link}/logs/*",
                        DB=str(self.db),
                        Mem_Buf_Limit="64k",
                        Rotate_Wait="1",
                        Refresh_Interval="1",
                    )
                ],
                [STDOUT],
                service={"Grace": "2", "Flush": "0.2"},
            )
        )
        self.new_session()
        TOTALS.examples += 1

    # -- helpers -----------------------------------------------------------------------------
    def logs_dir(self, session: int | None = None) -> Path:
        n = self.session if session is None else session
        return self.root / f"session_2026-01-01_00-00-{n:02d}_000000_{n}" / "logs"

    def new_session(self) -> None:
        self.session += 1
        d = self.logs_dir()
        d.mkdir(parents=True)
        if self.link.is_symlink():
            self.link.unlink()  # Ray: remove, then create (not atomic)
        self.link.symlink_to(d.parent)

    def line(self, stream: str, tag: str = "") -> str:
        self.seq += 1
        return f"{stream}{tag}-{self.seq:06d}-" + "x" * (self.seq % 37)

    def file_of(self, stream: str) -> PFile:
        f = self.current[stream]
        if f is None or f.path is None or not f.path.exists():
            f = PFile(self.logs_dir() / f"{stream}.log", self.session)
            self.current[stream] = f
        return f

    def append(self, stream: str, lines: list[str]) -> None:
        f = self.file_of(stream)
        assert f.path is not None
        with open(f.path, "ab") as fh:
            fh.write("".join(x + "\n" for x in lines).encode())
        for x in lines:
            self.home[x] = f
        f.lines += lines
        self.written += lines

    def complete_partial(self, stream: str) -> None:
        head = self.partial[stream]
        if head is None:
            return
        f = self.current[stream]
        assert f is not None and f.path is not None
        with open(f.path, "ab") as fh:
            fh.write(b"-rest\n")
        full = head + "-rest"
        self.home[full] = f
        f.lines.append(full)
        self.written.append(full)
        self.partial[stream] = None

    def delivered(self) -> Counter[str]:
        seen: Counter[str] = Counter()
        for logs, _ in self.runs:
            seen.update(logs)
        if self.agent is not None:
            seen.update(self.agent.snapshot())
        return seen

    def running(self) -> bool:
        return self.agent is not None

    def must(self) -> list[str]:
        return [w for w in self.written if w not in self.maybe]

    def wait_delivered(self, lines: list[str], what: str) -> None:
        assert self.agent is not None
        done = {x for logs, _ in self.runs for x in logs}
        try:
            self.agent.wait_logs([x for x in lines if x not in self.maybe], timeout=WAIT, also=done)
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}\n{self.diagnose()}") from None

    def diagnose(self) -> str:
        """What the agent and the disk look like, for a failure message."""
        out = [f"runs so far: {[(len(logs), how) for logs, how in self.runs]}"]
        if self.agent is not None:
            out.append(f"agent fds: {fd_targets(self.agent.pid)}")
            out.append(
                f"agent records now: {self.agent.count()}, torn tail "
                f"{self.agent.torn_tail[:80]!r}, paused {self.paused}, "
                f"reader threads alive {[t.is_alive() for t in self.agent._threads]}, "
                f"bytes waiting in the pipe {self.agent.pipe_bytes()}"
            )
        for p in sorted(self.root.glob("session_*/logs/*")):
            st_ = p.stat()
            out.append(f"  {p.relative_to(self.root)} ino {st_.st_ino} size {st_.st_size}")
        out.append(f"db: {[(r[1], r[3], r[4]) for r in db_rows(self.db)]}")
        return "\n".join(out)

    def wait_agent_has(self, f: PFile) -> None:
        """Before a file goes away under a running agent: it must have it open (or have
        read it all already), so what it holds is drained, not lost."""
        agent = self.agent
        assert agent is not None and f.path is not None
        path = f.path

        def ok() -> bool:
            if agent.has_open(path):
                return True
            seen = set(agent.snapshot()) | {x for logs, _ in self.runs for x in logs}
            return all(x in seen or x in self.maybe for x in f.lines)

        wait_until(
            ok, WAIT, lambda: f"the agent to open {path}; stderr:\n{agent.err_text()[-2000:]}"
        )

    def unreachable(self, f: PFile) -> bool:
        return f.path is None or f.session != self.session

    def settle(self, why_prefix: str) -> None:
        """No agent runs: lines of files it can no longer reach are lost (modelled)."""
        seen = self.delivered()
        for x in self.written:
            if x not in seen and x not in self.maybe:
                f = self.home[x]
                if f.path is None:
                    self.maybe[x] = f"{why_prefix}: deleted"
                elif f.session != self.session:
                    self.maybe[x] = f"{why_prefix}: left in an old session"

    def check_db(self) -> None:
        """Offsets stored are at line ends, never inside a line or past the end."""
        by_id: dict[tuple[int, int], Path] = {}
        for p in self.root.glob("session_*/logs/*"):
            st_ = p.stat()
            by_id[(st_.st_dev, st_.st_ino)] = p
        for dev, ino, fp, off, _name in db_rows(self.db):
            p = by_id.get((dev, ino))
            if p is None:
                continue
            data = p.read_bytes()
            if not data.startswith(fp):
                continue  # a stale row of a reused inode or a truncated file
            assert off <= len(data), f"offset {off} past the end of {p} ({len(data)})"
            assert off == 0 or data[off - 1 : off] == b"\n", (
                f"offset {off} of {p} is inside a line: {data[max(0, off - 20) : off + 20]!r}"
            )

    # -- the agent ---------------------------------------------------------------------------
    @initialize()
    def start_first(self) -> None:
        self.start_agent()

    @precondition(lambda self: not self.running())
    @rule()
    def start_agent(self) -> None:
        TOTALS.steps["start"] += 1
        self.settle("not running")
        self.agent = AgentProc(["-c", str(self.cfg)])
        self.agent.wait_stderr("initial scan done", timeout=WAIT)
        self.paused = False
        self.truncations = Counter()  # "truncated" messages seen in this agent's log

    def _stop(self, sig: int, how: str) -> None:
        agent = self.agent
        assert agent is not None
        rc = agent.stop(sig)
        if sig == signal.SIGTERM:
            assert rc == 0, f"rc {rc}:\n{agent.err_text()[-3000:]}"
            if "ran out" in agent.err_text():  # Grace expired: unacknowledged re-read
                how = "grace-expired"
        TOTALS.peak_rss_kb = max(TOTALS.peak_rss_kb, agent.peak_rss_kb)
        assert not agent.bad_lines, agent.bad_lines[:3]
        assert "Traceback" not in agent.err_text(), agent.err_text()[-3000:]
        self.runs.append((agent.snapshot(), how))
        self.agent = None
        self.paused = False
        self.settle("stopped")
        self.check_db()

    # A stop is followed by a start at once 3 times in 4 (a restart); otherwise the agent
    # stays down for a few steps (files change under nobody's eyes).
    STAY_DOWN = st.sampled_from([False, False, False, True])

    def _after_stop(self, stay_down: bool) -> None:
        if not stay_down:
            self.start_agent()

    @precondition(lambda self: self.running())
    @rule(catch_up=st.booleans(), stay_down=STAY_DOWN)
    def stop_graceful(self, catch_up: bool, stay_down: bool) -> None:
        """SIGTERM with a working output: nothing may come twice after this."""
        TOTALS.steps["SIGTERM"] += 1
        assert self.agent is not None
        self.agent.resume()
        if catch_up:
            self.wait_delivered(self.must(), "catch up")
        self._stop(signal.SIGTERM, "graceful")
        self._after_stop(stay_down)

    @precondition(lambda self: self.running() and self.paused)
    @rule(stay_down=STAY_DOWN)
    def stop_stalled(self, stay_down: bool) -> None:
        """SIGTERM while nobody reads stdout: Grace runs out; in-flight data re-read."""
        TOTALS.steps["SIGTERM stalled"] += 1
        self._stop(signal.SIGTERM, "stalled")
        self._after_stop(stay_down)

    @precondition(lambda self: self.running())
    @rule(stay_down=STAY_DOWN)
    def kill9(self, stay_down: bool) -> None:
        TOTALS.steps["SIGKILL"] += 1
        self._stop(signal.SIGKILL, "kill")
        self._after_stop(stay_down)

    @precondition(lambda self: self.running() and not self.paused)
    @rule()
    def pause_output(self) -> None:
        TOTALS.steps["pause output"] += 1
        assert self.agent is not None
        self.agent.pause()
        self.paused = True

    @precondition(lambda self: self.running() and self.paused)
    @rule()
    def resume_output(self) -> None:
        assert self.agent is not None
        self.agent.resume()
        self.paused = False

    # -- writers -----------------------------------------------------------------------------
    @rule(stream=st.sampled_from(STREAMS), n=st.integers(1, 40))
    def write_lines(self, stream: str, n: int) -> None:
        TOTALS.steps["write lines"] += 1
        self.complete_partial(stream)
        self.append(stream, [self.line(stream) for _ in range(n)])

    @rule(stream=st.sampled_from(STREAMS))
    def write_burst(self, stream: str) -> None:
        """~120 KB at once: more than Mem_Buf_Limit + the pipe (backpressure when stalled)."""
        TOTALS.steps["write burst"] += 1
        self.complete_partial(stream)
        self.append(stream, [self.line(stream) for _ in range(2000)])

    @rule(stream=st.sampled_from(STREAMS))
    def write_partial(self, stream: str) -> None:
        """A line without its newline yet (completed by the stream's next write)."""
        TOTALS.steps["write partial line"] += 1
        if self.partial[stream] is not None:
            return
        head = self.line(stream, "p")
        f = self.file_of(stream)
        assert f.path is not None
        with open(f.path, "ab") as fh:
            fh.write(head.encode())
        self.partial[stream] = head

    # -- what happens to files ---------------------------------------------------------------
    @rule(stream=st.sampled_from(STREAMS))
    def rotate(self, stream: str) -> None:
        """Shift-rename as Ray's handlers: x.1 -> x.2 (the oldest deleted), x -> x.1."""
        f = self.current[stream]
        if f is None or f.path is None:
            return
        TOTALS.steps["rename-rotate"] += 1
        self.complete_partial(stream)
        logs = f.path.parent
        files = {k: self.backup(stream, logs, k) for k in range(1, BACKUPS + 1)}
        oldest = files[BACKUPS]
        if oldest is not None:
            self.remove(oldest)
        for k in range(BACKUPS - 1, 0, -1):
            b = files[k]
            if b is not None and b.path is not None:
                target = logs / f"{stream}.log.{k + 1}"
                os.rename(b.path, target)
                b.path = target
        target = logs / f"{stream}.log.1"
        os.rename(f.path, target)
        f.path = target
        self.current[stream] = None

    def backup(self, stream: str, logs: Path, k: int) -> PFile | None:
        p = logs / f"{stream}.log.{k}"
        for f in set(self.home.values()):
            if f.path == p:
                return f
        return None

    def remove(self, f: PFile) -> None:
        if self.running():
            self.wait_agent_has(f)
        assert f.path is not None
        f.path.unlink()
        f.path = None
        if not self.running():
            self.settle("not running")

    @rule(stream=st.sampled_from(STREAMS), recreate=st.booleans())
    def delete(self, stream: str, recreate: bool) -> None:
        f = self.current[stream]
        if f is None or f.path is None:
            return
        TOTALS.steps["delete"] += 1
        self.complete_partial(stream)
        self.remove(f)
        self.current[stream] = None
        if recreate:
            TOTALS.steps["re-create"] += 1
            self.append(stream, [self.line(stream, "r") for _ in range(3)])

    @rule(stream=st.sampled_from(STREAMS), racing=st.integers(0, 3))
    def copytruncate(self, stream: str, racing: int) -> None:
        """logrotate's copytruncate; the copy goes outside the glob."""
        f = self.current[stream]
        if f is None or f.path is None or not f.path.stat().st_size:
            return
        if self.running() and self.paused:
            return  # a stalled agent cannot notice a truncation: modelled as not allowed
        TOTALS.steps["copytruncate"] += 1
        self.complete_partial(stream)
        if self.running():
            self.wait_delivered(f.lines, "catch up before copytruncate")
        shutil.copyfile(f.path, self.archive / f"{stream}.{self.seq}")
        race = [self.line(stream, "race") for _ in range(racing)]
        if race:
            self.append(stream, race)  # between the copy and the truncation
        seen = self.delivered()
        with open(f.path, "r+b") as fh:
            fh.truncate(0)
        why = (
            "copytruncate: written between copy and truncate"
            if self.running()
            else "copytruncate while the agent was down"
        )
        for x in f.lines:
            if x not in seen:
                self.maybe.setdefault(x, why)
        f.lines = []
        if self.running():
            assert self.agent is not None
            matched = f"{self.link}/logs/{f.path.name}"  # the agent names it as globbed
            self.truncations[matched] += 1
            # "truncated (size": the notice itself, not the copy search's warning after it
            self.agent.wait_stderr(
                f"{matched} truncated (size", count=self.truncations[matched], timeout=WAIT
            )

    @rule(last_words=st.integers(0, 5))
    def repoint_session(self, last_words: int) -> None:
        """A new Ray session: session_latest re-pointed (remove + create); the old session's
        writers may print a few last lines."""
        TOTALS.steps["re-point session_latest"] += 1
        old = {s: self.current[s] for s in STREAMS}
        for s in STREAMS:
            self.complete_partial(s)
        if self.running():
            # Files the agent never saw through session_latest are gone from its view once
            # the link moves (inherent to following the link). Ray's sessions last longer
            # than a scan; the model waits until every file of the session was seen.
            for f in set(self.home.values()):
                if f.path is not None and f.session == self.session:
                    self.wait_agent_has(f)
        self.new_session()
        self.current = dict.fromkeys(STREAMS)
        if self.running() and last_words:
            for s in STREAMS:
                f = old[s]
                if f is not None and f.path is not None:
                    lines = [self.line(s, "last") for _ in range(last_words)]
                    with open(f.path, "ab") as fh:
                        fh.write("".join(x + "\n" for x in lines).encode())
                    for x in lines:
                        self.home[x] = f
                    f.lines += lines
                    self.written += lines
        if not self.running():
            self.settle("not running")

    # -- the end -----------------------------------------------------------------------------
    def teardown(self) -> None:
        try:
            if self.agent is None:
                self.start_agent()
            assert self.agent is not None
            self.agent.resume()
            self.paused = False
            for s in STREAMS:
                if self.current[s] is not None and self.current[s].path is not None:  # type: ignore[union-attr]
                    self.complete_partial(s)
            self.wait_delivered(self.must(), "everything")
            TOTALS.fds_end = self.agent.fds()
            self._stop(signal.SIGTERM, "graceful")
            self.verify()
        finally:
            if self.agent is not None:
                self.agent.__exit__()
            shutil.rmtree(self.root, ignore_errors=True)

    def verify(self) -> None:
        seen: Counter[str] = Counter()
        before: set[str] = set()
        for i, (logs, _how) in enumerate(self.runs):
            mine = Counter(logs)
            twice = [x for x, c in mine.items() if c > 1]
            assert not twice, f"run {i}: delivered twice within one run: {twice[:3]}"
            again = [x for x in mine if x in before]
            if i > 0:
                prev_how = self.runs[i - 1][1]
                nbytes = sum(len(x) + 1 for x in again)
                TOTALS.max_dup_bytes = max(TOTALS.max_dup_bytes, nbytes)
                if prev_how == "graceful":
                    assert not again, f"run {i}: re-sent after a graceful stop: {again[:3]}"
                else:
                    assert nbytes <= DUP_BOUND, (
                        f"run {i}: {nbytes} bytes re-sent after a {prev_how}"
                    )
            seen.update(mine)
            before |= set(mine)
        written = set(self.written)
        phantom = [x for x in seen if x not in written]
        assert not phantom, f"delivered but never written: {phantom[:3]}"
        missing = [x for x in self.written if x not in seen and x not in self.maybe]
        TOTALS.written += len(self.written)
        TOTALS.delivered += len(written & set(seen))
        TOTALS.lost += len(missing)
        TOTALS.duplicated += sum(c - 1 for c in seen.values() if c > 1)
        for x, why in self.maybe.items():
            if x not in seen:
                TOTALS.inherent[why] += 1
        assert not missing, (
            f"{len(missing)} lines lost, e.g. {missing[:3]} (in "
            f"{[str(self.home[x].path) for x in missing[:3]]})"
        )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tail_model(results) -> None:  # type: ignore[no-untyped-def]
    row = results.add(
        Row(
            "model-based: write/partial/burst, rotate, copytruncate, delete, "
            "re-create, re-point session, SIGTERM/SIGKILL, stalled output"
        )
    )
    try:
        run_state_machine_as_test(
            TailModel,
            settings=settings(
                max_examples=int(os.environ.get("SHIPPER_MODEL_EXAMPLES", 60 if LONG else 12)),
                stateful_step_count=60 if LONG else 25,
                deadline=None,
                database=None,
                print_blob=True,
                phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if LONG else [])],
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        t = TOTALS
        row.written, row.delivered, row.lost, row.duplicated = (
            t.written,
            t.delivered,
            t.lost,
            t.duplicated,
        )
        row.peak_rss_kb, row.fds_end = t.peak_rss_kb, t.fds_end
        inherent = "; ".join(f"{n} {why}" for why, n in t.inherent.most_common())
        steps = ", ".join(f"{k} {v}" for k, v in sorted(t.steps.items()))
        row.note = (
            f"{t.examples} runs; steps: {steps}; max re-sent after a kill or "
            f"stalled stop {t.max_dup_bytes} B; modelled losses: {inherent or 'none'}"
        )
