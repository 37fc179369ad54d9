"""The container image, without a Docker engine.

1. Static checks of docker/Dockerfile: two python:3.11-slim stages; the final one runs as a
   non-root numeric user, has `ENTRYPOINT ["shipper"]`, `STOPSIGNAL SIGTERM`, no compiler
   or build tool, installs wheels only with no pip cache, and does not override the default
   config location (SHIPPER_DEFAULT_CONFIG). Plus .dockerignore and the docs.
2. The image's install path, replayed on this machine: copy exactly what the builder stage
   COPYs, `pip wheel --no-deps` it, install the wheel into a fresh venv (dependencies come
   from the configured package index), then run the installed `shipper --version` and
   `shipper --dry-run` with the default config found through SHIPPER_DEFAULT_CONFIG (the
   image relies on the built-in default, /fluent-bit/etc/fluent-bit.conf).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKER_README = ROOT / "docker" / "README.md"
K8S_README = ROOT / "k8s" / "README.md"
DOCKERIGNORE = ROOT / ".dockerignore"
SEED_CONF = ROOT / "tests" / "fixtures" / "fluent-bit.conf"

DROP_IN = "/fluent-bit/etc/fluent-bit.conf"
BASE_IMAGE = "python:3.11-slim"
UID = "10001"

# Packages and tools that mean "a compiler or build chain is in the image".
BUILD_TOOLS = {
    "gcc",
    "g++",
    "cc",
    "c++",
    "clang",
    "make",
    "cmake",
    "build-essential",
    "build-base",
    "musl-dev",
    "libc6-dev",
    "libc-dev",
    "python3-dev",
    "python-dev",
    "rustc",
    "cargo",
    "gfortran",
    "autoconf",
    "automake",
    "libtool",
    "pkg-config",
}


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return dict(tomllib.load(fh)["project"])


# ---------------------------------------------------------------- Dockerfile parsing


@dataclass
class Instruction:
    cmd: str  # upper case
    args: str  # the rest, continuation lines joined

    def exec_form(self) -> list[str] | None:
        """The JSON array of ENTRYPOINT/CMD/RUN in exec form, else None."""
        try:
            value = json.loads(self.args)
        except ValueError:
            return None
        return value if isinstance(value, list) else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]

    def last(self, cmd: str) -> Instruction | None:
        found = self.all(cmd)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with `${ARG}` in FROM resolved."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments (and parser directives) and blank lines
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        cmd, _, args = line.partition(" ")
        ins = Instruction(cmd.upper(), args.strip())
        if ins.cmd == "ARG" and not stages:
            name, _, default = ins.args.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        elif ins.cmd == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), ""), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{ins.cmd} before the first FROM"
            stages[-1].instructions.append(ins)
    return global_args, stages


def _stages() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def _final() -> Stage:
    return _stages()[1][-1]


def _builder() -> Stage:
    stages = _stages()[1]
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    return stages[0]


def _shell_words(ins: Instruction) -> list[str]:
    text = ins.args
    while text.startswith("--"):  # RUN --mount=... flags
        text = text.split(None, 1)[1] if " " in text else ""
    return shlex.split(text)


# ------------------------------------------------------------------- static checks


def test_both_stages_use_python_311_slim() -> None:
    _args, stages = _stages()
    assert len(stages) == 2
    for stage in stages:
        assert stage.base.split("@")[0] == BASE_IMAGE, stage.base


def test_builder_builds_the_wheel_without_dependencies_then_the_dependency_wheels() -> None:
    runs = " ".join(i.args for i in _builder().all("RUN"))
    assert re.search(r"pip wheel --no-deps\b.* \.(\s|$)", runs), runs
    assert runs.count("pip wheel") >= 2, "the project's wheel, then its dependencies' wheels"


def test_final_stage_runs_as_non_root_numeric_user() -> None:
    final = _final()
    user = final.last("USER")
    assert user is not None, "the final stage must set USER"
    uid, _, gid = user.args.partition(":")
    assert uid not in ("root", "0") and gid not in ("root", "0")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it.
    assert uid == UID, user.args
    created = " ".join(i.args for i in final.all("RUN"))
    assert re.search(rf"useradd\b.*--uid {UID}\b.*\bshipper\b", created), created


def test_final_stage_entrypoint_stopsignal_workdir_labels_port() -> None:
    final = _final()
    entry = final.last("ENTRYPOINT")
    assert entry is not None and entry.exec_form() == ["shipper"], entry
    cmd = final.last("CMD")
    # No arguments: the default config is the drop-in file, not a flag.
    assert cmd is None or cmd.exec_form() == [], cmd
    stop = final.last("STOPSIGNAL")
    assert stop is not None and stop.args == "SIGTERM"
    assert final.last("WORKDIR") is not None
    assert "2020" in [p.split("/")[0] for i in final.all("EXPOSE") for p in i.args.split()]
    labels = " ".join(i.args for i in final.all("LABEL"))
    for key in (
        "org.opencontainers.image.title",
        "org.opencontainers.image.source",
        "org.opencontainers.image.version",
    ):
        assert key in labels


def test_version_label_matches_the_project() -> None:
    final = _final()
    args = dict(i.args.partition("=")[::2] for i in final.all("ARG"))
    assert args.get("VERSION") == _project()["version"]


def test_final_stage_has_no_compiler_and_installs_wheels_only() -> None:
    final = _final()
    for run in final.all("RUN"):
        words = {w.lower() for w in _shell_words(run)}
        tools = words & BUILD_TOOLS
        assert not tools, f"build tools in the final stage: {sorted(tools)}"
        assert not any(w.endswith("-dev") for w in words), run.args
        assert "pip wheel" not in run.args and "setup.py" not in run.args
    installs = [r for r in final.all("RUN") if "pip install" in r.args]
    assert len(installs) == 1, "one pip install of the prebuilt wheels"
    install = installs[0].args
    assert "--no-index" in install, "wheels only: nothing downloaded or built"
    assert "--no-cache-dir" in install, "no pip cache left in the image"
    assert "from=builder" in install or any(
        "--from=builder" in c.args for c in final.all("COPY")
    ), "wheels come from the builder"
    # Nothing copied from the build context: the source tree stays out of the image.
    assert all("--from=" in c.args for c in final.all("COPY"))


def test_default_config_location_is_not_overridden() -> None:
    """The image relies on shipper's built-in default, Fluent Bit's mount point."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "SHIPPER_DEFAULT_CONFIG" not in code
    for stage in _stages()[1]:
        for ins in stage.all("ENTRYPOINT") + stage.all("CMD"):
            assert "-c" not in (ins.exec_form() or []) and "--config" not in ins.args


def test_docs_name_the_drop_in_config_path() -> None:
    for doc in (DOCKER_README, K8S_README):
        assert DROP_IN in doc.read_text(encoding="utf-8"), f"{doc.relative_to(ROOT)}"
    readme = DOCKER_README.read_text(encoding="utf-8")
    for topic in ("docker build", "docker run", "image:", "readOnlyRootFilesystem", "/tmp"):
        assert topic in readme, f"docker/README.md should cover {topic!r}"


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: '*' and '?' stay within one path element, '**'
    spans any number of them (Go's filepath.Match plus Docker's '**')."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            close = pattern.index("]", i)
            out, i = out + pattern[i : close + 1], close + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _dockerignored(rel: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `rel` out of the build context: the last matching
    pattern wins, '!' re-includes, and a pattern that matches a directory covers its
    contents."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _dockerignore_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def _builder_sources() -> list[str]:
    """The build-context paths the builder stage COPYs (globs expanded in the repo)."""
    sources: list[str] = []
    for copy_ins in _builder().all("COPY"):
        words = [w for w in _shell_words(copy_ins) if not w.startswith("--")]
        if "--from=" in copy_ins.args:
            continue
        for src in words[:-1]:
            sources += [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob(src))]
    return sources


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for needed in ("pyproject.toml", "shipper/__init__.py", "shipper/cli.py"):
        assert not _dockerignored(needed, patterns), needed
    for unwanted in (
        ".git/config",
        "tests/test_docker_image.py",
        ".venv/bin/python",
        "shipper/__pycache__/cli.cpython-311.pyc",
        "benchmarks/out/x.json",
    ):
        assert _dockerignored(unwanted, patterns), unwanted
    sources = _builder_sources()
    assert "pyproject.toml" in sources and "shipper" in sources, sources
    for src in sources:
        assert not _dockerignored(src, patterns), src


# ------------------------------------------------------------ the install path


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment (pip's index settings included) minus anything that would let the
    venv see the repository's own copy of the package."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "PYTHONPATH",
            "PYTHONHOME",
            "VIRTUAL_ENV",
            "SHIPPER_DEFAULT_CONFIG",
            "PYTHONSTARTUP",
        )
    }
    env.update(extra)
    return env


def _run(
    cmd: list[str], cwd: Path, timeout: float = 240, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _builder_wheel(work: Path, **env: str) -> Path:
    """The builder stage's `pip wheel --no-deps .` of exactly what its `COPY` puts in /src,
    replayed under `work`: the one wheel it makes."""
    context = work / "context"
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.so")
    for src in _builder_sources():
        path = ROOT / src
        if path.is_dir():
            shutil.copytree(path, context / src, ignore=ignore)
        else:
            shutil.copy2(path, context / src)
    dist = work / "dist"
    proc = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(context)],
        cwd=work,
        **env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = sorted(dist.glob("shipper-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@dataclass
class Installed:
    wheel: Path
    bin: Path
    work: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The builder stage and the runtime stage's pip install, replayed in a temp dir."""
    work = tmp_path_factory.mktemp("image")
    wheel = _builder_wheel(work)

    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(env_dir)
    py = env_dir / "bin" / "python"
    proc = _run([str(py), "-m", "pip", "install", str(wheel)], cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Installed(wheel=wheel, bin=env_dir / "bin", work=work)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_has_the_c_helper_and_the_console_script(installed: Installed) -> None:
    """The builder stage has a C compiler, so the wheel carries the C helpers (the Ray fast
    path's shipper/ray/_fastray.c, the read pass's shipper/tail/_fastread.c) and the
    installed shipper uses them."""
    with zipfile.ZipFile(installed.wheel) as zf:
        names = zf.namelist()
        if shutil.which("cc") or shutil.which("gcc"):
            assert not installed.wheel.name.endswith("-none-any.whl"), installed.wheel.name
            for helper in ("ray/_fastray", "tail/_fastread"):
                assert any(re.fullmatch(rf"shipper/{helper}\..*\.so", n) for n in names), names
            proc = _run(
                [
                    str(installed.bin / "python"),
                    "-c",
                    "import shipper.ray.fast as f, shipper.tail.reader as r; "
                    "print(f.native(), r.native())",
                ],
                cwd=installed.work,
                timeout=60,
            )
            assert proc.stdout.strip() == "True True", proc.stdout + proc.stderr
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert re.search(r"^shipper\s*=\s*shipper\.cli:main$", zf.read(entry_points).decode(), re.M)
        assert not any(n.startswith(("tests/", "benchmarks/", "k8s/")) for n in names)
        # The default config location lives in the package, not in the image.
        sources = b"".join(zf.read(n) for n in names if n.endswith(".py"))
    assert DROP_IN.encode() in sources and b"SHIPPER_DEFAULT_CONFIG" in sources
    assert (installed.bin / "shipper").is_file()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_installed_shipper_reports_its_version(installed: Installed) -> None:
    proc = _run([str(installed.bin / "shipper"), "--version"], cwd=installed.work, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(_project()["version"]) in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_installed_shipper_reads_the_default_config(installed: Installed, tmp_path: Path) -> None:
    """No -c: the config at SHIPPER_DEFAULT_CONFIG (in the image: /fluent-bit/etc/...)."""
    etc = tmp_path / "fluent-bit" / "etc"
    etc.mkdir(parents=True)
    conf = etc / "fluent-bit.conf"
    shutil.copy(SEED_CONF, conf)
    proc = _run(
        [str(installed.bin / "shipper"), "--dry-run"],
        cwd=tmp_path,
        timeout=60,
        SHIPPER_DEFAULT_CONFIG=str(conf),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # ...and it is really that file being read: break it and the same command fails,
    # naming the bad key.
    conf.write_text(
        SEED_CONF.read_text(encoding="utf-8").replace("Tag ray", "Tagg ray"), encoding="utf-8"
    )
    proc = _run(
        [str(installed.bin / "shipper"), "--dry-run"],
        cwd=tmp_path,
        timeout=60,
        SHIPPER_DEFAULT_CONFIG=str(conf),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Tagg" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_installed_shipper_falls_back_to_the_embedded_default(
    installed: Installed, tmp_path: Path
) -> None:
    """No file at the default location (an image run without a mounted config): the
    embedded default config, which must be valid."""
    proc = _run(
        [str(installed.bin / "shipper"), "--dry-run"],
        cwd=tmp_path,
        timeout=60,
        SHIPPER_DEFAULT_CONFIG=str(tmp_path / "absent" / "fluent-bit.conf"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_without_a_c_compiler_the_wheel_builds_and_runs_pure_python(tmp_path: Path) -> None:
    """The C helper is optional: with a compiler that always fails, `pip wheel` still makes
    a wheel (without the helper) and the package from it runs the pure-Python path."""
    wheel = _builder_wheel(tmp_path, CC="/bin/false")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        assert not any(n.endswith(".so") for n in zf.namelist())
        zf.extractall(unpacked)
    proc = _run(
        [
            sys.executable,
            "-c",
            "import shipper.ray.fast as f, shipper.tail.reader as r, shipper.cli; "
            "print(f.__file__, f.native(), r.native())",
        ],
        cwd=tmp_path,
        PYTHONPATH=str(unpacked),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    where, native, read_native = proc.stdout.split()
    assert where.startswith(str(unpacked)) and native == read_native == "False", proc.stdout
