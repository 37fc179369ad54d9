"""The `stdout` output: records as JSON lines (or a JSON array per flush) on standard output.

Writes happen in a dedicated daemon thread: a pipe nobody reads blocks that thread, not the
event loop, and no acknowledgement comes back, so readers pause at Mem_Buf_Limit and the data
waits on disk. A daemon thread never keeps the process from exiting after Grace.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sys
import threading
from dataclasses import dataclass

from shipper.chunk import Chunk, Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.formats import (
    DateFormat,
    chunks_json,
    chunks_lines,
    date_format_opt,
    date_key_opt,
    encode_json_array,
    encode_json_lines,
)
from shipper.match import Matcher
from shipper.outputs.base import Delivery, DeliveryError, Output
from shipper.pipes import widen, write_all


@dataclass(frozen=True, slots=True, kw_only=True)
class StdoutOptions:
    format: str = opt(
        "Format",
        "str",
        "json_lines",
        choices=("json_lines", "json", "msgpack"),
        help="json_lines: one JSON object per line; json: one array per flush.",
    )
    json_date_key: str = date_key_opt()
    json_date_format: str = date_format_opt()


class StdoutOutput(Output):
    plugin = "stdout"
    immediate = True

    def __init__(self, *, opts: StdoutOptions, fd: int | None = None, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        if opts.format == "msgpack":
            raise ValueError("Format msgpack is not supported: use json_lines or json")
        self.opts = opts
        self.date = DateFormat.build(opts.json_date_key, opts.json_date_format)
        self._fd = sys.stdout.fileno() if fd is None else fd
        self._jobs: queue.SimpleQueue[tuple[list[bytes], asyncio.Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def encode_pieces(self, batch: list[Chunk]) -> list[bytes] | None:
        if self.opts.format != "json_lines":
            return None
        return chunks_lines(batch, self.date)

    def encode_chunks(self, batch: list[Chunk]) -> bytes | None:
        body = chunks_json(batch, self.date, self.opts.format)
        return body + b"\n" if body is not None and self.opts.format == "json" else body

    def encode(self, records: list[Record]) -> bytes:
        if self.opts.format == "json":
            return encode_json_array(records, self.date) + b"\n"
        return encode_json_lines(records, self.date)

    @property
    def _anonymous_pipe(self) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{self._fd}").startswith("pipe:")
        except OSError:
            return False

    async def open(self) -> None:
        widen(self._fd)  # a flush in one or two writes, not one per 64 KiB (see pipes.py)
        self._thread = threading.Thread(
            target=self._writer, name=f"{self.name}-writer", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        self._jobs.put(None)

    async def send(self, payload: bytes, records: list[Record]) -> None:
        await self.send_pieces([payload])

    async def send_pieces(self, pieces: list[bytes]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.put((pieces, fut))
        try:
            await fut
        except BrokenPipeError:
            if self._anonymous_pipe:  # `shipper | head`: that reader never comes back
                raise DeliveryError(
                    "standard output was closed by its reader", retryable=False, fatal=True
                ) from None
            # A named FIFO (containerd's shim, a log collector) may be opened again: retry.
            raise DeliveryError("standard output has no reader", retryable=True) from None
        except OSError as exc:
            raise DeliveryError(
                f"cannot write to standard output: {exc.strerror}", retryable=True
            ) from None

    def _writer(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            pieces, fut = job
            loop = fut.get_loop()
            try:
                write_all(self._fd, pieces)
            except OSError as exc:
                err = exc
                loop.call_soon_threadsafe(_settle, fut, err)
                continue
            loop.call_soon_threadsafe(_settle, fut, None)


def _settle(fut: asyncio.Future[None], err: OSError | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


def create(section: Section, *, name: str, matcher: Matcher, delivery: Delivery) -> StdoutOutput:
    opts = build(StdoutOptions, section)
    if opts.format == "msgpack":
        prop = section.get("format")
        raise ConfigError(
            "Format msgpack is not supported here: use json_lines or json",
            file=section.file,
            line=prop.line if prop else section.line,
            key="Format",
        )
    return StdoutOutput(opts=opts, name=name, matcher=matcher, delivery=delivery)
