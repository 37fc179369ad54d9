"""The agent SIGKILLed at random moments while a writer appends steadily, with a DB: every line
is delivered, and each kill re-sends at most what was in flight (one Mem_Buf_Limit window)."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.harness import (
    LONG,
    STDOUT,
    AgentProc,
    Row,
    SteadyWriter,
    classic,
    db_rows,
    tail_input,
    write_conf,
)

MEM_BUF = 1024 * 1024
READ_LIMIT = 256 * 1024


def check_db_on_line_boundaries(db: Path, files: list[Path]) -> None:
    """Every stored offset ends a complete line of the file it names (never mid-line)."""
    by_id = {}
    for p in files:
        for path in [p, *sorted(p.parent.glob(p.name + ".*"))]:
            try:
                st = path.stat()
            except OSError:
                continue
            by_id[(st.st_dev, st.st_ino)] = path
    for dev, ino, fp, off, name in db_rows(db):
        path = by_id.get((dev, ino))
        if path is None:
            continue
        data = path.read_bytes()
        if not data.startswith(fp):
            continue  # a stale row for a reused inode: the fingerprint sorts it out
        assert off <= len(data), (name, off, len(data))
        assert off == 0 or data[off - 1 : off] == b"\n", f"{name}: offset {off} inside a line"


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigkill_ten_times_during_steady_writer(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    kills = 30 if LONG else 10
    seed = int(os.environ.get("SHIPPER_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    files = [tmp_path / f"k{i}.log" for i in range(3)]
    for f in files:
        f.touch()
    db = tmp_path / "offsets.db"
    cfg = write_conf(
        tmp_path / "s.conf",
        classic([tail_input(str(tmp_path / "*.log"), DB=str(db), Mem_Buf_Limit="1M")], [STDOUT]),
    )
    writer = SteadyWriter(files, rate=2000, batch=10)
    runs: list[list[str]] = []
    row = results.add(Row(f"SIGKILL x{kills} during a steady writer (DB)", note=f"seed {seed}"))
    peak = fds = 0
    writer.start()
    try:
        for _ in range(kills):
            agent = AgentProc(["-c", cfg])
            with agent:
                # a random moment: during startup, mid-read, mid-commit, anywhere
                with contextlib.suppress(subprocess.TimeoutExpired):
                    agent.proc.wait(timeout=rng.uniform(0.05, 1.5))
                assert agent.alive(), agent.err_text()[-2000:]
                agent.kill()
            runs.append(agent.snapshot())
            peak = max(peak, agent.peak_rss_kb)
            check_db_on_line_boundaries(db, files)
        written = writer.stop()
        final = AgentProc(["-c", cfg])
        with final:
            final.wait_logs(written, timeout=120, also=[x for r in runs for x in r])
            fds = final.fds()
            assert final.stop() == 0
        runs.append(final.snapshot())
        peak = max(peak, final.peak_rss_kb)
    finally:
        writer.halt.set()

    seen: Counter[str] = Counter()
    dup_per_kill = []
    for logs in runs:
        dup = [x for x in logs if x in seen]
        dup_per_kill.append(sum(len(x) + 1 for x in dup))
        seen.update(logs)
    missing = [w for w in written if w not in seen]
    phantom = [k for k in seen if k not in set(written)]
    row.written, row.delivered = len(written), len(written) - len(missing)
    row.lost, row.duplicated = len(missing), sum(v - 1 for v in seen.values() if v > 1)
    row.peak_rss_kb, row.fds_end = peak, fds
    row.note += (
        f"; re-sent per kill max {max(dup_per_kill) // 1024} KiB "
        f"(bound: Mem_Buf_Limit 1 MiB + one read)"
    )
    assert not missing, f"{len(missing)} lost, e.g. {missing[:3]} (seed {seed})"
    assert not phantom, phantom[:3]
    # the last run was graceful: it re-sent only what the last kill left unacknowledged
    assert max(dup_per_kill) <= MEM_BUF + READ_LIMIT * len(files), dup_per_kill
