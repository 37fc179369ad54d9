"""The image, built and run: docker/Dockerfile replayed into a Debian root filesystem
(tests/image.py: mmdebstrap for the base, every RUN/COPY/ENV of both stages, the C helpers
compiled in the builder stage, the wheels installed in the runtime stage), then the agent
started in it as a Kubernetes sidecar runs: ENTRYPOINT with no arguments, uid 10001, a
read-only root, no capabilities, the seed's ConfigMap at /fluent-bit/etc/fluent-bit.conf, a
tmpfs at /tmp, and Ray's temp dir at /tmp/ray, written by a real Ray in its own network
namespace. The records must come out of the agent's stdout.

The first assembly takes a minute or two (downloads); later runs reuse it (tests/image.py
says what is cached and keyed on what).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.agent import wait_for
from tests.backends import (
    _skip_or_fail,
    ray_env,
    ray_temp_dir,
    require_netns,
    require_ray,
    run_in_netns,
    stop_process,
)
from tests.image import ROOT, Bind, Image, assemble, image_skip_reason, start

# The first test to run assembles the image (minutes when nothing is cached yet).
pytestmark = [pytest.mark.timeout(900)]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DROP_IN = "/fluent-bit/etc/fluent-bit.conf"

DRIVER = r"""
import os, sys, time
import ray

temp, marker, go = sys.argv[1], sys.argv[2], sys.argv[3]
ray.init(_temp_dir=temp, include_dashboard=False, num_cpus=1)


@ray.remote
def say(text):
    print(text, flush=True)
    return os.getpid()


print("TASK", ray.get(say.remote(marker)), flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
ray.shutdown()
print("DONE", flush=True)
"""


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    reason = image_skip_reason()
    if reason is not None:
        _skip_or_fail(reason)
    img = assemble()
    if img.built_seconds is not None:
        print(f"\nimage assembled in {img.built_seconds:.1f} s: {img.root}")
    yield img


def _seed_config(tmp_path: Path) -> Path:
    """The seed RayCluster's ConfigMap, as the pod would mount it."""
    docs = list(yaml.safe_load_all((FIXTURES / "ray-cluster.log.yaml").read_text()))
    cm = next(d for d in docs if d and d["kind"] == "ConfigMap")
    text = cm["data"]["fluent-bit.conf"]
    assert text == (FIXTURES / "fluent-bit.conf").read_text(encoding="utf-8")
    path = tmp_path / "configmap" / "fluent-bit.conf"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    return path


class Lines:
    """A stream's lines, read by a thread into a queue."""

    def __init__(self, stream: Any) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for raw in stream:
            self.queue.put(raw.decode("utf-8", "replace").rstrip("\n"))

    def drain(self) -> list[str]:
        while True:
            try:
                self.all.append(self.queue.get_nowait())
            except queue.Empty:
                return self.all


def _container_pid(outer: int) -> int:
    """The host PID of the process that is PID 1 in the container (unshare's child)."""
    children = Path(f"/proc/{outer}/task/{outer}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _root_mount_options(pid: int) -> set[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return set(fields[5].split(","))
    raise AssertionError("no / in mountinfo")


def _terminate(image: Image, container: subprocess.Popen[Any], grace: float = 30) -> int | None:
    """The image's STOPSIGNAL to the container's PID 1 (as `docker stop` and the kubelet
    send it), then its exit code; SIGKILL for everything after `grace` seconds."""
    if container.poll() is None:
        with contextlib.suppress(OSError, AssertionError, ValueError):
            os.kill(_container_pid(container.pid), signal.Signals[image.config["stopsignal"]])
        with contextlib.suppress(subprocess.TimeoutExpired):
            container.wait(timeout=grace)
    return stop_process(container, timeout=0)


def _run(image: Image, args: list[str], binds: list[Bind] | None = None) -> tuple[int, str]:
    proc = start(image, args, binds=binds or [], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out.decode("utf-8", "replace")


def test_the_image_is_minimal_and_reads_the_drop_in_config(image: Image, tmp_path: Path) -> None:
    """The runtime stage has shipper with both C helpers and no compiler, sources, wheels
    or pip cache; arguments after the image name go to shipper (`docker run IMAGE
    --version`); with no -c it reads /fluent-bit/etc/fluent-bit.conf when mounted, else
    its embedded default."""
    root = image.root
    assert (root / "usr/local/bin/shipper").is_file()
    # Fluent Bit's image has it, and configs name it in Parsers_File
    stock = (root / "fluent-bit/etc/parsers.conf").read_bytes()
    assert stock == (ROOT / "tests/fixtures/fluent-bit/parsers.conf").read_bytes()
    for absent in ("usr/bin/gcc", "usr/bin/cc", "src", "wheels", "dist", "root/.cache/pip"):
        assert not (root / absent).exists(), absent
    assert list(root.glob("usr/local/lib/python3*/dist-packages/shipper/ray/_fastray.*.so"))
    assert list(root.glob("usr/local/lib/python3*/dist-packages/shipper/tail/_fastread.*.so"))
    assert image.config["entrypoint"] == ["shipper"] and image.config["user"] == "10001:10001"
    labels = image.config["labels"]
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.base.name"] == "python:3.11-slim-bookworm"
    # both C helpers import inside the image, not only exist as files
    assert _run(image, ["--version"]) == (
        0,
        "shipper v0.1.0 (C helpers: ray fast path, read pass)\n",
    )
    code, out = _run(image, ["--dry-run"], [Bind(_seed_config(tmp_path), DROP_IN)])
    assert (code, out.strip()) == (0, f"configuration test is successful ({DROP_IN})")
    code, out = _run(image, ["--dry-run"])
    assert (code, out.strip()) == (0, "configuration test is successful (<default>)")


@pytest.mark.ray
def test_agent_in_the_image_ships_a_real_ray_session(image: Image, tmp_path: Path) -> None:
    py = require_ray()
    require_netns()
    marker = f"IMAGE-{uuid.uuid4().hex[:12]}"
    conf = _seed_config(tmp_path)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    go = tmp_path / "go"
    with ray_temp_dir() as temp:
        # Ray runs as root here and the agent as 10001 (in a pod: Ray 1000, shipper 10001):
        # the directory must be readable by others, as an emptyDir is.
        temp.chmod(0o755)
        # Started before Ray, as a sidecar is: /tmp/ray is empty. Ray's temp dir is also
        # bound at its own path, so that its absolute session_latest link resolves inside, as
        # it does in a pod where both paths are /tmp/ray.
        agent = start(
            image,
            binds=[Bind(temp, "/tmp/ray"), Bind(temp, str(temp)), Bind(conf, DROP_IN)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = Lines(agent.stdout), Lines(agent.stderr)
        driver = run_in_netns(
            [py, str(script), str(temp), marker, str(go)],
            env=ray_env(home=tmp_path / "home"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        said = Lines(driver.stdout)
        try:
            pid = wait_for(lambda: _container_pid(agent.pid), 30, "the container's PID 1")
            # chroot, env and setpriv exec one another: wait for the last exec
            comm = Path(f"/proc/{pid}/comm")
            wait_for(lambda: comm.read_text().strip() == "shipper", 30, "shipper's exec")
            status = _status(pid)
            assert status["Uid"].split() == ["10001"] * 4, status["Uid"]
            assert status["Gid"].split() == ["10001"] * 4, status["Gid"]
            assert status["Groups"].strip() == ""
            for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(status[caps], 16) == 0, (caps, status[caps])
            assert status["NoNewPrivs"] == "1"
            assert status["NSpid"].split()[-1] == "1", "shipper is PID 1, as ENTRYPOINT"
            assert "ro" in _root_mount_options(pid)

            def records() -> list[dict[str, Any]]:
                return [json.loads(line) for line in out.drain()]

            def marker_record() -> dict[str, Any] | None:
                if agent.poll() is not None or driver.poll() is not None:
                    lines = [*said.drain(), *err.drain()]
                    raise AssertionError(
                        f"exited: agent {agent.returncode}, driver {driver.returncode}\n"
                        + "\n".join(lines)
                    )
                return next((r for r in records() if marker in r.get("log", "")), None)

            try:
                rec = wait_for(marker_record, 240, "the task's print on the agent's stdout")
            except AssertionError as exc:
                driver_out, agent_err = "\n".join(said.drain()), "\n".join(err.drain())
                raise AssertionError(
                    f"{exc}\ndriver:\n{driver_out}\nagent stderr:\n{agent_err}"
                ) from None
            session = os.path.basename(os.readlink(temp / "session_latest"))
            assert rec["session"] == session and rec["component"] == "worker", rec
            assert rec["true"].startswith("/tmp/ray/session_latest/logs/worker-"), rec
            wait_for(
                lambda: {"raylet", "gcs_server"} <= {r["component"] for r in records()},
                60,
                "raylet and gcs_server records",
            )
            for r in records():
                assert r["session"] == session, r
                assert r["true"].startswith("/tmp/ray/session_latest/logs/"), r
            go.touch()
            wait_for(lambda: "DONE" in said.drain() or driver.poll() is not None, 120, "DONE")
        finally:
            go.touch()
            stop_process(driver)
            code = _terminate(image, agent)
    assert code == 0, f"SIGTERM: exit {code}\n{err.drain()}"
    errors = [ln for ln in err.drain() if "[error]" in ln or "Traceback" in ln]
    assert not errors, errors
