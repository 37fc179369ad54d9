"""The `stdin` input: Ray's log stream on standard input.

    RAY_LOG_TO_STDERR=1 ray start --head --block 2>&1 | shipper -i stdin -o stdout

With RAY_LOG_TO_STDERR=1 every component writes to the driver's stdout/stderr instead of its
own file, so the only thing that says who wrote a line is its `(raylet)`-style prefix. One
RayHandler built for a stream (SourceContext with stream=True) reads that prefix into
`component` and joins the lines without a header (debug dumps, tracebacks) to the record
before them.

Reading: one daemon thread per descriptor (`_Source`) does blocking `os.read`s in big chunks.
A thread, not `loop.connect_read_pipe`: it works the same for a pipe, a terminal and a regular
file (`shipper -i stdin < saved.log`, which epoll refuses), and a read blocked on a quiet pipe
cannot hold up the exit (a default-executor thread would: asyncio.run joins those). The thread
reads only when the input asks, and the input stops asking at Mem_Buf_Limit: the data then
waits in the pipe and the writer blocks, as it would behind any slow reader.
Lines are split by tail's own LineSplitter (CR, long lines, invalid UTF-8 all as in tail),
chunks are acknowledged through an AckLedger and Mem_Buf_Limit is an InputBudget, as in
tail. At end of input the last multi-line record and an unterminated last line go out, and
the input finishes; the app then delivers what is in flight and exits 0, as Fluent Bit's
in_stdin does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from shipper import telemetry
from shipper.budget import InputBudget, record_cost
from shipper.chunk import Chunk, Part, count_of, make_chunk
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.lines import HandlerFactory, SourceContext
from shipper.parsers.config import ParserSet
from shipper.parsers.formats import Parser
from shipper.parsers.inputs import wrap
from shipper.ray.handler import handler_factory
from shipper.tail.ledger import AckLedger
from shipper.tail.options import DEFAULT_MEM_BUF_LIMIT, bounded_mem_buf_limit
from shipper.tail.splitter import LineRules, LineSplitter

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024  # most bytes one read asks for (as tail's READ_LIMIT)
MIN_READ = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class StdinOptions:
    tag: str | None = opt(
        "Tag",
        "str",
        None,
        help="Tag of the records (default: the instance name, e.g. stdin.0, as Fluent Bit).",
    )
    buffer_size: int = opt(
        "Buffer_Size",
        "size",
        16 * 1024,
        help="Longest line kept whole (Fluent Bit's stdin buffer); a longer "
        'line is cut there and flagged "truncated": true.',
    )
    mem_buf_limit: int = opt(
        "Mem_Buf_Limit",
        "size",
        DEFAULT_MEM_BUF_LIMIT,
        help="Bytes of records in flight before reading pauses (0: the default).",
    )
    ray_metadata: bool = opt(
        "Ray_Metadata",
        "bool",
        True,
        help="Add component (from the `(raylet)` style prefix) and the "
        "parsed Ray fields to records.",
    )
    parser: str | None = opt(
        "Parser", "str", None, help="Name of a [PARSER] for each record's log (no match: kept)."
    )
    multiline_parser: tuple[str, ...] = opt(
        "multiline.parser", "list", ("ray",), help="Multi-line parsers: ray (default), python."
    )
    multiline_flush: float = opt(
        "Multiline_Flush", "time", 1.0, help="Seconds a pending multi-line record waits for more."
    )
    time_offset: float | None = opt(
        "Time_Offset",
        "float",
        None,
        help="UTC offset in hours of the timestamps in Ray's "
        "lines (default: this machine's local zone).",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "mem_buf_limit", bounded_mem_buf_limit(self.mem_buf_limit))


def _factory(opts: StdinOptions) -> HandlerFactory:
    """ValueError for an unknown multiline.parser name."""
    return handler_factory(
        ray_metadata=opts.ray_metadata, multiline=opts.multiline_parser, tz_offset=opts.time_offset
    )


class _Source:
    """The reader thread of one descriptor, shared by every stdin input of the process.

    Shared because a hot reload replaces the input while the thread may be blocked in a read:
    what it reads then belongs to the successor, and a second thread on the same descriptor
    would race the first for the bytes.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self.error: OSError | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._want = threading.Event()
        self._limit = READ_SIZE
        self._notify: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None

    def attach(self, notify: Callable[[], None]) -> None:
        self._notify = notify
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"stdin-reader-{self.fd}", daemon=True
            )
            self._thread.start()

    def detach(self, notify: Callable[[], None]) -> None:
        if self._notify is notify:
            self._notify = None

    def request(self, limit: int) -> None:
        """Ask for one more read of at most `limit` bytes."""
        self._limit = limit
        self._want.set()

    def take(self) -> list[bytes]:
        with self._lock:
            out = list(self._chunks)
            self._chunks.clear()
            return out

    def unread(self, data: bytes) -> None:
        """Give bytes back (a partial line at a reload): the next reader gets them first."""
        if data:
            with self._lock:
                self._chunks.appendleft(data)

    @property
    def drained(self) -> bool:
        """End of input and every byte taken."""
        with self._lock:
            return self.eof and not self._chunks

    def _run(self) -> None:
        while True:
            self._want.wait()
            self._want.clear()
            err: OSError | None = None
            try:
                data = os.read(self.fd, self._limit)
            except OSError as exc:  # EBADF (stdin closed), EIO (terminal hung up): the end
                err, data = exc, b""
            with self._lock:
                if data:
                    self._chunks.append(data)
                else:
                    self.eof, self.error = True, err
            notify = self._notify
            if notify is not None:
                notify()
            if not data:
                return


def _nothing() -> None:
    pass


_SOURCES: dict[int, _Source] = {}
_SOURCES_LOCK = threading.Lock()


def source_of(fd: int) -> _Source:
    with _SOURCES_LOCK:
        src = _SOURCES.get(fd)
        if src is None:
            src = _SOURCES[fd] = _Source(fd)
        return src


class StdinInput:
    plugin = "stdin"

    def __init__(
        self, *, name: str, opts: StdinOptions, fd: int | None = None, parser: Parser | None = None
    ) -> None:
        self.name = name
        self.opts = opts
        self.tag = opts.tag or name
        self.fd = 0 if fd is None else fd
        self.stats = telemetry.REGISTRY.input(name)
        self._wake = asyncio.Event()
        self.budget = InputBudget(limit=opts.mem_buf_limit, stats=self.stats, wake=self._wake.set)
        rules = LineRules(
            max_line=opts.buffer_size, skip_long=False, skip_empty=False, want_offsets=False
        )
        ctx = SourceContext(path="", real_path="", stream=True)  # the prefix names the writer
        self.splitter = LineSplitter(
            handler=wrap(_factory(opts)(ctx), kinds=(), parser=parser),
            rules=rules,
            on_long=functools.partial(telemetry.long_line, self.stats, "-", opts.buffer_size),
        )
        # Positions count bytes of the stream: they only pair chunks with acknowledgements.
        self.ledger: AckLedger[StdinInput] = AckLedger(self, 0, self._acknowledged)
        self._source: _Source | None = None
        self._notify: Callable[[], None] = _nothing  # run() sets the thread-safe waker
        self._stopping = False
        self._requested = False
        self._last_data = time.monotonic()
        self._emit: Callable[[Chunk], None] = lambda chunk: None

    @classmethod
    def from_section(
        cls, section: Section, name: str, *, parsers: ParserSet | None = None
    ) -> StdinInput:
        """Validate an [INPUT] Name stdin section (ConfigError naming file, line, key)."""
        opts = build(StdinOptions, section)
        try:
            _factory(opts)
        except ValueError as exc:  # an unknown multiline.parser name
            prop = section.get("multiline.parser")
            raise ConfigError(
                str(exc),
                file=section.file,
                line=prop.line if prop else section.line,
                key="multiline.parser",
            ) from None
        prop = section.get("parser")
        parser = (parsers or ParserSet()).get(prop.value, prop) if prop is not None else None
        return cls(name=name, opts=opts, parser=parser)

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self, emit: Callable[[Chunk], None]) -> None:
        """Read until end of input (then flush and return) or until `stop`."""
        self._emit = emit
        loop = asyncio.get_running_loop()
        src = self._source = source_of(self.fd)

        def notify() -> None:  # on the reader thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
                loop.call_soon_threadsafe(self._wake.set)

        self._notify = notify
        src.attach(notify)
        log.debug("%s: reading standard input (fd %d)", self.name, self.fd)
        while not self._stopping:
            self._wake.clear()
            chunks = src.take()
            if chunks:
                self._requested = False
            self._ask(src)  # the next read overlaps with parsing this one
            for data in chunks:
                self._ingest(data)
            if not chunks and src.drained:
                self._at_eof(src)
                return
            await self._wait()

    def stop(self) -> None:
        """Stop reading (SIGTERM, reload): what was read is still delivered."""
        self._stopping = True
        self._wake.set()

    def finish(self, *, keep_held: bool) -> None:
        """After stop. A multi-line record held is emitted whatever `keep_held` says: a pipe
        cannot be read again, so there is no stored offset to rebuild it from. An unfinished
        last line goes back to the shared reader for a successor (hot reload)."""
        self._emit_records(*self.splitter.flush_held(time.time()))
        if self._source is not None:
            self._source.unread(self.splitter.take_partial())

    def close(self) -> None:
        if self._source is not None:
            self._source.detach(self._notify)

    # -- internals ----------------------------------------------------------------------
    def _ask(self, src: _Source) -> None:
        room = self.budget.room()
        if room > 0 and not self._requested and not src.eof:
            self._requested = True
            # Records take ~4x their raw bytes in memory: ask for no more than fits.
            src.request(max(MIN_READ, min(READ_SIZE, room // 4)))

    async def _wait(self) -> None:
        timeout: float | None = None
        if self.splitter.held:
            timeout = self._last_data + self.opts.multiline_flush - time.monotonic()
            if timeout <= 0:  # nothing came for Multiline_Flush: the record is complete
                self._emit_records(*self.splitter.flush_held(time.time()))
                timeout = None
        if timeout is None:
            await self._wake.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _ingest(self, data: bytes) -> None:
        self._last_data = time.monotonic()
        self.stats.bytes += len(data)
        records, end = self.splitter.ingest(data, time.time())
        self._emit_records(records, end, len(data))

    def _at_eof(self, src: _Source) -> None:
        if src.error is not None:
            log.warning(
                "%s: cannot read standard input any more: %s",
                self.name,
                src.error.strerror or src.error,
            )
        self._emit_records(*self.splitter.drain(time.time()))
        log.info("%s: end of input", self.name)

    def _emit_records(self, records: Part, end: int, nbytes: int = 0) -> None:
        n = count_of(records)
        if not n:
            return
        cost = record_cost(nbytes, n)
        ack = self.ledger.add(end, cost)
        self.budget.charge(cost)
        self.stats.records += n
        self._emit(make_chunk(self.tag, [records], cost, on_done=ack))

    def _acknowledged(self, _owner: StdinInput, cost: int) -> None:
        self.budget.release(cost)  # wakes run() to ask for the next read


def create(section: Section, *, name: str, parsers: ParserSet) -> StdinInput:
    return StdinInput.from_section(section, name, parsers=parsers)
