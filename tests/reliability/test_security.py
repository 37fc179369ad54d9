"""Security: includes outside the configuration directory are followed only with a warning,
secrets never reach the agent's log (even at -vv, even when the server echoes them), the
metrics server binds exactly HTTP_Listen, and the agent runs on a read-only root filesystem
with no capabilities, writing only its DB."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from shipper.plugins import registry
from tests.reliability.harness import (
    ROOT,
    STDOUT,
    AgentProc,
    Receiver,
    Row,
    Tally,
    append_lines,
    classic,
    db_rows,
    free_port,
    numbered,
    tail_input,
    wait_until,
    write_conf,
)

OUTSIDE = "outside the configuration directory"


def dry_run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# -- @INCLUDE outside the configuration directory --------------------------------------------

CLASSIC_MAIN = "[SERVICE]\n    Flush 1\n@INCLUDE {target}\n[OUTPUT]\n    Name stdout\n    Match *\n"
PART = "[INPUT]\n    Name tail\n    Path /tmp/nothing-here/*.log\n"
YAML_MAIN = "includes:\n  - {target}\npipeline:\n  outputs:\n    - name: stdout\n      match: '*'\n"
YAML_PART = "pipeline:\n  inputs:\n    - name: tail\n      path: /tmp/nothing-here/*.log\n"


def test_include_outside_config_dir_warns(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    row = results.add(
        Row("@INCLUDE outside the config directory (classic + YAML; ../, absolute, symlink)")
    )
    cases = 0
    for fmt in ("classic", "yaml"):
        for where in ("inside", "parent-dir", "absolute", "symlink-inside"):
            _include_case(tmp_path / f"{fmt}-{where}", fmt, where)
            cases += 1
    row.note = f"{cases} cases: followed with a warning naming the real path; inside: silent"


def _include_case(base: Path, fmt: str, where: str) -> None:
    conf_dir = base / "etc" / "shipper"
    conf_dir.mkdir(parents=True)
    other = base / "elsewhere"
    other.mkdir()
    ext = ".conf" if fmt == "classic" else ".yaml"
    part_text = PART if fmt == "classic" else YAML_PART
    if where == "inside":
        (conf_dir / f"part{ext}").write_text(part_text)
        target = f"part{ext}"
    else:
        (other / f"part{ext}").write_text(part_text)
        if where == "parent-dir":
            target = f"../../elsewhere/part{ext}"
        elif where == "absolute":
            target = str(other / f"part{ext}")
        else:  # a name inside the directory that resolves outside it
            (conf_dir / f"part{ext}").symlink_to(other / f"part{ext}")
            target = f"part{ext}"
    main = conf_dir / f"main{ext}"
    main.write_text((CLASSIC_MAIN if fmt == "classic" else YAML_MAIN).format(target=target))
    r = dry_run(main)
    assert r.returncode == 0, (fmt, where, r.stderr)
    assert "Traceback" not in r.stderr
    if where == "inside":
        assert OUTSIDE not in r.stderr, (fmt, where, r.stderr)
    else:
        assert OUTSIDE in r.stderr, f"{fmt}: followed a {where} include silently:\n{r.stderr}"
        assert str(other) in r.stderr, "the warning names where it leads"


# -- secrets never logged --------------------------------------------------------------------

PASSWD = "pw-Sup3rS3cret-71"
TOKEN = "tok-B34rerS3cret-93"
APIKEY = "key-ApiS3cret-45"


@pytest.mark.timeout(120)
def test_secrets_never_logged_at_vv(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    if "http" not in registry("output"):
        pytest.skip("the http output is not registered yet")
    basic = base64.b64encode(f"ingest:{PASSWD}".encode()).decode()
    secrets = [PASSWD, TOKEN, APIKEY, basic]
    log = tmp_path / "a.log"
    log.touch()
    recv = Receiver(slow_s=2.0)
    metrics_port = free_port()
    # three outputs with the secrets in every form the http output takes them
    outs = []
    for i in range(3):
        outs.append(
            {
                "Name": "http",
                "Match": "*",
                "Host": "127.0.0.1",
                "Port": recv.port,
                "URI": f"/o{i}?key={APIKEY}" if i == 2 else f"/o{i}",
                "Format": "json_lines",
                "HTTP_User": "ingest",
                "HTTP_Passwd": PASSWD,
                "Header": [f"Authorization Bearer {TOKEN}", f"X-Api-Key {APIKEY}"],
                "Retry_Limit": "2",
                "net.io_timeout": "1",
            }
        )
    cfg = write_conf(
        tmp_path / "s.conf",
        classic(
            [tail_input(str(log))],
            outs,
            service={
                "scheduler.base": "0.2",
                "scheduler.cap": "1",
                "HTTP_Server": "on",
                "HTTP_Listen": "127.0.0.1",
                "HTTP_Port": metrics_port,
            },
        ),
    )

    row = results.add(
        Row(
            "secrets never logged (-vv, HTTP_Passwd, Authorization, X-Api-Key, server echoing them)"
        )
    )
    pages = []
    try:
        with AgentProc(["-vv", "-c", cfg]) as agent:
            agent.wait_stderr("initial scan done")
            n = 0
            for mode in ["echo", "503", "reset", "refuse", "slow", "up"]:
                recv.set_mode(mode)
                append_lines(log, numbered(mode, n, n + 5))
                n += 5
                agent.wait_stderr("HTTP status" if mode in ("echo", "503") else "", timeout=20)
                wait_until(
                    lambda m=mode: recv.requests[m] > 0 or m == "refuse",
                    20,
                    f"a request in mode {mode}",
                )
            recv.set_mode("up")
            for path in ("/api/v1/metrics", "/api/v1/metrics/prometheus", "/api/v2/health", "/"):
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{metrics_port}{path}", timeout=10
                ) as resp:
                    pages.append(resp.read().decode())
            row.fds_end = agent.fds()
            assert agent.stop() == 0
            row.peak_rss_kb = agent.peak_rss_kb
            err = agent.err_text()
    finally:
        recv.close()
    leaks = [s for s in secrets if s in err]
    page_leaks = [s for s in secrets for p in pages if s in p]
    sent = [h.get("Authorization", "") for h in recv.headers]
    row.note = (
        f"{len(err.splitlines())} log lines at -vv, {len(pages)} metrics pages: "
        f"{len(leaks) + len(page_leaks)} secrets found"
    )
    assert any(f"Basic {basic}" == s or f"Bearer {TOKEN}" == s for s in sent), (
        "the secrets were really sent"
    )
    assert "denied" in err, "the echoing error body was logged (redacted)"
    assert not leaks, f"secrets in the agent's log: {leaks}"
    assert not page_leaks, f"secrets in the metrics pages: {page_leaks}"


# -- HTTP_Listen -----------------------------------------------------------------------------


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of the TCP sockets the process listens on (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, v6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = f[1].split(":")
            raw = bytes.fromhex(addr_hex)
            if v6:
                words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
                import ipaddress

                addr = str(ipaddress.IPv6Address(b"".join(words)))
            else:
                addr = ".".join(str(b) for b in raw[::-1])
            out.append((addr, int(port_hex, 16)))
    return out


@pytest.mark.parametrize("listen", ["127.0.0.1", "0.0.0.0"])
@pytest.mark.timeout(60)
def test_http_listen_binds_only_there(tmp_path: Path, results, listen: str) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    cfg = write_conf(
        tmp_path / "s.conf",
        classic(
            [tail_input(str(tmp_path / "*.log"))],
            [STDOUT],
            service={"HTTP_Server": "on", "HTTP_Listen": listen, "HTTP_Port": port},
        ),
    )
    with AgentProc(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        wait_until(lambda: _listening(agent.pid), 20, "a listening socket")
        socks = _listening(agent.pid)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=10) as resp:
            assert resp.status == 200
        fds = agent.fds()
        assert agent.stop() == 0
    assert socks == [(listen, port)], socks
    if listen == "127.0.0.1":
        results.add(
            Row(
                "HTTP_Listen 127.0.0.1 binds only there",
                fds_end=fds,
                peak_rss_kb=agent.peak_rss_kb,
                note=f"listening: {socks}",
            )
        )


# -- read-only root filesystem, no capabilities ----------------------------------------------


@pytest.mark.timeout(120)
def test_read_only_root_no_capabilities(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    """The image's setting (readOnlyRootFilesystem, non-root) as far as this machine allows:
    the agent in a mount namespace whose / is read-only, with every capability dropped; only
    the DB's directory is writable (a tmpfs, as an emptyDir would be)."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root, unshare and setpriv to build the sandbox")
    logs = tmp_path / "logs"
    logs.mkdir()
    dbdir = tmp_path / "state"
    dbdir.mkdir()
    db = dbdir / "offsets.db"
    script = (
        "mount --make-rprivate / && mount -o remount,bind,ro / && "
        f"mount -t tmpfs -o size=16m tmpfs {dbdir} && "
        'exec setpriv --bounding-set=-all --inh-caps=-all "$0" "$@"'
    )
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot build the read-only sandbox: {probe.stderr!r}")
    tally = Tally()
    row = results.add(Row("read-only root filesystem, no capabilities"))
    cfg = write_conf(
        tmp_path / "s.conf", classic([tail_input(f"{logs}/*.log", DB=str(db))], [STDOUT])
    )
    lines = numbered("ro", 0, 200)
    append_lines(logs / "a.log", lines)
    tally.written += lines
    with AgentProc(["-c", cfg], prefix=["unshare", "-m", "sh", "-c", script]) as agent:
        agent.wait_logs(lines)
        more = numbered("ro2", 0, 50)
        append_lines(logs / "b.log", more)
        tally.written += more
        agent.wait_logs(more)
        caps = [
            ln
            for ln in Path(f"/proc/{agent.pid}/status").read_text().splitlines()
            if ln.startswith("CapEff")
        ]
        row.fds_end = agent.fds()
        assert agent.stop() == 0
        err = agent.err_text()
    tally.add_run(agent.snapshot())
    row.written, row.delivered, row.lost, row.duplicated = (
        len(tally.written),
        len(tally.written) - len(tally.missing),
        len(tally.missing),
        tally.duplicated,
    )
    row.peak_rss_kb = agent.peak_rss_kb
    row.note = f"{caps[0].split()[1]} effective caps; writes only the DB directory"
    assert caps == ["CapEff:\t0000000000000000"], caps
    assert not tally.missing and tally.duplicated == 0
    assert "cannot store offsets" not in err and "Read-only" not in err, err[-3000:]
    assert "Traceback" not in err
    assert not db.exists(), "the DB went to the namespace's tmpfs, nowhere else"
    assert db_rows(db) == []
