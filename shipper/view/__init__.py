"""`shipper tail [TEMP_DIR | SESSION_DIR]`: follow a local Ray session, for a person.

Not a second tail implementation: it runs the agent's own pipeline (shipper.app.App: a tail
input on Ray's directory with the `ray` multi-line parser, signals, graceful shutdown), built
in code, with TerminalOutput (shipper/view/output.py) as its one output.
A TEMP_DIR is followed through its `session_latest`, so a new session is picked up (and
announced) as the agent picks it up; a SESSION_DIR is that one session only.

`-n N`: the last N records (after the filters) of what the files already hold, in time order,
then follow (as `tail -n N -f`). Default 10; 0 starts with new records only (the files are
not read at all); `all` shows everything. Files are read from their head to find them: Ray's
files interleave in time, so the last N of the session are not the last lines of one file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from shipper.app import App
from shipper.config.model import ConfigError, Document, Prop, Section
from shipper.logs import setup_logging
from shipper.tail import discovery
from shipper.tail.input import TailInput
from shipper.view.output import TerminalOutput
from shipper.view.render import RecordFilter, Renderer, parse_level, want_colour

log = logging.getLogger(__name__)

DEFAULT_DIR = "/tmp/ray"
_SRC = "<shipper tail>"
EXCLUDE = "*/debug_state.txt"  # a snapshot rewritten in place, not a log (as the default)


def _count(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def _level(text: str) -> str:
    try:
        return parse_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"bad regular expression: {exc}") from None
    return text


class _Parser(argparse.ArgumentParser):
    """Bad arguments exit 1, as the agent's do (argparse's own default is 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = _Parser(
        prog="shipper tail",
        description="Follow a local Ray session: one readable line per record.",
        epilog="Colour: on a terminal, unless NO_COLOR is set; FORCE_COLOR or --color=always "
        "when piped. Lines without a timestamp of their own (worker prints) show when "
        "they were read; in the history, when their file last changed. Ctrl-C stops.",
    )
    p.add_argument(
        "dir",
        nargs="?",
        default=DEFAULT_DIR,
        metavar="TEMP_DIR|SESSION_DIR",
        help=f"Ray's temp dir (follows its session_latest) or one session "
        f"directory (default {DEFAULT_DIR})",
    )
    p.add_argument(
        "-n",
        "--lines",
        type=_count,
        default=10,
        metavar="N",
        help="records of history to show first, in time order: a number or 'all' (default 10)",
    )
    p.add_argument(
        "-c",
        "--component",
        action="append",
        default=[],
        metavar="NAME",
        help="only these components (repeatable, comma-separated, * wildcards), e.g. raylet,worker",
    )
    p.add_argument(
        "-l",
        "--level",
        type=_level,
        metavar="LEVEL",
        help="minimum level: debug, info, warning, error, fatal",
    )
    p.add_argument(
        "-j",
        "--job",
        metavar="JOB_ID",
        help="only records of this job (job id such as 01000000, or a submission id)",
    )
    p.add_argument(
        "-g",
        "--grep",
        type=_regex,
        metavar="REGEX",
        help="only records whose text matches (Python regex)",
    )
    p.add_argument("--json", action="store_true", help="records as JSON lines")
    p.add_argument("--no-follow", action="store_true", help="print the history and exit")
    p.add_argument(
        "--color",
        "--colour",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output (default auto: on a terminal)",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="the agent's own log on stderr"
    )
    return p.parse_args(list(argv))


def locate(target: str) -> list[str]:
    """Globs of the logs (and events) of a temp dir's session_latest, a session dir, or a
    session's logs dir."""
    d = os.path.abspath(target)
    if os.path.basename(d) == "logs" and os.path.isdir(d):
        base = glob.escape(d)
    elif os.path.isdir(os.path.join(d, "logs")) and not os.path.lexists(
        os.path.join(d, discovery.SESSION_LINK)
    ):
        base = os.path.join(glob.escape(d), "logs")
    else:
        base = os.path.join(glob.escape(d), discovery.SESSION_LINK, "logs")
    return [os.path.join(base, p) for p in ("*", "serve/*", "jobs/*", "events/*.log")]


def document(patterns: list[str], *, from_head: bool, follow: bool) -> Document:
    """The pipeline as a config Document, validated by the same key tables as a file."""

    def section(kind: str, *props: tuple[str, str]) -> Section:
        return Section(kind, tuple(Prop(k, v, _SRC, 0) for k, v in props), _SRC, 0)

    onoff = {True: "on", False: "off"}
    return Document(
        (
            section("service", ("Flush", "0.05"), ("Grace", "2")),
            section(
                "input",
                ("Name", "tail"),
                ("Path", ", ".join(patterns)),
                ("Exclude_Path", EXCLUDE),
                ("Tag", "ray"),
                ("Path_Key", "path"),
                ("Read_from_Head", onoff[from_head]),
                ("Refresh_Interval", "5"),
                ("multiline.parser", "ray"),
                ("Multiline_Flush", "0.5"),
                ("Exit_On_Eof", onoff[not follow]),
            ),
        ),
        _SRC,
    )


class ViewApp(App):
    """The agent's App with the terminal as its output (no plugin a config may name)."""

    def __init__(self, doc: Document, output: TerminalOutput) -> None:
        super().__init__(doc, outputs=[output])
        output.when_broken(self.should_exit.set)  # `| head` is done: stop quietly


async def end_history_when_caught_up(inp: TailInput, out: TerminalOutput) -> None:
    """The history ends once the tail input caught up: every file it found at the start is
    delivered up to the size it had then (TailInput.caught_up). Delivered, not just read: a
    last record the multi-line joiner still holds keeps the history open until it is let go.
    Growth after the start is live and waits for nothing."""
    await inp.caught_up.wait()
    await out.end_history()


async def run_view(app: ViewApp, out: TerminalOutput, follow: bool) -> int:
    watcher = None
    inp = app.pipeline.inputs[0]
    if follow and out.in_history and isinstance(inp, TailInput):
        watcher = asyncio.create_task(end_history_when_caught_up(inp, out))
    try:
        return await app.run()
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    setup_logging({0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG))
    patterns = locate(args.dir)
    follow = not args.no_follow
    if not discovery.expand(patterns, [EXCLUDE]):
        if not follow:
            print(f"shipper tail: no Ray session logs under {args.dir}", file=sys.stderr)
            return 1
        print(
            f"shipper tail: no Ray session under {args.dir} yet; waiting for one (Ctrl-C to stop)",
            file=sys.stderr,
        )
    renderer = (
        None if args.json else Renderer(colour=want_colour(args.color, sys.stdout, os.environ))
    )
    out = TerminalOutput(
        renderer=renderer,
        history=args.lines,
        accept=RecordFilter.build(args.component, args.level, args.job, args.grep),
        history_at_close=not follow,
    )
    try:
        app = ViewApp(document(patterns, from_head=args.lines != 0, follow=follow), out)
        return asyncio.run(run_view(app, out, follow))
    except ConfigError as exc:  # a bug here, not the user's: the document is ours
        log.error("shipper tail: %s", exc)
        return 1
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C outside the app's own handler, or twice
        return 0
