"""Ray's worker magic lines (ray_constants.LOG_PREFIX_*) in `worker-*.out/.err`.

Ray's log monitor consumes them and so does shipper: they say who printed the lines that
follow (`job_id`, `task_name`, `actor_name`, `task_id`), they are not output of their own.
"""

from __future__ import annotations

import orjson

__all__ = ["adopt_markers", "apply_marker", "export_markers", "is_marker"]

_JOB_ID = ":job_id:"
_TASK_NAME = ":task_name:"
_ACTOR_NAME = ":actor_name:"
_ATTEMPT_START = ":task_attempt_start:"
_ATTEMPT_END = ":task_attempt_end:"
_ALL = (_JOB_ID, _TASK_NAME, _ACTOR_NAME, _ATTEMPT_START, _ATTEMPT_END)


def is_marker(line: str) -> bool:
    return line[:1] == ":" and line.startswith(_ALL)


def apply_marker(markers: dict[str, str], line: str) -> None:
    """Update a worker's current keys from one marker line."""
    if line.startswith(_JOB_ID):
        key, value = "job_id", line[len(_JOB_ID) :]
    elif line.startswith(_TASK_NAME):
        key, value = "task_name", line[len(_TASK_NAME) :]
    elif line.startswith(_ACTOR_NAME):
        key, value = "actor_name", line[len(_ACTOR_NAME) :]
        # As Ray's log monitor: a new actor ends the task name of the previous one.
        markers.pop("task_name", None)
    elif line.startswith(_ATTEMPT_START):
        # `<task_id>-<attempt>`: the attempt's output follows, up to the end marker.
        key, value = "task_id", line[len(_ATTEMPT_START) :].rpartition("-")[0]
    else:
        key, value = "task_id", ""
    if value:
        markers[key] = value
    else:
        markers.pop(key, None)


def export_markers(markers: dict[str, str]) -> bytes | None:
    """The keys in force as a small JSON object (None when there are none): Ray writes the
    markers once, at the top of a worker file's first generation, so a rotated file's
    successor and a restarted reader get them from here (shipper/tail/lag.py, the DB)."""
    return orjson.dumps(markers) if markers else None


def adopt_markers(blob: bytes) -> dict[str, str]:
    """The keys `export_markers` wrote; anything else (a damaged row) is no keys."""
    try:
        value = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
