"""The embedded default: the seed's sidecar config, made right for Ray's directory."""

from __future__ import annotations

import os

# Fluent Bit's image mounts its config here; the seed's RayCluster does the same.
DROP_IN_PATH = "/fluent-bit/etc/fluent-bit.conf"

# What Ray writes under a session's logs/: its daemons' and workers' files, Serve's, the job
# supervisors', and the JSON events (debug_state.txt is a snapshot rewritten in place).
_LOGS = "/tmp/ray/session_latest/logs"
_PATHS = ", ".join(
    f"{_LOGS}/{glob}" for glob in ("*", "serve/*", "jobs/*", "events/*.log", "export_events/*.log")
)

DEFAULT_CONFIG = f"""\
[SERVICE]
    Flush        1
    Log_Level    info

[INPUT]
    Name              tail
    Path              {_PATHS}
    Exclude_Path      */debug_state.txt
    Tag               ray
    Path_Key          true
    Refresh_Interval  5
    Read_from_Head    true
    multiline.parser  ray

[OUTPUT]
    Name    stdout
    Match   *
    Format  json_lines
"""


def default_config_path() -> str | None:
    """The drop-in config if it exists (`SHIPPER_DEFAULT_CONFIG` overrides the location)."""
    path = os.environ.get("SHIPPER_DEFAULT_CONFIG", DROP_IN_PATH)
    return path if os.path.isfile(path) else None
