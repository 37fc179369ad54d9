"""End to end with a real Ray writing JSON logs (issue 15): `ray.LoggingConfig(encoding="JSON")`
for the workers' Python logging and RAY_BACKEND_LOG_JSON=1 for the C++ daemons.

Ray runs in its own network and PID namespace; the agent runs the embedded default config
(pointed at Ray's temp dir instead of /tmp/ray) beside it, started first as a sidecar is. The
task logs a warning with a user key and a logger.exception; the records must carry the keys the
text formats give (level, pid, source, message with its traceback, the task's ids), straight
from the live files.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from shipper.config.defaults import DEFAULT_CONFIG
from tests.agent import Agent, wait_for, write_config
from tests.backends import (
    ray_env,
    ray_temp_dir,
    require_netns,
    require_ray,
    run_in_netns,
    stop_process,
)
from tests.e2e.test_real_ray import Lines

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

DRIVER = r"""
import logging, os, sys, time
import ray

temp, marker, go = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    ray.init(
        _temp_dir=temp,
        include_dashboard=False,
        num_cpus=1,
        logging_config=ray.LoggingConfig(encoding="JSON"),
    )
except Exception as exc:
    print("RAY_INIT_FAILED", repr(exc), flush=True)
    sys.exit(3)


@ray.remote
def logs_json(text):
    log = logging.getLogger("e2e")
    log.warning("WARN " + text, extra={"marker": text})
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("EXC " + text)
    return ray.get_runtime_context().get_job_id()


print("JOB", ray.get(logs_json.remote(marker)), flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
ray.shutdown()
print("DONE", flush=True)
"""


def test_real_ray_json_logs_become_the_same_records(tmp_path: Path) -> None:
    py = require_ray()
    require_netns()
    marker = f"JSON-{uuid.uuid4().hex[:12]}"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    with ray_temp_dir() as temp:
        conf = DEFAULT_CONFIG.replace("/tmp/ray/", f"{temp}/").replace(
            "Flush        1", "Flush 0.2"
        )
        agent = Agent(["-c", str(write_config(tmp_path / "shipper.conf", conf))])
        driver = run_in_netns(
            [py, str(script), str(temp), marker, str(tmp_path / "go")],
            env=ray_env(home=tmp_path / "home", RAY_BACKEND_LOG_JSON="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out = Lines(driver.stdout)
        try:

            def said(word: str) -> str:
                def line() -> str | None:
                    if out.starting("RAY_INIT_FAILED") or driver.poll() is not None:
                        return out.starting("RAY_INIT_FAILED") or f"EXITED {driver.returncode}"
                    return out.starting(word)

                got = str(wait_for(line, 120, f"{word} from the driver:\n{out.text()[-3000:]}"))
                if got.startswith(("RAY_INIT_FAILED", "EXITED")):
                    pytest.fail(f"the Ray driver failed ({got}):\n{out.text()[-3000:]}")
                return got

            job = said("JOB ").split()[1]

            def find(cond: Any, what: str) -> dict[str, Any]:
                def hit() -> dict[str, Any] | None:
                    return next((r for r in agent.snapshot() if cond(r)), None)

                found = wait_for(hit, 60, f"{what}; agent stderr:\n{agent.err_text()[-3000:]}")
                return found  # type: ignore[no-any-return]

            warn = find(lambda r: r.get("message") == f"WARN {marker}", "the JSON warning")
            exc = find(
                lambda r: str(r.get("message", "")).startswith(f"EXC {marker}\n"),
                "logger.exception's record",
            )
            raylet = find(
                lambda r: r.get("component") == "raylet" and r["log"].startswith("{"),
                "a JSON raylet record",
            )
            (tmp_path / "go").touch()
            said("DONE")
            assert driver.wait(60) == 0
        finally:
            stop_process(driver)
            agent_rc = agent.stop()
    assert agent_rc == 0, agent.err_text()[-3000:]
    # The worker's JSON line: the text formats' keys, Ray's context, the user's key.
    assert warn["log"].startswith("{") and warn["level"] == "WARNING", warn
    assert warn["component"] == "worker" and warn["stream"] == "err", warn
    assert warn["job_id"] == job and warn["task_name"] == "logs_json", warn
    assert warn["source"].startswith("driver.py:") and isinstance(warn["pid"], int), warn
    assert warn["marker"] == marker and warn["task_func_name"].endswith("logs_json"), warn
    assert len(warn["worker_id"]) == 56 and len(warn["node_id"]) == 56, warn
    assert abs(warn["date"] - time.time()) < 600, warn  # its own timestamp_ns, not 0
    for key in ("asctime", "levelname", "filename", "lineno", "process", "timestamp_ns"):
        assert key not in warn, key
    # logger.exception: one record, the traceback after the message as the text form has it.
    lines = exc["message"].split("\n")
    assert lines[1] == "Traceback (most recent call last):" and "exc_text" not in exc, exc
    assert lines[-1] == "ZeroDivisionError: division by zero" and exc["level"] == "ERROR", exc
    # C++ with RAY_BACKEND_LOG_JSON=1: level and source as the text form gives them.
    assert raylet["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "FATAL"), raylet
    assert ".cc:" in raylet["source"] and raylet["message"], raylet
