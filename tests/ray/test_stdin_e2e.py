"""`shipper -i stdin -o stdout` on RAY_LOG_TO_STDERR=1 streams (fixtures/.../log-to-stderr).

The expected records are derived here from the fixture text with this test's own header rule
and prefix table, not from the parser: a line with a Ray header starts a record, its
`(component)` prefix names the component, and every line after it without a header belongs
to it (joined with newlines).
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.agent import Agent, wait_for

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "ray-session-2.60" / "log-to-stderr"

# C++ `[2026-11-28 10:06:19,256 I 14486 14486] (gcs_server) file.cc:98: msg` and Python
# `2026-11-28 10:06:19,668<TAB>INFO (monitor) monitor.py:730 -- msg`.
CPP = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [TDIWEC] \d+ \d+\] (?:\((\S+)\) )?")
PY = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\t[A-Z]+ (?:\((\S+)\) )?\S+:\d+ --")

DRIVER = "01000000ffffffffffffffffffffffffffffffffffffffffffffffff"
CORE_WORKER = "960bdbfbe6eed40936da4a503451d8b88b2caed36b53c976a4cb6273"
# prefix -> (component, worker_id)
PREFIXES: dict[str | None, tuple[str, str | None]] = {
    "gcs_server": ("gcs_server", None),
    "raylet": ("raylet", None),
    f"python-core-driver-{DRIVER}": ("core_driver", DRIVER),
    f"python-core-worker-{CORE_WORKER}": ("core_worker", CORE_WORKER),
    "dashboard": ("dashboard", None),
    "dashboard_agent": ("dashboard_agent", None),
    "monitor": ("monitor", None),
    "log_monitor": ("log_monitor", None),
    "runtime_env_agent": ("runtime_env_agent", None),
    None: ("stdin", None),  # the driver's own lines: no prefix, the stream is the writer
}


def fixture_lines(name: str) -> list[str]:
    return (FIXTURE / name).read_bytes().decode("utf-8", "replace").split("\n")[:-1]


def expected_records(lines: list[str]) -> list[tuple[str, str, str | None]]:
    """(joined log, component, worker_id) per record."""
    out: list[tuple[list[str], str, str | None]] = []
    for line in lines:
        m = CPP.match(line) or PY.match(line)
        if m is None and out:
            out[-1][0].append(line)
            continue
        comp, wid = PREFIXES[m.group(1) if m else None]
        out.append(([line], comp, wid))
    return [("\n".join(group), comp, wid) for group, comp, wid in out]


def run_stdin(data: bytes, *extra: str, pieces: bool = False) -> Agent:
    agent = Agent(["-i", "stdin", *extra, "-o", "stdout", "-f", "0.1"], stdin=subprocess.PIPE)
    assert agent.proc.stdin is not None
    if pieces:  # a live stream: lines cut anywhere, arriving a little at a time
        rnd = random.Random(7)
        pos = 0
        while pos < len(data):
            n = rnd.randint(1, 700)
            agent.proc.stdin.write(data[pos : pos + n])
            agent.proc.stdin.flush()
            pos += n
            if rnd.random() < 0.05:
                time.sleep(0.01)
    else:
        agent.proc.stdin.write(data)
    agent.proc.stdin.close()
    return agent


def check(records: list[dict[str, Any]], lines: list[str]) -> None:
    want = expected_records(lines)
    assert [r["log"] for r in records] == [w[0] for w in want]
    for rec, (_, comp, wid) in zip(records, want, strict=True):
        assert rec["component"] == comp, rec
        if wid is not None:
            assert rec["worker_id"] == wid, rec
        assert "level" in rec and "message" in rec, rec  # every record starts with a header
        assert "session" not in rec  # a stream has no session directory


@pytest.mark.parametrize("name", ["driver-stdout.txt", "driver-stderr.txt"])
def test_fixture_components_and_joined_continuations(name: str) -> None:
    lines = fixture_lines(name)
    with run_stdin((FIXTURE / name).read_bytes()) as agent:
        assert agent.proc.wait(30) == 0, agent.err_text()  # end of input: the agent exits
        agent.kill()
    check(agent.snapshot(), lines)
    comps = {r["component"] for r in agent.snapshot()}
    if name == "driver-stdout.txt":
        assert comps == {"gcs_server", "raylet", "core_driver", "core_worker"}
        plasma = next(r for r in agent.snapshot() if "Plasma store debug dump" in r["log"])
        assert plasma["log"].count("\n") >= 20  # the whole dump, one record
    else:
        assert {
            "dashboard",
            "dashboard_agent",
            "monitor",
            "log_monitor",
            "runtime_env_agent",
        } <= comps


def test_both_streams_cut_anywhere() -> None:
    """`2>&1`: both files in one stream, written in random pieces (lines split across reads)."""
    data = (FIXTURE / "driver-stderr.txt").read_bytes() + (
        FIXTURE / "driver-stdout.txt"
    ).read_bytes()
    lines = fixture_lines("driver-stderr.txt") + fixture_lines("driver-stdout.txt")
    with run_stdin(data, pieces=True) as agent:
        assert agent.proc.wait(30) == 0, agent.err_text()
        agent.kill()
    check(agent.snapshot(), lines)


def test_last_line_without_newline_and_multiline_flush() -> None:
    """A record held while the stream stays open goes out after Multiline_Flush; at the end
    of input an unterminated last line is a record too."""
    head = "[2026-11-28 10:06:20,060 I 14547 14556] (raylet) store.cc:573: dump:"
    agent = Agent(
        ["-i", "stdin", "-p", "Multiline_Flush=0.3", "-o", "stdout", "-f", "0.1"],
        stdin=subprocess.PIPE,
    )
    with agent:
        assert agent.proc.stdin is not None
        agent.proc.stdin.write(f"{head}\nbody 1\nbody 2\n".encode())
        agent.proc.stdin.flush()
        rec = agent.wait_log(f"{head}\nbody 1\nbody 2")  # no more input, yet it comes out
        assert rec["component"] == "raylet" and rec["message"] == "dump:\nbody 1\nbody 2"
        agent.proc.stdin.write(b"unterminated")
        agent.proc.stdin.close()
        assert agent.proc.wait(20) == 0
        agent.kill()
    assert [r["log"] for r in agent.snapshot()] == [f"{head}\nbody 1\nbody 2", "unterminated"]


def test_sigterm_with_stdin_open_delivers_and_exits() -> None:
    agent = Agent(["-i", "stdin", "-o", "stdout", "-f", "0.1"], stdin=subprocess.PIPE)
    with agent:
        assert agent.proc.stdin is not None
        agent.proc.stdin.write(b"2026-11-28 10:06:19,668\tINFO (monitor) monitor.py:730 -- hi\n")
        agent.proc.stdin.flush()
        agent.wait_records(1)
        assert agent.stop() == 0  # the reader thread blocked in read() does not hold it up
    assert agent.snapshot()[0]["component"] == "monitor"


def test_ray_metadata_off_gives_plain_records() -> None:
    line = "[2026-11-28 10:06:19,256 I 14486 14486] (gcs_server) gcs_server_main.cc:98: hi"
    with run_stdin(
        f"{line}\nnext\n".encode(), "-p", "Ray_Metadata=off", "-p", "multiline.parser="
    ) as agent:
        assert agent.proc.wait(20) == 0
        agent.kill()
    recs = agent.snapshot()
    assert [sorted(r) for r in recs] == [["date", "log"], ["date", "log"]]
    assert [r["log"] for r in recs] == [line, "next"]


def test_unknown_key_and_parser_are_config_errors() -> None:
    for prop in ("Path=/x", "multiline.parser=nope"):
        with Agent(["-i", "stdin", "-p", prop, "-o", "stdout"]) as agent:
            assert agent.proc.wait(20) == 1
            agent.kill()
        assert "configuration error" in agent.err_text()


def test_backpressure_pauses_reading_then_delivers_everything() -> None:
    """Nobody reads shipper's stdout: it must stop reading stdin (the writer blocks) instead
    of buffering the stream; once stdout is read, every line arrives, once."""
    n = 100_000
    line = (
        "[2026-11-28 10:06:19,256 I 14486 14486] (raylet) node_manager.cc:1: line {:06d} "
        + "x" * 40
        + "\n"
    )
    payload = "".join(line.format(i) for i in range(n)).encode()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shipper",
            "-i",
            "stdin",
            "-p",
            "Mem_Buf_Limit=256k",
            "-o",
            "stdout",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    written = [0]

    def writer() -> None:
        assert proc.stdin is not None
        view = memoryview(payload)
        for i in range(0, len(payload), 65536):
            proc.stdin.write(view[i : i + 65536])
            proc.stdin.flush()
            written[0] = i + 65536
        proc.stdin.close()

    thread = threading.Thread(target=writer, daemon=True)
    try:
        thread.start()
        last = [-1, time.monotonic()]

        def stalled() -> bool:  # no progress for 0.5 s
            if written[0] != last[0]:
                last[:] = [written[0], time.monotonic()]
                return False
            return time.monotonic() - last[1] > 0.5

        wait_for(stalled, 30, "the stdin writer to block")
        # pipes (~64K each way) + Mem_Buf_Limit's worth of lines + one read ahead: far
        # below the 10 MB offered
        assert written[0] < 3 * 1024 * 1024, written[0]
        assert proc.stdout is not None
        count = 0
        for out in proc.stdout:
            assert out.startswith(b'{"date":')
            count += 1
        assert count == n
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def test_mem_buf_limit_zero_still_reads() -> None:
    """Fluent Bit's 0 ("no limit") must not leave stdin without room to read (it did)."""
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipper",
            "-i",
            "stdin",
            "-p",
            "mem_buf_limit=0",
            "-p",
            "ray_metadata=off",
            "-o",
            "stdout",
        ],
        input=b"a\nb\n",
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0
    assert [line.split(b'"log":')[1][:3] for line in out.stdout.splitlines()] == [b'"a"', b'"b"']
    assert b"Mem_Buf_Limit 0" in out.stderr
