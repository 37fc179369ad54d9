"""The `stdin` input: Ray's log stream on standard input (SPEC section 5).

    RAY_LOG_TO_STDERR=1 ray start --head --block 2>&1 | shipper -i stdin -o stdout

With RAY_LOG_TO_STDERR=1 every component writes to the driver's stdout/stderr instead of its
own file, so the only thing that says who wrote a line is its `(raylet)`-style prefix. One
RayHandler built for stdin (SourceContext with real_path "") reads that prefix into `component`
and joins the lines without a header (debug dumps, tracebacks) to the record before them.

Reading: one daemon thread per descriptor (`_Source`) does blocking `os.read`s in big chunks.
A thread, not `loop.connect_read_pipe`: it works the same for a pipe, a terminal and a regular
file (`shipper -i stdin < saved.log`, which epoll refuses), and a read blocked on a quiet pipe
cannot hold up the exit (a default-executor thread would: asyncio.run joins those). The thread
reads only when the input asks, and the input stops asking at Mem_Buf_Limit: the data then
waits in the pipe and the writer blocks, as it would behind any slow reader.
Lines are split by the tail reader's own code (TailedFile.ingest: CR, long lines, invalid
UTF-8 all as in tail). At end of input the last multi-line record and an unterminated last
line go out, and the input finishes; the app then delivers what is in flight and exits 0,
as Fluent Bit's in_stdin does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from shipper import telemetry
from shipper.chunk import Chunk, Part, count_of, make_chunk
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.lines import LineHandler, PlainHandler, SourceContext
from shipper.parsers.formats import Parser
from shipper.parsers.handler import ParsingHandler
from shipper.tail.batch import RECORD_OVERHEAD
from shipper.tail.identity import FileId
from shipper.tail.options import DEFAULT_MEM_BUF_LIMIT, bounded_mem_buf_limit
from shipper.tail.reader import LineRules, TailedFile, drain_partial

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


def _handler(opts: StdinOptions, parser: Parser | None = None) -> LineHandler:
    ctx = SourceContext(path="", real_path="")  # "": stdin, the prefix names the writer
    handler: LineHandler
    if not opts.ray_metadata and not opts.multiline_parser:
        handler = PlainHandler(ctx)
    else:
        from shipper.ray.handler import make_ray_handler

        handler = make_ray_handler(
            ctx,
            ray_metadata=opts.ray_metadata,
            multiline=opts.multiline_parser,
            tz_offset=opts.time_offset,
        )
    return handler if parser is None else ParsingHandler(handler, parser)


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
        self.stats.buffer_limit = opts.mem_buf_limit
        self.rules = LineRules(
            max_line=opts.buffer_size, skip_long=False, skip_empty=False, want_offsets=False
        )
        # The tail reader's per-file state does the splitting; its positions count bytes of
        # the stream and serve only to pair chunks with their acknowledgements.
        self.stream = TailedFile(
            fid=FileId(0, 0),
            fd=-1,
            path="-",
            real_path="",
            offset=0,
            fingerprint=b"",
            handler=_handler(opts, parser),
            tag=self.tag,
            notify=self._acknowledged,
        )
        self.in_flight = 0
        self._source: _Source | None = None
        self._notify: Callable[[], None] = _nothing  # run() sets the thread-safe waker
        self._wake = asyncio.Event()
        self._stopping = False
        self._requested = False
        self._last_data = time.monotonic()
        self._emit: Callable[[Chunk], None] = lambda chunk: None

    @classmethod
    def from_section(
        cls, section: Section, name: str, *, parser: Parser | None = None
    ) -> StdinInput:
        """Validate an [INPUT] Name stdin section (ConfigError naming file, line, key)."""
        opts = build(StdinOptions, section)
        try:
            _handler(opts)
        except ValueError as exc:  # an unknown multiline.parser name
            prop = section.get("multiline.parser")
            raise ConfigError(
                str(exc),
                file=section.file,
                line=prop.line if prop else section.line,
                key="multiline.parser",
            ) from None
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
        self._emit_records(self.stream.flush_held(time.time()), self.stream.line_pos)
        if self._source is not None and self.stream.partial and not self.stream.skipping:
            self._source.unread(self.stream.partial)
            self.stream.partial = b""

    def close(self) -> None:
        if self._source is not None:
            self._source.detach(self._notify)

    @property
    def idle(self) -> bool:
        return self.in_flight == 0

    # -- internals ----------------------------------------------------------------------
    def _room(self) -> int:
        return self.opts.mem_buf_limit - self.in_flight

    def _ask(self, src: _Source) -> None:
        room = self._room()
        self.stats.buffer_bytes = self.in_flight
        if room <= 0:
            if not self.stats.paused:
                self.stats.paused = True
                log.debug(
                    "%s: paused at Mem_Buf_Limit (%d bytes in flight)", self.name, self.in_flight
                )
            return
        self.stats.paused = False
        if not self._requested and not src.eof:
            self._requested = True
            # Records take ~4x their raw bytes in memory: ask for no more than fits.
            src.request(max(MIN_READ, min(READ_SIZE, room // 4)))

    async def _wait(self) -> None:
        timeout: float | None = None
        if self.stream.held:
            timeout = self._last_data + self.opts.multiline_flush - time.monotonic()
            if timeout <= 0:  # nothing came for Multiline_Flush: the record is complete
                self._emit_records(self.stream.flush_held(time.time()), self.stream.line_pos)
                timeout = None
        if timeout is None:
            await self._wake.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _ingest(self, data: bytes) -> None:
        self._last_data = time.monotonic()
        self.stats.bytes += len(data)
        records, end = self.stream.ingest(data, self.rules, time.time())
        self._emit_records(records, end, len(data))

    def _at_eof(self, src: _Source) -> None:
        if src.error is not None:
            log.warning(
                "%s: cannot read standard input any more: %s",
                self.name,
                src.error.strerror or src.error,
            )
        now = time.time()
        self._emit_records(drain_partial(self.stream, now), self.stream.read_pos)
        log.info("%s: end of input", self.name)

    def _emit_records(self, records: Part, end: int, nbytes: int = 0) -> None:
        n = count_of(records)
        if not n:
            return
        cost = nbytes + RECORD_OVERHEAD * n
        ack = self.stream.new_ack(end, cost)
        self.in_flight += cost
        self.stats.records += n
        self._emit(make_chunk(self.tag, [records], cost, on_done=ack))

    def _acknowledged(self, _stream: TailedFile, nbytes: int) -> None:
        self.in_flight -= nbytes
        if self.stats.paused and self._room() > 0:
            self._wake.set()  # run() asks for the next read
