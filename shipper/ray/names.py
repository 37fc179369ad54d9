"""What a Ray log file's name says: its component and the ids baked into the name.

Pure string work on the resolved path (no I/O). The reader calls `describe` once per source, so
it need not be fast, but it is: a handful of anchored regexes on the base name.

Names follow Ray 2.x (docs/ray-logs.md). A rotated file (`raylet.out.1`, `..._pid.log.2`) describes
like its live name: rotation is shift-rename, so the same file carries both names in turn and its
records must not change their labels when it is renamed under the reader.
"""

from __future__ import annotations

import re

__all__ = ["describe", "file_kind", "session_of"]

# Rotation is a numeric suffix after the real extension (`x.out.3`, `x.log.1`).
_ROTATED = re.compile(r"\.\d+$")

# The Ray daemons and Python components whose `.log/.out/.err` name is just the component.
_PLAIN_COMPONENTS = frozenset(
    {
        "raylet",
        "gcs_server",
        "monitor",
        "log_monitor",
        "dashboard",
        "dashboard_agent",
        "runtime_env_agent",
        "ray_client_server",
    }
)
_EXTS = frozenset({"log", "out", "err"})

_DASHBOARD_MODULE = re.compile(r"dashboard_([A-Za-z0-9]+Head)$")
_CORE = re.compile(r"python-core-(worker|driver)-([0-9a-fA-F]+)_(\d+)$")
# Ray's get_worker_log_file_name: `{worker|io_worker}-<worker_id>-[<job_id>-]<pid>`; io workers
# and workers started without RAY_JOB_ID have no job id part.
_WORKER = re.compile(r"(worker|io_worker)-([0-9a-fA-F]+)-(?:([0-9a-fA-F]+)-)?(\d+)$")
# `event_<SOURCE>[_<pid>]`; SOURCE itself has underscores (CORE_WORKER, EXPORT_TASK).
_EVENT = re.compile(r"event_([A-Za-z][A-Za-z0-9_]*?)(?:_(\d+))?$")
_JOB_DRIVER = re.compile(r"job-driver-(.+)$")
# Specific-server Ray Client proxies log as `ray_client_server_<port>.out/.err`.
_CLIENT_SERVER_PORT = re.compile(r"ray_client_server_(\d+)$")
_RUNTIME_ENV_SETUP = re.compile(r"runtime_env_setup-([0-9a-fA-F]+)$")
# Serve's files (serve/_private/logging_utils.py): `controller_<pid>`, `proxy_<node ip>`,
# `replica_<app>_<deployment>_<replica id>` (the middle is what its lines call the deployment).
_SERVE_FILE = re.compile(r"(controller|proxy)_(.+)$")
_SERVE_REPLICA = re.compile(r"replica_(.+)_([A-Za-z0-9]+)$")
_SUPERVISOR = re.compile(r"supervisor-(.+)$")
_SESSION = re.compile(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_\d+$")

# A prestarted worker's name carries this placeholder instead of a job id (docs/ray-logs.md).
_NIL_JOB = "ffffffff"


def _split(base: str) -> tuple[str, str]:
    """`raylet.out.2` -> (`raylet`, `out`); `x` -> (`x`, ``)."""
    base = _ROTATED.sub("", base)
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        return base, ""
    return stem, ext


def _driver_job(worker_id: str) -> str | None:
    """A driver's worker id is its job id padded with `f` (Ray's ComputeDriverIdFromJob)."""
    if len(worker_id) > 8 and worker_id[8:].lower().strip("f") == "":
        return worker_id[:8]
    return None


def _under_serve(parts: list[str]) -> bool:
    """Inside `logs/serve/` (any depth): a `serve` dir above `logs` is somebody else's."""
    dirs = parts[:-1]
    try:
        start = len(dirs) - 1 - dirs[::-1].index("logs")
    except ValueError:
        return bool(dirs) and dirs[-1] == "serve"
    return "serve" in dirs[start + 1 :]


def _serve(stem: str) -> dict[str, object]:
    """`logs/serve/<name>.log`: the keys Serve's own JSON lines carry for the same process."""
    m = _SERVE_REPLICA.match(stem)
    if m:
        return {
            "component": "serve",
            "component_name": "replica",
            "deployment": m.group(1),
            "replica": m.group(2),
        }
    m = _SERVE_FILE.match(stem)
    if m:
        return {"component": "serve", "component_name": m.group(1), "component_id": m.group(2)}
    return {"component": "serve"}


def describe(path: str) -> dict[str, object]:
    """Component and name ids of a Ray log file, from its resolved path.

    Always has `component`; the other keys depend on the kind of file (docs/ray-logs.md). A name
    that is not Ray's still ships: its component is the file stem.
    """
    parts = path.replace("\\", "/").split("/")
    base = parts[-1]
    parent = parts[-2] if len(parts) > 1 else ""
    stem, ext = _split(base)

    if parent in ("events", "export_events"):
        m = _EVENT.match(stem)
        if m:
            out: dict[str, object] = {"component": "event", "source": m.group(1)}
            if m.group(2):
                out["pid"] = int(m.group(2))
            return out
        return {"component": "event"}
    if _under_serve(parts):
        return _serve(stem)
    if parent == "jobs":
        m = _SUPERVISOR.match(stem)
        if m:
            return {"component": "job_supervisor", "submission_id": m.group(1)}

    if ext in _EXTS:
        return _describe_log(stem, ext)
    return {"component": stem}


def _describe_log(stem: str, ext: str) -> dict[str, object]:
    """A file with one of Ray's log extensions, by its stem."""
    if stem in _PLAIN_COMPONENTS:
        return {"component": stem}
    m = _DASHBOARD_MODULE.match(stem)
    if m:
        return {"component": "dashboard", "module": m.group(1)}
    m = _CORE.match(stem)
    if m:
        out = {"component": "core_" + m.group(1), "worker_id": m.group(2)}
        if m.group(1) == "driver":
            job = _driver_job(m.group(2))
            if job is not None:
                out["job_id"] = job
        out["pid"] = int(m.group(3))
        return out
    m = _WORKER.match(stem)
    if m and ext != "log":
        out = {"component": m.group(1), "worker_id": m.group(2)}
        job = m.group(3)
        if job and job.lower() != _NIL_JOB:
            out["job_id"] = job
        out["pid"] = int(m.group(4))
        out["stream"] = ext
        return out
    m = _JOB_DRIVER.match(stem)
    if m:
        return {"component": "job_driver", "submission_id": m.group(1)}
    m = _CLIENT_SERVER_PORT.match(stem)
    if m:
        return {"component": "ray_client_server", "port": int(m.group(1))}
    m = _RUNTIME_ENV_SETUP.match(stem)
    if m:
        return {"component": "runtime_env_setup", "job_id": m.group(1)}
    return {"component": stem}


def file_kind(path: str) -> str:
    """How lines of this file are framed: `free` (user text), `events` (JSON) or `ray` (headers).

    Worker `.out/.err` and job driver logs hold whatever user code prints, so a line without a
    Ray header there is a record of its own (only Python tracebacks join); in every other Ray
    file a header-less line continues the record before it.
    """
    comp = describe(path)["component"]
    if comp in ("worker", "io_worker", "job_driver"):
        return "free"
    if comp == "event":
        return "events"
    return "ray"


def session_of(real_path: str) -> str | None:
    """The `session_*` directory a resolved path lies in, or None.

    The closest well-formed Ray session name wins; failing that, any `session_*` component other
    than the `session_latest` symlink (a caller that passes an unresolved path gets no session
    rather than a wrong, moving one).
    """
    parts = real_path.replace("\\", "/").split("/")[:-1]
    for part in reversed(parts):
        if _SESSION.match(part):
            return part
    for part in reversed(parts):
        if part.startswith("session_") and part != "session_latest":
            return part
    return None
