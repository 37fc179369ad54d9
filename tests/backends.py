"""Real backends for tests: a ClickHouse server, Ray in its own virtualenv, network namespaces.

`bash tests/run.sh` installs what these need (clickhouse-server from Debian's packages, Ray in
`.venv-ray/`). Where a backend genuinely cannot run here, the `require_*` helpers call
`pytest.skip` with the reason; set `SHIPPER_REQUIRE_BACKENDS=1` to make that a failure instead.

ClickHouse::

    from tests.backends import clickhouse_server

    @pytest.mark.clickhouse
    def test_x(tmp_path):
        with clickhouse_server(tmp_path) as ch:          # started, /ping answered
            ch.query("CREATE TABLE logs (log String) ENGINE=MergeTree ORDER BY tuple()")
            # point the shipper's http output at 127.0.0.1:{ch.port}, URI ch.insert_uri("logs")
            ch.kill(); ch.start()                          # SIGKILL, restart on the same data
            assert ch.count("logs") == 3

Ray (run as a subprocess of `.venv-ray/bin/python`, inside its own network namespace so that
nothing it does reaches beyond loopback, and in its own PID namespace so that every daemon it
started dies with it)::

    from tests.backends import ray_env, ray_temp_dir, require_ray, run_in_netns, stop_process

    py = require_ray()
    with ray_temp_dir() as temp:      # short: Ray's socket paths must stay under 108 bytes
        proc = run_in_netns([py, str(script), str(temp)], env=ray_env(home=tmp_path))
        try:
            proc.wait(timeout=120)
        finally:
            stop_process(proc)
        # Ray's logs: temp / "session_latest" / "logs"
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


__all__ = [
    "REPO_ROOT",
    "ClickHouse",
    "ClickHouseError",
    "clickhouse_binary",
    "clickhouse_server",
    "clickhouse_skip_reason",
    "cpu_quota",
    "free_port",
    "netns_skip_reason",
    "ray_env",
    "ray_python",
    "ray_skip_reason",
    "ray_temp_dir",
    "ray_version",
    "require_clickhouse",
    "require_netns",
    "require_ray",
    "run_in_netns",
    "stop_process",
]


# --------------------------------------------------------------------------- generic helpers


def _skip_or_fail(reason: str) -> None:
    """pytest.skip(reason), or pytest.fail when SHIPPER_REQUIRE_BACKENDS=1."""
    if os.environ.get("SHIPPER_REQUIRE_BACKENDS", "") not in ("", "0"):
        pytest.fail(f"backend required (SHIPPER_REQUIRE_BACKENDS=1) but: {reason}")
    pytest.skip(reason)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, start time in clock ticks), read from /proc (best effort)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may hold spaces and parens: fields restart after the last ')' (state is field 3)
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) < 20:
            continue
        table[int(entry)] = (int(fields[1]), int(fields[19]))
    return table


def _descendants(pid: int) -> dict[int, int]:
    """Every descendant of `pid`, as pid -> start time (to tell a reused PID apart)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for child, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(child)
    out: dict[int, int] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = table[child][1]
            todo.append(child)
    return out


def _kill_if_same(procs: Mapping[int, int]) -> None:
    """SIGKILL each pid still alive with the same start time (so never a reused PID)."""
    now = _proc_table()
    for pid, started in procs.items():
        if pid in now and now[pid][1] == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> int | None:
    """Stop `proc` and everything it started: SIGTERM to it (to its process group when it
    leads one), wait up to `timeout` seconds (0: don't wait), then SIGKILL to the group and to
    every descendant seen still alive. Returns the exit code. Safe to call twice or on a
    process that already exited."""
    if proc.poll() is None:
        tree = _descendants(proc.pid)
        leads_group = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            leads_group = os.getpgid(proc.pid) == proc.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if leads_group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        if proc.poll() is None:
            tree.update(_descendants(proc.pid))
        if leads_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        _kill_if_same(tree)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(timeout, 5.0))
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    return proc.returncode


# --------------------------------------------------------------------------- ClickHouse

_CLICKHOUSE_CANDIDATES = (
    "/usr/sbin/clickhouse-server",
    "/usr/bin/clickhouse-server",
    "/usr/bin/clickhouse",
    "/usr/local/bin/clickhouse-server",
)


@functools.cache
def clickhouse_binary() -> str | None:
    """Path of the clickhouse-server executable (`$SHIPPER_CLICKHOUSE` wins), or None."""
    env = os.environ.get("SHIPPER_CLICKHOUSE")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("clickhouse-server")
    if found:
        return found
    for cand in _CLICKHOUSE_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return None


def clickhouse_skip_reason() -> str | None:
    """Why ClickHouse can't run here, or None when it can."""
    if clickhouse_binary() is None:
        return (
            "clickhouse-server not installed (bash tests/run.sh installs Debian's package; "
            "or set SHIPPER_CLICKHOUSE=/path/to/clickhouse-server)"
        )
    return None


def require_clickhouse() -> str:
    """The clickhouse-server path, or skip the calling test with the reason."""
    reason = clickhouse_skip_reason()
    if reason is not None:
        _skip_or_fail(reason)
    binary = clickhouse_binary()
    assert binary is not None
    return binary


class ClickHouseError(RuntimeError):
    """A query answered with a non-200 status."""

    def __init__(self, status: int, body: str, sql: str) -> None:
        super().__init__(f"ClickHouse HTTP {status} for {sql[:200]!r}: {body.strip()[:2000]}")
        self.status = status
        self.body = body
        self.sql = sql


# urllib honours http_proxy & co.; loopback traffic must never go through a proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _config_xml(root: Path, port: int, tcp_port: int | None, token: str) -> str:
    # ClickHouse 18.16 (Debian bookworm) wants <yandex>; newer servers accept it as well.
    # Small caches and pools: it starts in well under a second and uses ~100 MB.
    tcp = f"<tcp_port>{tcp_port}</tcp_port>" if tcp_port else ""
    return f"""<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>{root}/log/clickhouse-server.log</log>
    <errorlog>{root}/log/clickhouse-server.err.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{port}</http_port>
  {tcp}
  <path>{root}/data/</path>
  <tmp_path>{root}/data/tmp/</tmp_path>
  <user_files_path>{root}/data/user_files/</user_files_path>
  <format_schema_path>{root}/data/format_schemas/</format_schema_path>
  <users_config>{root}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>32</max_concurrent_queries>
  <max_connections>256</max_connections>
  <keep_alive_timeout>10</keep_alive_timeout>
  <mlock_executable>false</mlock_executable>
  <macros><shipper_token>{token}</shipper_token></macros>
</yandex>
"""


_USERS_XML = """<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_threads>2</max_threads>
      <max_memory_usage>2000000000</max_memory_usage>
      <background_pool_size>4</background_pool_size>
      <log_queries>0</log_queries>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries><errors>0</errors><result_rows>0</result_rows>
        <read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
"""


class ClickHouse:
    """One clickhouse-server on 127.0.0.1 with its own config and data under `root`.

    `port` (HTTP) stays the same across `kill()`/`stop()` and `start()`, so a shipper
    configured against it keeps working across a restart. `tcp_port` is None unless asked for.
    """

    def __init__(self, root: Path, *, tcp: bool = False, binary: str | None = None) -> None:
        self.root = Path(root)
        self.binary = binary or require_clickhouse()
        self.port = free_port()
        self.tcp_port: int | None = free_port() if tcp else None
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None  # how long the last start() took
        self._token = uuid.uuid4().hex
        for sub in ("data", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._write_config()

    # -- paths and addresses
    @property
    def config_path(self) -> Path:
        return self.root / "config.xml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @staticmethod
    def insert_uri(table: str, fmt: str = "JSONEachRow") -> str:
        """The URI a Fluent Bit `http` output uses to insert into `table`."""
        return "/?query=" + urllib.parse.quote(f"INSERT INTO {table} FORMAT {fmt}")

    def _write_config(self) -> None:
        self.config_path.write_text(_config_xml(self.root, self.port, self.tcp_port, self._token))
        (self.root / "users.xml").write_text(_USERS_XML)

    # -- lifecycle
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (again, on the same data dir and port) and wait for /ping."""
        if self.running():
            raise RuntimeError("ClickHouse already running")
        self._reap()
        t0 = time.monotonic()
        with (
            open(self.log_dir / "stdout.log", "ab") as out,
            open(self.log_dir / "stderr.log", "ab") as err,
        ):
            self.proc = subprocess.Popen(
                [self.binary, f"--config-file={self.config_path}"],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"clickhouse-server exited with {self.proc.returncode} while starting:\n"
                    + self.log_tail()
                )
            if self.ping():
                break
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                self.kill()
                raise TimeoutError(
                    f"clickhouse-server did not answer /ping within {timeout}s:\n{tail}"
                )
            time.sleep(0.02)
        # Make sure the server answering is ours and not another one that grabbed the port.
        token = self.query("SELECT substitution FROM system.macros WHERE macro = 'shipper_token'")
        if token.strip() != self._token:
            self.kill()
            raise RuntimeError(f"port {self.port} is answered by another ClickHouse server")
        self.start_seconds = time.monotonic() - t0

    def kill(self) -> None:
        """SIGKILL the server by PID and reap it (a crash, for restart tests)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reap()

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM), SIGKILL after `timeout` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None

    def log_tail(self, n: int = 40) -> str:
        parts = []
        for name in ("stderr.log", "clickhouse-server.err.log", "clickhouse-server.log"):
            path = self.log_dir / name
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-n:]
                if lines:
                    parts.append(f"--- {path}\n" + "\n".join(lines))
        return "\n".join(parts) or "(no log output)"

    # -- HTTP
    def ping(self, timeout: float = 1.0) -> bool:
        try:
            with _OPENER.open(f"{self.url}/ping", timeout=timeout) as resp:
                return bool(resp.status == 200 and resp.read().strip() == b"Ok.")
        except (OSError, urllib.error.URLError):
            return False

    def query(
        self,
        sql: str,
        data: bytes | str | None = None,
        *,
        settings: Mapping[str, str | int] | None = None,
        timeout: float = 30.0,
    ) -> str:
        """Run `sql` over HTTP and return the response body. With `data`, `sql` goes in the
        URL and `data` is the body (e.g. `INSERT INTO t FORMAT JSONEachRow` + rows).
        Raises ClickHouseError on a non-200 answer."""
        params: dict[str, str] = {k: str(v) for k, v in (settings or {}).items()}
        if data is None:
            body = sql.encode()
        else:
            params["query"] = sql
            body = data.encode() if isinstance(data, str) else data
        url = self.url + "/" + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, data=body, method="POST")
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return str(resp.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            e.close()
            raise ClickHouseError(e.code, text, sql) from None

    def insert_rows(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """INSERT rows (dicts) with FORMAT JSONEachRow."""
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        self.query(f"INSERT INTO {table} FORMAT JSONEachRow", payload)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """SELECT and return the rows as dicts (appends FORMAT JSONEachRow)."""
        text = self.query(sql.rstrip().rstrip(";") + " FORMAT JSONEachRow")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def count(self, table: str, where: str | None = None) -> int:
        sql = f"SELECT count() FROM {table}" + (f" WHERE {where}" if where else "")
        return int(self.query(sql).strip())

    def __repr__(self) -> str:
        return f"<ClickHouse {self.url} pid={self.pid} root={self.root}>"


@contextlib.contextmanager
def clickhouse_server(
    tmp_path: Path | str,
    *,
    tcp: bool = False,
    timeout: float = 60.0,
    name: str = "clickhouse",
) -> Iterator[ClickHouse]:
    """Start a real clickhouse-server under `tmp_path/name`, yield it, stop it at the end.

    Skips the test (pytest.skip) when clickhouse-server isn't installed. A start that fails
    because the free port was taken meanwhile is retried on new ports."""
    require_clickhouse()
    root = Path(tmp_path) / name
    server: ClickHouse | None = None
    last: Exception | None = None
    for _attempt in range(3):
        server = ClickHouse(root, tcp=tcp)
        try:
            server.start(timeout=timeout)
            break
        except RuntimeError as e:  # exited early (port in use?) or another server answered
            last = e
            server.kill()
            if "Address already in use" not in str(e) and "another ClickHouse" not in str(e):
                raise
    else:
        raise RuntimeError(f"could not start clickhouse-server: {last}")
    assert server is not None
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- Ray


def _ray_venv_python() -> Path:
    env = os.environ.get("SHIPPER_RAY_PYTHON")
    if env:
        return Path(env)
    return REPO_ROOT / ".venv-ray" / "bin" / "python"


@functools.cache
def _ray_probe() -> tuple[str | None, str]:
    py = _ray_venv_python()
    if not py.exists():
        return None, f"no Ray virtualenv at {py.parent.parent} (bash tests/run.sh creates it)"
    try:
        res = subprocess.run(
            [str(py), "-c", "import ray, sys; sys.stdout.write(ray.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
            env=ray_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{py} -c 'import ray' failed: {e}"
    if res.returncode != 0:
        return None, f"Ray does not import in {py}: {res.stderr.strip()[-500:]}"
    return str(py), res.stdout.strip()


def ray_python() -> str | None:
    """Path of the Python in `.venv-ray` (or `$SHIPPER_RAY_PYTHON`) if Ray imports there."""
    return _ray_probe()[0]


def ray_version() -> str | None:
    py, info = _ray_probe()
    return info if py else None


def ray_skip_reason() -> str | None:
    """Why Ray can't run here, or None when it can."""
    py, info = _ray_probe()
    return None if py else info


def require_ray() -> str:
    """The Ray virtualenv's Python, or skip the calling test with the reason."""
    py, info = _ray_probe()
    if py is None:
        _skip_or_fail(info)
    assert py is not None
    return py


@contextlib.contextmanager
def ray_temp_dir(prefix: str = "ray") -> Iterator[Path]:
    """A short temp dir (`/tmp/<prefix>XXXXXXXX`) for `ray.init(_temp_dir=...)`, removed at the
    end. pytest's tmp_path is too long: Ray refuses AF_UNIX socket paths over 107 bytes, and
    `<temp>/session_<date>_<usec>_<pid>/sockets/plasma_store` adds ~65 to it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ray_env(home: Path | str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a Ray driver: os.environ without this venv's/pytest's Python settings,
    usage stats off, unbuffered output. `home` sets HOME (Ray writes ~/.ray/auth_token)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST")
        and not k.startswith("COV_")
    }
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    if home is not None:
        Path(home).mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(home)
    env.update(extra)
    return env


# --------------------------------------------------------------------------- network namespaces

# Brings `lo` up without iproute2 (SIOCGIFFLAGS / SIOCSIFFLAGS), then execs the command.
_LO_UP_PY = (
    "import fcntl,os,socket,struct,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "r=fcntl.ioctl(s,0x8913,struct.pack('16sH14s',b'lo',0,b''))\n"
    "f=struct.unpack('16sH',r[:18])[1]\n"
    "fcntl.ioctl(s,0x8914,struct.pack('16sH14s',b'lo',f|1,b''))\n"
    "s.close()\n"
    "os.execvp(sys.argv[1],sys.argv[1:])\n"
)


def _netns_prefix(pid_namespace: bool) -> list[str]:
    unshare = shutil.which("unshare") or "unshare"
    prefix = [unshare, "--net"]
    if pid_namespace:
        # own PID namespace with its own /proc: when the command exits or this wrapper is
        # killed (--kill-child), the kernel kills every process left in the namespace.
        prefix += ["--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"]
    ip = shutil.which("ip")
    if ip:
        return [*prefix, "sh", "-c", f'"{ip}" link set lo up && exec "$@"', "sh"]
    return [*prefix, sys.executable, "-c", _LO_UP_PY]


@functools.cache
def netns_skip_reason() -> str | None:
    """Why a network namespace can't be made here (not root, no unshare...), or None."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) not found"
    try:
        res = subprocess.run(
            [*_netns_prefix(True), "true"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare failed: {e}"
    if res.returncode != 0:
        return f"cannot create network/PID namespaces here: {res.stderr.strip()[-300:]}"
    return None


def require_netns() -> None:
    reason = netns_skip_reason()
    if reason is not None:
        _skip_or_fail(reason)


def run_in_netns(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    pid_namespace: bool = True,
    start_new_session: bool = True,
    **popen_kwargs: Any,
) -> subprocess.Popen[Any]:
    """Start `cmd` in a fresh network namespace where only loopback exists (and is up):
    `unshare --net sh -c 'ip link set lo up && exec "$@"' sh CMD...`.

    Nothing in it can reach any other address; 127.0.0.1 in there is its own, not the host's
    (a server on the host's loopback is not reachable from inside, and the other way round).
    The filesystem is shared, so logs it writes under a tmp dir are readable from outside.

    `pid_namespace=True` (default) also gives it its own PID namespace and /proc, as in a
    container: PIDs inside (and so in Ray's log file names) are small numbers, and killing the
    returned process (`stop_process(proc)`, or proc.kill()) takes every process inside with it.
    With `pid_namespace=False` the returned process *is* `cmd` (unshare and sh exec).
    Other keyword arguments go to subprocess.Popen. Call `stop_process(proc)` when done.
    """
    return subprocess.Popen(
        [*_netns_prefix(pid_namespace), *map(os.fspath, cmd)],
        start_new_session=start_new_session,
        **popen_kwargs,
    )


def fluent_bit_binary() -> str:
    """A Fluent Bit to compare with: $FLUENT_BIT, else `fluent-bit` on PATH, else "" (tests
    that need one skip: no package registry here has it, a local build may)."""
    return os.environ.get("FLUENT_BIT") or shutil.which("fluent-bit") or ""


# --------------------------------------------------------------------------- CPU quota


class cpu_quota:
    """A cgroup whose processes get `share` of one CPU (cgroup v1 `cpu.cfs_quota_us`, or v2
    `cpu.max`): a reader that lags as in a sidecar with a small CPU limit. Skips the test where
    no group can be made (not root, no cpu controller). Leaving puts the processes back in
    the root group and removes the group."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.path: Path | None = None
        self._root: Path | None = None

    def __enter__(self) -> cpu_quota:
        period = 100_000
        quota = max(1000, int(self.share * period))
        name = f"shipper-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        v1 = Path("/sys/fs/cgroup/cpu")
        v2 = Path("/sys/fs/cgroup")
        try:
            if (v1 / "cpu.cfs_quota_us").exists():
                self._root, self.path = v1, v1 / name
                self.path.mkdir()
                (self.path / "cpu.cfs_period_us").write_text(str(period))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            elif (v2 / "cgroup.controllers").exists():
                self._root, self.path = v2, v2 / name
                self.path.mkdir()
                (self.path / "cpu.max").write_text(f"{quota} {period}")
            else:
                _skip_or_fail("no cgroup cpu controller here")
        except OSError as exc:
            self._remove()
            _skip_or_fail(f"cannot make a CPU-quota cgroup: {exc}")
        return self

    def add(self, pid: int) -> None:
        """Move process `pid` (all its threads) into the group."""
        assert self.path is not None
        (self.path / "cgroup.procs").write_text(str(pid))

    def _remove(self) -> None:
        if self.path is None or self._root is None:
            return
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self._root / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            self.path.rmdir()
        self.path = None

    def __exit__(self, *exc: object) -> None:
        self._remove()
