"""Where the agent's time goes: summaries of a --profile run.

py-spy (`--profile py-spy`): attached to the running agent once its work starts, so start-up
is left out; every thread sampled, `--nonblocking`. Its raw output is one collapsed stack per
line, `frame;frame;...;leaf count`, each frame `function (file:line)`. Self time is the
samples whose leaf is that function (lines of one function merged); total time the samples
that have it anywhere on the stack (counted once per stack); the hottest lines are leaf frames
with their line number. py-spy leaves idle samples out: percentages are of the busy time.

cProfile (`--profile cprofile`): the main thread only, deterministic; sorted by tottime.
"""

from __future__ import annotations

import io
import pstats
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def _short(path: str) -> str:
    """`shipper/tail/reader.py`, `asyncio/events.py`: the path from the package on."""
    for marker in ("/site-packages/", "/lib/python3.", "/work/"):
        i = path.find(marker)
        if i >= 0:
            rest = path[i + len(marker) :]
            return rest.split("/", 1)[1] if marker != "/site-packages/" and "/" in rest else rest
    return path


def _func(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{m.group('func')} ({_short(m.group('file'))})"


def _line(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    lineno = frame.strip().rsplit(":", 1)[-1].rstrip(")")
    return f"{m.group('func')} ({_short(m.group('file'))}:{lineno})"


def pyspy_summary(path: Path, top: int = 25, top_lines: int = 12) -> str:
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    lines_c: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_func(f) for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        samples += n
        self_c[frames[-1]] += n
        lines_c[_line(stack.split(";")[-1])] += n
        for f in set(frames):
            total_c[f] += n
    if not samples:
        return f"(no samples in {path.name})"
    rows = ["| self % | total % | function (file) |", "|---|---|---|"]
    for func, n in self_c.most_common(top):
        rows.append(f"| {100 * n / samples:.1f} | {100 * total_c[func] / samples:.1f} | `{func}` |")
    rows += ["", "| self % | hottest lines |", "|---|---|"]
    for where, n in lines_c.most_common(top_lines):
        rows.append(f"| {100 * n / samples:.1f} | `{where}` |")
    return f"{samples} samples (busy time only)\n\n" + "\n".join(rows)


def cprofile_summary(path: Path, top: int = 25) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return "```\n" + buf.getvalue().strip() + "\n```"


def summarize(path: Path, top: int = 25) -> str:
    if path.suffix == ".pstats":
        return cprofile_summary(path, top)
    return pyspy_summary(path, top)
