"""The embedded default (shipper/config/defaults.py, README's copy): Ray's whole directory, in a
config Fluent Bit itself reads (its keys only: the same file must work in a Fluent Bit sidecar)."""

from __future__ import annotations

import fnmatch
from pathlib import Path, PurePosixPath

from shipper.config.classic import parse_classic_text
from shipper.config.defaults import DEFAULT_CONFIG

README = Path(__file__).resolve().parents[2] / "README.md"

# Keys Fluent Bit documents for these sections and plugins (lower case, as it compares them).
FLUENT_BIT_KEYS = {
    "service": {"flush", "grace", "daemon", "log_file", "log_level", "parsers_file"},
    "tail": {
        "name",
        "tag",
        "path",
        "exclude_path",
        "path_key",
        "offset_key",
        "refresh_interval",
        "rotate_wait",
        "read_from_head",
        "multiline.parser",
        "db",
        "mem_buf_limit",
        "skip_long_lines",
        "skip_empty_lines",
    },
    "stdout": {"name", "match", "match_regex", "format", "json_date_key", "json_date_format"},
}


def test_default_uses_only_fluent_bit_keys() -> None:
    doc = parse_classic_text(DEFAULT_CONFIG, file="<default>", env={})
    for sec in doc.sections:
        keys = {p.key.lower() for p in sec.props}
        table = FLUENT_BIT_KEYS["service"] if sec.kind == "service" else FLUENT_BIT_KEYS[sec.plugin]
        assert keys <= table, (sec.kind, sorted(keys - table))


def test_default_reads_what_ray_writes_but_its_debug_snapshot() -> None:
    doc = parse_classic_text(DEFAULT_CONFIG, file="<default>", env={})
    (tail,) = [s for s in doc.sections if s.kind == "input"]
    props = {p.key.lower(): p.value for p in tail.props}
    globs = [g.strip() for g in props["path"].split(",")]
    excludes = [g.strip() for g in props["exclude_path"].split(",")]
    logs = "/tmp/ray/session_latest/logs"
    files = [
        "raylet.out",
        "worker-ab12-01000000-42.err",
        "job-driver-raysubmit_x.log",
        "serve/controller_42.log",
        "serve/proxy_10.0.0.1.log",
        "serve/replica_app_Model_x8a2.log",
        "jobs/supervisor-raysubmit_x.log",
        "events/event_RAYLET.log",
        "export_events/event_EXPORT_TASK_42.log",
    ]
    for rel in files:
        path = f"{logs}/{rel}"
        assert any(PurePosixPath(path).match(g) for g in globs), rel  # `*` stops at a `/`
        assert not any(fnmatch.fnmatch(path, x) for x in excludes), rel
    assert any(fnmatch.fnmatch(f"{logs}/debug_state.txt", x) for x in excludes)
    assert not any(PurePosixPath(f"{logs}/old/worker-1-2-3.out").match(g) for g in globs)
    # README shows the same config.
    readme = README.read_text()
    assert f"    Path              {props['path']}" in readme
