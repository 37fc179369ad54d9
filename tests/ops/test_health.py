"""Health: Fluent Bit's rule (errors or failed retries above their counts within HC_Period)
in-process, then end to end: an output that keeps failing flips /api/v1/health to `error`,
and it comes back to `ok` once deliveries succeed for a whole period."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
from pathlib import Path

import pytest

from shipper import metrics, telemetry
from shipper.config.service import ServiceOptions
from tests.agent import Agent, wait_for
from tests.ops.conftest import (
    NumberedWriter,
    free_port,
    get_json,
    request,
    sample,
    scrape,
    wait_started,
    write_conf,
)

SERVICE = ServiceOptions(
    health_check=True, hc_errors_count=2, hc_retry_failure_count=1, hc_period=10.0
)


def test_rule_counts_only_the_period_and_is_strict() -> None:
    reg = telemetry.Registry()
    out = reg.output("http.0")
    for _ in range(3):
        telemetry.output_retry(out, 1, 0.0, "boom")
    now = out.error_times[-1]
    assert metrics.health(SERVICE, reg, now).status == "error"  # 3 > 2
    assert metrics.health(SERVICE, reg, now + 11).status == "ok"  # all older than the period
    out.error_times.popleft()
    assert metrics.health(SERVICE, reg, now).status == "ok"  # 2 is not above 2
    off = ServiceOptions(health_check=False, hc_errors_count=0)
    assert metrics.health(off, reg, now).healthy


def test_failed_retries_count_on_their_own() -> None:
    reg = telemetry.Registry()
    out = reg.output("stdout.0")
    telemetry.output_retries_exhausted(out, 10, "down")
    state = metrics.health(SERVICE, reg)
    assert (state.status, state.errors, state.retries_failed) == ("ok", 1, 1)
    telemetry.output_retries_exhausted(out, 10, "down")
    state = metrics.health(SERVICE, reg)
    assert (state.status, state.errors, state.retries_failed) == ("error", 2, 2)
    assert state.as_dict()["retry_failure_limit"] == 1


def test_reload_keeps_counters_and_the_error_window() -> None:
    reg = telemetry.Registry()
    old_in, old_out = reg.input("tail.0"), reg.output("stdout.0")
    old_in.records, old_in.files_open = 7, 3
    for _ in range(3):
        telemetry.output_retry(old_out, 1, 0.0, "boom")
    mark = reg.mark()
    new_in, _ = reg.input("tail.0"), reg.output("stdout.0")
    assert reg.live_inputs() == [old_in]  # the running one until the switch
    reg.retire(mark)
    assert reg.live_inputs() == [new_in]
    assert (new_in.records, new_in.files_open) == (7, 0)  # counters carried, gauges not
    assert metrics.health(SERVICE, reg).status == "error"
    mark = reg.mark()
    reg.input("tail.0")
    reg.rollback(mark)  # a refused config leaves no trace
    assert reg.inputs == [new_in]


class FifoReader:
    """The reading end of the agent's stdout: a named pipe this test can close and reopen.
    With no reader, the agent's writes fail (EPIPE) and the stdout output retries."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.lines = 0
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def writer_fd(self) -> int:
        return os.open(self.path, os.O_WRONLY)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                fd = self._fd
                if fd >= 0 and select.select([fd], [], [], 0.02)[0]:
                    with contextlib.suppress(BlockingIOError):
                        self.lines += os.read(fd, 1 << 16).count(b"\n")
            if fd < 0:
                self._stop.wait(0.02)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1

    def reopen(self) -> None:
        with self._lock:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.close()


@pytest.mark.timeout(90)
def test_health_flips_when_stdout_keeps_failing_and_back(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    cfg = write_conf(
        tmp_path / "c.conf",
        tail={"Path": str(log), "Mem_Buf_Limit": "200K"},
        service={
            "HTTP_Server": "on",
            "HTTP_Listen": "127.0.0.1",
            "HTTP_Port": port,
            "Health_Check": "on",
            "HC_Errors_Count": 3,
            "HC_Retry_Failure_Count": 100,
            "HC_Period": 2,
            "scheduler.base": 0.1,
            "scheduler.cap": 0.2,
        },
    )
    reader = FifoReader(tmp_path / "stdout.fifo")
    wfd = reader.writer_fd()
    writer = NumberedWriter(log, pause=0.002)
    agent = Agent(["-c", str(cfg)], stdout=wfd)
    os.close(wfd)  # the agent holds it now
    try:
        wait_started(agent)
        writer.start()
        wait_for(lambda: reader.lines > 50, what="records through the pipe")
        status, _, body = request(port, "/api/v1/health")
        assert (status, body) == (200, b"ok\n")

        reader.close()  # nobody reads stdout any more: every write fails
        wait_for(lambda: request(port, "/api/v1/health")[0] == 500, 30, "health: error")
        status, _, body = request(port, "/api/v1/health")
        assert (status, body) == (500, b"error\n")
        status, state = get_json(port, "/api/v2/health")
        assert status == 500 and state["status"] == "error" and state["errors"] > 3
        assert (state["error_limit"], state["period_limit"]) == (3, 2)
        _, m = get_json(port, "/api/v1/metrics")
        assert m["output"]["stdout.0"]["retries"] > 3
        # Nothing is acknowledged: reading pauses at Mem_Buf_Limit and the file runs ahead.
        wait_for(
            lambda: sample(scrape(port), "shipper_input_paused", name="tail.0") == 1,
            what="reading paused at Mem_Buf_Limit",
        )
        wait_for(
            lambda: (
                (
                    sample(
                        scrape(port),
                        "shipper_input_file_bytes_behind",
                        name="tail.0",
                        path=str(log),
                    )
                    or 0
                )
                > 1000
            ),
            what="bytes behind growing",
        )
        m2 = scrape(port)
        assert (sample(m2, "shipper_input_buffer_bytes", name="tail.0") or 0) >= 200 * 1024
        assert sample(m2, "shipper_input_bytes_behind", name="tail.0") == sample(
            m2, "shipper_input_file_bytes_behind", name="tail.0", path=str(log)
        )

        reader.reopen()  # the consumer is back: retries succeed, errors age out of HC_Period
        before = reader.lines
        wait_for(lambda: reader.lines > before + 50, 30, "records flowing again")
        wait_for(lambda: request(port, "/api/v1/health")[0] == 200, 30, "health: ok again")
        assert request(port, "/api/v1/health")[2] == b"ok\n"
        assert sample(scrape(port), "shipper_input_paused", name="tail.0") == 0
        assert get_json(port, "/api/v2/health")[1]["status"] == "ok"
    finally:
        writer.finish()
        agent.proc.send_signal(15)
        try:
            agent.proc.wait(20)
        except subprocess.TimeoutExpired:
            agent.kill()
        reader.stop()
        agent.kill()


class Backend:
    """A tiny HTTP receiver on 127.0.0.1 that answers 500 while `down`, else 200."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        backend = self
        self.down = False
        self.lines = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if backend.down:
                    self.send_response(500)
                else:
                    backend.lines += body.count(b"\n")
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.timeout(90)
def test_health_flips_with_an_http_output_down_and_back(tmp_path: Path) -> None:
    from shipper.plugins import OUTPUTS

    if "http" not in OUTPUTS:
        pytest.skip("the http output is not registered yet")
    backend = Backend()
    port = free_port()
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    cfg = write_conf(
        tmp_path / "c.conf",
        tail={"Path": str(log)},
        service={
            "HTTP_Server": "on",
            "HTTP_Listen": "127.0.0.1",
            "HTTP_Port": port,
            "Health_Check": "on",
            "HC_Errors_Count": 100,
            "HC_Retry_Failure_Count": 1,
            "HC_Period": 2,
            "scheduler.base": 0.05,
            "scheduler.cap": 0.1,
        },
        output={
            "Name": "http",
            "Host": "127.0.0.1",
            "Port": backend.port,
            "URI": "/in",
            "Format": "json_lines",
            "Retry_Limit": 1,
        },
    )
    writer = NumberedWriter(log, pause=0.002)
    try:
        with Agent(["-c", str(cfg)]) as agent:
            wait_started(agent)
            writer.start()
            wait_for(lambda: backend.lines > 50, what="records at the backend")
            assert request(port, "/api/v1/health")[0] == 200

            backend.down = True  # batches fail, are retried once, then dropped
            wait_for(lambda: request(port, "/api/v1/health")[0] == 500, 30, "health: error")
            status, state = get_json(port, "/api/v2/health")
            assert status == 500 and state["retries_failed"] > 1
            _, m = get_json(port, "/api/v1/metrics")
            assert m["output"]["http.0"]["retries_failed"] > 1
            assert m["output"]["http.0"]["dropped_records"] > 0

            backend.down = False
            before = backend.lines
            wait_for(lambda: backend.lines > before + 50, 30, "records at the backend again")
            wait_for(lambda: request(port, "/api/v1/health")[0] == 200, 30, "health: ok again")
            writer.finish()
            assert agent.stop() == 0
    finally:
        writer.finish()
        backend.close()
