"""Run an agent inside a CPU quota and a memory limit, as a Kubernetes container runs.

`--limits cpu=100m,memory=128Mi` puts the agent (and the `--vs` agent) in a cgroup of its own
for each run: cgroup v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`, `memory.limit_in_bytes`)
or cgroup v2 (`cpu.max`, `memory.max`), whichever the machine has; the kubelet sets the very
same files for a container's `resources.limits`. The agent joins its group between fork and
exec (before it allocates anything), and the group is removed once the agent has exited.

What the kernel counts for the group is read back: memory usage and its peak (page cache
included, which is what a limit is enforced on), how often the limit was hit (`failcnt`;
`memory.events` `max` on v2), OOM kills, the cache/anon split and the CPU throttling
(periods throttled, time throttled).

A new group is made under the harness's own group (it stays inside whatever holds the
harness), or at the hierarchy's root where that is the only writable place. Without root, a
controller or a writable hierarchy, `create` raises `Unavailable` with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

PERIOD_US = 100_000  # the kubelet's CFS period
_UNITS = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
}


class Unavailable(Exception):
    """No cgroup can be made here (not root, no controller, no writable hierarchy)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Kubernetes-style limits: CPU in millicores, memory in bytes (None: no limit)."""

    cpu_millis: int | None = None
    memory_bytes: int | None = None
    text: str = "none"

    @property
    def none(self) -> bool:
        return self.cpu_millis is None and self.memory_bytes is None

    @classmethod
    def parse(cls, text: str) -> Limits:
        """`cpu=100m,memory=128Mi` (Kubernetes quantities: `cpu=0.5`, `memory=64M`); `none`."""
        text = text.strip()
        if text in ("", "none"):
            return cls()
        cpu = mem = None
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not value:
                raise ValueError(f"limits: {part!r} is not key=value (cpu=100m,memory=128Mi)")
            if key == "cpu":
                m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", value)
                if not m:
                    raise ValueError(f"limits: cpu {value!r} is not a quantity (100m, 0.5, 2)")
                cpu = round(float(m[1]) * (1 if m[2] else 1000))
                if cpu < 1:
                    raise ValueError(f"limits: cpu {value!r} is below 1m")
            elif key == "memory":
                m = re.fullmatch(r"(\d+)([kMG]i?|)", value)
                if not m:
                    raise ValueError(f"limits: memory {value!r} is not a quantity (128Mi, 1G)")
                mem = int(m[1]) * _UNITS[m[2]]
            else:
                raise ValueError(f"limits: unknown key {key!r} (cpu, memory)")
        return cls(cpu, mem, text)


def _mounts() -> dict[str, Path]:
    """Controller (or 'cgroup2') -> mount point, from /proc/self/mountinfo."""
    out: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            pre, _, post = line.partition(" - ")
            fstype, _, opts = post.split()[:3]
            mnt = Path(pre.split()[4])
            if fstype == "cgroup2":
                out.setdefault("cgroup2", mnt)
            elif fstype == "cgroup":
                for opt in opts.split(","):
                    if opt in ("cpu", "memory"):
                        out.setdefault(opt, mnt)
    return out


def _own(controller: str) -> str:
    """The harness's own group in a v1 hierarchy (`controller`) or in v2 ('')."""
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, names, path = line.rstrip("\n").split(":", 2)
            if (controller and controller in names.split(",")) or (not controller and not names):
                return path
    return "/"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _int(path: Path) -> int | None:
    text = _read(path).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _keyed(path: Path) -> dict[str, int]:
    out = {}
    for line in _read(path).splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def _mkdir_under(candidates: list[Path], name: str) -> Path:
    last: OSError | None = None
    for parent in candidates:
        d = parent / name
        try:
            d.mkdir()
            return d
        except FileExistsError:
            return d
        except OSError as exc:
            last = exc
    raise Unavailable(f"cannot create a cgroup under {candidates[-1]}: {last}")


class Group:
    """One agent's cgroup: `procs` files its pid is written to, stats, removal."""

    def __init__(self, version: int, limits: Limits) -> None:
        self.version = version
        self.limits = limits
        self.cpu_dir: Path | None = None
        self.mem_dir: Path | None = None
        self.peak_usage = 0
        self.peak_cache = 0

    @property
    def dirs(self) -> list[Path]:
        return list(dict.fromkeys(d for d in (self.cpu_dir, self.mem_dir) if d is not None))

    @property
    def procs(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    @property
    def path(self) -> str:
        return ", ".join(str(d) for d in self.dirs)

    def join(self) -> None:
        """Put the calling process in the group (runs between fork and exec: no allocation
        of note, plain system calls only)."""
        pid = str(os.getpid()).encode()
        for p in self.procs:
            fd = os.open(p, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def sample(self) -> None:
        """Track usage and page cache peaks between reads (v1 keeps only the usage peak)."""
        s = self.stats()
        self.peak_usage = max(self.peak_usage, s.get("usage_bytes") or 0)
        self.peak_cache = max(self.peak_cache, s.get("cache_bytes") or 0)

    def stats(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        mem, cpu = self.mem_dir, self.cpu_dir
        if self.version == 1:
            if mem is not None:
                out["usage_bytes"] = _int(mem / "memory.usage_in_bytes")
                out["peak_bytes"] = _int(mem / "memory.max_usage_in_bytes")
                out["failcnt"] = _int(mem / "memory.failcnt")
                st = _keyed(mem / "memory.stat")
                out["cache_bytes"] = st.get("total_cache", st.get("cache"))
                out["anon_bytes"] = st.get("total_rss", st.get("rss"))
                out["oom_kills"] = _keyed(mem / "memory.oom_control").get("oom_kill", 0)
            if cpu is not None:
                cs = _keyed(cpu / "cpu.stat")
                out["nr_periods"] = cs.get("nr_periods")
                out["nr_throttled"] = cs.get("nr_throttled")
                tt = cs.get("throttled_time")  # ns
                out["throttled_us"] = None if tt is None else tt // 1000
        elif mem is not None or cpu is not None:
            g = self.dirs[0]
            if mem is not None:
                out["usage_bytes"] = _int(g / "memory.current")
                out["peak_bytes"] = _int(g / "memory.peak")  # Linux 5.19+
                ev = _keyed(g / "memory.events")
                out["failcnt"] = ev.get("max")
                out["oom_kills"] = ev.get("oom_kill", 0)
                st = _keyed(g / "memory.stat")
                out["cache_bytes"] = st.get("file")
                out["anon_bytes"] = st.get("anon")
            if cpu is not None:
                cs = _keyed(g / "cpu.stat")
                out["nr_periods"] = cs.get("nr_periods")
                out["nr_throttled"] = cs.get("nr_throttled")
                out["throttled_us"] = cs.get("throttled_usec")
        if out.get("peak_bytes") is None and "usage_bytes" in out:
            out["peak_bytes"] = max(self.peak_usage, out.get("usage_bytes") or 0)
        return out

    def remove(self, timeout: float = 10.0) -> bool:
        """rmdir the group once it is empty (its exited processes may linger briefly);
        a straggler is moved back to the parent first. True when nothing is left."""
        deadline = time.monotonic() + timeout
        for d in self.dirs:
            while d.exists():
                try:
                    d.rmdir()
                except OSError as exc:
                    if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        raise
                    if time.monotonic() > deadline:
                        return False
                    for pid in _read(d / "cgroup.procs").split():
                        with contextlib.suppress(OSError):
                            (d.parent / "cgroup.procs").write_text(pid)
                    time.sleep(0.05)
        return True


def create(limits: Limits, name: str) -> Group:
    """A new group `name` holding `limits`; raises Unavailable with the reason."""
    if os.geteuid() != 0:
        raise Unavailable("cgroups need root (run the harness as root, or drop --limits)")
    try:
        mounts = _mounts()
    except OSError as exc:
        raise Unavailable(f"cannot read /proc/self/mountinfo: {exc}") from exc
    wanted = [c for c, v in (("cpu", limits.cpu_millis), ("memory", limits.memory_bytes)) if v]
    if all(c in mounts for c in wanted):
        return _create_v1(limits, name, mounts)
    root = mounts.get("cgroup2")
    if root is not None and set(wanted) <= set(_read(root / "cgroup.controllers").split()):
        return _create_v2(limits, name, root)
    raise Unavailable(
        f"no cgroup hierarchy with the {' and '.join(wanted)} controller here "
        "(neither cgroup v1 hierarchies nor a cgroup2 mount offering them)"
    )


def _create_v1(limits: Limits, name: str, mounts: dict[str, Path]) -> Group:
    group = Group(1, limits)
    try:
        if limits.cpu_millis is not None:
            mnt = mounts["cpu"]
            d = group.cpu_dir = _mkdir_under([mnt / _own("cpu").lstrip("/"), mnt], name)
            (d / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (d / "cpu.cfs_quota_us").write_text(str(limits.cpu_millis * PERIOD_US // 1000))
        if limits.memory_bytes is not None:
            mnt = mounts["memory"]
            d = group.mem_dir = _mkdir_under([mnt / _own("memory").lstrip("/"), mnt], name)
            (d / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
    except OSError as exc:
        group.remove(timeout=1.0)
        raise Unavailable(f"cannot set up the cgroup: {exc}") from exc
    return group


def _create_v2(limits: Limits, name: str, root: Path) -> Group:
    # v2 allows controllers only in groups whose parent enables them for its children, and
    # a non-root parent with processes cannot: the group goes under the root.
    wanted = " ".join(
        f"+{c}" for c, v in (("cpu", limits.cpu_millis), ("memory", limits.memory_bytes)) if v
    )
    try:
        (root / "cgroup.subtree_control").write_text(wanted)
    except OSError as exc:
        raise Unavailable(f"cannot enable {wanted} in {root}: {exc}") from exc
    d = _mkdir_under([root], name)
    group = Group(2, limits)
    group.cpu_dir = d if limits.cpu_millis is not None else None
    group.mem_dir = d if limits.memory_bytes is not None else None
    try:
        if limits.cpu_millis is not None:
            quota = limits.cpu_millis * PERIOD_US // 1000
            (d / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        if limits.memory_bytes is not None:
            (d / "memory.max").write_text(str(limits.memory_bytes))
            if (d / "memory.swap.max").exists():
                (d / "memory.swap.max").write_text("0")
    except OSError as exc:
        group.remove(timeout=1.0)
        raise Unavailable(f"cannot set up the cgroup: {exc}") from exc
    return group
