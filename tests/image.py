"""The container image without a container engine: docker/Dockerfile replayed into a root
filesystem, and a process started in it as a container runtime would.

    from tests.image import assemble, image_skip_reason, start

    image = assemble()           # cached; the first time ~1-2 min (mmdebstrap, pip)
    proc = start(image, binds=[Bind(host_dir, "/tmp/ray")], stdout=subprocess.PIPE)

`FROM python:3.11-slim-<release>` becomes a Debian root filesystem of that release made by
mmdebstrap (minbase; docs, man pages and locales left out, as in Debian's -slim images) with
Debian's Python 3.11 and pip, the stand-in for the official image's Python (built from source
in /usr/local, pip and C headers included): python3-pip gives `pip`, python-is-python3
`python`, python3-dev the headers (builder stage only), and the EXTERNALLY-MANAGED marker is
removed, as the official image has none. Every other instruction comes from the Dockerfile
(tests/dockerfile.py parses it): RUN in a chroot with its --mount flags honoured, COPY from the
.dockerignore'd context, ENV/ARG/WORKDIR/LABEL as Docker applies them; USER, ENTRYPOINT, CMD,
STOPSIGNAL, EXPOSE, HEALTHCHECK are recorded in the image's config, which start() applies.
An instruction this replay does not know fails the assembly, so the test cannot silently
drift from the Dockerfile.

Cache (SHIPPER_IMAGE_CACHE, default /var/tmp/shipper-image): the base root filesystem (key:
release and packages), each stage's leading instructions that depend on neither the context
nor another stage (as Docker's layer cache would keep them: the builder's compiler install,
the runtime's useradd), pip's download cache (the builder's cache mount) and the assembled
image (key: the Dockerfile, the context's files and this recipe). A second run with nothing
changed assembles nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.dockerfile import (
    DOCKERFILE,
    ROOT,
    Instruction,
    Stage,
    context_files,
    stages,
    substitute,
)

# Bump when the recipe below changes in a way the keys do not see.
RECIPE = "1"
CACHE = Path(os.environ.get("SHIPPER_IMAGE_CACHE", "/var/tmp/shipper-image"))
PACKAGES = ("python3", "python3-pip", "python-is-python3", "passwd")
BUILDER_PACKAGES = ("python3-dev",)
MMDEBSTRAP_OPTS = (
    "--variant=minbase",
    "--aptopt=APT::Install-Recommends false",
    "--aptopt=Acquire::Languages none",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The instructions that only shape the image's config, applied when it is started.
CONFIG_ONLY = {"USER", "ENTRYPOINT", "CMD", "EXPOSE", "STOPSIGNAL", "HEALTHCHECK"}


class AssemblyError(RuntimeError):
    pass


@dataclass
class Bind:
    """A bind mount into the container: host path -> container path."""

    source: Path
    target: str
    read_only: bool = True


@dataclass
class Image:
    root: Path
    config: dict[str, Any]
    built_seconds: float | None = None  # None: it came from the cache


@dataclass
class _State:
    """What a stage's instructions set, besides files."""

    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    config: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- availability


def image_skip_reason() -> str | None:
    """Why the image cannot be assembled and run here, or None."""
    if os.geteuid() != 0:
        return "assembling and running the image needs root (chroot, mount namespaces)"
    for tool in ("mmdebstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            hint = " (bash tests/run.sh installs Debian's package)" if tool == "mmdebstrap" else ""
            return f"{tool} not found{hint}"
    return None


def _base_tag(base: str) -> re.Match[str]:
    m = re.fullmatch(r"python:(\d+\.\d+)-slim-([a-z]+)(@sha256:[0-9a-f]+)?", base)
    if not m:
        raise AssemblyError(f"FROM {base}: expected python:X.Y-slim-<debian release>")
    return m


def debian_release(base: str) -> str:
    """The Debian release named by the base image's tag (python:3.11-slim-bookworm)."""
    return _base_tag(base).group(2)


def python_version(base: str) -> str:
    """The Python version named by the base image's tag (3.11)."""
    return _base_tag(base).group(1)


# --------------------------------------------------------------------------- plumbing


def _sha(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One assembly at a time on this machine (test runs of several checkouts share CACHE)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _check(cmd: Sequence[str], what: str, timeout: float = 600, **kw: Any) -> str:
    proc = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kw
    )
    if proc.returncode != 0:
        raise AssemblyError(f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    _check(["cp", "-a", "--reflink=auto", str(src), str(dst)], f"copy {src}")


def _cached(name: str, make: Any) -> Path:
    """CACHE/name, made by make(tmp_dir) into a temp dir and renamed when complete."""
    final = CACHE / name
    if final.is_dir():
        os.utime(final)
        return final
    tmp = CACHE / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    make(tmp)
    tmp.rename(final)
    return final


def _chroot(
    root: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str = "/",
    binds: Sequence[Bind] = (),
    what: str,
) -> str:
    """Run argv in root as a RUN step runs: as root, the host's network and resolv.conf,
    /proc and /dev mounted, the given binds in place, in a mount namespace of its own."""
    made: list[Path] = []
    for b in binds:
        target = root / b.target.lstrip("/")
        if not target.exists():
            target.mkdir(parents=True)
            made.append(target)
    script = ["set -e", 'mount -t proc proc "$R/proc"', 'mount --rbind /dev "$R/dev"']
    # The build host's network settings, as a builder lends them to RUN: its resolver, and
    # its CA bundle (a machine behind a TLS-inspecting proxy trusts that proxy's CA there).
    for conf in ("etc/resolv.conf", "etc/ssl/certs/ca-certificates.crt"):
        if (Path("/") / conf).is_file() and (root / conf).is_file():
            script.append(f'mount --bind /{conf} "$R/{conf}"')
    for b in binds:
        src, dst = shlex.quote(str(b.source)), shlex.quote(b.target.lstrip("/"))
        script.append(f'mount --bind {src} "$R/"{dst}')
        if b.read_only:
            script.append(f'mount -o remount,bind,ro "$R/"{dst}')
    script.append('exec chroot "$R" "$@"')
    envs = [f"{k}={v}" for k, v in env.items()]
    try:
        return _check(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                "\n".join(script),
                "sh",
                "/usr/bin/env",
                "-i",
                "-C",
                cwd,
                *envs,
                *argv,
            ],
            what,
            env={**os.environ, "R": str(root)},
        )
    finally:
        for target in reversed(made):
            with contextlib.suppress(OSError):
                target.rmdir()  # as BuildKit does: a mount point leaves no trace in the layer


# --------------------------------------------------------------------------- base images


def _mmdebstrap(release: str, packages: Sequence[str], target: Path) -> None:
    _check(
        [
            "mmdebstrap",
            "--mode=root",
            *MMDEBSTRAP_OPTS,
            f"--include={','.join(packages)}",
            release,
            str(target),
        ],
        f"mmdebstrap {release}",
    )
    # The official image's Python is its own, not Debian's: pip installs into it as root.
    for marker in target.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()


def _base(release: str) -> tuple[Path, str]:
    key = _sha(RECIPE, release, *PACKAGES, *MMDEBSTRAP_OPTS)
    return _cached(f"base-{release}-{key}", lambda t: _mmdebstrap(release, PACKAGES, t)), key


def _builder_base(release: str) -> tuple[Path, str]:
    base, base_key = _base(release)
    key = _sha(base_key, *BUILDER_PACKAGES)

    def make(tmp: Path) -> None:
        _copy_tree(base, tmp)
        install = "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
        _chroot(
            tmp,
            ["sh", "-c", install + " ".join(BUILDER_PACKAGES) + " && rm -rf /var/lib/apt/lists/*"],
            env={"PATH": PATH, "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"},
            what="the builder base's C headers",
        )

    return _cached(f"builder-base-{release}-{key}", make), key


# --------------------------------------------------------------------------- stage replay


def _pairs(text: str, state: _State) -> dict[str, str]:
    """ENV/LABEL `k=v k2="v 2"` with $VAR substituted from the stage's ARGs and ENV."""
    out: dict[str, str] = {}
    for word in shlex.split(text):
        key, sep, value = word.partition("=")
        if not sep:
            raise AssemblyError(f"only the key=value form is replayed: {text!r}")
        out[key] = substitute(value, {**state.args, **state.env})
    return out


def _independent_prefix(stage: Stage) -> int:
    """How many leading instructions use neither the build context nor another stage."""
    for n, ins in enumerate(stage.instructions):
        if ins.cmd == "COPY" or (ins.cmd == "RUN" and "from=" in " ".join(ins.flags())):
            return n
    return len(stage.instructions)


def _run_mounts(ins: Instruction, stage_roots: Mapping[str, Path]) -> list[Bind]:
    binds: list[Bind] = []
    for flag in ins.flags():
        if not flag.startswith("--mount="):
            raise AssemblyError(f"RUN flag not replayed: {flag}")
        opts = dict(o.partition("=")[::2] for o in flag.removeprefix("--mount=").split(","))
        kind = opts.get("type", "bind")
        if kind == "cache":
            cache = CACHE / "mount-cache" / _sha(opts.get("id", opts["target"]))
            cache.mkdir(parents=True, exist_ok=True)
            binds.append(Bind(cache, opts["target"], read_only=False))
        elif kind == "bind" and "from" in opts:
            src = stage_roots[opts["from"]] / opts.get("source", "/").lstrip("/")
            binds.append(Bind(src, opts["target"], read_only="rw" not in opts))
        else:
            raise AssemblyError(f"RUN mount not replayed: {flag}")
    return binds


def _copy(ins: Instruction, root: Path, state: _State, context: list[Path]) -> None:
    """COPY from the context: a matched file lands in dest (in dest/ when dest ends with '/'
    or there are several sources), a matched directory's contents in dest."""
    if ins.flags():
        raise AssemblyError(f"COPY flags not replayed: {ins.args}")
    *sources, dest = ins.words()
    target = root / Path(state.workdir, dest).as_posix().lstrip("/")
    into = dest.endswith("/") or len(sources) > 1
    for src in sources:
        regex = re.compile(re.escape(src).replace(r"\*", "[^/]*").replace(r"\?", "[^/]"))
        depth = len(src.split("/"))
        for path in context:
            parts = path.relative_to(ROOT).parts
            if not regex.fullmatch("/".join(parts[:depth])):
                continue
            if len(parts) == depth:
                out = target / parts[-1] if into else target
            else:
                out = target.joinpath(*parts[depth:])
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)


def _replay(
    stage: Stage,
    root: Path,
    state: _State,
    *,
    global_args: Mapping[str, str],
    stage_roots: Mapping[str, Path],
    context: list[Path],
    skip_files: int = 0,
) -> None:
    """Apply stage's instructions to root (the first skip_files only to state: their files
    come from a cached layer)."""
    for n, ins in enumerate(stage.instructions):
        files = n >= skip_files
        if ins.cmd == "ENV":
            state.env.update(_pairs(ins.args, state))
        elif ins.cmd == "ARG":
            name, sep, default = ins.args.partition("=")
            state.args[name] = default.strip('"') if sep else global_args.get(name, "")
        elif ins.cmd == "LABEL":
            state.config.setdefault("labels", {}).update(_pairs(ins.args, state))
        elif ins.cmd == "WORKDIR":
            state.workdir = str(Path(state.workdir, substitute(ins.args, state.env)))
            if files:
                (root / state.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif ins.cmd == "COPY":
            if files:
                _copy(ins, root, state, context)
        elif ins.cmd == "RUN":
            if files:
                env = {"PATH": PATH, "HOME": "/root", **state.args, **state.env}
                _chroot(
                    root,
                    ["/bin/sh", "-c", ins.body()],
                    env=env,
                    cwd=state.workdir,
                    binds=_run_mounts(ins, stage_roots),
                    what=f"RUN {ins.body()[:80]}",
                )
        elif ins.cmd in CONFIG_ONLY:
            state.config[ins.cmd.lower()] = ins.exec_form() or ins.args
        else:
            raise AssemblyError(f"{ins.cmd} is not replayed (tests/image.py): {ins.args}")
    state.config["env"] = {"PATH": PATH, **state.env}
    state.config["workdir"] = state.workdir


def _stage_root(
    stage: Stage,
    work: Path,
    base: tuple[Path, str],
    *,
    global_args: Mapping[str, str],
    stage_roots: Mapping[str, Path],
    context: list[Path],
) -> tuple[Path, _State]:
    """The stage replayed in work/<name>; its independent prefix comes from the cache."""
    prefix = _independent_prefix(stage)
    head = stage.instructions[:prefix]
    key = _sha(base[1], stage.base, json.dumps(dict(global_args)), *(i.args for i in head))

    def make(tmp: Path) -> None:
        _copy_tree(base[0], tmp)
        cut = Stage(stage.base, stage.name, head)
        _replay(cut, tmp, _State(), global_args=global_args, stage_roots={}, context=[])

    layer = _cached(f"layer-{stage.name}-{key}", make)
    root = work / str(stage.name)
    _copy_tree(layer, root)
    state = _State()
    _replay(
        stage,
        root,
        state,
        global_args=global_args,
        stage_roots=stage_roots,
        context=context,
        skip_files=prefix,
    )
    return root, state


def image_key() -> str:
    """The Dockerfile, every file of the build context, and this recipe (this file)."""
    files = context_files()
    parts: list[str | bytes] = [
        RECIPE,
        *PACKAGES,
        *BUILDER_PACKAGES,
        *MMDEBSTRAP_OPTS,
        Path(__file__).read_bytes(),
        DOCKERFILE.read_bytes(),
    ]
    for path in files:
        parts += [path.relative_to(ROOT).as_posix(), path.read_bytes()]
    return _sha(*parts)


def assemble() -> Image:
    """The image's root filesystem and config, from the cache or built now."""
    key = image_key()
    with _locked():
        final = CACHE / f"image-{key}"
        if (final / "config.json").is_file():
            os.utime(final)
            config = json.loads((final / "config.json").read_text(encoding="utf-8"))
            return Image(final / "rootfs", config)
        t0 = time.monotonic()
        global_args, all_stages = stages()
        release = debian_release(all_stages[0].base)
        python = python_version(all_stages[0].base)
        if not (_base(release)[0] / f"usr/bin/python{python}").exists():
            raise AssemblyError(f"Debian {release}'s Python is not {python}: no stand-in")
        work = CACHE / f".work-{key}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        context = context_files()
        roots: dict[str, Path] = {}
        state = _State()
        try:
            for n, stage in enumerate(all_stages):
                last = n == len(all_stages) - 1
                base = _base(release) if last else _builder_base(release)
                root, state = _stage_root(
                    stage,
                    work,
                    base,
                    global_args=global_args,
                    stage_roots=roots,
                    context=context,
                )
                roots[str(stage.name)] = root
            final_tmp = work / "image"
            final_tmp.mkdir()
            roots[str(all_stages[-1].name)].rename(final_tmp / "rootfs")
            (final_tmp / "config.json").write_text(json.dumps(state.config, indent=2))
            final_tmp.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _prune(keep=final)
        config = json.loads((final / "config.json").read_text(encoding="utf-8"))
        return Image(final / "rootfs", config, built_seconds=time.monotonic() - t0)


def _prune(*, keep: Path, most: int = 3) -> None:
    """Keep the `most` most recently used of each kind of entry (checkouts on one machine
    share CACHE, and each may be on another version of the Dockerfile); drop what an
    interrupted assembly left (called under the lock: no assembly is running)."""
    for kind in ("image-", "layer-builder-", "layer-runtime-", "builder-base-", "base-"):
        entries = sorted(CACHE.glob(f"{kind}*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[most:]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)
    for leftover in [*CACHE.glob(".work-*"), *CACHE.glob(".*.tmp")]:
        shutil.rmtree(leftover, ignore_errors=True)


# --------------------------------------------------------------------------- running it


def _passwd_home(root: Path, uid: str) -> str:
    for line in (root / "etc/passwd").read_text(encoding="utf-8").splitlines():
        fields = line.split(":")
        if len(fields) > 5 and fields[2] == uid:
            return fields[5]
    return "/"


def container_argv(
    image: Image,
    args: Sequence[str] = (),
    *,
    binds: Sequence[Bind] = (),
    tmpfs: Sequence[str] = ("/tmp",),
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The command that runs the image's ENTRYPOINT + args as `docker run --read-only`
    would, in a PID and mount namespace of its own (the entrypoint is PID 1 there): the root
    filesystem a read-only bind mount, /proc of that PID namespace, a /dev holding only
    null/zero/full/random/urandom, a tmpfs at each `tmpfs` path, the binds, then USER's uid
    and gid with no supplementary groups, no capabilities (bounding set included) and
    no_new_privs, in WORKDIR with ENV (and HOME from /etc/passwd, as Docker sets it).
    Needs R (the image's root) and S (a scratch directory) in its environment: start()."""
    config = image.config
    user = str(config.get("user", "0:0"))
    uid, _, gid = user.partition(":")
    gid = gid or uid
    if not (uid.isdigit() and gid.isdigit()):
        raise AssemblyError(f"USER {user}: only a numeric uid:gid is replayed")
    entry = config.get("entrypoint") or []
    cmd = config.get("cmd") or []
    if not isinstance(entry, list) or not isinstance(cmd, list):
        raise AssemblyError("ENTRYPOINT/CMD: only the exec form is replayed")
    argv = [*entry, *(args or cmd)]
    envs = {**config["env"], "HOME": _passwd_home(image.root, uid), **(env or {})}
    # The root: an overlay on the image (its upper layer on a tmpfs, so the image's files in
    # the cache are never touched) where the mount points are made, then remounted read-only.
    script = [
        "set -e",
        'mount -t tmpfs -o size=16m tmpfs "$S"',
        'mkdir "$S/upper" "$S/work" "$S/root"',
        'mount -t overlay overlay -o "lowerdir=$R,upperdir=$S/upper,workdir=$S/work" "$S/root"',
        'M="$S/root"',
        'mount -t proc -o nosuid,nodev,noexec proc "$M/proc"',
        'mount -t tmpfs -o nosuid,noexec,mode=755,size=64k tmpfs "$M/dev"',
    ]
    for dev in ("null", "zero", "full", "random", "urandom"):
        script += [f'touch "$M/dev/{dev}"', f'mount --bind /dev/{dev} "$M/dev/{dev}"']
    for path in tmpfs:
        script.append(f'mount -t tmpfs -o nosuid,nodev,mode=1777,size=16m tmpfs "$M"{path}')
    for b in binds:
        dst = '"$M"' + shlex.quote(b.target)
        make = "mkdir -p" if b.source.is_dir() else "touch"
        script.append(f"[ -e {dst} ] || {make} {dst}")
        script.append(f"mount --bind {shlex.quote(str(b.source))} {dst}")
        if b.read_only:
            script.append(f"mount -o remount,bind,ro {dst}")
    script += ['mount -o remount,ro "$M"', 'exec chroot "$M" "$@"']
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child=SIGKILL",
        "sh",
        "-c",
        "\n".join(script),
        "sh",
        "/usr/bin/env",
        "-i",
        "-C",
        str(config.get("workdir", "/")),
        *(f"{k}={v}" for k, v in envs.items()),
        "/usr/bin/setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        *argv,
    ]


def _scratch() -> Path:
    """An empty directory that a container's mount namespace covers with its own tmpfs."""
    path = CACHE / ".scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start(
    image: Image,
    args: Sequence[str] = (),
    *,
    binds: Sequence[Bind] = (),
    env: Mapping[str, str] | None = None,
    **popen: Any,
) -> subprocess.Popen[Any]:
    """Start the image (see container_argv); stop it with tests.backends.stop_process."""
    return subprocess.Popen(
        container_argv(image, args, binds=binds, env=env),
        env={**os.environ, "R": str(image.root), "S": str(_scratch())},
        start_new_session=True,
        **popen,
    )
