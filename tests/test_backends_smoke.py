"""The real-backend helpers of tests/backends.py work: ClickHouse, network namespaces, Ray."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from tests.backends import (
    ClickHouseError,
    clickhouse_server,
    ray_env,
    ray_temp_dir,
    require_netns,
    require_ray,
    run_in_netns,
    stop_process,
)

# --------------------------------------------------------------------------- ClickHouse


@pytest.mark.clickhouse
@pytest.mark.timeout(180)
def test_clickhouse_insert_count_survives_kill_and_restart(tmp_path: Path) -> None:
    with clickhouse_server(tmp_path) as ch:
        assert ch.running() and ch.ping()
        assert ch.start_seconds is not None and ch.start_seconds < 60
        ch.query("CREATE TABLE logs (log String) ENGINE=MergeTree ORDER BY tuple()")

        # The request a Fluent Bit http output makes: POST JSON lines to the insert URI.
        body = b"".join(json.dumps({"log": f"line {i}"}).encode() + b"\n" for i in range(3))
        req = urllib.request.Request(
            ch.url + ch.insert_uri("logs"),
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=30) as resp:
            assert resp.status == 200
        assert ch.query("SELECT count() FROM logs").strip() == "3"

        port, pid = ch.port, ch.pid
        ch.kill()
        assert not ch.running() and not ch.ping()
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

        ch.start()
        assert ch.port == port and ch.pid != pid
        assert ch.count("logs") == 3
        assert sorted(r["log"] for r in ch.rows("SELECT log FROM logs")) == [
            "line 0",
            "line 1",
            "line 2",
        ]
        ch.insert_rows("logs", [{"log": "after restart"}])
        assert ch.count("logs") == 4
    assert not ch.running()


@pytest.mark.clickhouse
@pytest.mark.timeout(120)
def test_clickhouse_query_errors_raise(tmp_path: Path) -> None:
    with clickhouse_server(tmp_path) as ch:
        with pytest.raises(ClickHouseError) as info:
            ch.query("SELECT * FROM no_such_table")
        assert info.value.status >= 400
        assert "no_such_table" in info.value.body
        # a bad row is refused as a whole: the shipper sees a 4xx/5xx
        ch.query("CREATE TABLE t (n UInt32) ENGINE=MergeTree ORDER BY n")
        with pytest.raises(ClickHouseError):
            ch.query("INSERT INTO t FORMAT JSONEachRow", '{"n": "not a number"}\n')
        assert ch.count("t") == 0


# --------------------------------------------------------------------------- network namespace

_PROBE = textwrap.dedent(
    """
    import json, os, socket, sys
    host_port = int(sys.argv[1])
    names = [n for _, n in socket.if_nameindex()]
    # loopback is up: a listener on 127.0.0.1 inside answers
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    c = socket.create_connection(srv.getsockname(), timeout=5); c.close(); srv.close()
    # the host's loopback is not this one
    try:
        socket.create_connection(("127.0.0.1", host_port), timeout=5).close()
        reached_host = True
    except OSError:
        reached_host = False
    # nothing else is routable
    try:
        socket.create_connection(("192.0.2.1", 9), timeout=2).close()
        outside = True
    except OSError:
        outside = False
    print(json.dumps({"ifaces": names, "pid": os.getpid(),
                      "reached_host": reached_host, "outside": outside}))
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pid_namespace", [True, False])
def test_netns_has_only_loopback(tmp_path: Path, pid_namespace: bool) -> None:
    require_netns()
    script = tmp_path / "probe.py"
    script.write_text(_PROBE)
    with socket.socket() as host_listener:
        host_listener.bind(("127.0.0.1", 0))
        host_listener.listen(1)
        proc = run_in_netns(
            [sys.executable, script, str(host_listener.getsockname()[1])],
            pid_namespace=pid_namespace,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(timeout=30)
        finally:
            stop_process(proc)
    assert proc.returncode == 0, err
    got = json.loads(out)
    assert got["ifaces"] == ["lo"]
    assert got["reached_host"] is False
    assert got["outside"] is False
    if pid_namespace:
        assert got["pid"] == 1
    else:
        assert got["pid"] == proc.pid


# --------------------------------------------------------------------------- Ray

_RAY_DRIVER = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.monotonic()
    import ray
    t1 = time.monotonic()
    ray.init(_temp_dir=sys.argv[1], include_dashboard=False, num_cpus=1)
    t2 = time.monotonic()

    @ray.remote
    def hello(marker):
        print(marker, flush=True)
        return marker

    assert ray.get(hello.remote(sys.argv[2])) == sys.argv[2]
    t3 = time.monotonic()
    ray.shutdown()
    t4 = time.monotonic()
    print("TIMINGS " + json.dumps({"version": ray.__version__, "import": t1 - t0,
          "init": t2 - t1, "task": t3 - t2, "shutdown": t4 - t3}), flush=True)
    """
)


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_ray_task_output_lands_in_worker_out(tmp_path: Path) -> None:
    py = require_ray()
    require_netns()
    script = tmp_path / "driver.py"
    script.write_text(_RAY_DRIVER)
    marker = "SHIPPER-SMOKE-MARKER-7f3a"
    with ray_temp_dir() as temp_dir:
        proc = run_in_netns(
            [py, script, temp_dir, marker],
            env=ray_env(home=tmp_path / "home"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        try:
            out, _ = proc.communicate(timeout=240)
        finally:
            stop_process(proc)
        assert proc.returncode == 0, out[-5000:]
        timings = next(
            json.loads(line.split(" ", 1)[1])
            for line in out.splitlines()
            if line.startswith("TIMINGS ")
        )
        print(f"ray timings: {timings}")

        logs = temp_dir / "session_latest" / "logs"
        assert logs.is_dir(), sorted(p.name for p in temp_dir.iterdir())
        outs = sorted(logs.glob("worker-*.out"))
        assert outs, sorted(p.name for p in logs.iterdir())
        assert any(marker in p.read_text(errors="replace") for p in outs), {
            p.name: p.read_text(errors="replace")[-500:] for p in outs
        }
