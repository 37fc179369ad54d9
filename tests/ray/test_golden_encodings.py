"""Golden: the agent's records for a real Ray 2.60 session, written once in TEXT and once in
JSON encoding (tests/fixtures/ray-session-2.60-encodings: Serve, `ray job submit`, user
logging through logging.basicConfig and through ray.LoggingConfig, logger.exception).

The real CLI runs the embedded default config over a copy of each session (so the default must
find every file Ray wrote there), and the records are checked against the lines themselves:
a level on every record whose line has one, tracebacks inside the record of the logging call
that wrote them, and the same keys for the same facts whether the file was text or JSON.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from shipper.config.defaults import DEFAULT_CONFIG
from tests.agent import Agent, wait_for, write_config

ENCODINGS = Path(__file__).resolve().parent.parent / "fixtures" / "ray-session-2.60-encodings"
PATH_KEY = "true"  # the default's `Path_Key true`, as in Fluent Bit

# A line that carries a level, by its own format (independent of the parsers): C++, Python
# logging (Ray's format), Serve, logging.basicConfig, JSON (levelname or an event's severity),
# each maybe behind a driver's `(name pid=N)` prefix.
_PREFIX = r"(?:\x1b\[\d+m)?(?:\([^)\s]+(?: pid=\d+)?(?:, ip=\S+)?\)(?:\x1b\[0m)? )?"
_LEVELLED = re.compile(
    _PREFIX + r"(?:\[\d{4}-\d\d-\d\d [\d:,]+ (?P<cpp>[TDIWEC]) \d+ \d+\] "
    r"|\d{4}-\d\d-\d\d [\d:,]+\t(?P<py>[A-Z]+) "
    r"|(?P<serve>DEBUG|INFO|WARNING|ERROR|CRITICAL) \d{4}-\d\d-\d\d "
    r"|(?P<basic>DEBUG|INFO|WARNING|ERROR|CRITICAL):[^\s:]+:"
    r'|\{.*"(?:levelname|severity)": ?"(?P<json>[A-Z]+)")'
)
_NAMES = {"T": "DEBUG", "D": "DEBUG", "I": "INFO", "W": "WARNING", "E": "ERROR", "C": "FATAL"}
_NAMES |= {"CRITICAL": "FATAL", "WARN": "WARNING"}


def _expected_level(first_line: str) -> tuple[str, str] | None:
    """(format, level) of a line that has a level, else None."""
    m = _LEVELLED.match(first_line)
    if m is None:
        return None
    kind = next(k for k, v in m.groupdict().items() if v is not None)
    value = m.group(kind)
    return kind, _NAMES.get(value, value)


def _run(encoding: str, tmp: Path) -> list[dict[str, Any]]:
    """The agent with the embedded default over a copy of the session; every record."""
    src = ENCODINGS / encoding
    session = (src / "SESSION").read_text().strip()
    root = tmp / "ray"
    shutil.copytree(src / "logs", root / session / "logs")
    (root / "session_latest").symlink_to(session)
    conf = DEFAULT_CONFIG.replace("/tmp/ray/", f"{root}/").replace("Flush        1", "Flush 0.2")
    assert str(root) in conf
    lasts: dict[str, str] = {}  # file -> its last line: every file read to the end
    for p in (root / session / "logs").rglob("*"):
        if p.is_file():
            lines = p.read_text().rstrip("\n").split("\n")
            lasts[p.relative_to(root / session / "logs").as_posix()] = lines[-1]
    with Agent(["-c", str(write_config(tmp / "shipper.conf", conf))]) as agent:

        def all_read() -> list[dict[str, Any]]:
            recs = agent.snapshot()
            seen = {
                rel
                for r in recs
                for rel in [r[PATH_KEY].split("/logs/", 1)[1]]
                if r["log"].rstrip("\n").endswith(lasts[rel]) or _consumed(lasts[rel])
            }
            return recs if seen >= set(lasts) - _marker_only(lasts) else []

        wait_for(all_read, 60, f"every file of {encoding} read")
        assert agent.stop() == 0
    return agent.snapshot()


def _consumed(line: str) -> bool:
    """A worker's marker line: consumed, never a record of its own."""
    return line.startswith((":job_id:", ":task_name:", ":actor_name:", ":task_attempt_"))


def _marker_only(lasts: dict[str, str]) -> set[str]:
    return {rel for rel, last in lasts.items() if _consumed(last)}


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    return {enc: _run(enc, tmp_path_factory.mktemp(enc)) for enc in ("text", "json")}


def _file(rec: dict[str, Any]) -> str:
    return str(rec[PATH_KEY]).rsplit("/logs/", 1)[1]


@pytest.mark.parametrize("encoding", ["text", "json"])
def test_every_line_with_a_level_gives_a_record_with_that_level(
    records: dict[str, list[dict[str, Any]]], encoding: str
) -> None:
    kinds: dict[str, int] = {}
    for rec in records[encoding]:
        want = _expected_level(rec["log"].split("\n", 1)[0])
        if want is None:
            continue
        kind, level = want
        kinds[kind] = kinds.get(kind, 0) + 1
        assert rec.get("level") == level, (_file(rec), rec["log"][:200])
    # Every kind of line the session has, in numbers (the fixtures' README says what ran).
    want_kinds = {"cpp", "py", "serve", "json"} | ({"basic"} if encoding == "text" else set())
    assert set(kinds) == want_kinds, kinds
    # (With RAY_BACKEND_LOG_JSON=1 only the early lines before the switch are C++ text.)
    assert all(n >= 2 for n in kinds.values()), kinds
    # And no level where the line has none (prints, banners, export events).
    unlevelled = [r for r in records[encoding] if _expected_level(r["log"]) is None]
    assert unlevelled and not [r for r in unlevelled if "level" in r and "\n" not in r["log"]]


@pytest.mark.parametrize("encoding", ["text", "json"])
def test_logged_tracebacks_are_part_of_their_record(
    records: dict[str, list[dict[str, Any]]], encoding: str
) -> None:
    recs = records[encoding]
    # logger.exception in the tasks: the logging line and its traceback, one record.
    caught = [r for r in recs if str(r.get("message", "")).startswith("caught in task")]
    assert len([r for r in caught if _file(r).startswith("worker-")]) >= 2
    assert len(caught) >= (4 if encoding == "json" else 8)  # and the job driver's copies
    for r in caught:
        lines = r["message"].split("\n")
        assert lines[1] == "Traceback (most recent call last):", r
        assert lines[-1] == "KeyError: 'missing'", r  # (TextFormatter's context taken off)
        assert r["level"] == "ERROR"
        assert r.get("task_name", r.get("origin")) == "work"  # (a driver's copy: `origin`)
    # Serve's replica: `handler failed` and its traceback, in its file and in the worker's.
    failed = [r for r in recs if str(r.get("message", "")).startswith("handler failed")]
    kinds = {re.split(r"[-_/]", _file(r), maxsplit=1)[0] for r in failed}
    assert kinds == {"serve", "worker", "job"}  # its own file, its stderr, the job driver
    for r in failed:
        assert r["message"].split("\n")[-1] == "ZeroDivisionError: division by zero"
        assert r["level"] == "ERROR" and r["deployment"] == "app1_Hello"
    # The job driver's copies of those lines (`(work pid=N) ...`): joined the same way.
    driver = [r for r in caught + failed if _file(r).startswith("job-driver-")]
    for r in driver:  # (with ray.LoggingConfig the driver prints them without the prefix)
        if r["log"].startswith(("\x1b", "(")):
            assert r["log"].count("\n") >= 4 and r["origin"] in ("work", "ServeReplica:app1:Hello")
    assert any("origin" in r for r in driver) or encoding == "json"
    # No traceback is left on its own where a logging line wrote it.
    for r in recs:
        if r["log"].startswith("Traceback"):
            assert "caught in task" not in r["log"] and "handler failed" not in r["log"]


def _one(
    recs: list[dict[str, Any]], file_start: str, message: str, has: str = "level"
) -> dict[str, Any]:
    hits = [
        r
        for r in recs
        if _file(r).startswith(file_start)
        and str(r.get("message", "")).startswith(message)
        and has in r
    ]
    assert hits, (file_start, message)
    return hits[0]


# Keys that differ by nature: the raw line, the file, the session.
_FRAME = {"log", PATH_KEY, "session"}


def test_the_same_facts_under_the_same_keys_text_or_json(
    records: dict[str, list[dict[str, Any]]],
) -> None:
    text, js = records["text"], records["json"]
    # A task's logging through ray.LoggingConfig: TextFormatter's context vs JSON keys.
    for msg in ("info from task", "warning from task", "caught in task"):
        # (the text session's first job logs through basicConfig: its lines have no context)
        t, j = _one(text, "worker-", msg, "task_id"), _one(js, "worker-", msg)
        assert set(t) - _FRAME == set(j) - _FRAME, (sorted(t), sorted(j))
        for k in ("level", "task_name", "task_func_name", "component", "stream"):
            assert t[k] == j[k], k
        for k in ("job_id", "worker_id", "node_id", "task_id"):
            assert re.fullmatch(r"[0-9a-f]{8,}", t[k]) and re.fullmatch(r"[0-9a-f]{8,}", j[k])
        assert isinstance(t["date"], float) and isinstance(j["date"], float)
        assert t["source"] == j["source"] and t["source"].startswith("driver.py:")
    assert _one(text, "worker-", "warning from task", "user_key")["user_key"].startswith("value")
    assert _one(js, "worker-", "warning from task")["user_key"].startswith("value")
    # A job supervisor (Ray's own TextFormatter lines): the same keys.
    t, j = _one(text, "jobs/", "Submitting job"), _one(js, "jobs/", "Submitting job")
    assert set(t) - _FRAME - {"pid"} == set(j) - _FRAME - {"pid"}, (sorted(t), sorted(j))
    assert t["actor_name"] == "_ray_internal_job_actor_fixture_basic" and t["job_id"] == "01000000"
    # Serve: each text key is there in JSON, with the same value where the run does not
    # make it (ids are per run).
    for file, msg in (
        ("serve/replica_", "hello handler for /hello"),
        ("serve/controller_", "Controller starting"),
        ("serve/proxy_", "Proxy starting"),
    ):
        t, j = _one(text, file, msg), _one(js, file, msg)
        assert set(t) - _FRAME <= set(j), (file, sorted(set(t) - set(j)))
        for k in ("level", "component", "component_name", "deployment"):
            assert t.get(k) == j.get(k), (file, k)
    replica = _one(text, "serve/replica_", "hello handler for /hello")
    assert replica["component_name"] == "replica" and replica["request_id"]
    assert _one(js, "serve/replica_", "hello handler")["request_id"]
    # C++: the header's fields under the same keys (the JSON form has no pid/tid).
    t, j = _one(text, "raylet.out", "Setting cluster ID"), _one(js, "raylet.out", "Setting")
    for k in ("level", "source", "component"):
        assert t[k] == j[k], k
    # Events: the same keys, the event's own time as the date.
    t, j = _one(text, "events/event_RAYLET", "A worker died"), _one(js, "events/event_RAYLET", "A")
    assert set(t) - _FRAME == set(j) - _FRAME
    for r in (t, j):
        assert r["level"] == "ERROR" and r["label"] == "RAY_WORKER_FAILURE" and r["event_id"]
        assert r["date"] == float(int(r["date"])) and r["date"] > 1.7e9  # `timestamp`, seconds


@pytest.mark.parametrize("encoding", ["text", "json"])
def test_files_and_their_ids(records: dict[str, list[dict[str, Any]]], encoding: str) -> None:
    recs = records[encoding]
    files = {_file(r) for r in recs}
    # The embedded default reads what Ray writes, but not its debug snapshot.
    for want in ("serve/controller_", "serve/proxy_", "serve/replica_", "jobs/supervisor-"):
        assert any(f.startswith(want) for f in files), want
    assert any(f.startswith("events/") for f in files)
    assert any(f.startswith("export_events/") for f in files)
    assert any(f.startswith("runtime_env_setup-") for f in files)
    for r in recs:
        f = _file(r)
        if f.startswith("job-driver-"):
            assert r["component"] == "job_driver" and r["submission_id"].startswith("fixture_")
        elif f.startswith("jobs/supervisor-"):
            assert r["component"] == "job_supervisor" and r["submission_id"].startswith("fix")
        elif f.startswith("runtime_env_setup-"):
            assert r["component"] == "runtime_env_setup" and len(r["job_id"]) == 8
        elif f.startswith("export_events/"):
            assert r["component"] == "event" and r["source_type"].startswith("EXPORT_")
            assert r["date"] > 1.7e9  # the event's `timestamp`
        elif f.startswith("serve/"):
            assert r["component"] == "serve" and r["component_name"] in (
                "controller",
                "proxy",
                "replica",
            )
    # A driver's copy of its workers' lines: the worker named, its level kept.
    driver = [r for r in recs if _file(r).startswith("job-driver-") and "origin" in r]
    assert {r["origin"] for r in driver} >= {"work"} if encoding == "text" else driver
    # The job's own id from where the driver's log first says it (ray.LoggingConfig's context
    # or JSON keys) on, prints included; a log that never says it (basicConfig) has none.
    for sub, job in (("fixture_text", "03000000"), ("fixture_json", "02000000")):
        drv = [r for r in recs if _file(r) == f"job-driver-{sub}.log"]
        if not drv:
            continue
        first = next(i for i, r in enumerate(drv) if "job_id" in r)
        assert first < 10 and all(r["job_id"] == job for r in drv[first:]), sub
        assert any("level" not in r for r in drv[first:])  # prints too
    assert all("job_id" not in r for r in recs if _file(r) == "job-driver-fixture_basic.log")
