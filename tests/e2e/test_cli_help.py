"""`shipper -i PLUGIN -h` prints the key table that also validates the plugin's section."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("flag", "plugin", "key"),
    [
        ("-i", "tail", "Rotate_Wait"),
        ("-i", "stdin", "Buffer_Size"),
        ("-o", "stdout", "Format"),
        ("-o", "http", "tls.verify"),
        ("-o", "loki", "Labels"),
        ("-o", "es", "Logstash_Format"),
        ("-o", "opentelemetry", "Logs_uri"),
        ("-F", "grep", "Regex"),
        ("-F", "modify", "Rename"),
    ],
)
def test_plugin_help_lists_its_keys(flag: str, plugin: str, key: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shipper", flag, plugin, "-h"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert f"plugin '{plugin}' keys" in out.stdout
    keys = {line.split()[0].lower() for line in out.stdout.splitlines()[2::2] if line.strip()}
    assert key.lower() in keys


def test_output_help_shows_the_common_keys_that_validate_the_section(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Retry_Limit and Workers are declared keys of every output: shown by -h and checked
    by the same table (a bad value names file, line and key)."""
    out = subprocess.run(
        [sys.executable, "-m", "shipper", "-o", "http", "-h"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    common = out.stdout.split("keys of every output:", 1)[1]
    keys = {line.split()[0].lower() for line in common.splitlines() if line.startswith("  ")}
    assert {"retry_limit", "workers", "match", "alias"} <= keys
    conf = tmp_path / "c.conf"
    conf.write_text(
        "[INPUT]\n    Name stdin\n[OUTPUT]\n    Name stdout\n    Match *\n    Workers 99\n"
    )
    bad = subprocess.run(
        [sys.executable, "-m", "shipper", "-c", str(conf), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 1
    assert "c.conf:6" in bad.stderr and "Workers" in bad.stderr
    assert "must be between 1 and 64" in bad.stderr


def test_unknown_plugin_help_fails() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shipper", "-o", "nosuch", "-h"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and "nosuch" in out.stderr
    assert "kafka" in out.stderr and "stdout" in out.stderr, "what there is instead"


def test_no_config_runs_the_embedded_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`shipper` alone: the embedded default (tail /tmp/ray/session_latest/logs/* to stdout).
    The drop-in path is pointed at a file that does not exist, so the default is used."""
    from tests.agent import Agent

    env = {"SHIPPER_DEFAULT_CONFIG": str(tmp_path / "absent.conf")}
    dry = subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert dry.returncode == 0 and "<default>" in dry.stdout
    with Agent([], env=env) as agent:
        agent.wait_stderr("initial scan done")
        assert "from <default>" in agent.err_text()
        assert agent.stop() == 0


def test_version_says_whether_the_c_helpers_run() -> None:
    """`shipper --version` names the C helpers in use, or says why none is."""
    from importlib.util import find_spec

    def version(**env: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "shipper", "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env},
        )
        assert out.returncode == 0
        return out.stdout.strip()

    plain = {k: v for k, v in os.environ.items() if k != "SHIPPER_NO_EXTENSIONS"}
    out = subprocess.run(
        [sys.executable, "-m", "shipper", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        env=plain,
    ).stdout.strip()
    built = find_spec("shipper.ray._fastray") and find_spec("shipper.tail._fastread")
    if built:
        assert out.endswith("(C helpers: ray fast path, read pass)"), out
    else:
        assert "C helpers not built" in out or "not built:" in out, out
    assert version(SHIPPER_NO_EXTENSIONS="1").endswith(
        "(C helpers off: SHIPPER_NO_EXTENSIONS is set)"
    )
