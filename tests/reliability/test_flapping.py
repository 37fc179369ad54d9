"""The HTTP output's server flaps (refused, 503, 429, dropped connections, answers too late)
every few seconds while a writer appends: nothing is lost; the only duplicates are lines the
server received without the agent ever learning it (at-least-once)."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from pathlib import Path

import pytest

from shipper.plugins import registry
from tests.reliability.harness import (
    LONG,
    AgentProc,
    Receiver,
    Row,
    SteadyWriter,
    classic,
    tail_input,
    wait_until,
    write_conf,
)

PHASES = ["refuse", "up", "503", "up", "429", "up", "reset", "up", "slow", "up"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_output_flapping_loses_nothing(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    if "http" not in registry("output"):
        pytest.skip("the http output is not registered yet")
    seconds = 90.0 if LONG else 27.0
    phase_s = 3.0
    files = [tmp_path / "a.log", tmp_path / "b.log"]
    for f in files:
        f.touch()
    recv = Receiver(slow_s=3.0)
    cfg = write_conf(
        tmp_path / "s.conf",
        classic(
            [tail_input(str(tmp_path / "*.log"))],
            [
                {
                    "Name": "http",
                    "Match": "*",
                    "Host": "127.0.0.1",
                    "Port": recv.port,
                    "URI": "/ingest",
                    "Format": "json_lines",
                    "Retry_Limit": "no_limits",
                    "Workers": "2",
                    "net.io_timeout": "1",
                    "net.connect_timeout": "1",
                }
            ],
            service={"scheduler.base": "0.3", "scheduler.cap": "2"},
        ),
    )
    row = results.add(Row(f"output flapping {seconds:.0f}s (http: refused/503/429/reset/slow)"))
    writer = SteadyWriter(files, rate=500, batch=5)
    modes_seen: Counter[str] = Counter()
    try:
        with AgentProc(["-c", cfg]) as agent:
            agent.wait_stderr("initial scan done")
            writer.start()
            end = time.monotonic() + seconds
            for mode in itertools.cycle(PHASES):
                if time.monotonic() >= end:
                    break
                recv.set_mode(mode)
                modes_seen[mode] += 1
                time.sleep(phase_s)  # the fault's duration, not a wait for a result
            recv.set_mode("up")
            written = writer.stop()
            want = set(written)
            wait_until(
                lambda: want <= set(recv.snapshot()) or not agent.alive(),
                120,
                lambda: (
                    f"{len(want - set(recv.snapshot()))} lines at the receiver; "
                    f"stderr:\n{agent.err_text()[-2000:]}"
                ),
            )
            row.fds_end = agent.fds()
            assert agent.stop() == 0
            row.peak_rss_kb = agent.peak_rss_kb
            err = agent.err_text()
    finally:
        writer.halt.set()
        recv.close()
    got = Counter(recv.snapshot())
    missing = [w for w in written if w not in got]
    dups = {k: v for k, v in got.items() if v > 1}
    unexplained = [k for k in dups if k not in recv.unsure]
    row.written, row.delivered, row.lost = len(written), len(want & set(got)), len(missing)
    row.duplicated = sum(v - 1 for v in dups.values())
    row.note = (
        f"requests by mode {dict(recv.requests)}; duplicates only from dropped or "
        f"late answers: {not unexplained}"
    )
    assert not missing, f"{len(missing)} lost, e.g. {missing[:3]}"
    assert not unexplained, f"duplicates the server had acknowledged: {unexplained[:3]}"
    assert set(got) <= want, "records nobody wrote"
    assert "retry" in err, "the faults should have caused retries"
    assert "Traceback" not in err, err[-3000:]
    for mode in ("refuse", "503", "429", "reset"):
        assert modes_seen[mode], mode
