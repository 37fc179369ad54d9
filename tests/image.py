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
import stat
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
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


@dataclass
class _Fs:
    """A root filesystem as overlay layers, as a container engine keeps an image: read-only
    `lowers` (top first, the mmdebstrap base last) under a writable `upper`. Each cached layer
    is the upper directory of the step that made it, so nothing is copied until the final
    image is materialized."""

    lowers: list[Path]
    upper: Path

    def lookup(self, path: str) -> Path | None:
        """Where `path` (absolute, in the image) is stored: the top layer that has it."""
        rel = path.lstrip("/")
        for layer in (self.upper, *self.lowers):
            try:
                st = (layer / rel).lstat()
            except FileNotFoundError:
                continue
            # A whiteout (character device 0:0) is a file deleted by that layer.
            return None if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 else layer / rel
        return None

    def upper_dirs(self, path: str) -> Path:
        """upper/path as a directory, each missing level made with its lower's mode and
        owner (as the overlay's copy-up would make it), or 0755 root when new."""
        here = self.upper
        for part in Path(path.lstrip("/")).parts:
            here = here / part
            if not here.is_dir():
                rel = here.relative_to(self.upper).as_posix()
                below = next((lw / rel for lw in self.lowers if (lw / rel).is_dir()), None)
                here.mkdir(mode=0o755)
                if below is not None:
                    st = below.stat()
                    os.chmod(here, st.st_mode & 0o7777)
                    os.chown(here, st.st_uid, st.st_gid)
        return here

    def mount_script(self) -> list[str]:
        """Shell lines that mount this filesystem at "$M" (in a private mount namespace)."""
        work = self.upper.parent / f".{self.upper.name}.ovlwork"
        merged = self.upper.parent / f".{self.upper.name}.merged"
        for d in (work, merged):
            d.mkdir(exist_ok=True)
        lowers = ":".join(str(p) for p in self.lowers)
        opts = f"lowerdir={lowers},upperdir={self.upper},workdir={work}"
        return [
            "set -e",
            f"M={shlex.quote(str(merged))}",
            f'mount -t overlay overlay -o {shlex.quote(opts)} "$M"',
        ]

    def cleanup(self) -> None:
        for name in (f".{self.upper.name}.ovlwork", f".{self.upper.name}.merged"):
            shutil.rmtree(self.upper.parent / name, ignore_errors=True)


def _in_namespace(script: Sequence[str], args: Sequence[str], what: str) -> str:
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
            *args,
        ],
        what,
    )


def _cached(name: str, make: Any, parent: Path | None = None) -> Path:
    """CACHE/name, made by make(tmp_dir) into a temp dir and renamed when complete. A layer
    made on top of `parent` records which parent (its inode): if that parent has been made
    anew since, the layer is stale and made again."""
    final = CACHE / name
    stamp = CACHE / f"{name}.parent"
    want = str(parent.stat().st_ino) if parent is not None else ""
    if final.is_dir() and (parent is None or (stamp.is_file() and stamp.read_text() == want)):
        os.utime(final)
        return final
    tmp = CACHE / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)
    if parent is not None:
        tmp.mkdir()
    make(tmp)
    if parent is not None:
        stamp.write_text(want)
    tmp.rename(final)
    return final


def _chroot(
    fs: _Fs,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str = "/",
    binds: Sequence[Bind] = (),
    what: str,
) -> str:
    """Run argv in fs as a RUN step runs: as root, the host's network, /proc and /dev
    mounted, the given binds in place (their mount points removed after, as BuildKit leaves
    none in the layer), in a mount namespace of its own."""
    script = [
        *fs.mount_script(),
        'mount -t proc proc "$M/proc"',
        'mount --rbind /dev "$M/dev"',
    ]
    # The build host's network settings, as a builder lends them to RUN: its resolver, and
    # its CA bundle (a machine behind a TLS-inspecting proxy trusts that proxy's CA there).
    for conf in ("/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt"):
        if Path(conf).is_file() and fs.lookup(conf) is not None:
            script.append(f'mount --bind {conf} "$M{conf}"')
    made: list[str] = []
    for b in binds:
        missing = [p for p in (b.target, *map(str, PurePosixPath(b.target).parents)) if p != "/"]
        made += [p for p in missing if fs.lookup(p) is None and p not in made]
        dst = '"$M"' + shlex.quote(b.target)
        script += [f"mkdir -p {dst}", f"mount --bind {shlex.quote(str(b.source))} {dst}"]
        if b.read_only:
            script.append(f"mount -o remount,bind,ro {dst}")
    script += ["set +e", 'chroot "$M" "$@"', "rc=$?"]
    script += [f'umount "$M"{shlex.quote(b.target)}' for b in binds]
    script += [f'rmdir "$M"{shlex.quote(p)}' for p in sorted(made, key=len, reverse=True)]
    script.append("exit $rc")
    envs = [f"{k}={v}" for k, v in env.items()]
    try:
        return _in_namespace(script, ["/usr/bin/env", "-i", "-C", cwd, *envs, *argv], what)
    finally:
        fs.cleanup()


def _materialize(fs: _Fs, out: Path) -> None:
    """The merged view of fs as one plain directory tree at out."""
    out.mkdir()
    script = [*fs.mount_script(), f'cp -a "$M/." {shlex.quote(str(out))}/']
    try:
        _in_namespace(script, [], "materializing the image")
    finally:
        fs.cleanup()


# --------------------------------------------------------------------------- base images

# As in Debian's container images (debuerreotype): apt keeps no .deb files and no package
# caches after an install, so a layer holds what was installed and nothing more.
_CLEAN = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb \
/var/cache/apt/*.bin || true"
_DOCKER_CLEAN = f"""\
DPkg::Post-Invoke {{ "{_CLEAN}"; }};
APT::Update::Post-Invoke {{ "{_CLEAN}"; }};
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""


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
    (target / "etc/apt/apt.conf.d/docker-clean").write_text(_DOCKER_CLEAN)
    # The official image's Python is its own, not Debian's: pip installs into it as root.
    for marker in target.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()


def _base(release: str) -> tuple[list[Path], str]:
    key = _sha(RECIPE, release, *PACKAGES, *MMDEBSTRAP_OPTS, _DOCKER_CLEAN)
    base = _cached(f"base-{release}-{key}", lambda t: _mmdebstrap(release, PACKAGES, t))
    return [base], key


def _builder_base(release: str) -> tuple[list[Path], str]:
    """The base plus what python:3.11-slim has and Debian keeps apart: the C headers."""
    base, base_key = _base(release)
    key = _sha(base_key, *BUILDER_PACKAGES)

    def make(upper: Path) -> None:
        install = "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
        _chroot(
            _Fs(base, upper),
            ["sh", "-c", install + " ".join(BUILDER_PACKAGES) + " && rm -rf /var/lib/apt/lists/*"],
            env={"PATH": PATH, "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"},
            what="the builder base's C headers",
        )

    return [_cached(f"builder-base-{release}-{key}", make, parent=base[0]), *base], key


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


def _run_mounts(ins: Instruction, stage_fs: Mapping[str, _Fs]) -> list[Bind]:
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
            src = stage_fs[opts["from"]].lookup(opts.get("source", "/"))
            if src is None:
                raise AssemblyError(f"{flag}: no {opts.get('source')} in {opts['from']}")
            binds.append(Bind(src, opts["target"], read_only="rw" not in opts))
        else:
            raise AssemblyError(f"RUN mount not replayed: {flag}")
    return binds


def _copy(
    ins: Instruction, fs: _Fs, state: _State, context: list[Path], stage_fs: Mapping[str, _Fs]
) -> None:
    """COPY from the context: a matched file lands in dest (in dest/ when dest ends with '/'
    or there are several sources), a matched directory's contents in dest. `--from=STAGE`
    copies files of an earlier stage instead."""
    flags = ins.flags()
    *sources, dest = ins.words()
    target = PurePosixPath(state.workdir, dest)
    into = dest.endswith("/") or len(sources) > 1
    if flags:
        if len(flags) != 1 or not flags[0].startswith("--from="):
            raise AssemblyError(f"COPY flags not replayed: {ins.args}")
        stage = stage_fs[flags[0].removeprefix("--from=")]
        for src in sources:
            found = stage.lookup(src)
            if found is None or not found.is_file():
                raise AssemblyError(f"{ins.args}: no file {src} in that stage")
            out = target / PurePosixPath(src).name if into else target
            shutil.copy2(found, fs.upper_dirs(str(out.parent)) / out.name)
        return
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
            shutil.copy2(path, fs.upper_dirs(str(out.parent)) / out.name)


def _replay(
    stage: Stage,
    fs: _Fs,
    state: _State,
    *,
    global_args: Mapping[str, str],
    stage_fs: Mapping[str, _Fs],
    context: list[Path],
    skip_files: int = 0,
) -> None:
    """Apply stage's instructions to fs (the first skip_files only to state: their files
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
            state.workdir = str(PurePosixPath(state.workdir, substitute(ins.args, state.env)))
            if files and fs.lookup(state.workdir) is None:
                fs.upper_dirs(state.workdir)
        elif ins.cmd == "COPY":
            if files:
                _copy(ins, fs, state, context, stage_fs)
        elif ins.cmd == "RUN":
            if files:
                env = {"PATH": PATH, "HOME": "/root", **state.args, **state.env}
                _chroot(
                    fs,
                    ["/bin/sh", "-c", ins.body()],
                    env=env,
                    cwd=state.workdir,
                    binds=_run_mounts(ins, stage_fs),
                    what=f"RUN {ins.body()[:80]}",
                )
        elif ins.cmd in CONFIG_ONLY:
            state.config[ins.cmd.lower()] = ins.exec_form() or ins.args
        else:
            raise AssemblyError(f"{ins.cmd} is not replayed (tests/image.py): {ins.args}")
    state.config["env"] = {"PATH": PATH, **state.env}
    state.config["workdir"] = state.workdir


def _stage_fs(
    stage: Stage,
    work: Path,
    base: tuple[list[Path], str],
    *,
    global_args: Mapping[str, str],
    stage_fs: Mapping[str, _Fs],
    context: list[Path],
) -> tuple[_Fs, _State]:
    """The stage replayed on an upper layer in work/<name>; its independent prefix is a
    cached layer."""
    prefix = _independent_prefix(stage)
    head = stage.instructions[:prefix]
    key = _sha(base[1], stage.base, json.dumps(dict(global_args)), *(i.args for i in head))

    def make(upper: Path) -> None:
        cut = Stage(stage.base, stage.name, head)
        _replay(
            cut, _Fs(base[0], upper), _State(), global_args=global_args, stage_fs={}, context=[]
        )

    layer = _cached(f"layer-{stage.name}-{key}", make, parent=base[0][0])
    upper = work / str(stage.name)
    upper.mkdir()
    fs = _Fs([layer, *base[0]], upper)
    state = _State()
    _replay(
        stage,
        fs,
        state,
        global_args=global_args,
        stage_fs=stage_fs,
        context=context,
        skip_files=prefix,
    )
    return fs, state


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
        if not _base(release)[0][0].joinpath(f"usr/bin/python{python}").exists():
            raise AssemblyError(f"Debian {release}'s Python is not {python}: no stand-in")
        work = CACHE / f".work-{key}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        context = context_files()
        done: dict[str, _Fs] = {}
        state = _State()
        try:
            for n, stage in enumerate(all_stages):
                last = n == len(all_stages) - 1
                base = _base(release) if last else _builder_base(release)
                fs, state = _stage_fs(
                    stage,
                    work,
                    base,
                    global_args=global_args,
                    stage_fs=done,
                    context=context,
                )
                done[str(stage.name)] = fs
            out = work / "image"
            out.mkdir()
            _materialize(done[str(all_stages[-1].name)], out / "rootfs")
            (out / "config.json").write_text(json.dumps(state.config, indent=2))
            out.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _prune(keep=final)
        config = json.loads((final / "config.json").read_text(encoding="utf-8"))
        return Image(final / "rootfs", config, built_seconds=time.monotonic() - t0)


def _prune(*, keep: Path, most: int = 3) -> None:
    """Keep the `most` most recently used images and stage layers (checkouts on one machine
    share CACHE, each maybe with another Dockerfile); drop what an interrupted assembly left
    (called under the lock: no assembly is running). The bases stay: their keys change only
    with this recipe, and the layers above them name them."""
    for kind in ("image-", "layer-builder-", "layer-runtime-"):
        entries = sorted(
            (p for p in CACHE.glob(f"{kind}*") if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in entries[most:]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)
                Path(f"{old}.parent").unlink(missing_ok=True)
    for leftover in [*CACHE.glob(".work-*"), *CACHE.glob(".*.tmp"), *CACHE.glob(".*.ovlwork")]:
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
