"""`shipper tail`, the view for a person: driven as a person runs it, in a pseudo-terminal
(pty.fork: the view is the session leader and the pty its controlling terminal, so ^C is a
real Ctrl-C), or piped.

The session is the real fixture session copied into a temp dir laid out as Ray does
(`session_<...>/logs` + `session_latest`). Files get a fixed mtime: worker prints have no
timestamp of their own and the history shows them at their file's last modification.
Run with UPDATE_GOLDEN=1 to rewrite golden_plain.txt after a deliberate change.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent import wait_for

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FIXTURE_LOGS = REPO / "tests" / "fixtures" / "ray-session-2.60" / "logs"
GOLDEN = HERE / "golden_plain.txt"
SESSION = "session_2026-11-28_10-06-45_296613_15055"
SESSION_2 = "session_2026-11-28_11-00-00_000001_20000"
MTIME = 1795860451.0  # 2026-11-28 10:07:31 UTC, just after the session's last line
ESC = "\x1b["
# A record's first line: time, who, level (or blanks), message.
HEAD = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{3} ([^\s\[]+(?:\[[^\]]*\])?) +"
    r"(DEBUG|INFO |WARN |ERROR|FATAL|     ) "
)


def env(**extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS")
    }
    base.update({"TZ": "UTC", "TERM": "xterm-256color", "PYTHONPATH": str(REPO)})
    base.update(extra)
    return base


@pytest.fixture
def ray_tmp(tmp_path: Path) -> Path:
    """<tmp>/ray/session_.../logs (the fixture) and session_latest -> it."""
    temp = tmp_path / "ray"
    logs = temp / SESSION / "logs"
    shutil.copytree(FIXTURE_LOGS, logs)
    for path in [logs, *logs.rglob("*")]:
        os.utime(path, (MTIME, MTIME))
    (temp / "session_latest").symlink_to(temp / SESSION)
    return temp


def run_piped(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipper", "tail", *args],
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def heads(text: str) -> list[re.Match[str]]:
    return [m for m in map(HEAD.match, text.splitlines()) if m]


class PtyView:
    """`shipper tail ARGS` on a pseudo-terminal; `text` is what the person sees."""

    def __init__(self, *args: str, **extra: str) -> None:
        argv = [sys.executable, "-m", "shipper", "tail", *args]
        environ = env(**extra)
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once (nothing else is safe after fork)
            try:
                os.execve(sys.executable, argv, environ)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self._buf = bytearray()
        self._lock = threading.Lock()
        self.status: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed its side
                return
            if not data:
                return
            with self._lock:
                self._buf += data

    @property
    def text(self) -> str:
        with self._lock:
            return self._buf.decode("utf-8", "replace").replace("\r\n", "\n")

    def plain(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", self.text)

    def wait_text(self, needle: str, timeout: float = 30) -> None:
        wait_for(
            lambda: needle in self.plain(),
            timeout,
            f"{needle!r} on the terminal; it shows:\n{self.plain()[-3000:]}",
        )

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")  # the terminal turns it into SIGINT for the view

    def wait(self, timeout: float = 20) -> int:
        def reaped() -> bool:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
            return pid != 0

        wait_for(reaped, timeout, "the view to exit")
        self._reader.join(5)
        assert self.status is not None
        return self.status

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.status = -9
        with contextlib.suppress(OSError):
            os.close(self.fd)


@contextlib.contextmanager
def pty_view(*args: str, **extra: str) -> Iterator[PtyView]:
    view = PtyView(*args, **extra)
    try:
        yield view
    finally:
        view.close()


def append(path: Path, *lines: str) -> None:
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def cpp(comp: str, msg: str, t: str = "10:07:40,000") -> str:
    return f"[2026-11-28 {t} I 100 100] ({comp}) node_manager.cc:1: {msg}"


# -- golden: the plain rendering of the whole fixture session ------------------------------


def test_golden_plain_rendering(ray_tmp: Path) -> None:
    res = run_piped(str(ray_tmp), "-n", "all", "--no-follow")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert ESC not in res.stdout  # piped: no colour
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(res.stdout)
    assert res.stdout == GOLDEN.read_text()


def test_golden_holds_what_a_person_needs(ray_tmp: Path) -> None:
    """Independent of the golden text: what the rendering must get right."""
    text = GOLDEN.read_text()
    lines = text.splitlines()
    assert lines[0] == f"── session {SESSION} ──"
    # Every record is one head line; its other lines are indented under it.
    assert all(HEAD.match(line) or line.startswith("    ") or line == "" for line in lines[1:])
    # The two tracebacks of bad_logged are whole, each one record: logger.exception's under
    # its logging line, traceback.print_exc's on its own.
    tb = [i for i, line in enumerate(lines) if "Traceback (most recent call last):" in line]
    assert len(tb) == 2
    assert lines[tb[0] - 1] == (
        "10:07:31.000 worker[bad_logged pid=15425] ERROR mytask: caught and logged with traceback"
    )
    assert lines[tb[0]] == "    Traceback (most recent call last):"
    assert lines[tb[1]].startswith("10:07:31.000 worker[bad_logged pid=15425] ERROR Traceback")
    for i in tb:
        assert lines[i + 1 : i + 5] == [
            '      File "/tmp/rayjob/job6.py", line 32, in bad_logged',
            "        1 / 0",
            "        ~~^~~",
            "    ZeroDivisionError: division by zero",
        ]
    # Time order across files; C++, Python and glog lines all timed by their own stamp.
    times = [m.group(0)[:12] for m in heads(text)]
    assert times == sorted(times)
    assert "10:07:08.319 dashboard[NodeHead]" in text  # the glog line of NodeHead.err
    assert re.search(r"^\d\S+ event\[RAYLET\] +ERROR RAY_WORKER_FAILURE: A worker", text, re.M)


# -- filters, -n, --json (piped) --------------------------------------------------------------


def test_filters(ray_tmp: Path) -> None:
    d = str(ray_tmp)
    errors = heads(run_piped(d, "-n", "all", "--no-follow", "--level", "error").stdout)
    assert errors and {m.group(2) for m in errors} <= {"ERROR", "FATAL"}
    assert any(m.group(1).startswith("worker[bad_logged") for m in errors)  # traceback=ERROR

    comps = heads(
        run_piped(
            d, "-n", "all", "--no-follow", "-c", "raylet", "--component", "dashboard*,event"
        ).stdout
    )
    assert {m.group(1).split("[")[0] for m in comps} == {
        "raylet",
        "dashboard",
        "dashboard_agent",
        "event",
    }

    job = run_piped(d, "-n", "all", "--no-follow", "--job", "01000000", "--json").stdout
    recs = [json.loads(line) for line in job.splitlines()]
    assert recs and all(r["job_id"] == "01000000" for r in recs)
    assert {r["component"] for r in recs} == {"worker", "core_driver", "event"}

    grep = run_piped(d, "-n", "all", "--no-follow", "--grep", r"actor (work|err) \d").stdout
    assert [m.string[m.end() :] for m in heads(grep)] == [
        "actor err 0",
        "actor err 1",
        "actor err 2",
        "actor work 0",
        "actor work 1",
        "actor work 2",
    ]

    last = heads(run_piped(d, "-n", "3", "--no-follow", "-c", "gcs_server").stdout)
    full = heads(run_piped(d, "-n", "all", "--no-follow", "-c", "gcs_server").stdout)
    assert len(full) > 3 and [m.string for m in last] == [m.string for m in full[-3:]]


def test_bad_arguments_and_missing_dir(tmp_path: Path) -> None:
    """Bad arguments exit 1 with the problem named, as the agent's own do."""
    res = run_piped(str(tmp_path), "--level", "loud")
    assert res.returncode == 1 and "shipper tail: error:" in res.stderr and "loud" in res.stderr
    res = run_piped(str(tmp_path), "-n", "-1")
    assert res.returncode == 1 and "must be 0 or more" in res.stderr
    res = run_piped(str(tmp_path), "--no-such-flag")
    assert res.returncode == 1 and "--no-such-flag" in res.stderr
    agent = subprocess.run(
        [sys.executable, "-m", "shipper", "--no-such-flag"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert agent.returncode == 1 and "--no-such-flag" in agent.stderr
    res = run_piped(str(tmp_path / "nothing"), "--no-follow")
    assert res.returncode == 1 and "no Ray session" in res.stderr


def test_colour_forced_when_piped(ray_tmp: Path) -> None:
    res = run_piped(str(ray_tmp), "-n", "5", "--no-follow", FORCE_COLOR="1")
    assert f"{ESC}31mERROR" in res.stdout or ESC in res.stdout
    res = run_piped(str(ray_tmp), "-n", "5", "--no-follow", FORCE_COLOR="1", NO_COLOR="1")
    assert ESC not in res.stdout


def test_closed_pipe_exits_quietly(ray_tmp: Path) -> None:
    """`shipper tail | head -1`: the reader goes away; the view stops, no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", "tail", str(ray_tmp), "-n", "all"],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"\xe2\x94\x80\xe2\x94\x80 session")
        proc.stdout.close()  # as `head` does after its line
        assert proc.wait(30) == 0
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]


# -- in a terminal --------------------------------------------------------------------------


def test_terminal_colour_filters_follow_and_ctrl_c(ray_tmp: Path) -> None:
    logs = ray_tmp / SESSION / "logs"
    with pty_view(str(ray_tmp), "-n", "2", "-c", "raylet,gcs_server", "-l", "info") as view:
        view.wait_text(f"── session {SESSION} ──")
        view.wait_text("Stats module has shutdown.")  # gcs_server's last line: history done
        assert f"{ESC}32mINFO" in view.text  # coloured: a terminal, no NO_COLOR
        assert len(heads(view.plain())) == 2  # -n 2
        append(logs / "raylet.out", cpp("raylet", "LIVE raylet line"))
        append(logs / "monitor.log", "2026-11-28 10:07:40,000\tINFO monitor.py:1 -- LIVE monitor")
        append(
            logs / "gcs_server.out",
            cpp("gcs_server", "LIVE gcs debug", t="10:07:41,000").replace(" I 100", " D 100"),
        )
        append(logs / "gcs_server.out", cpp("gcs_server", "LIVE gcs last", t="10:07:42,000"))
        view.wait_text("LIVE raylet line")
        view.wait_text("LIVE gcs last")
        plain = view.plain()
        assert "LIVE monitor" not in plain  # --component
        assert "LIVE gcs debug" not in plain  # --level info
        assert re.search(r"^10:07:40\.000 raylet +INFO  LIVE raylet line$", plain, re.M)
        view.ctrl_c()
        assert view.wait() == 0
    assert "Traceback" not in view.plain() and "KeyboardInterrupt" not in view.plain()


def test_terminal_no_color(ray_tmp: Path) -> None:
    with pty_view(str(ray_tmp), "-n", "3", NO_COLOR="1") as view:
        view.wait_text("worker[A pid=15494]")
        view.ctrl_c()
        assert view.wait() == 0
    assert ESC not in view.text


def test_session_switch_is_announced(ray_tmp: Path) -> None:
    """Ray re-points session_latest (remove, then create) to a new session: the view says so
    and follows the new session's files from their head."""
    with pty_view(str(ray_tmp), "-n", "1") as view:
        view.wait_text(f"── session {SESSION} ──")
        view.wait_text("actor work 2")  # the history's last record
        new_logs = ray_tmp / SESSION_2 / "logs"
        new_logs.mkdir(parents=True)
        append(new_logs / "gcs_server.out", cpp("gcs_server", "NEW SESSION gcs up", "11:00:01,000"))
        link = ray_tmp / "session_latest"
        link.unlink()
        link.symlink_to(ray_tmp / SESSION_2)
        append(new_logs / "raylet.out", cpp("raylet", "NEW SESSION raylet up", "11:00:02,000"))
        view.wait_text("NEW SESSION raylet up")
        view.wait_text("NEW SESSION gcs up")
        plain = view.plain()
        banner = plain.index(f"── new session {SESSION_2} ──")
        assert banner < plain.index("NEW SESSION gcs up")
        assert plain.count("── new session") == 1
        view.ctrl_c()
        assert view.wait() == 0


def test_waits_for_a_session_to_appear(tmp_path: Path) -> None:
    temp = tmp_path / "ray"  # does not exist yet: Ray has not started
    with pty_view(str(temp)) as view:
        view.wait_text("waiting for one")
        logs = temp / SESSION / "logs"
        logs.mkdir(parents=True)
        (temp / "session_latest").symlink_to(temp / SESSION)
        append(logs / "raylet.out", cpp("raylet", "first words"))
        view.wait_text("first words")
        assert f"── session {SESSION} ──" in view.plain()
        view.ctrl_c()
        assert view.wait() == 0


def test_history_ends_while_files_keep_growing(ray_tmp: Path) -> None:
    """A file written all the time (a busy raylet: its last record always held by the
    multi-line joiner) does not keep the view in its history phase."""
    logs = ray_tmp / SESSION / "logs"
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            append(
                logs / "raylet.out",
                cpp("raylet", f"busy {i}", "10:08:00,000"),
                "  a continuation line",
            )
            i += 1
            time.sleep(0.02)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pty_view(str(ray_tmp), "-n", "3", "-c", "gcs_server") as view:
            view.wait_text("Stats module has shutdown.")  # the history was printed
            append(logs / "gcs_server.out", cpp("gcs_server", "LIVE after history", "10:08:01,000"))
            view.wait_text("LIVE after history")
            view.ctrl_c()
            assert view.wait() == 0
    finally:
        stop.set()
        thread.join()


def test_serve_jobs_and_user_logging_read_well(tmp_path: Path) -> None:
    """The TEXT encodings session: Serve's replica, proxy and controller with their ids and
    request ids, user logging under its logger's name with its traceback, the job driver's
    copies of worker lines naming the worker."""
    src = REPO / "tests" / "fixtures" / "ray-session-2.60-encodings" / "text"
    session = (src / "SESSION").read_text().strip()
    temp = tmp_path / "ray"
    shutil.copytree(src / "logs", temp / session / "logs")
    (temp / "session_latest").symlink_to(session)
    res = run_piped(str(temp), "-n", "all", "--no-follow")
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert re.search(
        r"^\S+ serve\[app1_Hello h1l0i75e\] +ERROR handler failed  request_id=e8b5f3cc-\S+\n"
        r"    Traceback \(most recent call last\):\n(    .*\n)+"
        r"    ZeroDivisionError: division by zero$",
        text,
        re.M,
    )
    assert re.search(r"^\S+ serve\[proxy 127\.0\.0\.1\] +INFO  Proxy starting", text, re.M)
    assert re.search(r"^\S+ serve\[controller 650\] +WARN  All resources", text, re.M)
    assert re.search(r"^\S+ worker\[work pid=553\] +ERROR mytask: caught in task 0$", text, re.M)
    assert re.search(r"^\S+ job_supervisor +INFO  Submitting job", text, re.M)
    assert re.search(
        r"^\S+ job_driver\[fixture_basic work pid=552\] +WARN  mytask: warning from task 1$",
        text,
        re.M,
    )
    # --level error: the users' failures, whatever format they were logged in.
    errors = run_piped(str(temp), "-n", "all", "--no-follow", "--level", "error").stdout
    assert "mytask: caught in task 0" in errors and "handler failed" in errors
    assert "actor: actor error line" in errors and "info from task" not in errors
