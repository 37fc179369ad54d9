"""The HTTP server binds exactly HTTP_Listen:HTTP_Port, and nothing when HTTP_Server is off.

Listening sockets are read from /proc (the agent's socket inodes matched against
/proc/net/tcp and tcp6), so no connection to another address is needed to prove a negative.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent import Agent, wait_for
from tests.ops.conftest import free_port, reachable, wait_started, write_conf

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found: set[tuple[str, int]] = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = cols[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # /proc prints the address as native-endian 32-bit words
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, raw), int(port_hex, 16)))
    return found


def test_binds_only_where_configured(tmp_path: Path) -> None:
    (tmp_path / "x.log").write_text("x\n")
    port = free_port()
    cfg = write_conf(
        tmp_path / "c.conf",
        tail={"Path": f"{tmp_path}/*.log"},
        service={"HTTP_Server": "on", "HTTP_Listen": "127.0.0.1", "HTTP_Port": port},
    )
    with Agent(["-c", str(cfg)]) as agent:
        wait_for(lambda: reachable(port), what="the HTTP server")
        assert _listening(agent.proc.pid) == {("127.0.0.1", port)}
        agent.wait_stderr(f"HTTP server listening on 127.0.0.1:{port}")
        assert agent.stop() == 0


def test_no_server_when_off(tmp_path: Path) -> None:
    cfg = write_conf(tmp_path / "c.conf", tail={"Path": f"{tmp_path}/*.log"})
    with Agent(["-c", str(cfg)]) as agent:
        wait_started(agent)
        assert _listening(agent.proc.pid) == set()
        assert agent.stop() == 0


def test_port_in_use_fails_the_start_clearly(tmp_path: Path) -> None:
    (tmp_path / "x.log").write_text("x\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_conf(
            tmp_path / "c.conf",
            tail={"Path": f"{tmp_path}/*.log", "Read_from_Head": "on"},
            service={"HTTP_Server": "on", "HTTP_Listen": "127.0.0.1", "HTTP_Port": port},
        )
        proc = subprocess.run(
            [sys.executable, "-m", "shipper", "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1
    assert f"cannot serve HTTP on 127.0.0.1:{port}" in proc.stderr, proc.stderr
    assert proc.stdout == ""  # nothing was read before the failure
