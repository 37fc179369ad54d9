"""The reader lags (issue 14): copytruncate recovered from the copy, the rotation ring read to
its end and its losses counted, files moved to `old/`, the last bytes read at SIGTERM.

A real writer process appends with O_APPEND and does `cp x x.1 && truncate -s0 x` itself; the
agent is slowed by SIGSTOP/SIGCONT around each truncation (the writer signals it) or by a CPU
quota (a cgroup v1 `cpu` group). Lines written, delivered, lost and doubled go to the
reliability results table.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.agent import wait_for
from tests.backends import cpu_quota, free_port
from tests.outputs.receivers import JsonReceiver
from tests.reliability.harness import (
    STDOUT,
    AgentProc,
    Tally,
    classic,
    db_rows,
    tail_input,
    wait_until,
    write_conf,
)

pytestmark = pytest.mark.timeout(120)

WRITER = r"""
import datetime, os, shutil, signal, sys, time

d, nfiles, total, rate, rot_bytes, style, agent_pid = sys.argv[1:8]
nfiles, total, rate, rot_bytes, agent_pid = map(int, (nfiles, total, rate, rot_bytes, agent_pid))
paths = [os.path.join(d, f"f{i}.log") for i in range(nfiles)]
fds = [os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for p in paths]
since = [0] * nfiles
rotations = [0] * nfiles
seq = 0
start = time.monotonic()


def write_one():
    global seq
    i = seq % nfiles
    line = f"f{i}-{seq:07d}-".encode() + b"x" * 88 + b"\n"
    os.write(fds[i], line)
    since[i] += len(line)
    seq += 1
    ahead = seq / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
    return i


def rotate(i):
    rotations[i] += 1
    if style == "num":
        dst = paths[i] + ".1"  # cp onto the last copy: the same inode, rewritten
    else:  # logrotate's dateext: a new name each time
        day = datetime.date(2026, 1, 1) + datetime.timedelta(days=rotations[i])
        dst = paths[i] + "-" + day.strftime("%Y%m%d")
    shutil.copyfile(paths[i], dst)
    os.truncate(paths[i], 0)
    since[i] = 0


while seq < total:
    i = write_one()
    if since[i] >= rot_bytes:
        if agent_pid:
            # The reader is paused: what it has not read yet is only in the copy afterwards.
            os.kill(agent_pid, signal.SIGSTOP)
            for _ in range(40):
                write_one()
            rotate(i)
            for _ in range(40):
                write_one()
            os.kill(agent_pid, signal.SIGCONT)
        else:
            rotate(i)
print(seq, sum(rotations), flush=True)
"""


def _written(total: int, nfiles: int = 2) -> list[str]:
    return [f"f{s % nfiles}-{s:07d}-" + "x" * 88 for s in range(total)]


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/metrics/prometheus") as r:
        text = r.read().decode()
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M):
        total += float(m.group(1))
    return total


def _settle(agent: AgentProc, logs: Path, tag: str) -> None:
    """A last file appears after everything else: once it is delivered, a scan has seen
    every copy the writer left (a copy read again would show up by then)."""
    (logs / f"zz-{tag}.log").write_text(f"END {tag}\n")
    agent.wait_logs([f"END {tag}"], timeout=30)


def _run_copytruncate(
    tmp_path: Path, results, *, glob: str, style: str, slow: str, total: int = 12000
) -> None:  # type: ignore[no-untyped-def]
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    cfg = write_conf(
        tmp_path / "shipper.conf",
        classic(
            [tail_input(f"{logs}/{glob}")],
            [STDOUT],
            service={"HTTP_Server": "on", "HTTP_Listen": "127.0.0.1", "HTTP_Port": port},
        ),
    )
    tally = Tally(written=[*_written(total), "END done"])
    with AgentProc(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        with contextlib.ExitStack() as slowed:  # the quota ends with the writer
            if slow == "cpu-quota":
                slowed.enter_context(cpu_quota(0.05)).add(agent.pid)
            pause = agent.pid if slow == "sigstop" else 0  # the writer SIGSTOPs the agent
            args = [str(logs), "2", str(total), "2000", "200000", style, str(pause)]
            writer = subprocess.run(
                [sys.executable, "-c", WRITER, *args], capture_output=True, text=True, timeout=90
            )
        assert writer.returncode == 0, writer.stderr
        seq, rotations = map(int, writer.stdout.split())
        assert seq == total and rotations >= 4, writer.stdout
        _settle(agent, logs, "done")
        agent.wait_logs(tally.written, timeout=30)
        recovered = _metric(port, "shipper_input_copytruncate_recovered_bytes_total")
        missed = _metric(port, "shipper_input_copytruncate_missed_total")
        assert agent.stop() == 0
    tally.add_run(agent.snapshot())
    row = results.add(
        tally.row(
            f"copytruncate every 200 KB, {slow}, glob {glob}, copy {style}",
            note=f"{rotations} truncations, {recovered:.0f} B from copies, {missed:.0f} missed",
        )
    )
    assert row.lost == 0, tally.missing[:5]
    assert row.duplicated == 0, [k for k, v in tally.seen.items() if v > 1][:5]
    assert not tally.phantom, tally.phantom[:5]
    assert missed == 0
    if slow == "sigstop":
        assert recovered > 0  # each pause left lines that only the copy holds


@pytest.mark.parametrize(
    ("glob", "style"),
    [("*.log", "num"), ("*", "num"), ("*", "date"), ("*.log", "date")],
    ids=["glob-log-copy-dot1", "glob-all-copy-dot1", "glob-all-copy-dateext", "glob-log-dateext"],
)
def test_copytruncate_paused_reader_loses_and_doubles_nothing(
    tmp_path: Path, results, glob: str, style: str
) -> None:  # type: ignore[no-untyped-def]
    _run_copytruncate(tmp_path, results, glob=glob, style=style, slow="sigstop")


@pytest.mark.parametrize("glob", ["*.log", "*"])
def test_copytruncate_cpu_quota_loses_and_doubles_nothing(
    tmp_path: Path, results, glob: str
) -> None:  # type: ignore[no-untyped-def]
    _run_copytruncate(tmp_path, results, glob=glob, style="num", slow="cpu-quota")


def test_truncation_without_a_copy_is_reported(tmp_path: Path) -> None:
    """No copy anywhere: a warning and a counter, and reading goes on from 0."""
    log = tmp_path / "n.log"
    log.write_bytes(b"".join(b"a %d\n" % i for i in range(10)))
    port = free_port()
    cfg = write_conf(
        tmp_path / "s.conf",
        classic(
            [tail_input(str(log))],
            [STDOUT],
            service={"HTTP_Server": "on", "HTTP_Listen": "127.0.0.1", "HTTP_Port": port},
        ),
    )
    with AgentProc(["-c", cfg]) as agent:
        agent.wait_logs(["a 9"])
        os.kill(agent.pid, 19)  # SIGSTOP: lines written now are unread when the file shrinks
        try:
            with open(log, "ab") as f:
                f.write(b"unread 1\nunread 2\n")
            os.truncate(log, 0)
            with open(log, "ab") as f:
                f.write(b"b 0\n")
        finally:
            os.kill(agent.pid, 18)  # SIGCONT
        agent.wait_logs(["b 0"])
        agent.wait_stderr("no copy found")
        assert _metric(port, "shipper_input_copytruncate_missed_total") == 1
        # The reader never saw those bytes (it was paused): it cannot know how many they were.
        assert _metric(port, "shipper_input_copytruncate_missed_bytes_total") <= len(
            b"unread 1\nunread 2\n"
        )
        assert agent.stop() == 0
    assert "unread 1" not in agent.snapshot()


RING = r"""
import os, sys
path, action = sys.argv[1], sys.argv[2]
count = 2  # RAY_ROTATION_BACKUP_COUNT


def rotate():
    # Ray's ring (spdlog / RotatingFileHandler): x.N-1 -> x.N ... x -> x.1, x.N+1 deleted
    for k in range(count, 0, -1):
        src = f"{path}.{k}" if k > 0 else path
        if os.path.exists(src):
            if k == count:
                os.unlink(src)
            else:
                os.rename(src, f"{path}.{k + 1}")
    os.rename(path, f"{path}.1")


if action == "rotate":
    rotate()
else:
    prefix, a, b = action.split(":")
    with open(path, "ab") as f:
        lines = (f"{prefix} {i:06d} ".encode() + b"r" * 60 + b"\n" for i in range(int(a), int(b)))
        f.write(b"".join(lines))
"""


def _ring(path: Path, action: str) -> None:
    subprocess.run([sys.executable, "-c", RING, str(path), action], check=True, timeout=30)


def _ring_lines(prefix: str, a: int, b: int) -> list[str]:
    return [f"{prefix} {i:06d} " + "r" * 60 for i in range(a, b)]


def test_ring_paused_reader_reads_every_renamed_generation(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    """Paused while the ring turns three times (2 backups: the generation it was reading is
    deleted by the third): the held descriptor and the renamed names are read to their end,
    nothing twice."""
    logs = tmp_path / "logs"
    logs.mkdir()
    x = logs / "worker.out"
    cfg = write_conf(tmp_path / "s.conf", classic([tail_input(f"{logs}/*")], [STDOUT]))
    tally = Tally()
    with AgentProc(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        _ring(x, "g0:0:500")
        agent.wait_logs(_ring_lines("g0", 0, 500))
        agent.proc.send_signal(19)  # SIGSTOP
        try:
            _ring(x, "g0:500:3000")  # unread when its name goes away
            for g in range(1, 4):
                _ring(x, "rotate")
                _ring(x, f"g{g}:0:2000")
        finally:
            agent.proc.send_signal(18)  # SIGCONT
        tally.written = _ring_lines("g0", 0, 3000)
        for g in range(1, 4):
            tally.written += _ring_lines(f"g{g}", 0, 2000)
        # g0 was deleted by the third turn while the reader was paused; g1 only ever had the
        # names x, x.1 and x.2 that the glob matches.
        agent.wait_logs(tally.written, timeout=30)
        _settle(agent, logs, "ring")
        assert agent.stop() == 0
    tally.add_run(agent.snapshot())
    tally.written.append("END ring")
    row = results.add(tally.row("Ray ring, reader paused across 3 turns (count 2)"))
    assert row.lost == 0 and row.duplicated == 0


def test_ring_deleted_generation_counted_after_restart(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    """The backend is down, the generation being read rotates away and the agent stops; the
    ring deletes it before the next start. The next run reports exactly the bytes that were
    never delivered (the identity in the DB knows its size and how far it was delivered),
    and delivers every generation that still exists once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    x = logs / "worker.out"
    db = tmp_path / "tail.db"
    port = free_port()
    with JsonReceiver() as rx:
        out = {"Name": "http", "Match": "*", "Host": "127.0.0.1", "Port": rx.port,
               "Format": "json_lines", "Retry_Limit": "no_limits"}  # fmt: skip
        svc = {"HTTP_Server": "on", "HTTP_Listen": "127.0.0.1", "HTTP_Port": port, "Grace": "1"}
        cfg = write_conf(
            tmp_path / "s.conf", classic([tail_input(f"{logs}/*", DB=str(db))], [out], svc)
        )
        _ring(x, "g0:0:400")
        with AgentProc(["-c", cfg]) as a1:
            wait_for(lambda: len(rx.logs()) >= 400, 30, "g0's first lines delivered")
            rx.down()
            _ring(x, "g0:400:1500")  # read, never delivered
            _ring(x, "rotate")  # g0 -> worker.out.1: its size is final now
            _ring(x, "g1:0:300")
            wait_for(
                lambda: _metric(port, "fluentbit_input_files_rotated_total") >= 1,
                20,
                "the rotation seen",
            )
            assert a1.stop() == 0
        g0 = [r for r in db_rows(db) if r[4].endswith("worker.out.1")]
        assert g0, db_rows(db)
        delivered_before = list(rx.logs())
        # While no agent runs the ring turns twice: g0 (worker.out.2 after the first) is gone.
        _ring(x, "rotate")
        _ring(x, "g2:0:300")
        _ring(x, "rotate")
        _ring(x, "g3:0:300")
        assert not (logs / "worker.out.3").exists()
        rx.up()
        with AgentProc(["-c", cfg]) as a2:
            wait_until(
                lambda: "before it was read to its end" in a2.err_text(),
                30,
                lambda: f"the lost generation reported: {a2.err_text()[-3000:]}",
            )
            expect = _ring_lines("g1", 0, 300) + _ring_lines("g2", 0, 300)
            expect += _ring_lines("g3", 0, 300)
            wait_for(lambda: set(expect) <= set(rx.logs()), 30, "the surviving generations")
            lost_bytes = _metric(port, "shipper_input_rotated_lost_bytes_total")
            lost_files = _metric(port, "shipper_input_rotated_lost_files_total")
            assert a2.stop() == 0
    written = _ring_lines("g0", 0, 1500) + expect
    seen = Counter(rx.logs())
    undelivered = [w for w in written if w not in seen]
    proven = sum(len(w) + 1 for w in undelivered)
    assert undelivered == _ring_lines("g0", 0, 1500)[len(delivered_before) :]
    assert all(v == 1 for v in seen.values())
    assert lost_files == 1
    assert lost_bytes == proven, (lost_bytes, proven)
    results.add(
        Tally(written=written, seen=seen).row(
            "Ray ring deleted a generation while the agent was down",
            note=f"rotated_lost_bytes {lost_bytes:.0f} = proven {proven} (written - delivered)",
        )
    )


@pytest.mark.parametrize("glob_old", [False, True], ids=["glob-logs-only", "glob-old-too"])
@pytest.mark.parametrize("restart", [False, True], ids=["running", "restart-with-db"])
def test_moved_to_old_read_to_end_once(tmp_path: Path, glob_old: bool, restart: bool) -> None:
    """Ray's log monitor moves a dead worker's files to logs/old/: the rest is read, once."""
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    w = logs / "worker-aa-01000000-7.out"
    w.write_bytes(b"".join(b"w %d\n" % i for i in range(100)))
    path = f"{logs}/*, {logs}/old/*" if glob_old else f"{logs}/*"
    db = tmp_path / "t.db"
    cfg = write_conf(tmp_path / "s.conf", classic([tail_input(path, DB=str(db))], [STDOUT]))
    seen: Counter[str] = Counter()
    with AgentProc(["-c", cfg]) as a1:
        a1.wait_logs(["w 99"])
        if restart:
            assert a1.stop() == 0
            seen.update(a1.snapshot())
        else:
            a1.proc.send_signal(19)  # SIGSTOP: moved before the new lines are read
        with open(w, "ab") as f:
            f.write(b"".join(b"w %d\n" % i for i in range(100, 200)))
        os.rename(w, logs / "old" / w.name)
        if not restart:
            a1.proc.send_signal(18)
            a1.wait_logs(["w 199"])
            _settle(a1, logs, "old")
            assert a1.stop() == 0
            seen.update(a1.snapshot())
    if restart:
        with AgentProc(["-c", cfg]) as a2:
            a2.wait_logs(["w 199"])
            _settle(a2, logs, "old")
            assert a2.stop() == 0
            seen.update(a2.snapshot())
    for i in range(200):
        assert seen[f"w {i}"] == 1, (i, seen[f"w {i}"])


@pytest.mark.parametrize("with_db", [False, True], ids=["no-db", "db"])
def test_sigterm_ships_the_last_write_and_partial_line(tmp_path: Path, with_db: bool) -> None:
    """The writer's last bytes land just before SIGTERM (as `ray stop` in a preStop): the
    agent reads to EOF before its final flush, an unterminated last line included (with a
    DB it stays for the next run instead, which reads it whole)."""
    log = tmp_path / "s.log"
    log.write_bytes(b"first\n")
    keys = {"DB": str(tmp_path / "s.db")} if with_db else {}
    # A long Refresh_Interval and no inotify: nothing but the final read sees the last bytes.
    inp = tail_input(str(log), Refresh_Interval="60", Inotify_Watcher="false", **keys)
    cfg = write_conf(tmp_path / "s.conf", classic([inp], [STDOUT]))
    with AgentProc(["-c", cfg]) as agent:
        agent.wait_logs(["first"])
        agent.proc.send_signal(19)  # SIGSTOP: the last write lands while no pass can run
        with open(log, "ab") as f:
            f.write(b"".join(b"last %d\n" % i for i in range(1000)) + b"no newline")
        agent.proc.send_signal(15)  # SIGTERM, delivered at SIGCONT
        agent.proc.send_signal(18)
        agent.proc.wait(30)  # (a second SIGTERM would force the exit)
        assert agent.stop() == 0, agent.err_text()[-3000:]
    logs = agent.snapshot()
    assert logs[:1] == ["first"] and logs[1:1001] == [f"last {i}" for i in range(1000)]
    if not with_db:
        assert logs[1001:] == ["no newline"]
        return
    assert logs[1001:] == []
    with open(log, "ab") as f:
        f.write(b" after all\n")
    with AgentProc(["-c", cfg]) as again:
        again.wait_logs(["no newline after all"])
        assert again.stop() == 0, again.err_text()[-3000:]
    assert again.snapshot() == ["no newline after all"]


@pytest.mark.parametrize("glob", ["*.log", "*"])
def test_copytruncate_while_stopped_recovered_at_restart(tmp_path: Path, glob: str) -> None:
    """logrotate ran while no agent did: the DB's offset is past the new content's end (or its
    first bytes changed); the rest of the old content is read from the copy, then the new."""
    logs = tmp_path / "logs"
    logs.mkdir()
    x = logs / "x.log"
    x.write_bytes(b"".join(b"old %d\n" % i for i in range(100)))
    cfg = write_conf(
        tmp_path / "s.conf",
        classic([tail_input(f"{logs}/{glob}", DB=str(tmp_path / "t.db"))], [STDOUT]),
    )
    seen: Counter[str] = Counter()
    with AgentProc(["-c", cfg]) as a1:
        a1.wait_logs(["old 99"])
        assert a1.stop() == 0
        seen.update(a1.snapshot())
    with open(x, "ab") as f:
        f.write(b"".join(b"old %d\n" % i for i in range(100, 150)))
    subprocess.run(["cp", str(x), f"{x}.1"], check=True)
    os.truncate(x, 0)
    x.write_bytes(b"".join(b"new %d\n" % i for i in range(10)))
    with AgentProc(["-c", cfg]) as a2:
        a2.wait_logs(["new 9", "old 149"])
        _settle(a2, logs, "restart")
        assert a2.stop() == 0
        seen.update(a2.snapshot())
        order = a2.snapshot()
    assert order.index("old 149") < order.index("new 0")
    expect = [f"old {i}" for i in range(150)] + [f"new {i}" for i in range(10)]
    assert {k: seen[k] for k in expect} == dict.fromkeys(expect, 1)
    assert set(seen) == {*expect, "END restart"}
