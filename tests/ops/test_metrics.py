"""The metrics endpoints, scraped while the agent runs, against what the test wrote."""

from __future__ import annotations

import os
from pathlib import Path

from tests.agent import Agent, wait_for
from tests.ops.conftest import free_port, get_json, request, sample, scrape, write_conf


def _write(path: Path, prefix: str, n: int) -> int:
    data = b"".join(f"{prefix} {i}\n".encode() for i in range(n))
    with open(path, "ab") as f:
        f.write(data)
    return len(data)


def test_counters_follow_what_was_written(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    written = _write(logs / "a.log", "a", 100) + _write(logs / "b.log", "b", 50)
    port = free_port()
    cfg = write_conf(
        tmp_path / "c.conf",
        tail={"Path": f"{logs}/*.log*", "Read_from_Head": "on", "Mem_Buf_Limit": "8M"},
        service={"HTTP_Server": "on", "HTTP_Listen": "127.0.0.1", "HTTP_Port": port},
    )
    with Agent(["-c", str(cfg)]) as agent:
        agent.wait_records(150)

        def settled(records: int, files: int) -> bool:
            m = scrape(port)
            return (
                sample(m, "fluentbit_output_proc_records_total", name="stdout.0") == records
                and sample(m, "shipper_input_files_open", name="tail.0") == files
            )

        wait_for(lambda: settled(150, 2), what="output counters at 150 records")
        m = scrape(port)
        assert sample(m, "fluentbit_input_records_total", name="tail.0") == 150
        assert sample(m, "fluentbit_input_bytes_total", name="tail.0") == written
        assert sample(m, "fluentbit_input_files_opened_total", name="tail.0") == 2
        assert sample(m, "fluentbit_input_files_rotated_total", name="tail.0") == 0
        assert sample(m, "fluentbit_output_proc_bytes_total", name="stdout.0") == sum(
            len(line) for line in agent.raw
        )
        for name in ("errors", "retries", "retries_failed", "dropped_records"):
            assert sample(m, f"fluentbit_output_{name}_total", name="stdout.0") == 0
        assert sample(m, "shipper_input_buffer_limit_bytes", name="tail.0") == 8 * 1024 * 1024
        assert sample(m, "shipper_input_bytes_behind", name="tail.0") == 0
        assert sample(m, "shipper_input_paused", name="tail.0") == 0
        assert (
            sample(
                m,
                "fluentbit_build_info",
                edition="shipper",
                os="linux",
                version=__import__("shipper").__version__,
            )
            == 1
        )
        assert any(n == "process_start_time_seconds" for n, _ in m)
        assert any(n == "fluentbit_uptime" for n, _ in m)

        # Rotate a.log (the glob matches the rotated name too) and write to the new one.
        os.rename(logs / "a.log", logs / "a.log.1")
        written += _write(logs / "a.log", "new", 30)
        agent.wait_records(180)
        wait_for(lambda: settled(180, 2), what="rotated file released, new one followed")
        m = scrape(port)
        assert sample(m, "fluentbit_input_records_total", name="tail.0") == 180
        assert sample(m, "fluentbit_input_bytes_total", name="tail.0") == written
        assert sample(m, "fluentbit_input_files_opened_total", name="tail.0") == 3
        assert sample(m, "fluentbit_input_files_rotated_total", name="tail.0") == 1
        assert sample(m, "fluentbit_input_files_closed_total", name="tail.0") == 1

        status, body = get_json(port, "/api/v1/metrics")
        assert status == 200
        assert body["input"]["tail.0"] == {
            "records": 180,
            "bytes": written,
            "files_opened": 3,
            "files_closed": 1,
            "files_rotated": 1,
        }
        assert body["output"]["stdout.0"]["proc_records"] == 180
        assert agent.stop() == 0


def test_exposition_formats_and_endpoints(tmp_path: Path) -> None:
    (tmp_path / "x.log").write_text("one\n")
    port = free_port()
    cfg = write_conf(
        tmp_path / "c.conf",
        tail={"Path": f"{tmp_path}/*.log", "Read_from_Head": "on"},
        service={"HTTP_Server": "on", "HTTP_Listen": "127.0.0.1", "HTTP_Port": port},
    )
    with Agent(["-c", str(cfg)]) as agent:
        agent.wait_records(1)
        wait_for(lambda: _ok(port), what="the HTTP server")
        for path in ("/api/v1/metrics/prometheus", "/api/v2/metrics/prometheus"):
            status, headers, body = request(port, path)
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            assert b"# TYPE fluentbit_input_records_total counter" in body
            assert b'fluentbit_input_records_total{name="tail.0"} 1.0' in body
        status, headers, body = request(
            port, "/api/v2/metrics/prometheus", headers={"Accept": "application/openmetrics-text"}
        )
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")
        status, root = get_json(port, "/")
        assert status == 200 and "version" in root["fluent-bit"]
        status, uptime = get_json(port, "/api/v1/uptime")
        assert status == 200 and uptime["uptime_sec"] >= 0
        assert request(port, "/api/v1/health")[2] == b"ok\n"
        assert request(port, "/nope")[0] == 404
        assert agent.stop() == 0


def _ok(port: int) -> bool:
    try:
        return request(port, "/api/v1/health")[0] == 200
    except OSError:
        return False
