"""docker/Dockerfile and .dockerignore, parsed: the one reader of both, for the static checks
(tests/test_docker_image.py) and for the replay that assembles the image's root filesystem
(tests/image.py). Only the syntax the Dockerfile uses: instructions with `\\` continuations,
comments, global ARGs in FROM, `FROM base AS name`, RUN flags (`--mount=...`)."""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


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

    def flags(self) -> list[str]:
        """Leading `--name=value` flags (RUN --mount=..., COPY --from=...)."""
        return self.args[: len(self.args) - len(self.body())].split()

    def body(self) -> str:
        """The text after the leading flags (a RUN's shell command)."""
        text = self.args
        while text.startswith("--"):
            text = text.split(None, 1)[1] if " " in text else ""
        return text

    def words(self) -> list[str]:
        """The arguments after the leading flags, split as a shell would."""
        return shlex.split(self.body())


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
            base = substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{ins.cmd} before the first FROM"
            stages[-1].instructions.append(ins)
    return global_args, stages


def substitute(text: str, values: dict[str, str]) -> str:
    """`$NAME` and `${NAME}` replaced as Docker does in FROM, ENV, LABEL, WORKDIR..."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ""), text)


def stages() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


# ------------------------------------------------------------------ .dockerignore


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


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def dockerignored(rel: str, patterns: list[str]) -> bool:
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


def context_files() -> list[Path]:
    """Every file of the build context: the repository minus what .dockerignore leaves out
    (an ignored directory that no '!' pattern reaches into is not even walked)."""
    patterns = dockerignore_patterns()
    negated = [p[1:].strip("/") for p in patterns if p.startswith("!")]
    out: list[Path] = []
    for top, dirs, files in os.walk(ROOT):
        base = Path(top).relative_to(ROOT).as_posix()

        def rel_of(name: str, base: str = base) -> str:
            return name if base == "." else f"{base}/{name}"

        dirs[:] = sorted(
            d
            for d in dirs
            if d != ".git"
            and (
                not dockerignored(rel_of(d), patterns)
                or any(n.startswith(rel_of(d) + "/") for n in negated)
            )
        )
        out += [Path(top) / f for f in sorted(files) if not dockerignored(rel_of(f), patterns)]
    return out
