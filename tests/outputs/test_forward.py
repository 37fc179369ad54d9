"""The `forward` output against a forward-protocol server on 127.0.0.1 (tests/outputs/
forward_receiver.py, written from Fluentd's Forward Protocol Specification v1), and against a
real Fluent Bit (`fluent-bit -i forward`) when one is built at FLUENT_BIT (skipped if not)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests.agent import Agent, wait_for
from tests.backends import fluent_bit_binary
from tests.outputs.conftest import (
    append_lines,
    assert_refused,
    run_shipper,
    tail_input,
    write_config,
)
from tests.outputs.forward_receiver import ForwardServer

FLUENT_BIT = fluent_bit_binary()


def _fwd(rx: ForwardServer, **keys: str) -> dict[str, Any]:
    return {"Name": "forward", "Match": "*", "Host": "127.0.0.1", "Port": str(rx.port), **keys}


def _run(cfg: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run_shipper("-c", str(cfg), timeout=timeout)


def test_modes_times_tag_and_options(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    lines = [f"line {i}" for i in range(30)]
    append_lines(log, lines)
    plain, integer, opts, packed, dynamic = (ForwardServer() for _ in range(5))
    try:
        before = time.time()
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log, Exit_On_Eof="on")],
            outputs=[
                _fwd(plain),
                _fwd(integer, Time_as_Integer="on", Tag="renamed"),
                _fwd(opts, Send_options="on"),
                _fwd(packed, Compress="gzip"),
                # Fluent Bit's Tag with record accessors: translated per record.
                _fwd(dynamic, Tag="ray.$TAG[1].$kind"),
            ],
            filters=[{"Name": "modify", "Match": "*", "Add": "kind worker"}],
        )
        res = _run(cfg)
        assert res.returncode == 0, res.stderr
        after = time.time()
        for rx in (plain, integer, opts, packed, dynamic):
            assert [r["log"] for r in rx.records()] == lines, rx
            # the time is not in the record
            assert all(set(r) == {"log", "kind"} for r in rx.records())
            assert all(before - 1 <= e.time <= after for e in rx.events)
        # EventTime (ext 0, nanoseconds) by default; whole seconds with Time_as_Integer.
        assert all(isinstance(e.raw_time, msgpack.ExtType) for e in plain.events)
        assert all(isinstance(e.raw_time, int) for e in integer.events)
        assert {e.tag for e in plain.events} == {"app.log"}
        assert {e.tag for e in integer.events} == {"renamed"}
        assert {e.tag for e in dynamic.events} == {"ray.log.worker"}
        # Forward mode with no options unless asked for; `size` with Send_options.
        assert plain.options and all(o == {} for o in plain.options)
        assert opts.options and all(set(o) == {"size"} for o in opts.options)
        assert sum(o["size"] for o in opts.options) == 30
        assert all(o.get("compressed") == "gzip" for o in packed.options)
    finally:
        for rx in (plain, integer, opts, packed, dynamic):
            rx.close()


def test_shared_key_handshake_and_user_auth(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append_lines(log, ["secret 1", "secret 2"])
    good = ForwardServer(shared_key="s3cr3t", users={"alice": "pw"})
    wrong_key = ForwardServer(shared_key="other")
    liar = ForwardServer(shared_key="s3cr3t", wrong_pong_key=True)  # cannot prove the key
    try:
        keys = {
            "Shared_Key": "s3cr3t",
            "Self_Hostname": "ray-head-0",
            "Username": "alice",
            "Password": "pw",
            "Require_ack_response": "on",
        }
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log)],
            outputs=[
                _fwd(good, **keys),
                _fwd(wrong_key, Shared_Key="s3cr3t"),
                _fwd(liar, Shared_Key="s3cr3t"),
            ],
        )
        with Agent(["-c", str(cfg)], stdout=subprocess.DEVNULL) as agent:
            wait_for(lambda: len(good.records()) == 2, what="2 records past the handshake")
            wait_for(lambda: wrong_key.refused and liar.handshakes, what="both refusals")
            agent.wait_stderr("PONG digest does not match")
            agent.wait_stderr("shared_key mismatch")
            agent.kill()
        assert [r["log"] for r in good.records()] == ["secret 1", "secret 2"]
        ping = good.handshakes[0]
        assert ping[1] == "ray-head-0" and ping[4] == "alice"
        # Nothing reaches a server that did not pass the handshake, or did not prove the key.
        assert wrong_key.records() == [] and liar.records() == []
        assert wrong_key.refused[0] == "shared_key mismatch"
        assert "s3cr3t" not in agent.err_text()
    finally:
        for rx in (good, wrong_key, liar):
            rx.close()


def test_unix_socket_and_empty_shared_key(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append_lines(log, ["over a unix socket"])
    sock = str(tmp_path / "fwd.sock")
    with ForwardServer(unix_path=sock, shared_key="") as rx:
        out = {
            "Name": "forward",
            "Match": "*",
            "Unix_Path": sock,
            "Empty_Shared_Key": "on",
            "Require_ack_response": "on",
        }
        cfg = write_config(
            tmp_path / "c.conf", inputs=[tail_input(log, Exit_On_Eof="on")], outputs=[out]
        )
        res = _run(cfg)
        assert res.returncode == 0, res.stderr
        assert [r["log"] for r in rx.records()] == ["over a unix socket"]
        assert len(rx.handshakes) == 1  # the handshake ran, with the empty key


def test_connection_lost_before_ack_resends(tmp_path: Path) -> None:
    """At least once: a batch whose ack never came is sent again, on a new connection;
    offsets are stored only after the acks, so a restart re-sends nothing that was acked."""
    log = tmp_path / "a.log"
    lines = [f"line {i:03d}" for i in range(200)]
    append_lines(log, lines[:100])
    db = tmp_path / "tail.db"
    with ForwardServer(drop_before_ack=2) as rx:
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log, DB=str(db))],
            outputs=[_fwd(rx, Require_ack_response="on")],
        )
        with Agent(["-c", str(cfg)], stdout=subprocess.DEVNULL) as agent:
            wait_for(lambda: rx.drop_before_ack == 0, what="two connections dropped")
            append_lines(log, lines[100:])
            wait_for(lambda: set(lines) <= {r["log"] for r in rx.records()}, what="all lines")
            assert agent.stop() == 0
        got = [r["log"] for r in rx.records()]
        assert set(got) == set(lines)  # nothing lost
        assert len(got) > len(lines)  # the unacked batches came twice
        assert rx.connections >= 3
        assert all(o.get("chunk") for o in rx.options)
        # Everything was acked before the stop: a restart sends only what is new.
        n = len(got)
        with Agent(["-c", str(cfg)], stdout=subprocess.DEVNULL) as agent:
            append_lines(log, ["after restart"])
            wait_for(lambda: rx.records()[-1]["log"] == "after restart", what="the new line")
            assert agent.stop() == 0
        assert len(rx.records()) == n + 1


def test_refused_keys_name_file_line_and_key(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    cases = [
        ({"tls": "on"}, "tls"),
        ({"tls.verify": "off"}, "tls.verify"),
        ({"Upstream": "/etc/upstream.conf"}, "Upstream"),
        ({"Compress": "zstd"}, "Compress"),
        ({"Tag": "x.$a[", "Compress": "text"}, "Tag"),
        ({"Username": "bob"}, "Username"),
        ({"Time_as_Integer": "on", "Compress": "gzip"}, "Compress"),
    ]
    for keys, key in cases:
        out = {"Name": "forward", "Match": "*", **keys}
        assert_refused(tmp_path, log, out, key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.skipif(
    not os.access(FLUENT_BIT, os.X_OK),
    reason="no Fluent Bit (set FLUENT_BIT or put fluent-bit on PATH)",
)
def test_real_fluent_bit_receives(tmp_path: Path) -> None:
    """shipper -> real `fluent-bit -i forward` (shared key handshake with user auth, acks;
    Forward mode and CompressedPackedForward) -> its stdout."""
    port = _free_port()
    fb_out = tmp_path / "fluent-bit.out"
    with open(fb_out, "w") as sink:
        inp = f"-i forward -p listen=127.0.0.1 -p port={port} -p shared_key=k3y".split()
        out = ["-o", "stdout", "-p", "format=json_lines", "-m", "*", "-f", "0.2"]
        fb = subprocess.Popen(
            [FLUENT_BIT, *inp, "-p", "security.users=alice pw", *out],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, what="fluent-bit listening")
        log = tmp_path / "a.log"
        lines = [f"to fluent-bit {i}" for i in range(50)]
        append_lines(log, lines)
        out = {
            "Name": "forward",
            "Match": "*",
            "Port": str(port),
            "Shared_Key": "k3y",
            "Username": "alice",
            "Password": "pw",
            "Require_ack_response": "on",
        }
        packed = {**out, "Compress": "gzip", "Tag": "packed"}
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log, Exit_On_Eof="on")],
            outputs=[out, packed],
        )
        res = _run(cfg)
        assert res.returncode == 0, res.stderr
        assert "Grace" not in res.stderr, res.stderr  # delivered (acked), not given up on

        def records() -> list[dict[str, Any]]:
            text = fb_out.read_text(errors="replace")
            return [json.loads(x) for x in text.splitlines() if x.startswith("{")]

        wait_for(lambda: len(records()) >= 100, what="100 records on fluent-bit's stdout")
        recs = records()
        assert sorted(r["log"] for r in recs) == sorted(lines * 2)
        assert all(abs(r["date"] - time.time()) < 60 for r in recs)  # EventTime understood
    finally:
        fb.terminate()
        fb.wait(timeout=10)
