"""Filesystem faults under a running agent: files that become unreadable and readable again,
a file replaced by a directory, symlink loops in the glob, 5,000 files in one directory,
inotify unavailable or out of watches, and one 50 MB line."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.reliability.harness import (
    LONG,
    STDOUT,
    AgentProc,
    Row,
    Tally,
    append_lines,
    classic,
    numbered,
    proc_status,
    tail_input,
    wait_until,
    write_conf,
)

# Root reads any file whatever its mode (CAP_DAC_OVERRIDE): run the agent without the two
# capabilities that bypass permissions, as an unprivileged agent (the image's) would be.
NO_DAC = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]


def _no_dac_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: permissions cannot be enforced on the agent")
    return NO_DAC


def _cfg(
    tmp_path: Path, path: str, *, service: dict[str, object] | None = None, **keys: object
) -> str:
    return write_conf(
        tmp_path / "s.conf", classic([tail_input(path, **keys)], [STDOUT], service=service)
    )


def _finish(row: Row, tally: Tally, agent: AgentProc, note: str = "") -> None:
    row.written, row.delivered = len(tally.written), len(tally.written) - len(tally.missing)
    row.lost, row.duplicated = len(tally.missing), tally.duplicated
    row.peak_rss_kb = agent.peak_rss_kb
    row.note = note


# -- permissions -----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_unreadable_then_readable_again(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    prefix = _no_dac_prefix()
    logs = tmp_path / "logs"
    (logs / "sub").mkdir(parents=True)
    good, bad, sub = logs / "good.log", logs / "bad.log", logs / "sub" / "s.log"
    tally = Tally()
    row = results.add(Row("files unreadable (mode 000) then readable"))

    def put(path: Path, lines: list[str]) -> None:
        append_lines(path, lines)
        tally.written.extend(lines)

    put(good, numbered("good", 0, 50))
    put(bad, numbered("bad", 0, 50))
    put(sub, numbered("sub", 0, 20))
    bad.chmod(0)
    (logs / "sub").chmod(0)  # a directory the agent cannot list
    cfg = _cfg(tmp_path, f"{logs}/*.log, {logs}/*/*.log")
    with AgentProc(["-c", cfg], prefix=prefix) as agent:
        agent.wait_logs(numbered("good", 0, 50))
        agent.wait_stderr(f"cannot read {bad}")
        assert not any(x.startswith("bad") for x in agent.snapshot())
        # readable again: picked up at the next scan, from its head
        bad.chmod(0o644)
        (logs / "sub").chmod(0o755)
        agent.wait_logs(numbered("bad", 0, 50) + numbered("sub", 0, 20))
        # unreadable while open: the open descriptor keeps working
        good.chmod(0)
        put(good, numbered("good", 50, 60))
        agent.wait_logs(numbered("good", 50, 60))
        # rotated, and the new file is unreadable at first
        good.chmod(0o644)
        os.rename(good, f"{good}.1")
        put(good, numbered("new", 0, 10))
        good.chmod(0)
        put(Path(f"{good}.1"), [])  # nothing: the rotated file is done
        agent.wait_stderr(f"cannot read {good}:")
        good.chmod(0o644)
        agent.wait_logs(numbered("new", 0, 10))
        row.fds_end = agent.fds()
        assert agent.stop() == 0
    tally.add_run(agent.snapshot())
    err = agent.err_text()
    _finish(
        row,
        tally,
        agent,
        "agent without CAP_DAC_OVERRIDE (setpriv); an unlistable "
        "directory is skipped without a warning"
        if "sub" not in err
        else "agent without CAP_DAC_OVERRIDE (setpriv)",
    )
    assert not tally.missing and tally.duplicated == 0
    assert err.count(f"cannot read {bad}") == 1, "one warning per episode, not per scan"
    assert "Traceback" not in err


# -- a file replaced by a directory ----------------------------------------------------------


@pytest.mark.timeout(120)
def test_file_replaced_by_directory(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    logs = tmp_path / "logs"
    logs.mkdir()
    x = logs / "x.log"
    (logs / "d.log").mkdir()  # a directory matching the glob from the start
    tally = Tally()
    row = results.add(Row("a file replaced by a directory (and back)"))
    tally.written += numbered("one", 0, 100)
    append_lines(x, tally.written)
    cfg = _cfg(tmp_path, f"{logs}/*.log, {x}", service={"Log_Level": "debug"})
    with AgentProc(["-c", cfg]) as agent:
        agent.wait_logs(tally.written)
        x.unlink()
        x.mkdir()
        (x / "inner.log").write_text("not matched\n")
        agent.wait_stderr("(deleted)")  # drained and closed after Rotate_Wait
        shutil.rmtree(x)
        two = numbered("two", 0, 100)
        append_lines(x, two)
        tally.written += two
        agent.wait_logs(two)
        assert agent.alive()
        row.fds_end = agent.fds()
        assert agent.stop() == 0
    tally.add_run(agent.snapshot())
    err = agent.err_text()
    _finish(row, tally, agent)
    assert not tally.missing and tally.duplicated == 0 and not tally.phantom
    assert "Traceback" not in err and "[error]" not in err, err[-3000:]


# -- symlink loops ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_symlink_loops_in_glob(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "self").symlink_to(logs)  # logs/self/a.log is logs/a.log
    (logs / "up").symlink_to(tmp_path)  # logs/up/logs/... again
    (logs / "loopA.log").symlink_to(logs / "loopB.log")  # ELOOP
    (logs / "loopB.log").symlink_to(logs / "loopA.log")
    (logs / "dangling.log").symlink_to(logs / "nowhere")
    a = logs / "a.log"
    tally = Tally()
    row = results.add(Row("symlink loops in the glob"))
    tally.written += numbered("a", 0, 100)
    append_lines(a, tally.written)
    cfg = _cfg(
        tmp_path,
        f"{logs}/*.log, {logs}/*/*.log, {logs}/*/*/*.log",
        service={"Log_Level": "debug"},
        Refresh_Interval="0.5",
    )
    with AgentProc(["-c", cfg]) as agent:
        agent.wait_logs(tally.written)
        # a writer that pauses longer than Rotate_Wait between bursts, over several scans
        for i in range(1, 3):
            more = numbered(f"a{i}", 0, 20)
            append_lines(a, more)
            tally.written += more
            agent.wait_logs(more)
            time.sleep(2.5)  # idle: > Rotate_Wait (1 s), several scans (pacing, not a check)
        row.fds_end = agent.fds()
        open_a = sum(
            1
            for t in os.listdir(f"/proc/{agent.pid}/fd")
            if os.path.realpath(f"/proc/{agent.pid}/fd/{t}") == str(a)
        )
        assert agent.stop() == 0
    tally.add_run(agent.snapshot())
    err = agent.err_text()
    rotated = err.count("rotated ")
    closes = err.count(f"close {a}") + err.count(f"close {logs}/self/a.log")
    _finish(
        row,
        tally,
        agent,
        f"same file under 3 names: {rotated} 'rotated' reports, {closes} close/reopen",
    )
    assert not tally.missing and tally.duplicated == 0
    assert open_a == 1, "one descriptor for one file, whatever its names"
    assert "Traceback" not in err
    assert rotated == 0, "a file seen under several names is not a rotation"
    assert closes == 0, "a live file was let go of"


# -- 5,000 files -----------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_five_thousand_files_in_one_directory(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    n = 5000
    logs = tmp_path / "logs"
    logs.mkdir()
    tally = Tally()
    row = results.add(Row(f"{n:,} files in one directory"))
    for i in range(n):
        lines = [f"f{i:05d}-{k}" for k in range(2)]
        append_lines(logs / f"f{i:05d}.log", lines)
        tally.written += lines
    cfg = _cfg(tmp_path, f"{logs}/*.log", Refresh_Interval="2")
    with AgentProc(["-c", cfg]) as agent:
        t0 = time.monotonic()
        agent.wait_logs(tally.written, timeout=180)
        first_pass = time.monotonic() - t0
        fds_full = agent.fds()
        # idle cost with every file open: CPU seconds over a few idle seconds
        c0, w0 = _cpu_s(agent.pid), time.monotonic()
        time.sleep(3)
        idle_cpu = (_cpu_s(agent.pid) - c0) / (time.monotonic() - w0)
        more = []
        for i in range(0, n, 50):
            line = [f"f{i:05d}-late"]
            append_lines(logs / f"f{i:05d}.log", line)
            more += line
        tally.written += more
        agent.wait_logs(more, timeout=60)
        # all deleted: every descriptor released after Rotate_Wait
        shutil.rmtree(logs)
        wait_until(
            lambda: agent.fds() < 100,
            120,
            lambda: f"descriptors of deleted files released (have {agent.fds()})",
        )
        row.fds_end = agent.fds()
        assert agent.stop() == 0
    tally.add_run(agent.snapshot())
    _finish(
        row,
        tally,
        agent,
        f"all read in {first_pass:.0f}s; {fds_full} fds while all "
        f"open; idle CPU {idle_cpu:.0%} of a core",
    )
    assert not tally.missing and tally.duplicated == 0


@pytest.mark.timeout(120)
def test_two_thousand_files_at_a_1024_fd_soft_limit(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    """Many container runtimes and systemd units start processes with a soft limit of 1024
    open files (the hard limit is higher): an agent that keeps every followed file open must
    raise its soft limit (as Go programs do at start) or it silently follows only part."""
    hard = int(
        subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout.strip()
        or 0
    )
    if hard < 4096:
        pytest.skip(f"hard fd limit {hard}: too low for this scenario")
    logs = tmp_path / "logs"
    logs.mkdir()
    written = []
    for i in range(2000):
        line = [f"f{i:05d}"]
        append_lines(logs / f"f{i:05d}.log", line)
        written += line
    cfg = _cfg(tmp_path, f"{logs}/*.log")
    prefix = ["sh", "-c", 'ulimit -Sn 1024 && exec "$0" "$@"']
    row = results.add(Row("2,000 files under a 1024 soft fd limit"))
    with AgentProc(["-c", cfg], prefix=prefix) as agent:
        want = set(written)
        wait_until(
            lambda: (
                want <= set(agent.snapshot())
                or "Too many open files" in agent.err_text()
                or not agent.alive()
            ),
            60,
            "all lines or EMFILE",
        )
        assert "Too many open files" not in agent.err_text()
        agent.wait_logs(written, timeout=60)
        row.fds_end = agent.fds()
        assert agent.stop() == 0
    tally = Tally(written=written)
    tally.add_run(agent.snapshot())
    _finish(row, tally, agent, "soft limit raised to the hard one at start")
    assert not tally.missing and tally.duplicated == 0


# -- inotify unavailable ---------------------------------------------------------------------


def _userns_prefix(limit: str) -> list[str]:
    """Run the agent in a user namespace of its own whose inotify limit is 0: the host's
    settings (shared with everyone) stay untouched."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    probe = subprocess.run(
        ["unshare", "-U", "-r", "sh", "-c", f"echo 0 > /proc/sys/user/{limit}"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot set {limit} in a user namespace: {probe.stderr!r}")
    return ["unshare", "-U", "-r", "sh", "-c", f'echo 0 > /proc/sys/user/{limit} && exec "$0" "$@"']


@pytest.mark.parametrize("how", ["no-instances", "no-watches", "Inotify_Watcher-off"])
@pytest.mark.timeout(120)
def test_inotify_unavailable_falls_back_to_polling(tmp_path: Path, results, how: str) -> None:  # type: ignore[no-untyped-def]
    prefix: list[str] = []
    keys: dict[str, object] = {"Refresh_Interval": "1"}
    if how == "no-instances":
        prefix = _userns_prefix("max_inotify_instances")
    elif how == "no-watches":
        prefix = _userns_prefix("max_inotify_watches")
    else:
        keys["Inotify_Watcher"] = "off"
    root = tmp_path / "ray"
    root.mkdir()
    tally = Tally()
    row = results.add(Row(f"inotify unavailable ({how})"))
    cfg = _cfg(tmp_path, f"{root}/session_latest/logs/*", **keys)
    with AgentProc(["-c", cfg], prefix=prefix) as agent:
        agent.wait_stderr("initial scan done")
        # the tree appears after the agent started (a sidecar starts before Ray)
        logs = root / "session_2026-01-01_00-00-00_000000_1" / "logs"
        logs.mkdir(parents=True)
        (root / "session_latest").symlink_to(logs.parent)
        lines = numbered("s1", 0, 100)
        append_lines(logs / "raylet.out", lines)
        tally.written += lines
        agent.wait_logs(lines, timeout=30)
        late = numbered("late", 0, 10)
        append_lines(logs / "worker-1.out", late)
        tally.written += late
        agent.wait_logs(late, timeout=30)
        row.fds_end = agent.fds()
        assert agent.stop() == 0
    tally.add_run(agent.snapshot())
    err = agent.err_text()
    warned = "polling" in err
    _finish(row, tally, agent, "warned: polling" if warned else "no warning")
    assert not tally.missing and tally.duplicated == 0
    assert "Traceback" not in err, err[-3000:]
    if how != "Inotify_Watcher-off":
        assert warned, f"no fallback warning:\n{err[-3000:]}"
        assert err.count("polling") == 1, "warned once, not per scan"


# -- one 50 MB line --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("skip", [False, True], ids=["cut", "Skip_Long_Lines"])
@pytest.mark.timeout(240)
def test_fifty_megabyte_line(tmp_path: Path, results, skip: bool) -> None:  # type: ignore[no-untyped-def]
    mb = 200 if LONG else 50
    log = tmp_path / "big.log"
    tally = Tally()
    row = results.add(Row(f"one {mb} MB line ({'Skip_Long_Lines' if skip else 'cut'})"))
    before = numbered("before", 0, 100)
    append_lines(log, before)
    tally.written += before
    keys: dict[str, object] = {"Skip_Long_Lines": "on"} if skip else {}
    cfg = _cfg(tmp_path, str(log), **keys)
    with AgentProc(["-c", cfg], keep_records=True) as agent:
        agent.wait_logs(before)
        base = agent.rss_kb()
        piece = b"L" * (1 << 20)
        done = threading.Event()

        def writer() -> None:  # the line arrives over time, as a runaway print would
            with open(log, "ab") as f:
                for _ in range(mb):
                    f.write(piece)
                    f.flush()
                    time.sleep(0.01)  # pacing: the agent reads while the line grows
                f.write(b"\n")
            done.set()

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        peak = 0
        while not done.is_set():
            peak = max(peak, agent.rss_kb())
            done.wait(0.05)
        after = numbered("after", 0, 100)
        append_lines(log, after)
        tally.written += after
        agent.wait_logs(after, timeout=120)
        peak = max(peak, proc_status(agent.pid, "VmHWM"))  # the high-water mark
        row.fds_end = agent.fds()
        assert agent.stop() == 0
    records = agent.records
    cut = [r for r in records if r.get("truncated")]
    tally.add_run(r["log"] for r in records if not r.get("truncated"))
    _finish(
        row,
        tally,
        agent,
        f"RSS {base // 1024} MB before the line, peak +"
        f"{(peak - base) // 1024} MB; the line "
        + ("skipped (Skip_Long_Lines)" if skip else "cut to 32 KiB, truncated: true"),
    )
    row.written += 1
    row.delivered += 0 if skip else len(cut)
    assert not tally.missing and tally.duplicated == 0
    if skip:
        assert not cut and len(records) == len(tally.written)
    else:
        assert len(cut) == 1 and cut[0]["log"] == "L" * 32 * 1024, [len(c["log"]) for c in cut]
    assert peak - base < 40 * 1024, f"RSS grew {peak - base} kB for a {mb} MB line"
