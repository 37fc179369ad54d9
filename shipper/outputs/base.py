"""What every output shares: a queue of chunks, batching by Flush and size, retries with
exponential backoff and full jitter, and the acknowledgement (chunk.release) once a batch is
delivered or finally dropped. A subclass only encodes records and sends one payload.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from shipper import telemetry
from shipper.chunk import Chunk, Record
from shipper.match import Matcher

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A failed send. `retryable` decides between backoff and dropping the batch."""

    def __init__(
        self, reason: str, *, retryable: bool, retry_after: float | None = None, fatal: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.fatal = fatal  # the destination is gone for good (stdout closed): stop the agent


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """Delivery settings shared by all outputs ([SERVICE] and per-output keys)."""

    flush: float = 1.0  # seconds a record may wait to be batched
    max_batch_bytes: int = 2 * 1024 * 1024
    retry_limit: int | None = None  # None: retry for ever (data waits on disk)
    backoff_base: float = 5.0  # scheduler.base
    backoff_cap: float = 2000.0  # scheduler.cap
    workers: int = 1


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None) -> float:
    """Full jitter (AWS style): uniform in [0, min(cap, base * 2**attempt)].

    A server's Retry-After is a floor: retrying sooner would only be refused again.
    """
    delay = random.uniform(0, min(cap, base * (2 ** min(attempt, 30))))
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


class Output(abc.ABC):
    """Base of all outputs. Subclasses implement `encode` and `send`."""

    plugin = "output"
    immediate = False  # deliver as soon as anything is queued (stdout), ignoring Flush

    def __init__(self, *, name: str, matcher: Matcher, delivery: Delivery) -> None:
        self.name = name
        self.matcher = matcher
        self.delivery = delivery
        self.stats = telemetry.REGISTRY.output(name)
        self.log = logging.getLogger(f"shipper.{name}")
        self._queue: collections.deque[Chunk] = collections.deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        # Called when delivery can never succeed again; the app then stops (exit code 1).
        self.on_fatal: Callable[[str], None] | None = None

    def on_fatal_call(self, on_fatal: Callable[[str], None] | None) -> None:
        """Who is told (with the reason) when delivery can never succeed again."""
        self.on_fatal = on_fatal

    # -- plugin interface -------------------------------------------------------------
    def encode_chunks(self, batch: list[Chunk]) -> bytes | None:
        """The payload straight from the chunks' JSON lines, or None to encode records.

        Only an output whose body is JSON lines (or made from them) overrides this."""
        return None

    def encode_pieces(self, batch: list[Chunk]) -> list[bytes] | None:
        """For an output that writes a byte stream (stdout): the payload as pieces that
        `send_pieces` writes one after the other (joining them first would copy every byte
        once more), or None for `encode_chunks`."""
        return None

    async def send_pieces(self, pieces: list[bytes]) -> None:
        """Deliver the pieces of one payload (see encode_pieces), as `send` does."""
        raise NotImplementedError

    @abc.abstractmethod
    def encode(self, records: list[Record]) -> bytes:
        """Records -> one payload."""

    @abc.abstractmethod
    async def send(self, payload: bytes, records: list[Record]) -> None:
        """Deliver one payload; raise DeliveryError on failure. `records` is empty when
        `encode_chunks` made the payload."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (sessions, threads). Called once before the first send."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    # -- pipeline interface -----------------------------------------------------------
    def submit(self, chunk: Chunk) -> None:
        chunk.hold()
        self._queue.append(chunk)
        self._queued_bytes += chunk.nbytes
        self._idle.clear()
        self._wakeup.set()

    async def start(self) -> None:
        await self.open()
        for i in range(max(1, self.delivery.workers)):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"{self.name}-w{i}"))

    async def drain(self) -> None:
        """Wait until everything submitted so far is delivered or dropped."""
        self._closing = True  # no more waiting for Flush: send what is there now
        self._wakeup.set()
        await self._idle.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.close()

    # -- internals ----------------------------------------------------------------------
    def _take_batch(self) -> list[Chunk]:
        batch: list[Chunk] = []
        size = 0
        while self._queue and (
            not batch or size + self._queue[0].nbytes <= self.delivery.max_batch_bytes
        ):
            chunk = self._queue.popleft()
            self._queued_bytes -= chunk.nbytes
            size += chunk.nbytes
            batch.append(chunk)
        return batch

    async def _wait_for_batch(self) -> None:
        while not self._queue:
            self._wakeup.clear()
            if not self._queue:
                await self._wakeup.wait()
        if self.immediate or self._closing:
            return
        # Let the batch fill for up to Flush seconds, unless it is already full.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.delivery.flush
        while self._queued_bytes < self.delivery.max_batch_bytes and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break

    async def _worker(self) -> None:
        while True:
            await self._wait_for_batch()
            batch = self._take_batch()
            if not batch:
                continue
            self._busy += 1
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                # Stopped mid-delivery (Grace ran out): not delivered, so not acknowledged;
                # the offset stays before it and the next run sends it again.
                self._busy -= 1
                raise
            except Exception as exc:  # a bug must not kill the output and stall every input
                self.log.exception("unexpected error delivering a batch")
                telemetry.output_dropped(
                    self.stats, sum(c.count for c in batch), f"unexpected error: {exc!r}"
                )
            self._busy -= 1
            for chunk in batch:
                chunk.release()
            if not self._queue and self._busy == 0:
                self._idle.set()

    async def _deliver(self, batch: list[Chunk]) -> None:
        count = sum(c.count for c in batch)
        if not count:
            return
        records: list[Record] = []  # decoded only for outputs that need them
        pieces = self.encode_pieces(batch)
        payload = b"" if pieces is not None else self.encode_chunks(batch)
        if payload is None:
            records = (
                [r for chunk in batch for r in chunk.records]
                if len(batch) > 1
                else batch[0].records
            )
            payload = self.encode(records)
        attempt = 0
        while True:
            try:
                if pieces is not None:
                    await self.send_pieces(pieces)
                else:
                    await self.send(payload, records)
            except DeliveryError as err:
                if err.fatal:
                    self.log.error("%s: stopping", err.reason)
                    if self.on_fatal is not None:
                        self.on_fatal(err.reason)
                    await asyncio.Event().wait()  # never acknowledged: wait to be cancelled
                if not err.retryable:
                    telemetry.output_dropped(self.stats, count, err.reason)
                    return
                limit = self.delivery.retry_limit
                if limit is not None and attempt >= limit:
                    telemetry.output_retries_exhausted(self.stats, count, err.reason)
                    return
                delay = backoff_delay(
                    attempt, self.delivery.backoff_base, self.delivery.backoff_cap, err.retry_after
                )
                attempt += 1
                telemetry.output_retry(self.stats, attempt, delay, err.reason)
                await asyncio.sleep(delay)
                continue
            size = len(payload) if pieces is None else sum(map(len, pieces))
            telemetry.output_delivered(self.stats, count, size)
            return
