"""shipper.ray.names: every fixture file's component and ids, written out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipper.ray.names import describe, file_kind, session_of

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ray-session-2.60"
SESSION = "session_2026-11-28_10-06-45_296613_15055"
ROT_SESSION = "session_2026-11-28_10-04-32_335032_12316"

W1 = "24d79453cbada04c5c47f9d03cc80fd828c55fc9d7bfc6c9c32f7401"
W2 = "3042138ba0359a5a25f99e5f659a38cb676469b6cbbd6b3c0f4c435f"
W3 = "56f46a104294dd0d56c9fbe4d2088436a51d12971a37f541b91a911e"
W4 = "8fd38dc3d7faa03f1730e3071b117fbcb51ac93d9796b55edc04ad4a"
W5 = "c5289e386529defbd462858f3cabdc34c07af77d099cefacaf80bff9"
DRIVER = "01000000ffffffffffffffffffffffffffffffffffffffffffffffff"


def _dash(module: str) -> dict[str, object]:
    return {"component": "dashboard", "module": module}


# Every file of logs/ (one complete session) and rotation/logs/, with what its name says.
LOGS: dict[str, dict[str, object]] = {
    "dashboard.err": {"component": "dashboard"},
    "dashboard.log": {"component": "dashboard"},
    "dashboard.out": {"component": "dashboard"},
    "dashboard_DataHead.err": _dash("DataHead"),
    "dashboard_DataHead.log": _dash("DataHead"),
    "dashboard_DataHead.out": _dash("DataHead"),
    "dashboard_EventHead.err": _dash("EventHead"),
    "dashboard_EventHead.log": _dash("EventHead"),
    "dashboard_EventHead.out": _dash("EventHead"),
    "dashboard_JobHead.err": _dash("JobHead"),
    "dashboard_JobHead.log": _dash("JobHead"),
    "dashboard_JobHead.out": _dash("JobHead"),
    "dashboard_MetricsHead.err": _dash("MetricsHead"),
    "dashboard_MetricsHead.log": _dash("MetricsHead"),
    "dashboard_MetricsHead.out": _dash("MetricsHead"),
    "dashboard_NodeHead.err": _dash("NodeHead"),
    "dashboard_NodeHead.log": _dash("NodeHead"),
    "dashboard_NodeHead.out": _dash("NodeHead"),
    "dashboard_ReportHead.err": _dash("ReportHead"),
    "dashboard_ReportHead.log": _dash("ReportHead"),
    "dashboard_ReportHead.out": _dash("ReportHead"),
    "dashboard_ServeHead.err": _dash("ServeHead"),
    "dashboard_ServeHead.log": _dash("ServeHead"),
    "dashboard_ServeHead.out": _dash("ServeHead"),
    "dashboard_StateHead.err": _dash("StateHead"),
    "dashboard_StateHead.log": _dash("StateHead"),
    "dashboard_StateHead.out": _dash("StateHead"),
    "dashboard_TrainHead.err": _dash("TrainHead"),
    "dashboard_TrainHead.log": _dash("TrainHead"),
    "dashboard_TrainHead.out": _dash("TrainHead"),
    "dashboard_agent.err": {"component": "dashboard_agent"},
    "dashboard_agent.log": {"component": "dashboard_agent"},
    "dashboard_agent.out": {"component": "dashboard_agent"},
    "debug_state.txt": {"component": "debug_state"},
    "events/event_AUTOSCALER.log": {"component": "event", "source": "AUTOSCALER"},
    "events/event_CORE_WORKER_15055.log": {
        "component": "event",
        "source": "CORE_WORKER",
        "pid": 15055,
    },
    "events/event_CORE_WORKER_15425.log": {
        "component": "event",
        "source": "CORE_WORKER",
        "pid": 15425,
    },
    "events/event_CORE_WORKER_15426.log": {
        "component": "event",
        "source": "CORE_WORKER",
        "pid": 15426,
    },
    "events/event_CORE_WORKER_15494.log": {
        "component": "event",
        "source": "CORE_WORKER",
        "pid": 15494,
    },
    "events/event_CORE_WORKER_15521.log": {
        "component": "event",
        "source": "CORE_WORKER",
        "pid": 15521,
    },
    "events/event_GCS.log": {"component": "event", "source": "GCS"},
    "events/event_RAYLET.log": {"component": "event", "source": "RAYLET"},
    "export_events/event_EXPORT_ACTOR.log": {"component": "event", "source": "EXPORT_ACTOR"},
    "export_events/event_EXPORT_DRIVER_JOB.log": {
        "component": "event",
        "source": "EXPORT_DRIVER_JOB",
    },
    "export_events/event_EXPORT_NODE.log": {"component": "event", "source": "EXPORT_NODE"},
    "export_events/event_EXPORT_TASK_15055.log": {
        "component": "event",
        "source": "EXPORT_TASK",
        "pid": 15055,
    },
    "export_events/event_EXPORT_TASK_15425.log": {
        "component": "event",
        "source": "EXPORT_TASK",
        "pid": 15425,
    },
    "export_events/event_EXPORT_TASK_15426.log": {
        "component": "event",
        "source": "EXPORT_TASK",
        "pid": 15426,
    },
    "export_events/event_EXPORT_TASK_15494.log": {
        "component": "event",
        "source": "EXPORT_TASK",
        "pid": 15494,
    },
    "export_events/event_EXPORT_TASK_15521.log": {
        "component": "event",
        "source": "EXPORT_TASK",
        "pid": 15521,
    },
    "gcs_server.err": {"component": "gcs_server"},
    "gcs_server.out": {"component": "gcs_server"},
    "log_monitor.err": {"component": "log_monitor"},
    "log_monitor.log": {"component": "log_monitor"},
    "log_monitor.out": {"component": "log_monitor"},
    "monitor.err": {"component": "monitor"},
    "monitor.log": {"component": "monitor"},
    "monitor.out": {"component": "monitor"},
    f"python-core-driver-{DRIVER}_15055.log": {
        "component": "core_driver",
        "worker_id": DRIVER,
        "job_id": "01000000",
        "pid": 15055,
    },
    f"python-core-worker-{W1}_15425.log": {
        "component": "core_worker",
        "worker_id": W1,
        "pid": 15425,
    },
    f"python-core-worker-{W2}_15521.log": {
        "component": "core_worker",
        "worker_id": W2,
        "pid": 15521,
    },
    f"python-core-worker-{W3}_15426.log": {
        "component": "core_worker",
        "worker_id": W3,
        "pid": 15426,
    },
    f"python-core-worker-{W4}_15494.log": {
        "component": "core_worker",
        "worker_id": W4,
        "pid": 15494,
    },
    "raylet.err": {"component": "raylet"},
    "raylet.out": {"component": "raylet"},
    "runtime_env_agent.err": {"component": "runtime_env_agent"},
    "runtime_env_agent.log": {"component": "runtime_env_agent"},
    "runtime_env_agent.out": {"component": "runtime_env_agent"},
    # Prestarted workers: `ffffffff` in the name is no job id, so there is none.
    f"worker-{W1}-ffffffff-15425.err": {
        "component": "worker",
        "worker_id": W1,
        "pid": 15425,
        "stream": "err",
    },
    f"worker-{W1}-ffffffff-15425.out": {
        "component": "worker",
        "worker_id": W1,
        "pid": 15425,
        "stream": "out",
    },
    f"worker-{W2}-01000000-15521.err": {
        "component": "worker",
        "worker_id": W2,
        "job_id": "01000000",
        "pid": 15521,
        "stream": "err",
    },
    f"worker-{W2}-01000000-15521.out": {
        "component": "worker",
        "worker_id": W2,
        "job_id": "01000000",
        "pid": 15521,
        "stream": "out",
    },
    f"worker-{W3}-ffffffff-15426.err": {
        "component": "worker",
        "worker_id": W3,
        "pid": 15426,
        "stream": "err",
    },
    f"worker-{W3}-ffffffff-15426.out": {
        "component": "worker",
        "worker_id": W3,
        "pid": 15426,
        "stream": "out",
    },
    f"worker-{W4}-01000000-15494.err": {
        "component": "worker",
        "worker_id": W4,
        "job_id": "01000000",
        "pid": 15494,
        "stream": "err",
    },
    f"worker-{W4}-01000000-15494.out": {
        "component": "worker",
        "worker_id": W4,
        "job_id": "01000000",
        "pid": 15494,
        "stream": "out",
    },
}

_W5 = {"component": "worker", "worker_id": W5, "job_id": "01000000", "pid": 12773}
_DRV = {"component": "core_driver", "worker_id": DRIVER, "job_id": "01000000", "pid": 12316}
ROTATION: dict[str, dict[str, object]] = {
    "dashboard.log": {"component": "dashboard"},
    "dashboard.log.1": {"component": "dashboard"},
    "gcs_server.out": {"component": "gcs_server"},
    "gcs_server.out.1": {"component": "gcs_server"},
    "gcs_server.out.2": {"component": "gcs_server"},
    "gcs_server.out.3": {"component": "gcs_server"},
    f"python-core-driver-{DRIVER}_12316.log": _DRV,
    f"python-core-driver-{DRIVER}_12316.log.1": _DRV,
    f"python-core-driver-{DRIVER}_12316.log.2": _DRV,
    "raylet.out": {"component": "raylet"},
    "raylet.out.1": {"component": "raylet"},
    "raylet.out.2": {"component": "raylet"},
    "raylet.out.3": {"component": "raylet"},
    f"worker-{W5}-01000000-12773.err": {**_W5, "stream": "err"},
    f"worker-{W5}-01000000-12773.out": {**_W5, "stream": "out"},
    f"worker-{W5}-01000000-12773.out.1": {**_W5, "stream": "out"},
    f"worker-{W5}-01000000-12773.out.2": {**_W5, "stream": "out"},
    f"worker-{W5}-01000000-12773.out.3": {**_W5, "stream": "out"},
}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_tables_cover_every_fixture_file() -> None:
    assert _files(FIXTURES / "logs") == set(LOGS)
    assert _files(FIXTURES / "rotation" / "logs") == set(ROTATION)


@pytest.mark.parametrize("rel", sorted(LOGS))
def test_logs(rel: str) -> None:
    real = f"/tmp/raytest/{SESSION}/logs/{rel}"
    assert describe(real) == LOGS[rel]
    assert session_of(real) == SESSION
    # The same from where the fixtures lie (no session dir there).
    assert describe(str(FIXTURES / "logs" / rel)) == LOGS[rel]


@pytest.mark.parametrize("rel", sorted(ROTATION))
def test_rotation(rel: str) -> None:
    real = f"/tmp/raytest/{ROT_SESSION}/logs/{rel}"
    assert describe(real) == ROTATION[rel]
    assert session_of(real) == ROT_SESSION


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # Ray's log monitor moves finished workers' files to old/.
        (
            f"/tmp/ray/{SESSION}/logs/old/worker-{W2}-01000000-15521.out",
            {
                "component": "worker",
                "worker_id": W2,
                "job_id": "01000000",
                "pid": 15521,
                "stream": "out",
            },
        ),
        (
            f"/tmp/ray/{SESSION}/logs/old/python-core-worker-{W2}_15521.log",
            {"component": "core_worker", "worker_id": W2, "pid": 15521},
        ),
        (
            f"/tmp/ray/{SESSION}/logs/python-core-worker-{W2}_15521.log.1",
            {"component": "core_worker", "worker_id": W2, "pid": 15521},
        ),
        # io workers and workers without RAY_JOB_ID have no job id part at all.
        (
            f"/tmp/ray/{SESSION}/logs/io_worker-{W3}-7788.out",
            {"component": "io_worker", "worker_id": W3, "pid": 7788, "stream": "out"},
        ),
        (
            f"/tmp/ray/{SESSION}/logs/worker-{W3}-7788.err",
            {"component": "worker", "worker_id": W3, "pid": 7788, "stream": "err"},
        ),
        (
            f"/tmp/ray/{SESSION}/logs/worker-{W3}-02000000-7788.out.4",
            {
                "component": "worker",
                "worker_id": W3,
                "job_id": "02000000",
                "pid": 7788,
                "stream": "out",
            },
        ),
        (
            f"/tmp/ray/{SESSION}/logs/job-driver-raysubmit_SxUm9EdnAUvTzDen.log",
            {"component": "job_driver", "submission_id": "raysubmit_SxUm9EdnAUvTzDen"},
        ),
        # Serve: the keys Serve's own JSON lines carry for that process.
        (
            f"/tmp/ray/{SESSION}/logs/serve/controller_3021.log",
            {"component": "serve", "component_name": "controller", "component_id": "3021"},
        ),
        (
            f"/tmp/ray/{SESSION}/logs/serve/proxy_10.0.0.7.log.2",
            {"component": "serve", "component_name": "proxy", "component_id": "10.0.0.7"},
        ),
        (
            f"/tmp/ray/{SESSION}/logs/serve/replica_my_app_Model_x8a2.log",
            {
                "component": "serve",
                "component_name": "replica",
                "deployment": "my_app_Model",
                "replica": "x8a2",
            },
        ),
        (f"/tmp/ray/{SESSION}/logs/serve/other.log", {"component": "serve"}),
        (
            f"/tmp/ray/{SESSION}/logs/jobs/supervisor-raysubmit_Ab1.log",
            {"component": "job_supervisor", "submission_id": "raysubmit_Ab1"},
        ),
        (f"/tmp/ray/{SESSION}/logs/ray_client_server.log", {"component": "ray_client_server"}),
        (f"/tmp/ray/{SESSION}/logs/ray_client_server.err", {"component": "ray_client_server"}),
        (
            f"/tmp/ray/{SESSION}/logs/ray_client_server_23001.out",
            {"component": "ray_client_server", "port": 23001},
        ),
        (f"/tmp/ray/{SESSION}/logs/runtime_env_agent.log.5", {"component": "runtime_env_agent"}),
        (f"/tmp/ray/{SESSION}/logs/monitor.log.2", {"component": "monitor"}),
        (f"/tmp/ray/{SESSION}/logs/dashboard_JobHead.log.1", _dash("JobHead")),
        (
            f"/tmp/ray/{SESSION}/logs/runtime_env_setup-01000000.log",
            {"component": "runtime_env_setup", "job_id": "01000000"},
        ),
        (
            f"/tmp/ray/{SESSION}/logs/events/event_CORE_WORKER_15055.log.1",
            {"component": "event", "source": "CORE_WORKER", "pid": 15055},
        ),
        # Unknown names ship with the file stem as component.
        (f"/tmp/ray/{SESSION}/logs/my_app.log", {"component": "my_app"}),
        (f"/tmp/ray/{SESSION}/logs/my.app.log.3", {"component": "my.app"}),
        (f"/tmp/ray/{SESSION}/logs/README", {"component": "README"}),
        (f"/tmp/ray/{SESSION}/logs/.hidden", {"component": ".hidden"}),
        # A `serve` dir above logs/ is not Ray Serve's.
        (f"/srv/serve/ray/{SESSION}/logs/raylet.out", {"component": "raylet"}),
    ],
)
def test_other_names(path: str, expected: dict[str, object]) -> None:
    assert describe(path) == expected


def test_file_kind() -> None:
    base = f"/tmp/ray/{SESSION}/logs/"
    assert file_kind(base + f"worker-{W1}-ffffffff-15425.out") == "free"
    assert file_kind(base + f"io_worker-{W1}-15425.err") == "free"
    assert file_kind(base + "job-driver-raysubmit_abc.log") == "free"
    assert file_kind(base + "events/event_RAYLET.log") == "events"
    assert file_kind(base + "raylet.out") == "ray"
    assert file_kind(base + "runtime_env_agent.out") == "ray"


def test_session_of() -> None:
    assert session_of(f"/tmp/ray/{SESSION}/logs/raylet.out") == SESSION
    assert session_of(f"/tmp/ray/{SESSION}/logs/old/x.out") == SESSION
    # Unresolved symlink: the name says nothing about which session it is.
    assert session_of("/tmp/ray/session_latest/logs/raylet.out") is None
    assert session_of("/var/log/raylet.out") is None
    assert session_of("") is None
    # A hand-made session dir name is still a session.
    assert session_of("/tmp/ray/session_mine/logs/raylet.out") == "session_mine"
    # The closest well-formed one wins.
    nested = f"/tmp/session_mine/{SESSION}/logs/raylet.out"
    assert session_of(nested) == SESSION


def test_describe_never_raises_on_odd_paths() -> None:
    for path in [
        "",
        "/",
        "//",
        "logs/",
        "events/",
        "a/events/",
        "worker--.out",
        "python-core-worker-_1.log",
        ".log",
        "x.",
        "\x00",
        "serve/",
    ]:
        assert isinstance(describe(path)["component"], str)
