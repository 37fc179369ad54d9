"""The container image, without a Docker engine.

1. Static checks of docker/Dockerfile (parsed by tests/dockerfile.py): two
   python:3.11-slim-bookworm stages; the final one runs as a
   non-root numeric user, has `ENTRYPOINT ["shipper"]`, `STOPSIGNAL SIGTERM`, no compiler
   or build tool, installs wheels only with no pip cache, and does not override the default
   config location (SHIPPER_DEFAULT_CONFIG). Plus .dockerignore and the docs.
2. The image's install path, replayed on this machine: copy exactly what the builder stage
   COPYs, `pip wheel --no-deps` it, install the wheel into a fresh venv (dependencies come
   from the configured package index), then run the installed `shipper --version` and
   `shipper --dry-run` with the default config found through SHIPPER_DEFAULT_CONFIG (the
   image relies on the built-in default, /fluent-bit/etc/fluent-bit.conf).
3. LICENSE is the license pyproject.toml and the image's label declare.

tests/test_image_run.py builds the image's root filesystem from the same Dockerfile and runs
the agent in it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dockerfile import (
    DOCKERFILE,
    ROOT,
    Instruction,
    Stage,
    dockerignore_patterns,
    dockerignored,
    stages,
)

DOCKER_README = ROOT / "docker" / "README.md"
K8S_README = ROOT / "k8s" / "README.md"
SEED_CONF = ROOT / "tests" / "fixtures" / "fluent-bit.conf"

DROP_IN = "/fluent-bit/etc/fluent-bit.conf"
BASE_IMAGE = "python:3.11-slim-bookworm"
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


def _stages() -> tuple[dict[str, str], list[Stage]]:
    return stages()


def _final() -> Stage:
    return _stages()[1][-1]


def _builder() -> Stage:
    stages = _stages()[1]
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    return stages[0]


def _shell_words(ins: Instruction) -> list[str]:
    return ins.words()


# ------------------------------------------------------------------- static checks


def test_both_stages_use_python_311_slim_bookworm() -> None:
    """The Debian release is pinned in the tag: python:3.11-slim alone moves with Debian's
    releases, and tests/test_image_run.py assembles that release."""
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
        "org.opencontainers.image.version",
    ):
        assert key in labels


def test_version_label_matches_the_project() -> None:
    final = _final()
    args = dict(i.args.partition("=")[::2] for i in final.all("ARG"))
    assert args.get("VERSION") == _project()["version"]


def test_license_file_is_the_declared_license() -> None:
    """pyproject.toml and the image's label say Apache-2.0; LICENSE is its full text (and the
    build context sends it: the builder stage COPYs LICENSE*)."""
    declared = _project()["license"]
    assert declared == {"text": "Apache-2.0"}, declared
    labels = " ".join(i.args for i in _final().all("LABEL"))
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    words = text.split()
    assert words[:5] == ["Apache", "License", "Version", "2.0,", "January"], words[:5]
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply" in text
    # The nine sections of the terms, complete.
    for n, title in enumerate(
        (
            "Definitions",
            "Grant of Copyright License",
            "Grant of Patent License",
            "Redistribution",
            "Submission of Contributions",
            "Trademarks",
            "Disclaimer of Warranty",
            "Limitation of Liability",
            "Accepting Warranty or Additional Liability",
        ),
        start=1,
    ):
        assert f"{n}. {title}." in " ".join(words), title
    assert "LICENSE" in _builder_sources()


def test_no_label_names_an_unpublished_place() -> None:
    """No source URL or registry is claimed for an image or repository that is not
    published; the base name follows the build argument."""
    labels = " ".join(i.args for i in _final().all("LABEL"))
    assert "shipper-dev" not in DOCKERFILE.read_text(encoding="utf-8")
    assert "org.opencontainers.image.source" not in labels
    assert 'org.opencontainers.image.base.name="${PYTHON_IMAGE}"' in labels


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
    patterns = dockerignore_patterns()
    for needed in ("pyproject.toml", "shipper/__init__.py", "shipper/cli.py"):
        assert not dockerignored(needed, patterns), needed
    for unwanted in (
        ".git/config",
        "tests/test_docker_image.py",
        ".venv/bin/python",
        "shipper/__pycache__/cli.cpython-311.pyc",
        "benchmarks/out/x.json",
    ):
        assert dockerignored(unwanted, patterns), unwanted
    sources = _builder_sources()
    assert "pyproject.toml" in sources and "shipper" in sources, sources
    for src in sources:
        assert not dockerignored(src, patterns), src


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
            (context / src).parent.mkdir(parents=True, exist_ok=True)
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


# ------------------------------------------------- README.md's build-and-push steps

# Records each call's arguments, one call per line, words separated by US (0x1f).
_RECORDER = (
    '#!/bin/sh\n{ printf \'%s\' "$(basename "$0")"; printf \'\\037%s\' "$@"; echo; } >> "$CALLS"\n'
)


def _migration_steps() -> str:
    """The shell block of README.md's migration section, verbatim."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Migrating a Fluent Bit sidecar\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "one block of commands to follow word for word"
    return str(blocks[0])


@pytest.mark.timeout(120)
def test_readme_migration_steps_build_push_and_name_the_image(tmp_path: Path) -> None:
    """README.md's migration commands, run as written in a copy of the repository, with
    docker and kubectl (which cannot run here) replaced by stand-ins that record their
    arguments: docker/build.sh builds docker/Dockerfile (the file tests/test_image_run.py
    replays and runs) from the repository root with the project's version, pushes the
    name, and every shipper container in k8s/ then names that image."""
    steps = _migration_steps()
    m = re.search(r"^IMAGE=(\S+)", steps, re.M)
    assert m, steps
    image = m.group(1)
    clone = tmp_path / "clone"
    for rel in ("docker", "k8s", "shipper"):
        shutil.copytree(ROOT / rel, clone / rel, ignore=shutil.ignore_patterns("__pycache__"))
    for rel in ("pyproject.toml", "README.md", "LICENSE", ".dockerignore"):
        shutil.copy2(ROOT / rel, clone / rel)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "kubectl"):
        (bin_dir / tool).write_text(_RECORDER)
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "HOME": str(tmp_path)}
    proc = subprocess.run(
        ["sh", "-e", "-c", steps],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = [line.split("\x1f") for line in calls.read_text().splitlines()]
    version = str(_project()["version"])
    dockerfile = str(clone / "docker" / "Dockerfile")
    build = ["docker", "build", "-f", dockerfile, "--build-arg", f"VERSION={version}"]
    assert recorded == [
        [*build, "-t", image, str(clone)],
        ["docker", "push", image],
        ["kubectl", "apply", "-f", "k8s/sidecar/raycluster.yaml"],
    ], recorded
    assert (clone / "docker" / "Dockerfile").read_bytes() == DOCKERFILE.read_bytes()

    images: list[str] = []
    for path in sorted((clone / "k8s").rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        images += re.findall(r"^\s*image:\s*(\S+)", text, re.M)
        assert "image: REGISTRY/" not in text, path
    assert images.count(image) == 5, images  # 1 + 2 sidecars, the DaemonSet's 2 containers
    assert all(i == image or i.startswith("rayproject/ray:") for i in images), images


def test_build_script_needs_an_image_name(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["sh", str(ROOT / "docker" / "build.sh")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1 and "usage:" in proc.stderr
    for tool in ("dirname", "sed", "head"):  # what it needs besides a builder
        (tmp_path / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    proc = subprocess.run(
        ["/bin/sh", str(ROOT / "docker" / "build.sh"), "x/shipper:1"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": str(tmp_path), "SHIPPER_BUILDER": ""},
    )
    assert proc.returncode == 1 and "needs docker, podman or buildah" in proc.stderr


def test_image_ships_fluent_bits_stock_parsers_file() -> None:
    """Configs (Fluent Bit's own, the Helm chart's) name /fluent-bit/etc/parsers.conf, which
    Fluent Bit's image has; a missing Parsers_File is an error, so this image has it too."""
    copies = [c.args for c in _final().all("COPY")]
    assert any(
        "--from=builder" in c and c.split()[-1] == "/fluent-bit/etc/parsers.conf" for c in copies
    ), copies
    sources = _builder_sources()
    assert "tests/fixtures/fluent-bit/parsers.conf" in sources, sources
