"""Fluent Bit's classic configuration format (`fluent-bit.conf`) -> Document.

Behaviour follows Fluent Bit's own reader (src/config_format/flb_cf_fluentbit.c, flb_meta.c and
flb_env.c) so that a file Fluent Bit accepts means the same thing here:

* lines split on LF only (a trailing CR is dropped); `#` in column 1 is a comment; there are no
  end-of-line comments (`Path /x # y` keeps `# y` in the value, as in Fluent Bit);
* `[NAME]` headers start in column 1 and are case-insensitive; entries are indented, and the
  first entry of each file fixes the indent unit: less indentation, a different mix of tabs and
  spaces, or extra indentation other than exactly one more unit is an error;
* `@INCLUDE` and `@SET` are column-1 directives; an include goes back to the including file's
  current section afterwards (the section is per file, like Fluent Bit's local variable);
* every `@SET` of the whole tree is known before any value is expanded, because Fluent Bit runs
  all meta commands before it applies a single property; `${VAR}` then looks in the @SET
  variables, then the process environment (an empty variable counts as unset), then HOSTNAME.

Deliberate differences, all towards clearer errors: a glob include that matches nothing, a
missing file and a file read twice are errors here as there, but name the including file:line;
whitespace-only and indented comment lines never trip the indentation check; `${...}` inside an
`@SET` value and in an `@INCLUDE` path is expanded (with what is known at that line).
"""

from __future__ import annotations

import glob
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from shipper.config.model import SECTION_KINDS, ConfigError, Document, Prop, Section

logger = logging.getLogger(__name__)

# Fluent Bit stops at 1000 configuration files (FLB_CF_FILE_NUM_LIMIT); nesting is capped well
# below Python's recursion limit so a deep include chain is a ConfigError, not a RecursionError.
MAX_FILES = 1000
MAX_DEPTH = 64

_BLANKS = " \t"  # C isblank(): the only characters Fluent Bit counts as indentation


@dataclass(slots=True)
class RawProp:
    """A property before `${VAR}` expansion (expansion waits for every @SET to be known)."""

    key: str
    value: str
    file: str
    line: int


@dataclass(slots=True)
class RawSection:
    kind: str
    file: str
    line: int
    props: list[RawProp] = field(default_factory=list)


class Variables:
    """`${VAR}` lookup shared by both formats: config variables, then the environment."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.defined: dict[str, str] = {}

    def lookup(self, name: str, *, file: str, line: int) -> str:
        if name in self.defined:
            return self.defined[name]
        value = self.env.get(name)
        if value:  # flb_env_get treats an empty environment variable as unset
            return value
        if name == "HOSTNAME":  # Fluent Bit presets it: shells rarely export it
            return socket.gethostname()
        logger.warning(
            "%s:%d: variable ${%s} is used but not set; it expands to an empty string",
            file,
            line,
            name,
        )
        return ""

    def expand(self, value: str, *, file: str, line: int, key: str) -> str:
        if "${" not in value:
            return value
        out: list[str] = []
        pos = 0
        while (start := value.find("${", pos)) >= 0:
            end = value.find("}", start + 2)
            if end < 0:
                raise ConfigError(
                    "unterminated '${' in value (expected '${NAME}')", file=file, line=line, key=key
                )
            name = value[start + 2 : end]
            if not name.strip():
                raise ConfigError("empty variable name '${}'", file=file, line=line, key=key)
            out.append(value[pos:start])
            out.append(self.lookup(name, file=file, line=line))
            pos = end + 1
        out.append(value[pos:])
        return "".join(out)

    def freeze(self, sections: list[RawSection], source: str) -> Document:
        """Expand every value with the final variables and build the immutable Document."""
        done: list[Section] = []
        for raw in sections:
            if not raw.props:
                # Fluent Bit warns too ("previous section did not have keys"), it is legal
                logger.warning("%s:%d: section [%s] has no keys", raw.file, raw.line, raw.kind)
            props = tuple(
                Prop(
                    p.key, self.expand(p.value, file=p.file, line=p.line, key=p.key), p.file, p.line
                )
                for p in raw.props
            )
            done.append(Section(raw.kind, props, raw.file, raw.line))
        return Document(tuple(done), source)


class IncludeTracker:
    """Include resolution shared by both formats: globs, loops, files read twice, escapes."""

    def __init__(self, top_file: str) -> None:
        self.root = os.path.dirname(os.path.realpath(top_file))
        self.seen: set[str] = {os.path.realpath(top_file)}
        self.stack: list[str] = [os.path.realpath(top_file)]

    def resolve(self, target: str, *, file: str, line: int, key: str) -> list[str]:
        """The files an include names (relative to the including file), sorted for globs."""
        if not target:
            raise ConfigError("include needs a file name", file=file, line=line, key=key)
        if "\x00" in target:  # no file name holds one; os and glob would raise ValueError
            raise ConfigError("include name holds a NUL byte", file=file, line=line, key=key)
        path = os.path.normpath(os.path.join(os.path.dirname(file), target))
        if "*" in target:  # Fluent Bit globs only when there is a '*'
            matches = sorted(p for p in glob.glob(path) if os.path.isfile(p))
            if not matches:
                # an error in Fluent Bit too (read_glob returns -1 on GLOB_NOMATCH)
                raise ConfigError(
                    f"no file matches include pattern {path!r}", file=file, line=line, key=key
                )
            return matches
        if not os.path.exists(path):
            raise ConfigError(
                f"included file {path!r} does not exist", file=file, line=line, key=key
            )
        return [path]

    def enter(self, path: str, *, file: str, line: int, key: str) -> None:
        real = os.path.realpath(path)
        if real in self.stack:
            chain = " -> ".join([*self.stack[self.stack.index(real) :], real])
            raise ConfigError(f"include loop: {chain}", file=file, line=line, key=key)
        if real in self.seen:
            # Fluent Bit refuses a file read twice ("[config] Read twice") - so do we
            raise ConfigError(f"file {path!r} is already included", file=file, line=line, key=key)
        if len(self.seen) >= MAX_FILES:
            raise ConfigError(
                f"too many configuration files (limit {MAX_FILES})", file=file, line=line, key=key
            )
        if len(self.stack) > MAX_DEPTH:
            raise ConfigError(
                f"includes nested deeper than {MAX_DEPTH}", file=file, line=line, key=key
            )
        if not _inside(real, self.root):
            # security requirement: following a config file out of the config directory is
            # allowed (Fluent Bit does) but must never happen silently
            logger.warning(
                "%s:%d: include %r resolves to %s, outside the configuration directory %s",
                file,
                line,
                path,
                real,
                self.root,
            )
        self.seen.add(real)
        self.stack.append(real)

    def leave(self) -> None:
        self.stack.pop()


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives (Windows) or mixed absolute/relative
        return False


def read_text(path: str, *, file: str = "", line: int = 0, key: str = "") -> str:
    """A config file's text; any failure is a ConfigError naming it (and who included it)."""
    try:
        # utf-8-sig: a BOM written by a Windows editor must not turn `[INPUT]` into garbage;
        # newline="": no universal newlines, a lone CR is not a line break for Fluent Bit
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        msg = f"cannot read configuration file {path!r}: not UTF-8 ({exc.reason})"
    except OSError as exc:
        msg = f"cannot read configuration file {path!r}: {exc.strerror or exc}"
    if file:
        raise ConfigError(msg, file=file, line=line, key=key)
    raise ConfigError(msg, file=path)


class _ClassicReader:
    def __init__(self, top_file: str, env: Mapping[str, str]) -> None:
        self.vars = Variables(env)
        self.includes = IncludeTracker(top_file)
        self.sections: list[RawSection] = []

    def include(self, target: str, *, file: str, line: int, key: str) -> None:
        target = self.vars.expand(target, file=file, line=line, key=key)
        for path in self.includes.resolve(target, file=file, line=line, key=key):
            self.includes.enter(path, file=file, line=line, key=key)
            text = read_text(path, file=file, line=line, key=key)
            self.parse(text, path)
            self.includes.leave()

    def set_variable(self, arg: str, *, file: str, line: int, key: str) -> None:
        name, eq, value = arg.partition("=")
        name = name.strip()
        if not eq or not name or any(c.isspace() for c in name):
            raise ConfigError(
                f"bad @SET {arg!r}: expected @SET NAME=VALUE", file=file, line=line, key=key
            )
        self.vars.defined[name] = self.vars.expand(value.strip(), file=file, line=line, key=key)

    def directive(self, text: str, *, file: str, line: int) -> None:
        word, arg = _split_entry(text)
        command = word.upper()
        if command == "@INCLUDE":
            self.include(arg, file=file, line=line, key=word)
        elif command == "@SET":
            self.set_variable(arg, file=file, line=line, key=word)
        else:
            # flb_meta_run() fails on any command but SET, which aborts the load
            raise ConfigError(
                "unknown directive (expected @INCLUDE or @SET)", file=file, line=line, key=word
            )

    def parse(self, text: str, file: str) -> None:
        current: RawSection | None = None  # per file, as in Fluent Bit's read_config()
        indent: str | None = None
        # split on LF only: Fluent Bit reads with fgets(), so a lone CR, FF or U+2028 is part
        # of the line and line numbers must not drift from what an editor shows
        for lineno, raw in enumerate(text.split("\n"), start=1):
            line = raw[:-1] if raw.endswith("\r") else raw
            stripped = line.strip(_BLANKS)
            if not stripped or stripped.startswith("#"):
                continue
            if line[0] == "@":
                self.directive(line, file=file, line=lineno)
                continue
            if line[0] == "[":
                current = self.header(line, file=file, lineno=lineno)
                continue
            key, value = _split_entry(stripped)
            if line[0] not in _BLANKS:
                raise ConfigError(
                    "entries must be indented under a [SECTION] header",
                    file=file,
                    line=lineno,
                    key=key,
                )
            if stripped[0] == "[" or key.upper() in ("@INCLUDE", "@SET"):
                raise ConfigError(
                    "section headers and @ directives must start in column 1",
                    file=file,
                    line=lineno,
                    key=key,
                )
            lead = line[: len(line) - len(line.lstrip(_BLANKS))]
            if indent is None:
                indent = lead
            else:
                _check_indent(lead, indent, file=file, line=lineno, key=key)
            if current is None:
                raise ConfigError("entry outside of any [SECTION]", file=file, line=lineno, key=key)
            if not value:
                raise ConfigError("key has no value", file=file, line=lineno, key=key)
            current.props.append(RawProp(key, value, file, lineno))

    def header(self, text: str, *, file: str, lineno: int) -> RawSection:
        end = text.find("]")
        if end < 0:
            raise ConfigError(
                "bad section header: missing ']'", file=file, line=lineno, key=text.strip()
            )
        name = text[1:end].strip(_BLANKS)
        kind = name.lower()
        if kind not in SECTION_KINDS:
            expected = ", ".join(f"[{k.upper()}]" for k in SECTION_KINDS)
            raise ConfigError(
                f"unknown section [{name}] (expected one of {expected})",
                file=file,
                line=lineno,
                key=name,
            )
        section = RawSection(kind, file, lineno)
        self.sections.append(section)
        return section


def _split_entry(text: str) -> tuple[str, str]:
    """`key value...`: the key ends at the first blank, the value is the rest, stripped."""
    for i, ch in enumerate(text):
        if ch in _BLANKS:
            return text[:i], text[i + 1 :].strip(_BLANKS)
    return text, ""


def _check_indent(lead: str, indent: str, *, file: str, line: int, key: str) -> None:
    """Fluent Bit's check_indent(): the file's indent, or exactly twice as much (group content)."""
    if lead == indent:
        return
    if not lead.startswith(indent):
        if indent.startswith(lead):
            msg = "invalid indentation level: lower than the file's first entry"
        else:
            msg = "invalid indentation: inconsistent use of tabs and spaces"
        raise ConfigError(msg, file=file, line=line, key=key)
    if len(lead) != 2 * len(indent):
        raise ConfigError(
            "invalid indentation: extra indentation level", file=file, line=line, key=key
        )


def parse_classic_text(text: str, *, file: str, env: Mapping[str, str]) -> Document:
    """Parse classic-format `text` as if it were the top-level file `file`.

    `file` names the text in errors and anchors relative @INCLUDEs (its directory is also the
    "configuration directory" an include must not silently leave).
    """
    reader = _ClassicReader(file, env)
    reader.parse(text, file)
    return reader.vars.freeze(reader.sections, file)


def load_classic(path: str, *, env: Mapping[str, str]) -> Document:
    """Read and parse the classic-format file at `path` (includes expanded)."""
    return parse_classic_text(read_text(path), file=path, env=env)
