"""Command line, as Fluent Bit's: `shipper -c FILE`, `shipper -i tail -p path=... -o stdout`,
`--dry-run`, `--version`, `-v`; and the `tail` subcommand (the local view for a person).

Exit codes: 0 clean stop, 1 configuration error (named file, line and key) or crash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from shipper import __version__
from shipper.config.defaults import DEFAULT_CONFIG, default_config_path
from shipper.config.model import ConfigError, Document, Prop, Section
from shipper.logs import setup_logging

log = logging.getLogger("shipper")

USAGE = """\
usage: shipper [-c FILE] [-i INPUT [-p KEY=VALUE]... [-t TAG]]... [-F FILTER -m MATCH ...]
               [-o OUTPUT [-p KEY=VALUE]... [-m MATCH]]... [-R PARSERS_FILE]... [-f SECONDS]
               [--dry-run] [-v|-vv|-q] [--version]
       shipper tail [TEMP_DIR | SESSION_DIR] [options]   (shipper tail --help)

With no -c and no -i/-o: {drop_in} if it exists, else the embedded default
(tail /tmp/ray/session_latest/logs/* to stdout as JSON lines).
"""


class UsageError(Exception):
    pass


_PLUGIN_FLAGS = {
    "-i": "input",
    "--input": "input",
    "-o": "output",
    "--output": "output",
    "-F": "filter",
    "--filter": "filter",
}


_SWITCHES = {
    "-D": "dry_run",
    "--dry-run": "dry_run",
    "-V": "version",
    "--version": "version",
    "-h": "help",
    "--help": "help",
    "-q": "quiet",
    "--quiet": "quiet",
}
_VALUES = {"-c": "config", "--config": "config", "-f": "flush", "--flush": "flush"}
_SRC = "<command line>"


def parse_args(argv: Sequence[str]) -> tuple[dict[str, object], Document | None]:
    """Fluent Bit's CLI: -p/-t/-m apply to the plugin named last."""
    opts: dict[str, object] = {
        "config": None,
        "dry_run": False,
        "verbose": 0,
        "quiet": False,
        "flush": None,
        "version": False,
        "help": False,
    }
    parsers: list[Prop] = []  # -R FILE: Parsers_File props, as Fluent Bit's -R/--parser
    opts["parsers"] = parsers
    sections: list[tuple[str, list[Prop]]] = []
    args = list(argv)
    i = 0
    while i < len(args):
        i = _parse_one(args, i, opts, sections)
    if not sections:
        return opts, None
    built = []
    for kind, props in sections:
        if kind == "output" and not any(p.name in ("match", "match_regex") for p in props):
            props.append(Prop("Match", "*", _SRC, 0))  # as Fluent Bit's CLI: match everything
        built.append(Section(kind, tuple(props), _SRC, props[0].line))
    if opts["flush"] is not None:
        built.insert(0, Section("service", (Prop("Flush", str(opts["flush"]), _SRC, 0),), _SRC, 0))
    return opts, Document(tuple(built), _SRC)


def _parse_one(
    args: list[str], i: int, opts: dict[str, object], sections: list[tuple[str, list[Prop]]]
) -> int:
    """Take the argument at `i` (and its value): the index of the next one."""
    a = args[i]

    def value() -> str:
        if i + 1 >= len(args):
            raise UsageError(f"{a} needs a value")
        return args[i + 1]

    if a in _SWITCHES:
        opts[_SWITCHES[a]] = True
        return i + 1
    if a.startswith("--config="):
        opts["config"] = a.split("=", 1)[1]
        return i + 1
    if a.startswith("--parser="):  # -R FILE: Parsers_File, as Fluent Bit's -R/--parser
        _parsers(opts).append(Prop("Parsers_File", a.split("=", 1)[1], _SRC, i + 1))
        return i + 1
    if a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}):
        more = 1 if a == "--verbose" else len(a) - 1
        opts["verbose"] = int(opts["verbose"]) + more  # type: ignore[call-overload]
        return i + 1
    if a in _VALUES:
        opts[_VALUES[a]] = value()
    elif a in ("-R", "--parser"):
        _parsers(opts).append(Prop("Parsers_File", value(), _SRC, i + 1))
    elif a in _PLUGIN_FLAGS:
        sections.append((_PLUGIN_FLAGS[a], [Prop("Name", value(), _SRC, i + 1)]))
    elif a in ("-p", "--prop", "-t", "--tag", "-m", "--match"):
        prop = _plugin_key(a, value, i + 1, sections)
        sections[-1][1].append(prop)
    else:
        raise UsageError(f"unknown argument {a!r}")
    return i + 2


def _parsers(opts: dict[str, object]) -> list[Prop]:
    parsers = opts["parsers"]
    assert isinstance(parsers, list)
    return parsers


def _plugin_key(
    a: str, value: Callable[[], str], line: int, sections: list[tuple[str, list[Prop]]]
) -> Prop:
    """-p KEY=VALUE, -t TAG, -m MATCH: a key of the plugin named last."""
    if a in ("-p", "--prop"):
        if not sections:
            raise UsageError("-p must follow -i, -F or -o")
        kv = value()
        if "=" not in kv:
            raise UsageError(f"-p expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        return Prop(k.strip(), v, _SRC, line)
    if a in ("-t", "--tag"):
        if not sections or sections[-1][0] != "input":
            raise UsageError("-t must follow -i")
        return Prop("Tag", value(), _SRC, line)
    if not sections or sections[-1][0] == "input":
        raise UsageError("-m must follow -o or -F")
    return Prop("Match", value(), _SRC, line)


def load_document(
    config: str | None, cli_doc: Document | None, parsers: Sequence[Prop] = ()
) -> Document:
    doc = _base_document(config, cli_doc)
    if parsers:  # -R FILE: one more [SERVICE] Parsers_File each
        extra = Section("service", tuple(parsers), parsers[0].file, parsers[0].line)
        doc = Document((*doc.sections, extra), doc.source)
    return doc


def _base_document(config: str | None, cli_doc: Document | None) -> Document:
    from shipper.config.classic import parse_classic_text
    from shipper.config.loader import load_config

    if config is not None:
        doc = load_config(config, env=dict(os.environ))
        if cli_doc is not None:  # -c plus -i/-o: both, as Fluent Bit does
            doc = Document(doc.sections + cli_doc.sections, doc.source)
        return doc
    if cli_doc is not None:
        return cli_doc
    drop_in = default_config_path()
    if drop_in is not None:
        return load_config(drop_in, env=dict(os.environ))
    return parse_classic_text(DEFAULT_CONFIG, file="<default>", env=dict(os.environ))


def plugin_help(kind: str, plugin: str) -> int:
    """Print a plugin's key table, then the keys every plugin of its kind accepts: the same
    tables that validate its section."""
    from shipper.config.schema import COMMON, key_table
    from shipper.plugins import key_table_of, registry

    table = key_table_of(kind, plugin)
    if table is None:
        known = ", ".join(sorted(registry(kind)))
        print(f"shipper: no {kind} plugin named {plugin!r} (known: {known})", file=sys.stderr)
        return 1
    rows = key_table(table)
    own = {row["key"].lower() for row in rows}
    common = (
        [r for r in key_table(COMMON[kind]) if r["key"].lower() not in own]
        if kind in COMMON
        else []
    )
    lines = [f"{kind} plugin '{plugin}' keys (case-insensitive):", ""]
    lines += _key_rows(rows)
    if common:
        lines += ["", f"keys of every {kind}:", "", *_key_rows(common)]
    try:
        print("\n".join(lines))
    except BrokenPipeError:  # `| head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _key_rows(rows: list[dict[str, object]]) -> list[str]:
    lines: list[str] = []
    for row in rows:
        default = row["default"]
        shown = "" if default in (None, (), "") else f" (default: {default})"
        choices = row["choices"]
        kind_text = "/".join(choices) if isinstance(choices, tuple) and choices else row["kind"]
        repeat = ", repeatable" if row["multi"] else ""
        lines += [f"  {row['key']:<26} {kind_text}{repeat}{shown}", f"  {'':<26} {row['help']}"]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from shipper.limits import raise_fd_limit
    from shipper.memory import tune_allocator, tune_gc

    tune_allocator()
    tune_gc()
    raise_fd_limit()
    if args and args[0] == "tail":
        from shipper.view import main as view_main

        return view_main(args[1:])
    try:
        opts, cli_doc = parse_args(args)
    except UsageError as exc:
        print(
            f"shipper: {exc}\n\n"
            + USAGE.format(drop_in=default_config_path() or "/fluent-bit/etc/fluent-bit.conf"),
            file=sys.stderr,
        )
        return 1
    if opts["help"]:
        plugins = [sec for sec in (cli_doc.sections if cli_doc else ()) if sec.kind != "service"]
        if plugins:  # `shipper -i tail -h`: the plugin's keys, as Fluent Bit's -h does
            return plugin_help(plugins[-1].kind, plugins[-1].plugin)
        print(USAGE.format(drop_in="/fluent-bit/etc/fluent-bit.conf"))
        return 0
    if opts["version"]:
        print(f"shipper v{__version__} ({_helpers()})")
        return 0
    verbose = int(opts["verbose"])  # type: ignore[call-overload]
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    from shipper.pipeline import Pipeline, log_level, service_of

    try:
        config = opts["config"]
        parsers: list[Prop] = opts["parsers"]  # type: ignore[assignment]
        doc = load_document(config if isinstance(config, str) else None, cli_doc, parsers)
        if not verbose:
            level = "error" if opts["quiet"] else service_of(doc).log_level
            logging.getLogger("shipper").setLevel(log_level(level))

        def reload_doc() -> Document:
            return load_document(config if isinstance(config, str) else None, cli_doc, parsers)

        if opts["dry_run"]:
            Pipeline.build(doc)
            print(f"configuration test is successful ({doc.source})")
            return 0
        return asyncio.run(_run(doc, reload_doc))
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 0


async def _run(doc: Document, reload_doc: object) -> int:
    from shipper.app import App

    app = App(doc, reload_doc=reload_doc)  # type: ignore[arg-type]
    return await app.run()


def _helpers() -> str:
    """Which optional C helpers this process uses (they change speed, never records)."""
    from shipper.extensions import describe
    from shipper.ray.fast import native as ray_native
    from shipper.tail.reader import native as read_native

    return describe({"ray fast path": ray_native(), "read pass": read_native()})
