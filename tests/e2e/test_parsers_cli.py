"""Parsers end to end through the `shipper` CLI: a real file tailed with `Parser` (Fluent
Bit's stock parsers.conf as Parsers_File, next to the config), stdin with `Parser`, the
parser and multiline filters on a tailed file, and `--dry-run` refusing what is not supported
with file:line:key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.agent import Agent

STOCK = Path(__file__).parent.parent / "fixtures" / "fluent-bit" / "parsers.conf"
SESSION = "session_2026-12-07_06-00-00_123456_77"


def write_conf(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_tail_with_stock_parser_keeps_ray_metadata(tmp_path: Path) -> None:
    shutil.copy(STOCK, tmp_path / "parsers.conf")
    logs = tmp_path / SESSION / "logs"
    logs.mkdir(parents=True)
    access = logs / "nginx-access.log"
    access.write_text(
        '10.0.0.1 - - [07/Dec/2026:06:00:00 +0000] "GET /api/jobs HTTP/1.1" 200 512 "-" '
        '"curl/8.5"\n'
        "this line is not an access log line\n"
    )
    cfg = write_conf(
        tmp_path / "fluent-bit.conf",
        f"""
        [SERVICE]
            Flush        0.2
            Parsers_File parsers.conf
        [INPUT]
            Name           tail
            Path           {logs}/*.log
            Parser         nginx
            Path_Key       file
            Read_from_Head on
            Tag            ray
        [OUTPUT]
            Name   stdout
            Match  *
            Format json_lines
        """,
    )
    # a relative Parsers_File is found from the configuration's directory, not the cwd
    with Agent(["-c", str(cfg)], cwd="/") as agent:
        first, second = agent.wait_records(2)
        with access.open("a") as fh:  # a line written while the agent runs
            fh.write(
                '10.0.0.2 - bob [07/Dec/2026:06:00:01 +0000] "POST /x HTTP/1.1" 201 7 "-" "py"\n'
            )
        third = agent.wait_records(3)[2]
        agent.stop()
    assert first == {
        "date": 1796623200.0,  # from the line's time, not the read time
        "remote": "10.0.0.1",
        "host": "-",
        "user": "-",
        "method": "GET",
        "path": "/api/jobs",
        "code": "200",
        "size": "512",
        "referer": "-",
        "agent": "curl/8.5",
        "file": str(access),
        "session": SESSION,
        "component": "nginx-access",
    }
    # no match: the record keeps `log` as Fluent Bit's tail does, metadata still applies
    assert second["log"] == "this line is not an access log line"
    assert second["session"] == SESSION and "remote" not in second
    assert third["user"] == "bob" and third["method"] == "POST" and third["date"] == 1796623201.0


def test_stdin_with_parser_and_yaml_parsers(tmp_path: Path) -> None:
    cfg = write_conf(
        tmp_path / "c.yaml",
        """
        service:
          flush: 0.2
        parsers:
          - name: kv
            format: logfmt
            time_key: ts
            time_format: "%Y-%m-%dT%H:%M:%S.%L%z"
            types: n:integer ok:bool
            logfmt_no_bare_keys: on
        pipeline:
          inputs:
            - name: stdin
              parser: kv
              ray_metadata: off
          outputs:
            - name: stdout
              match: "*"
              format: json_lines
        """,
    )
    text = 'ts=2026-12-07T06:00:00.250+01:00 level=info n=3 ok=true msg="a b"\nplain words\n'
    proc = subprocess.run(
        [sys.executable, "-m", "shipper", "-c", str(cfg)],
        input=text.encode(),
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert recs[0] == {"date": 1796619600.25, "level": "info", "n": 3, "ok": True, "msg": "a b"}
    # bare words would be logfmt keys; with Logfmt_No_Bare_Keys the line does not match
    assert recs[1]["log"] == "plain words" and len(recs) == 2


def test_parser_and_multiline_filters_on_a_tailed_file(tmp_path: Path) -> None:
    app = tmp_path / "app.log"
    app.write_text(
        '{"level":"error","msg":"Traceback (most recent call last):"}\n'
        '{"level":"error","msg":"  File \\"/app/x.py\\", line 1, in <module>"}\n'
        '{"level":"error","msg":"    boom()"}\n'
        '{"level":"error","msg":"NameError: name \'boom\' is not defined"}\n'
        '{"level":"info","msg":"done"}\n'
    )
    cfg = write_conf(
        tmp_path / "c.conf",
        f"""
        [SERVICE]
            Flush 0.2
        [PARSER]
            Name   json
            Format json
        [INPUT]
            Name           tail
            Path           {app}
            Tag            app.*
            Read_from_Head on
            Ray_Metadata   off
        [FILTER]
            Name         parser
            Match        app.*
            Key_Name     log
            Parser       json
        [FILTER]
            Name                  multiline
            Match                 app.*
            multiline.key_content msg
            multiline.parser      python
        [OUTPUT]
            Name   stdout
            Match  *
            Format json_lines
        """,
    )
    with Agent(["-c", str(cfg)]) as agent:
        recs = agent.wait_records(2)
        agent.stop()
    assert [(r["level"], r["msg"].splitlines()[0], r["msg"].count("\n")) for r in recs] == [
        ("error", "Traceback (most recent call last):", 3),
        ("info", "done", 0),
    ]


REFUSED = {
    "old-multiline": (
        "[INPUT]\n    Name tail\n    Path /x/*\n    Multiline on\n    Parser_Firstline json\n",
        4,
        "Multiline",
        "use multiline.parser",
    ),
    "parser-n": (
        "[INPUT]\n    Name tail\n    Path /x/*\n    Parser_1 json\n",
        4,
        "Parser_1",
        "[MULTILINE_PARSER]",
    ),
    "missing-parsers-file": (
        "[SERVICE]\n    Parsers_File nope.conf\n",
        2,
        "Parsers_File",
        "parsers file 'nope.conf' does not exist",
    ),
    "unknown-parser": (
        "[INPUT]\n    Name tail\n    Path /x/*\n    Parser jsonn\n",
        4,
        "Parser",
        "unknown parser 'jsonn'",
    ),
    "parser-key": (
        "[PARSER]\n    Name p\n    Format json\n    Decode_Field_As base64 log\n",
        4,
        "Decode_Field_As",
        "unknown decoder 'base64'",
    ),
    "bad-regex": (
        "[PARSER]\n    Name p\n    Format regex\n    Regex (?<a>\\p{L}+)\n",
        4,
        "Regex",
        "Unicode properties",
    ),
    "multiline-ray": (
        "[FILTER]\n    Name multiline\n    Match *\n    multiline.parser ray\n",
        4,
        "multiline.parser",
        "on the tail input",
    ),
    "parser-filter-key": (
        "[FILTER]\n    Name parser\n    Match *\n    Key_Name log\n"
        "    Parser json\n    Unknown_Key 1\n",
        6,
        "Unknown_Key",
        "unknown key",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_dry_run_refuses_by_name(tmp_path: Path, case: str) -> None:
    body, line, key, text = REFUSED[case]
    base = "[PARSER]\n    Name json\n    Format json\n"
    tail = "[INPUT]\n    Name tail\n    Path /x/*\n" if "[INPUT]" not in body else ""
    conf = tmp_path / "bad.conf"
    conf.write_text(base + body + tail + "[OUTPUT]\n    Name stdout\n    Match *\n")
    proc = subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert f"{conf}:{line + 3}: key '{key}'" in proc.stderr, proc.stderr
    assert text in proc.stderr and proc.stdout == ""


def test_dry_run_accepts_the_stock_parsers_file(tmp_path: Path) -> None:
    conf = tmp_path / "ok.conf"
    conf.write_text(
        f"[SERVICE]\n    Parsers_File {STOCK}\n[INPUT]\n    Name tail\n    Path /x/*\n"
        "    Parser docker\n    multiline.parser docker, cri\n"
        "[FILTER]\n    Name parser\n    Match *\n    Key_Name log\n"
        "    Parser syslog-rfc5424\n    Parser apache\n[OUTPUT]\n    Name stdout\n    Match *\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert "joins nothing" not in proc.stderr  # docker and cri are implemented on tail


def test_tail_with_docker_cri_joins_a_container_log(tmp_path: Path) -> None:
    """The usual DaemonSet input, `multiline.parser docker, cri` on a container log: partial
    lines are joined, including one whose end is written while the agent runs."""
    log = tmp_path / "ray-head_default_ray-head-abc.log"
    log.write_text(
        "2026-12-07T06:00:00.100000000+00:00 stdout P first half, \n"
        "2026-12-07T06:00:00.200000000+00:00 stderr F an error\n"
        "2026-12-07T06:00:00.300000000+00:00 stdout F second half\n"
        "2026-12-07T06:00:01.000000000+00:00 stdout P written in two \n"
    )
    cfg = write_conf(
        tmp_path / "c.conf",
        f"""
        [SERVICE]
            Flush 0.2
        [INPUT]
            Name             tail
            Path             {log}
            Read_from_Head   on
            Ray_Metadata     off
            multiline.parser docker, cri
            Multiline_Flush  30
        [OUTPUT]
            Name   stdout
            Match  *
            Format json_lines
        """,
    )
    with Agent(["-c", str(cfg)]) as agent:
        first, second = agent.wait_records(2)
        with log.open("a") as fh:
            fh.write("2026-12-07T06:00:01.100000000+00:00 stdout F steps\n")
        third = agent.wait_records(3)[2]
        agent.stop()
    assert (first["stream"], first["log"]) == ("stderr", "an error")
    assert (second["stream"], second["log"]) == ("stdout", "first half, second half")
    assert second["date"] == 1796623200.1 and second["_p"] == "P"
    assert third["log"] == "written in two steps" and third["date"] == 1796623201.0


def test_cli_parser_flag_as_fluent_bit_dash_r(tmp_path: Path) -> None:
    """`fluent-bit -R parsers.conf -i tail -p parser=logfmt ...` works as written."""
    log = tmp_path / "kv.log"
    log.write_text("level=warn msg=disk\n")
    args = ["-R", str(STOCK), "-i", "tail", "-p", f"path={log}", "-p", "read_from_head=on"]
    args += ["-p", "parser=logfmt", "-p", "ray_metadata=off", "-p", "exit_on_eof=on"]
    args += ["-o", "stdout", "-p", "format=json_lines"]
    proc = subprocess.run(
        [sys.executable, "-m", "shipper", *args], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    (rec,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rec["level"] == "warn" and rec["msg"] == "disk" and "log" not in rec
    missing = subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run", "--parser=nope.conf", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert missing.returncode == 1
    # the position is the argument's: --parser is the second
    assert "<command line>:2: key 'Parsers_File': parsers file 'nope.conf' does not exist" in (
        missing.stderr
    )


def test_docker_cri_partial_line_held_at_stop_is_read_again_with_db(tmp_path: Path) -> None:
    """A partial line still held when the agent stops is not lost: the stored offset stays
    before it (and before what followed it on the other stream, sent again: at least once)."""
    log = tmp_path / "c.log"
    log.write_text(
        "2026-12-07T06:00:00.100000000+00:00 stdout P kept across, \n"
        "2026-12-07T06:00:00.200000000+00:00 stderr F other stream\n"
    )
    cfg = write_conf(
        tmp_path / "c.conf",
        f"""
        [SERVICE]
            Flush 0.2
        [INPUT]
            Name             tail
            Path             {log}
            Read_from_Head   on
            Ray_Metadata     off
            DB               {tmp_path / "tail.db"}
            multiline.parser cri
            Multiline_Flush  30
        [OUTPUT]
            Name   stdout
            Match  *
            Format json_lines
        """,
    )
    with Agent(["-c", str(cfg)]) as agent:
        (first,) = agent.wait_records(1)
        assert agent.stop() == 0
    assert first["log"] == "other stream" and len(agent.records) == 1
    with log.open("a") as fh:
        fh.write("2026-12-07T06:00:02.000000000+00:00 stdout F a restart\n")
    with Agent(["-c", str(cfg)]) as agent:
        recs = agent.wait_records(2)
        agent.stop()
    assert [r["log"] for r in recs] == ["other stream", "kept across, a restart"]
