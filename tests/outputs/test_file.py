"""The `file`, `null` and `counter` outputs, run as a user runs them (the CLI on a config):
Fluent Bit's out_file formats line for line, Mkdir, a missing directory retried until it
exists (nothing lost), counter's `time,count (total = N)` lines, and refusals by name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agent import Agent, wait_for
from tests.backends import fluent_bit_binary
from tests.outputs.conftest import (
    append_lines,
    assert_refused,
    run_shipper,
    tail_input,
    write_config,
)


def _run(cfg: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run_shipper("-c", str(cfg), timeout=timeout)


def test_formats_as_fluent_bit_writes_them(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append_lines(log, ["hello", "world"])
    out = tmp_path / "out" / "nested"
    outs = [
        {"Name": "file", "Match": "*", "Path": str(out), "Mkdir": "on"},
        {"Name": "file", "Match": "*", "Path": str(out), "File": "p.txt", "Format": "plain"},
        {
            "Name": "file",
            "Match": "*",
            "Path": str(out),
            "File": "c.csv",
            "Format": "csv",
            "csv_column_names": "on",
        },
        {"Name": "file", "Match": "*", "Path": str(out), "File": "l.ltsv", "Format": "ltsv"},
        {
            "Name": "file",
            "Match": "*",
            "Path": str(out),
            "File": "s.csv",
            "Format": "csv",
            "Delimiter": "space",
        },
        {
            "Name": "file",
            "Match": "*",
            "Path": str(out),
            "File": "t.txt",
            "Format": "template",
            "Template": "{time} [{log}] {missing}.",
        },
    ]
    before = time.time()
    cfg = write_config(
        tmp_path / "c.conf", inputs=[tail_input(log, Exit_On_Eof="on")], outputs=outs
    )
    res = _run(cfg)
    assert res.returncode == 0, res.stderr
    t, ns = r"(\d{10}\.\d{6})", r"(\d{10}\.\d{9})"
    # out_file: `tag: [time, {record}]`, the record without its time, time in nanoseconds.
    lines = (out / "app.log").read_text().splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, ["hello", "world"], strict=True):
        m = re.fullmatch(rf"app\.log: \[{ns}, (.*)\]", line)
        assert m, line
        assert before - 1 <= float(m.group(1)) <= time.time()
        assert json.loads(m.group(2)) == {"log": text}
    assert (out / "p.txt").read_text() == '{"log":"hello"}\n{"log":"world"}\n'
    csv = (out / "c.csv").read_text().splitlines()
    assert csv[0] == 'timestamp,"log"'
    assert re.fullmatch(rf'{ns},"hello"', csv[1]) and re.fullmatch(rf'{ns},"world"', csv[2])
    assert re.fullmatch(rf'{ns} "hello"', (out / "s.csv").read_text().splitlines()[0])
    ltsv = (out / "l.ltsv").read_text().splitlines()
    assert re.fullmatch(rf'"time":{t}\t"log":"hello"', ltsv[0]), ltsv
    # A placeholder naming no key stays as written, as in Fluent Bit.
    assert re.fullmatch(
        rf"{t} \[world\] {{missing}}\.", (out / "t.txt").read_text().splitlines()[1]
    )

    # A second run appends, and csv's column line stays the first line only.
    append_lines(log, ["again"])
    res = _run(cfg)
    assert res.returncode == 0, res.stderr
    assert (out / "c.csv").read_text().count("timestamp,") == 1
    assert (out / "app.log").read_text().count("\n") >= 3


def test_missing_directory_is_retried_not_lost(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append_lines(log, [f"line {i}" for i in range(20)])
    target = tmp_path / "later"
    cfg = write_config(
        tmp_path / "c.conf",
        inputs=[tail_input(log)],
        outputs=[{"Name": "file", "Match": "*", "Path": str(target), "File": "x.log"}],
    )
    with Agent(["-c", str(cfg)], stdout=subprocess.DEVNULL) as agent:
        agent.wait_stderr("cannot write")
        target.mkdir()  # the operator fixes it: the retry delivers what waited
        wait_for(
            lambda: (
                (target / "x.log").exists() and (target / "x.log").read_text().count("\n") == 20
            ),
            what="20 lines in the file",
        )
        assert agent.stop() == 0
    records = [
        json.loads(x.split(", ", 1)[1][:-1]) for x in (target / "x.log").read_text().splitlines()
    ]
    assert records == [{"log": f"line {i}"} for i in range(20)]


def test_counter_and_null(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append_lines(log, [f"line {i}" for i in range(7)])
    cfg = write_config(
        tmp_path / "c.conf",
        inputs=[tail_input(log, Exit_On_Eof="on")],
        outputs=[{"Name": "counter", "Match": "*"}, {"Name": "null", "Match": "*"}],
    )
    res = _run(cfg)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines, res.stderr
    counts = []
    for line in lines:
        m = re.fullmatch(r"(\d+\.\d{6}),(\d+) \(total = (\d+)\)", line)
        assert m, line
        counts.append(int(m.group(2)))
        assert int(m.group(3)) == sum(counts)
    assert sum(counts) == 7


def test_refusals_name_file_line_and_key(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    cases = [
        ({"Name": "file", "Match": "*", "Format": "msgpack"}, "Format"),
        ({"Name": "file", "Match": "*", "Compression": "gzip"}, "Compression"),
        ({"Name": "file", "Match": "*", "File": "$kubernetes['pod_name'].log"}, "File"),
        ({"Name": "file", "Match": "*", "Rotate": "on"}, "Rotate"),
        ({"Name": "null", "Match": "*", "Path": "/x"}, "Path"),
        ({"Name": "counter", "Match": "*", "Format": "json"}, "Format"),
    ]
    for out, key in cases:
        assert_refused(tmp_path, log, out, key)


FLUENT_BIT = fluent_bit_binary()
GOLDEN_CONF = """\
[SERVICE]
    Flush 0.2
    Grace 2
[INPUT]
    Name tail
    Path ${IN}
    Tag app.ray/../x
    Read_from_Head on
[FILTER]
    Name modify
    Match *
    Add team infra
    Add level INFO
[OUTPUT]
    Name file
    Match *
    Path ${OUT}
    Mkdir on
"""
GOLDEN_OUTPUTS = [
    ("plain.txt", "Format plain"),
    ("c.csv", "Format csv\n    csv_column_names on"),
    ("s.csv", "Format csv\n    Delimiter tab"),
    ("t.ltsv", "Format ltsv\n    Label_Delimiter space"),
    ("t.txt", "Format template\n    Template {time} {level} [{team}] {log} {missing} {a{level}"),
]
GOLDEN_FILES = ["app.ray/_/x", *(name for name, _ in GOLDEN_OUTPUTS)]


@pytest.mark.skipif(
    not os.access(FLUENT_BIT, os.X_OK),
    reason="no Fluent Bit (set FLUENT_BIT or put fluent-bit on PATH)",
)
def test_same_files_as_fluent_bit(tmp_path: Path) -> None:
    """One config, run by the real Fluent Bit and by shipper: the same files, byte for byte
    once the times (read at different moments) are masked. shipper's copy only adds
    Ray_Metadata off (a plain file here; Fluent Bit knows no such key) and Exit_On_Eof
    (Fluent Bit is stopped once its files are complete). shipper's six outputs all make
    the same new directories with Mkdir at once, and lose nothing."""
    log = tmp_path / "app.log"
    lines = ["hello world", 'say "hi" \\ back\tslash', '{"json": [1, 2]}']
    log.write_text("".join(x + "\n" for x in lines))
    conf = GOLDEN_CONF + "".join(
        f"[OUTPUT]\n    Name file\n    Match *\n    Path ${{OUT}}\n    Mkdir on\n    File {name}\n"
        f"    {keys}\n"
        for name, keys in GOLDEN_OUTPUTS
    )
    cfg, ours = tmp_path / "fluent-bit.conf", tmp_path / "shipper.conf"
    cfg.write_text(conf)
    ours.write_text(
        conf.replace(
            "    Read_from_Head on\n",
            "    Read_from_Head on\n    Exit_On_Eof on\n    Ray_Metadata off\n",
        )
    )
    fb_out, our_out = tmp_path / "fluent-bit", tmp_path / "shipper"

    def complete(out: Path) -> bool:
        # every record in every file (the csv with column names has one line more)
        files = [out / name for name in GOLDEN_FILES]
        return all(f.exists() and f.read_text().count("\n") >= len(lines) for f in files)

    # Fluent Bit's Mkdir races between its outputs (one gets EEXIST from mkdir and drops
    # its chunk): its directories are made beforehand.
    (fb_out / "app.ray" / "_").mkdir(parents=True)
    env = dict(os.environ, IN=str(log), OUT=str(fb_out))
    fb = subprocess.Popen(
        [FLUENT_BIT, "-c", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        wait_for(lambda: complete(fb_out), what="fluent-bit's files")
    finally:
        fb.terminate()
        fb.wait(timeout=10)
    env = dict(os.environ, IN=str(log), OUT=str(our_out))
    res = subprocess.run(
        [sys.executable, "-m", "shipper", "-c", str(ours)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert complete(our_out)
    names = sorted(str(p.relative_to(fb_out)) for p in fb_out.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(our_out)) for p in our_out.rglob("*") if p.is_file())
    assert sorted(GOLDEN_FILES) == names  # app.ray/_/x: the tag made safe for a path

    def masked(path: Path) -> str:
        return re.sub(r"\d{10}\.\d{6,9}", "T", path.read_text())

    for name in names:
        assert masked(our_out / name) == masked(fb_out / name), name
