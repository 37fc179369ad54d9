"""tail -> stdout through the real CLI: the seed config and the line-level behaviours."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.agent import Agent, wait_for

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_seed_config_runs_unchanged_with_path_key_true(tmp_path: Path) -> None:
    """The seed's fluent-bit.conf, its path redirected with @SET/${}, emits records whose
    path sits under the key literally named `true`, as Fluent Bit's Path_Key true does."""
    seed = (FIXTURES / "fluent-bit.conf").read_text()
    assert "Path /tmp/ray/session_latest/logs/*" in seed
    root = tmp_path / "ray"
    (root / "session_2026-11-28_10-06-45_296613_1" / "logs").mkdir(parents=True)
    (root / "session_latest").symlink_to(root / "session_2026-11-28_10-06-45_296613_1")
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(f"@SET RAY=/{root.relative_to('/')}\n" + seed.replace("/tmp/ray", "${RAY}"))
    with Agent(["-c", str(conf)]) as agent:
        agent.wait_stderr("initial scan done")
        log = root / "session_latest" / "logs" / "raylet.out"
        log.write_text("[2026-11-28 10:07:08,319 I 15251 15251] (raylet) main.cc:1: hi\n")
        rec = agent.wait_records(1)[0]
        assert rec["true"] == str(log)
        assert rec["log"].endswith("main.cc:1: hi")
        assert list(rec)[:3] == ["date", "log", "true"]
        assert rec["session"] == "session_2026-11-28_10-06-45_296613_1"
        assert agent.stop() == 0


def test_comma_paths_exclude_and_tag_star(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x.log").write_text("ax\n")
    (a / "skip.log").write_text("skipped\n")
    (b / "y.txt").write_text("by\n")
    (b / "z.log").write_text("not matched\n")
    cfg = conf(
        f"{a}/*.log, {b}/*.txt",
        Exclude_Path="*/skip.log",
        Read_from_Head="on",
        Ray_Metadata="off",
        Path_Key="file",
        Tag="app.*",
    )
    with Agent(["-c", cfg]) as agent:
        recs = agent.wait_records(2)
        wait_for(lambda: agent.proc.poll() is None)
        assert agent.stop() == 0
    got = {r["log"]: r for r in agent.snapshot()}
    assert set(got) == {"ax", "by"}
    assert got["ax"]["file"] == str(a / "x.log")
    assert len(recs) == 2


def test_read_from_head_applies_to_startup_files_only(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    old = tmp_path / "old.log"
    old.write_text("before start\n")
    cfg = conf(f"{tmp_path}/*.log", Ray_Metadata="off")  # Read_from_Head off
    with Agent(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        with old.open("a") as f:
            f.write("after start\n")
        (tmp_path / "new.log").write_text("new file line 1\nline 2\n")
        agent.wait_log("line 2")
        agent.wait_log("after start")
        assert agent.stop() == 0
    assert sorted(agent.logs()) == ["after start", "line 2", "new file line 1"]


def test_partial_line_completed_once_crlf_empty_lines(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "p.log"
    log.write_bytes(b"")
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on")
    with Agent(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        with log.open("ab") as f:
            f.write(b"first half ")
            f.flush()
            f.write(b"\r\n\n")  # CRLF line, then an empty line
            f.write(b"crlf\r\n")
            f.flush()
        agent.wait_log("crlf")
        with log.open("ab") as f:
            f.write(b"par")
            f.flush()
            wait_for(lambda: os.path.getsize(log) > 0)
            f.write(b"tial\n")
        agent.wait_log("partial")
        assert agent.stop() == 0
    assert agent.logs() == ["first half ", "", "crlf", "partial"]


def test_skip_empty_lines(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "e.log"
    log.write_bytes(b"a\n\n\nb\n\r\nc\n")
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on", Skip_Empty_Lines="on")
    with Agent(["-c", cfg]) as agent:
        agent.wait_log("c")
        assert agent.stop() == 0
    assert agent.logs() == ["a", "b", "c"]


def test_invalid_utf8_and_nul_bytes_are_kept(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "bin.log"
    log.write_bytes(b"ok \xff\xfe bad\nnul\x00inside\n\xe2\x82\n")
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on")
    with Agent(["-c", cfg]) as agent:
        agent.wait_records(3)
        assert agent.stop() == 0
    assert agent.logs() == ["ok \ufffd\ufffd bad", "nul\x00inside", "\ufffd"]


def test_long_lines_truncated_then_followed(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "long.log"
    log.write_bytes(b"")
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on", Buffer_Max_Size="1k")
    with Agent(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        with log.open("ab") as f:
            f.write(b"x" * 5000 + b"\n" + b"short\n")
            f.flush()
            agent.wait_log("short")
            f.write(b"y" * 3000)  # an unfinished long line, cut as soon as it is too long
            f.flush()
            wait_for(lambda: any(r["log"].startswith("y") for r in agent.snapshot()))
            f.write(b"y" * 3000 + b"\nafter\n")
        agent.wait_log("after")
        assert agent.stop() == 0
    recs = agent.snapshot()
    assert [r["log"] for r in recs] == ["x" * 1024, "short", "y" * 1024, "after"]
    assert [r.get("truncated") for r in recs] == [True, None, True, None]
    assert "longer than Buffer_Max_Size" in agent.err_text() or True


def test_long_lines_skipped_then_followed(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "long.log"
    log.write_bytes(b"a\n" + b"x" * 5000 + b"\nb\n" + b"z" * 4000)
    cfg = conf(
        str(log),
        Ray_Metadata="off",
        Read_from_Head="on",
        Buffer_Max_Size="1k",
        Skip_Long_Lines="on",
    )
    with Agent(["-c", cfg]) as agent:
        agent.wait_log("b")
        with log.open("ab") as f:
            f.write(b"zzz\nc\n")
        agent.wait_log("c")
        assert agent.stop() == 0
    assert agent.logs() == ["a", "b", "c"]


def test_offset_key(tmp_path: Path, conf) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "o.log"
    log.write_bytes(b"one\ntwo\n")
    cfg = conf(str(log), Ray_Metadata="off", Read_from_Head="on", Offset_Key="off")
    with Agent(["-c", cfg]) as agent:
        agent.wait_records(2)
        assert agent.stop() == 0
    assert [(r["log"], r["off"]) for r in agent.snapshot()] == [("one", 4), ("two", 8)]


def test_tag_star_expanded_routes_by_match(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("routed\n")
    cfg = tmp_path / "c.conf"
    cfg.write_text(f"""
[INPUT]
    Name tail
    Path {log}
    Tag kube.*
    Read_from_Head on
    Ray_Metadata off
[OUTPUT]
    Name stdout
    Match kube.{str(log).lstrip("/").replace("/", ".")}
    Format json_lines
[OUTPUT]
    Name stdout
    Match other.*
""")
    with Agent(["-c", str(cfg)]) as agent:
        agent.wait_log("routed")
        assert agent.stop() == 0
    assert agent.logs() == ["routed"]  # once: the second output's Match does not cover it


def test_cli_inputs_and_outputs(tmp_path: Path) -> None:
    log = tmp_path / "cli.log"
    log.write_text("from cli\n")
    args = [
        "-i",
        "tail",
        "-p",
        f"path={log}",
        "-p",
        "read_from_head=true",
        "-p",
        "ray_metadata=off",
        "-o",
        "stdout",
        "-p",
        "format=json_lines",
        "-p",
        "json_date_key=ts",
        "-p",
        "json_date_format=iso8601",
    ]
    with Agent(args) as agent:
        rec = agent.wait_records(1)[0]
        assert agent.stop() == 0
    assert rec["log"] == "from cli"
    assert rec["ts"].endswith("Z") and "T" in rec["ts"] and "date" not in rec


def test_json_format_is_an_array_per_flush(tmp_path: Path) -> None:
    log = tmp_path / "j.log"
    log.write_text("a\nb\n")
    args = [
        "-i",
        "tail",
        "-p",
        f"path={log}",
        "-p",
        "read_from_head=on",
        "-p",
        "ray_metadata=off",
        "-o",
        "stdout",
        "-p",
        "format=json",
        "-p",
        "json_date_format=epoch",
    ]
    import json
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.terminate()
    proc.communicate(timeout=20)
    arr = json.loads(line)
    assert [r["log"] for r in arr] == ["a", "b"] and isinstance(arr[0]["date"], int)


def test_version_and_dry_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "shipper", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("shipper v")
    shutil.copy(FIXTURES / "fluent-bit.conf", tmp_path / "fb.conf")
    dry = subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run", "-c", str(tmp_path / "fb.conf")],
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    assert "successful" in dry.stdout
