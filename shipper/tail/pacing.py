"""How often the tail input reads and how much per pass: the numbers, and why these.

Every figure here was measured with benchmarks/ (see benchmarks/RESULTS.md) on a 2-core box.
"""

from __future__ import annotations

MIN_TICK = 0.04  # seconds between read passes while files grow (0.02: live 50k lines/s over
# 20 files, p99 25 / 30 ms at 7.0% / 11.2% of a core plain / Ray; 0.04: 46 / 52 ms at 4.4% /
# 8.5%; Fluent Bit's p99 is 1 s at 24%), or longer with many files:
PASS_COST = 5e-4  # seconds per open file and pass: 2,000 files read once a second (4e-4:
# 0.8 s; 2,000 files x 10 lines/s: 5.9% -> 5.1% of a core plain, 9.1% -> 7.7% Ray, p99
# latency 0.9 -> 1.1 s; Fluent Bit: 1.0 s at 100%)
MAX_ACTIVE_TICK = 1.0
IDLE_TICK = 1.0  # the wait doubles up to this while nothing grows (then a write wakes it:
ARM_TICK = 0.15  # from a wait this long on, see wake.py; without it the live p99 was 450 ms)
ARMED_IDLE_TICK = 4.0  # ... and while that wake-up is armed and no record waits for its
# Multiline_Flush, polling is only a safety net (a write inotify does not see, as on NFS):
# idle 20 files, 0.72 -> 0.50 (2 s) -> 0.41 ms of CPU a second (perf stat; Fluent Bit 0.39)
WINDOW = 8 * 1024 * 1024  # records in flight before reading waits for acknowledgements
READ_LIMIT = 256 * 1024  # bytes read from one file per pass ...
PASS_READ = 512 * 1024  # ... and from all files together (Ray records, ~3.3x their input:
PASS_READ_LEAN = 1024 * 1024  # 256 KiB 1.89, 512 KiB 1.41 CPU s per 1M lines to http, peak
# RSS 58 -> 60 MB; 1 MiB 1.39 but 70 MB) ... unless the last pass made JSON lines under 3x its
# input (plain records): 4x fewer passes than 256 KiB halved their CPU


def next_tick(busy: str, tick: float, files: int) -> float:
    """The wait before the next pass, after one that found `busy` ('data' or 'idle').

    What a pass costs beyond its lines grows with the files, not with the lines: with
    thousands of files, pass less often (lines wait longer, CPU stays low)."""
    active = min(MAX_ACTIVE_TICK, max(MIN_TICK, PASS_COST * files))
    return active if busy == "data" else max(active, min(IDLE_TICK, tick * 2))


def arm_wake(busy: str, tick: float) -> bool:
    """Should a write wake the next pass early (wake.py)? Only while idle: with thousands of
    growing files the active tick is long too, and a wake-up at every write made a pass per
    write (93% of a core, not 13%)."""
    return busy == "idle" and tick >= ARM_TICK


def per_file_read(room: int, lean: bool, files: int, chunk_size: int) -> int:
    """Bytes to read from each file this pass. Records take ~4x their raw bytes in memory:
    read no more than fits the budget `room`, and keep each pass small: big passes cost more
    in page faults than they save."""
    per_pass = min(room // 4, PASS_READ_LEAN if lean else PASS_READ)
    return max(4096, min(max(READ_LIMIT, chunk_size), per_pass // files))
