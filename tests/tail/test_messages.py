"""What the agent says at info level, in a real CLI run: each internal event once, in words a
person can act on (telemetry: one function per event, which logs and counts)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.agent import Agent, wait_for
from tests.ops.conftest import free_port, sample, scrape, write_conf


def _session(root: Path, n: int) -> Path:
    logs = root / f"session_2026-11-28_10-0{n}-00_000000_{n}" / "logs"
    logs.mkdir(parents=True)
    return logs


def test_the_agent_says_what_it_does(tmp_path: Path) -> None:
    root = tmp_path / "ray"
    root.mkdir()
    link = root / "session_latest"
    pattern = f"{link}/logs/*"
    port = free_port()
    cfg = write_conf(
        tmp_path / "c.conf",
        tail={
            "Path": pattern,
            "Buffer_Max_Size": 64,
            "Refresh_Interval": 1,
            "Rotate_Wait": 1,
            "DB": tmp_path / "offsets.db",
        },
        service={
            "Log_Level": "info",
            "HTTP_Server": "on",
            "HTTP_Listen": "127.0.0.1",
            "HTTP_Port": port,
        },
    )
    with Agent(["-c", str(cfg)]) as agent:
        agent.wait_stderr(f"waiting for {pattern}: nothing matches yet")
        s1 = _session(root, 1)
        old = s1 / "raylet.out"
        old.write_bytes(b"first\n" + b"x" * 200 + b"\nafter the long one\n")
        link.symlink_to(s1.parent)
        agent.wait_stderr(f"{link} now -> {s1.parent}")
        agent.wait_stderr(f"following {link}/logs/raylet.out (new, from head)")
        agent.wait_log("after the long one")
        agent.wait_stderr(f"{link}/logs/raylet.out: 1 line(s) longer than the line limit")
        wait_for(
            lambda: sample(scrape(port), "shipper_input_long_lines_total", name="tail.0") == 1,
            what="the cut line counted",
        )
        # Ray's next session: session_latest re-pointed (remove, then create)
        s2 = _session(root, 2)
        (s2 / "gcs_server.out").write_bytes(b"second session\n")
        link.unlink()
        link.symlink_to(s2.parent)
        agent.wait_stderr(f"{link} now -> {s2.parent}")
        agent.wait_log("second session")
        # the old session's file left the glob: let go of after Rotate_Wait
        agent.wait_stderr(f"released {link}/logs/raylet.out")
        assert agent.stop() == 0
    err = agent.err_text()
    assert err.count("nothing matches yet") == 1, err  # once, not at every scan
    for line in err.splitlines():
        if "following" in line or "released" in line or " now -> " in line:
            assert "[ info]" in line, line
    # a restart goes on where the DB says, and says so
    size = os.path.getsize(s2 / "gcs_server.out")
    with Agent(["-c", str(cfg)]) as agent:
        agent.wait_stderr(f"following {link}/logs/gcs_server.out (from offset {size} (DB))")
        assert agent.stop() == 0


def test_files_found_at_start_are_followed_at_their_end(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"old\n")
    cfg = write_conf(
        tmp_path / "c.conf", tail={"Path": f"{logs}/*.log"}, service={"Log_Level": "info"}
    )
    with Agent(["-c", str(cfg)]) as agent:
        agent.wait_stderr(f"following {logs}/a.log (at end)")
        assert agent.stop() == 0
    assert "nothing matches yet" not in agent.err_text()
