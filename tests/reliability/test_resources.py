"""Resources: no fd or memory growth over a rotation storm (descriptors of rotated and deleted
files are released after Rotate_Wait), and RSS bounded by Mem_Buf_Limit, not by the backlog,
against a stalled output."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.reliability.harness import (
    LONG,
    STDOUT,
    AgentProc,
    Row,
    Tally,
    classic,
    fd_targets,
    numbered,
    tail_input,
    wait_until,
    write_conf,
)

FILES = 8
BACKUPS = 3


class RotatingWriter(threading.Thread):
    """Ray's Python handlers: append, and at `rotate_at` bytes shift-rename x -> x.1 -> ...
    -> x.BACKUPS, the oldest deleted. Writes as fast as `rate` allows."""

    def __init__(self, logs: Path, seconds: float, rate: int, rotate_at: int) -> None:
        super().__init__(daemon=True)
        self.logs, self.seconds, self.rate, self.rotate_at = logs, seconds, rate, rotate_at
        self.written: list[str] = []
        self.rotations = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        paths = [self.logs / f"w{i}.log" for i in range(FILES)]
        handles = [open(p, "ab") for p in paths]  # noqa: SIM115
        sizes = [0] * FILES
        start = time.monotonic()
        seq = 0
        batch = 50
        while time.monotonic() - start < self.seconds:
            i = (seq // batch) % FILES
            lines = numbered(f"w{i}", seq, seq + batch, pad=80)
            data = ("\n".join(lines) + "\n").encode()
            handles[i].write(data)
            handles[i].flush()
            self.written += lines
            sizes[i] += len(data)
            seq += batch
            if sizes[i] >= self.rotate_at:
                handles[i].close()
                base = paths[i]
                # odd files keep one backup: deleted before Rotate_Wait lets go of them
                backups = 1 if i % 2 else BACKUPS
                old = Path(f"{base}.{backups}")
                if old.exists():
                    old.unlink()
                for k in range(backups - 1, 0, -1):
                    if Path(f"{base}.{k}").exists():
                        os.rename(f"{base}.{k}", f"{base}.{k + 1}")
                os.rename(base, f"{base}.1")
                handles[i] = open(base, "ab")  # noqa: SIM115
                sizes[i] = 0
                self.rotations += 1
            ahead = seq / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        for h in handles:
            h.close()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_rotation_storm_no_fd_or_memory_growth(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    seconds = 120.0 if LONG else 20.0
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_conf(
        tmp_path / "s.conf",
        classic([tail_input(f"{logs}/*", Rotate_Wait="1", Refresh_Interval="1")], [STDOUT]),
    )
    row = results.add(
        Row(
            f"rotation storm {seconds:.0f}s ({FILES} files, rotate every "
            f"64 KiB, 1 or {BACKUPS} backups)"
        )
    )
    writer = RotatingWriter(logs, seconds, rate=8000, rotate_at=64 * 1024)
    samples: list[tuple[float, int, int, int]] = []  # (t, rss kB, fds, deleted fds)
    with AgentProc(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        base_fds = agent.fds()
        writer.start()
        t0 = time.monotonic()
        while writer.is_alive():
            fds = fd_targets(agent.pid)
            samples.append(
                (
                    time.monotonic() - t0,
                    agent.rss_kb(),
                    len(fds),
                    sum(1 for t in fds if t.endswith("(deleted)")),
                )
            )
            writer.join(0.5)
        assert writer.error is None, writer.error
        agent.wait_logs(writer.written, timeout=120)
        # after the storm: every rotated/deleted file let go of within Rotate_Wait + a scan
        wait_until(
            lambda: (
                not any(t.endswith("(deleted)") for t in fd_targets(agent.pid))
                and agent.fds() <= base_fds + FILES * (BACKUPS + 1)
            ),
            60,
            lambda: f"descriptors released; open: {fd_targets(agent.pid)}",
        )
        row.fds_end = agent.fds()
        assert agent.stop() == 0
    tally = Tally(written=writer.written)
    tally.add_run(agent.snapshot())
    third = len(samples) // 3
    mid = max(s[1] for s in samples[third : 2 * third])
    end = max(s[1] for s in samples[2 * third :])
    peak_fds = max(s[2] for s in samples)
    peak_deleted = max(s[3] for s in samples)
    row.written, row.delivered = len(tally.written), len(tally.written) - len(tally.missing)
    row.lost, row.duplicated, row.peak_rss_kb = (
        len(tally.missing),
        tally.duplicated,
        agent.peak_rss_kb,
    )
    row.note = (
        f"{writer.rotations} rotations; RSS max middle third {mid // 1024} MB, last "
        f"third {end // 1024} MB; fds peak {peak_fds} ({peak_deleted} of deleted "
        f"files), baseline {base_fds}"
    )
    assert not tally.missing and tally.duplicated == 0
    assert writer.rotations >= 50
    # no growth: the last third of the storm needs no more memory than the middle one
    # (allowing allocator noise), and descriptors stay bounded by files x (backups + 1)
    assert end <= mid * 1.15 + 8 * 1024, (mid, end)
    assert peak_fds <= base_fds + FILES * (BACKUPS + 2) + 10, peak_fds


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_stalled_output_ten_times_mem_buf_limit(tmp_path: Path, results) -> None:  # type: ignore[no-untyped-def]
    """stdout is a pipe nobody reads while 10x Mem_Buf_Limit is written: RSS stays bounded
    by the limit, not by the backlog; once the pipe is read again every line arrives once."""
    limit_mb = 8
    backlog_mb = limit_mb * (40 if LONG else 10)
    log = tmp_path / "backlog.log"
    log.touch()
    cfg = write_conf(
        tmp_path / "s.conf",
        classic(
            [tail_input(str(log), Mem_Buf_Limit=f"{limit_mb}M")],
            [STDOUT],
            service={"Log_Level": "debug"},
        ),
    )
    row = results.add(
        Row(
            f"stalled output, {backlog_mb} MB backlog = "
            f"{backlog_mb // limit_mb}x Mem_Buf_Limit {limit_mb} MB"
        )
    )
    written: list[str] = []
    line_len = 120
    with AgentProc(["-c", cfg]) as agent:
        agent.wait_stderr("initial scan done")
        base = agent.rss_kb()
        agent.pause()
        n = backlog_mb * 1024 * 1024 // line_len
        block = 20_000
        with open(log, "ab") as f:
            for start in range(0, n, block):
                lines = numbered("b", start, min(n, start + block), pad=line_len - 10)
                f.write(("\n".join(lines) + "\n").encode())
                written += lines
        # the agent fills its budget and stops reading; then a few seconds stalled
        agent.wait_stderr("paused at Mem_Buf_Limit", timeout=60)
        stuck = agent.rss_kb()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # a few seconds stalled: RSS must not climb
            stuck = max(stuck, agent.rss_kb())
            time.sleep(0.2)
        agent.resume()
        agent.wait_logs(written, timeout=240)
        row.fds_end = agent.fds()
        assert agent.stop() == 0
    tally = Tally(written=written)
    tally.add_run(agent.snapshot())
    peak = agent.peak_rss_kb
    row.written, row.delivered = len(written), len(written) - len(tally.missing)
    row.lost, row.duplicated, row.peak_rss_kb = len(tally.missing), tally.duplicated, peak
    row.note = f"RSS idle {base // 1024} MB, stalled {stuck // 1024} MB, peak {peak // 1024} MB"
    assert not tally.missing and tally.duplicated == 0
    assert peak - base < 6 * limit_mb * 1024, f"RSS +{(peak - base) // 1024} MB"
    assert peak - base < backlog_mb * 1024 // 2, "memory follows the backlog"
