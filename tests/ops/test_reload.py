"""Hot reload under a steady writer: every numbered line exactly once, by SIGHUP and by
POST /api/v2/reload, across a rotation; a bad new config is refused with a clear log line and
the agent keeps shipping with the old one."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.agent import Agent, wait_for
from tests.ops.conftest import (
    NumberedWriter,
    free_port,
    get_json,
    reachable,
    wait_started,
    write_conf,
)


def _markers(agent: Agent, prefix: str = "m") -> Counter[int]:
    return Counter(
        int(r["log"].split()[1]) for r in agent.snapshot() if r["log"].startswith(prefix + " ")
    )


def _assert_each_once(agent: Agent, count: int) -> None:
    seen = _markers(agent)
    doubled = sorted(n for n, c in seen.items() if c > 1)
    missing = sorted(set(range(count)) - set(seen))
    assert not doubled, f"{len(doubled)} doubled, first {doubled[:10]}"
    assert not missing, f"{len(missing)} missing, first {missing[:10]}"
    assert set(seen) == set(range(count))


def _wait_all_shipped(agent: Agent, count: int) -> None:
    try:
        wait_for(lambda: len(_markers(agent)) >= count, 30, f"all {count} lines shipped")
    except AssertionError:
        _assert_each_once(agent, count)  # says which are missing
        raise


def _conf(path: Path, log: Path, port: int, **tail: object) -> Path:
    return write_conf(
        path,
        tail={"Path": str(log), "Read_from_Head": "on", **tail},
        service={
            "HTTP_Server": "on",
            "HTTP_Listen": "127.0.0.1",
            "HTTP_Port": port,
            "Hot_Reload": "on",
        },
    )


def _reloads(port: int) -> int:
    status, body = get_json(port, "/api/v2/reload")
    assert status == 200
    return int(body["hot_reload_count"])


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("via", "db"),
    [("sighup", False), ("http", False), ("sighup", True)],
    ids=["sighup", "http", "sighup-with-db"],
)
def test_reload_under_steady_writer_loses_and_doubles_nothing(
    tmp_path: Path, via: str, db: bool
) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    port = free_port()
    extra: dict[str, Any] = {"DB": str(tmp_path / "offsets.db")} if db else {}
    cfg = _conf(tmp_path / "c.conf", log, port, **extra)
    writer = NumberedWriter(log)
    with Agent(["-c", str(cfg)]) as agent:
        wait_started(agent)
        wait_for(lambda: reachable(port), what="the HTTP server")
        writer.start()
        try:
            for n in range(1, 5):
                writer.wait_lines(400)
                if n == 3:  # a rotated file, still open, is handed over with the rest
                    writer.rotate(f"{log}.1")
                # The new config changes what records look like: Path_Key on, then off...
                keys: dict[str, Any] = {"Path_Key": "file", **extra} if n % 2 else extra
                _conf(cfg, log, port, **keys)
                if via == "sighup":
                    agent.proc.send_signal(signal.SIGHUP)
                else:
                    status, body = get_json(port, "/api/v2/reload", "POST")
                    assert (status, body) == (200, {"reload": "done", "status": 0})
                wait_for(lambda n=n: _reloads(port) == n, what=f"reload {n}")  # type: ignore[misc]
        finally:
            count = writer.finish()
        _wait_all_shipped(agent, count)
        assert agent.stop() == 0
    _assert_each_once(agent, count)
    assert count > 1600
    with_key = [r for r in agent.snapshot() if "file" in r]
    assert with_key and all(r["file"] == str(log) for r in with_key)  # the new config applied
    assert "took over 1 open file(s)" in agent.err_text()
    assert "took over 2 open file(s)" in agent.err_text()  # app.log.1 and the new app.log


@pytest.mark.timeout(120)
def test_bad_config_is_refused_and_the_old_one_keeps_shipping(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    port = free_port()
    cfg = _conf(tmp_path / "c.conf", log, port)
    good = cfg.read_text()
    writer = NumberedWriter(log)
    with Agent(["-c", str(cfg)]) as agent:
        wait_started(agent)
        wait_for(lambda: reachable(port), what="the HTTP server")
        writer.start()
        try:
            writer.wait_lines(300)
            bad = good.replace("    Name tail\n", "    Name tail\n    Pathh /elsewhere/*\n")
            cfg.write_text(bad)
            line = bad.splitlines().index("    Pathh /elsewhere/*") + 1
            agent.proc.send_signal(signal.SIGHUP)
            agent.wait_stderr("reload refused")
            refusal = next(ln for ln in agent.err_text().splitlines() if "reload refused" in ln)
            assert "[error]" in refusal and f"{cfg}:{line}" in refusal and "Pathh" in refusal
            # The endpoint asks the same way, and is refused the same way.
            assert get_json(port, "/api/v2/reload", "POST")[0] == 200
            wait_for(lambda: agent.err_text().count("reload refused") == 2, what="2nd refusal")
            assert _reloads(port) == 0
            shipped = len(_markers(agent))
            writer.wait_lines(300)
            wait_for(lambda: len(_markers(agent)) > shipped + 250, what="still shipping")
            assert get_json(port, "/api/v2/health")[1]["status"] == "ok"

            cfg.write_text(good)  # fixed: now it reloads
            agent.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: _reloads(port) == 1, what="the reload of the fixed config")
            writer.wait_lines(300)
        finally:
            count = writer.finish()
        _wait_all_shipped(agent, count)
        assert agent.stop() == 0
    _assert_each_once(agent, count)


def test_reload_is_off_unless_hot_reload_is_on(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("before\n")
    port = free_port()
    cfg = write_conf(
        tmp_path / "c.conf",
        tail={"Path": str(log), "Read_from_Head": "on"},
        service={"HTTP_Server": "on", "HTTP_Listen": "127.0.0.1", "HTTP_Port": port},
    )
    with Agent(["-c", str(cfg)]) as agent:
        agent.wait_records(1)
        wait_for(lambda: reachable(port), what="the HTTP server")
        status, body = get_json(port, "/api/v2/reload", "POST")
        assert (status, body) == (400, {"reload": "not enabled", "status": -1})
        assert get_json(port, "/api/v2/reload", "PUT")[0] == 400
        agent.proc.send_signal(signal.SIGHUP)
        agent.wait_stderr("SIGHUP ignored: Hot_Reload is off")
        with open(log, "a") as f:
            f.write("after\n")
        agent.wait_log("after")
        assert _reloads(port) == 0
        assert get_json(port, "/api/v2/reload", "DELETE")[0] == 400
        assert agent.stop() == 0


def test_reload_moves_the_http_server(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\n")
    port, other = free_port(), free_port()
    cfg = _conf(tmp_path / "c.conf", log, port)
    with Agent(["-c", str(cfg)]) as agent:
        agent.wait_records(1)
        wait_for(lambda: reachable(port), what="the HTTP server")
        _conf(cfg, log, other)
        assert get_json(port, "/api/v2/reload", "POST")[0] == 200
        wait_for(lambda: reachable(other), what="the server on the new port")
        assert not reachable(port)
        assert _reloads(other) == 1
        with open(log, "a") as f:
            f.write("two\n")
        agent.wait_log("two")
        assert agent.stop() == 0
    assert [r["log"] for r in agent.snapshot()] == ["one", "two"]


def test_a_multiline_record_held_at_the_reload_is_rebuilt_whole(tmp_path: Path) -> None:
    """The old handler holds the first lines of a traceback when the reload comes: it must
    not emit them (half a record), and the new handler must not lose them."""
    log = tmp_path / "app.log"
    log.write_text("before\n")
    port = free_port()
    cfg = _conf(
        tmp_path / "c.conf", log, port, **{"multiline.parser": "python", "Multiline_Flush": 30}
    )
    head = 'Traceback (most recent call last):\n  File "job.py", line 3, in <module>\n'
    with Agent(["-c", str(cfg)]) as agent:
        agent.wait_log("before")
        with open(log, "a") as f:
            f.write(head)
        size = log.stat().st_size
        wait_for(
            lambda: get_json(port, "/api/v1/metrics")[1]["input"]["tail.0"]["bytes"] == size,
            what="the traceback's first lines read (and held)",
        )
        assert get_json(port, "/api/v2/reload", "POST")[0] == 200
        wait_for(lambda: _reloads(port) == 1, what="the reload")
        with open(log, "a") as f:
            f.write("    main()\nValueError: bad\nafter\n")
        agent.wait_log("after")
        assert agent.stop() == 0
    logs = [r["log"] for r in agent.snapshot()]
    assert logs == ["before", head + "    main()\nValueError: bad", "after"], logs
