"""shipper with counters: `python -m benchmarks.probe --probe-out FILE -c CONFIG` (what
`--profile probe` runs).

A sampling profiler inside a CPU quota is misleading: a thread the kernel has throttled is
runnable, not idle, so py-spy counts it as busy where it stood. This wrapper counts instead
what the agent does, and writes it as JSON to FILE when it exits:

- read passes by what they found (backlog, data, idle, wait), bytes per pass, the room the
  budget gave each pass;
- thread hand-offs (asyncio.to_thread, call_soon_threadsafe), timed waits of the loop
  (asyncio.wait_for) and how many ran out, the write wake-up armed and disarmed;
- payloads handed to the stdout output and their sizes;
- garbage collections per generation;
- every thread's CPU seconds and context switches (voluntary, involuntary), and the
  process's user and system CPU.

It patches shipper's classes from the outside (names as of the tail core with Pacer and
InputBudget); a name that is gone is reported under `missing`, not an error.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import gc
import json
import os
import sys
import time
from asyncio import base_events
from collections.abc import Callable
from typing import Any

COUNTS: collections.Counter[str] = collections.Counter()
SIZES: dict[str, list[float]] = collections.defaultdict(list)
MISSING: list[str] = []
T0 = time.monotonic()


def _gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        COUNTS[f"gc_gen{info['generation']}"] += 1


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    orig = getattr(owner, name, None)
    if orig is None:
        MISSING.append(f"{getattr(owner, '__name__', owner)}.{name}")
        return
    setattr(owner, name, make(orig))


def _install() -> None:
    gc.callbacks.append(_gc)

    def to_thread(orig: Any) -> Any:
        async def wrapped(fn: Any, /, *a: Any, **k: Any) -> Any:
            COUNTS["to_thread"] += 1
            return await orig(fn, *a, **k)

        return wrapped

    _patch(asyncio, "to_thread", to_thread)

    def threadsafe(orig: Any) -> Any:
        def wrapped(self: Any, *a: Any, **k: Any) -> Any:
            COUNTS["call_soon_threadsafe"] += 1
            return orig(self, *a, **k)

        return wrapped

    _patch(base_events.BaseEventLoop, "call_soon_threadsafe", threadsafe)

    def wait_for(orig: Any) -> Any:
        async def wrapped(aw: Any, timeout: float | None) -> Any:  # noqa: ASYNC109
            COUNTS["wait_for"] += 1
            t = time.monotonic()
            try:
                return await orig(aw, timeout)
            except TimeoutError:
                COUNTS["wait_for_timed_out"] += 1
                raise
            finally:
                SIZES["wait_s"].append(time.monotonic() - t)

        return wrapped

    _patch(asyncio, "wait_for", wait_for)

    from shipper.tail import input as tail_input
    from shipper.tail import wake

    def read_pass(orig: Any) -> Any:
        async def wrapped(self: Any) -> Any:
            b0 = self.stats.bytes
            found = await orig(self)
            COUNTS[f"pass_{getattr(found, 'value', found)}"] += 1
            SIZES["pass_bytes"].append(self.stats.bytes - b0)
            return found

        return wrapped

    _patch(tail_input.TailInput, "_read_pass", read_pass)
    for name in ("arm", "disarm"):

        def counted(orig: Any, name: str = name) -> Any:
            def wrapped(self: Any, *a: Any, **k: Any) -> Any:
                if name == "arm" or self.armed:
                    COUNTS[f"wake_{name}"] += 1
                return orig(self, *a, **k)

            return wrapped

        _patch(wake.WriteWake, name, counted)
    try:
        from shipper.outputs import stdout
    except ImportError:
        MISSING.append("shipper.outputs.stdout")
        return

    def send(orig: Any) -> Any:
        # every payload goes through send_pieces (send hands its one piece to it)
        async def wrapped(self: Any, pieces: list[bytes]) -> Any:
            COUNTS["stdout_send"] += 1
            SIZES["send_bytes"].append(sum(map(len, pieces)))
            return await orig(self, pieces)

        return wrapped

    _patch(stdout.StdoutOutput, "send_pieces", send)


def _summary(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    n = len(v)
    return {
        "n": n,
        "sum": round(sum(v), 4),
        "p50": round(v[n // 2], 4),
        "p90": round(v[9 * n // 10], 4),
        "max": round(v[-1], 4),
    }


def _threads() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    tck = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                raw = fh.read()
            with open(f"/proc/self/task/{tid}/status") as fh:
                status = fh.read()
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        f = raw[raw.rfind(")") + 2 :].split()
        switches = {
            k.split("_")[0]: int(v)
            for k, v in (line.split(":") for line in status.splitlines() if "ctxt_switches" in line)
        }
        out[f"{tid} {comm}"] = {"cpu_s": (int(f[11]) + int(f[12])) / tck, **switches}
    return out


def dump(path: str) -> None:
    t = os.times()
    data = {
        "elapsed_s": round(time.monotonic() - T0, 3),
        "user_s": t.user,
        "system_s": t.system,
        "counts": dict(COUNTS),
        "sizes": {k: _summary(v) for k, v in SIZES.items() if v},
        "threads": _threads(),
        "missing": MISSING,
    }
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1)


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--probe-out":
        raise SystemExit("usage: python -m benchmarks.probe --probe-out FILE [shipper args]")
    _install()
    atexit.register(dump, args[1])
    from shipper.cli import main as shipper_main

    return shipper_main(args[2:])


def summarize(path: Any) -> str:
    """A probe's JSON as a few markdown lines (results.md)."""
    d = json.loads(path.read_text())
    c, s = d["counts"], d["sizes"]
    passes = {k[5:]: v for k, v in c.items() if k.startswith("pass_")}
    cpu = d["user_s"] + d["system_s"]
    lines = [
        f"- CPU {cpu:.2f} s (user {d['user_s']:.2f}, system {d['system_s']:.2f}) over "
        f"{d['elapsed_s']:.1f} s",
        f"- read passes: {sum(passes.values())} "
        f"({', '.join(f'{k} {v}' for k, v in passes.items())})",
    ]
    if "pass_bytes" in s:
        pb = s["pass_bytes"]
        lines.append(f"- bytes per pass: median {pb['p50']:,.0f}, p90 {pb['p90']:,.0f}")
    lines.append(
        f"- thread hand-offs: to_thread {c.get('to_thread', 0)}, call_soon_threadsafe "
        f"{c.get('call_soon_threadsafe', 0)}; timed waits {c.get('wait_for', 0)} "
        f"({c.get('wait_for_timed_out', 0)} ran out"
        + (f", {s['wait_s']['sum']:.1f} s in all" if "wait_s" in s else "")
        + f"); write wake-up armed {c.get('wake_arm', 0)}, disarmed {c.get('wake_disarm', 0)}"
    )
    if "send_bytes" in s:
        sb = s["send_bytes"]
        lines.append(f"- stdout payloads: {sb['n']}, median {sb['p50'] / 1e6:.2f} MB")
    gcs = ", ".join(f"gen{k[-1]} {v}" for k, v in sorted(c.items()) if k.startswith("gc_gen"))
    lines.append(f"- garbage collections: {gcs or 'none'}")
    busy = sorted(d["threads"].items(), key=lambda kv: -kv[1]["cpu_s"])
    lines.append(
        "- threads (CPU s, switches voluntary/involuntary): "
        + "; ".join(
            f"{name.split(' ', 1)[1]} {t['cpu_s']:.2f} ({t.get('voluntary', 0)}/"
            f"{t.get('nonvoluntary', 0)})"
            for name, t in busy[:4]
        )
    )
    if d["missing"]:
        lines.append(f"- not counted (renamed in shipper?): {', '.join(d['missing'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
