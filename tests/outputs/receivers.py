"""HTTP receivers for output tests: aiohttp servers in a thread (protocol ones in protocols.py).

Each receiver validates every request against the documented wire format of its backend
(Loki push API, Elasticsearch Bulk API, OTLP/HTTP JSON logs, or plain JSON bodies), records
what it saw, and answers as the real server would. A test scripts misbehaviour by queueing
actions that apply to the next requests, one each:

    rx.script(Status(500), Status(429, retry_after="2"), RESET, Slow(3.0))

Validation failures are answered with 400 and collected in `rx.errors` (a test asserts it is
empty). `down()`/`up()` stop and restart listening on the same port.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import gzip
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.backends import free_port


@dataclass(frozen=True)
class Status:
    """Answer with this status (the request is not accepted)."""

    code: int
    body: str = ""
    retry_after: str | None = None
    accept: bool = False  # store the payload anyway (server did the work, then failed)


@dataclass(frozen=True)
class Slow:
    """Wait this long, then handle the request normally."""

    seconds: float


@dataclass(frozen=True)
class Reset:
    """Abort the connection without an answer."""


RESET = Reset()
Action = Status | Slow | Reset


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    raw: bytes  # as received (compressed when Content-Encoding says so)
    body: bytes  # decompressed
    at: float  # time.monotonic() when it arrived
    answered: int = 0
    accepted: bool = False
    payload: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class ValidationError(Exception):
    pass


def check(cond: object, message: str) -> None:
    if not cond:
        raise ValidationError(message)


class Receiver:
    """Base: accepts any body. Subclasses implement `validate` and `answer`."""

    path = "/"
    content_type: str | None = None

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = free_port()
        self.ssl_context = ssl_context
        self.requests: list[Seen] = []
        self.errors: list[str] = []
        self.accepted: list[Any] = []  # what validate() returned for accepted requests
        self._script: collections.deque[Action] = collections.deque()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.up()

    # -- control (from the test thread) -------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    def script(self, *actions: Action) -> None:
        with self._lock:
            self._script.extend(actions)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def up(self) -> None:
        self._call(self._up())

    def down(self) -> None:
        self._call(self._down())

    def close(self) -> None:
        self._call(self._down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.requests)

    # -- server side --------------------------------------------------------------------
    async def _up(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, auto_decompress=False, access_log=None, handle_signals=False
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context, reuse_address=True
        )
        await site.start()

    async def _down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = raw
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(raw)
        seen = Seen(
            request.method,
            request.path,
            request.rel_url.raw_query_string,
            dict(request.headers),
            raw,
            body,
            time.monotonic(),
        )
        with self._lock:
            self.requests.append(seen)
            action = self._script.popleft() if self._script else None
        if isinstance(action, Slow):
            await asyncio.sleep(action.seconds)
            action = None
        if isinstance(action, Reset):
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        try:
            payload = self.validate(seen)
        except ValidationError as exc:
            with self._lock:
                self.errors.append(f"{request.method} {request.path}: {exc}")
            seen.answered = 400
            return web.Response(status=400, text=f"invalid request: {exc}")
        seen.payload = payload
        if isinstance(action, Status):
            seen.answered = action.code
            if action.accept:
                self.accept(seen, payload)
            headers = {"Retry-After": action.retry_after} if action.retry_after else {}
            return web.Response(status=action.code, text=action.body, headers=headers)
        return self.answer(seen, payload)

    def accept(self, seen: Seen, payload: Any) -> None:
        seen.accepted = True
        with self._lock:
            self.accepted.append(payload)

    # -- protocol -----------------------------------------------------------------------
    def validate(self, seen: Seen) -> Any:
        return seen.body

    def answer(self, seen: Seen, payload: Any) -> web.StreamResponse:
        self.accept(seen, payload)
        seen.answered = 200
        return web.Response(status=200, text="ok")


class JsonReceiver(Receiver):
    """A plain endpoint for the `http` output: json, json_lines or json_stream bodies."""

    def __init__(self, fmt: str = "json_lines", **kw: Any) -> None:
        self.fmt = fmt
        super().__init__(**kw)

    def validate(self, seen: Seen) -> list[dict[str, Any]]:
        ctype = seen.headers.get("Content-Type", "")
        want = "application/x-ndjson" if self.fmt == "json_lines" else "application/json"
        check(ctype == want, f"Content-Type {ctype!r}, expected {want!r}")
        text = seen.body.decode("utf-8")
        if self.fmt == "json":
            records = json.loads(text)
            check(isinstance(records, list), "json body is not an array")
        elif self.fmt == "json_lines":
            check(text.endswith("\n"), "json_lines body does not end with a newline")
            records = [json.loads(line) for line in text.split("\n")[:-1]]
        else:  # json_stream: objects back to back
            dec = json.JSONDecoder()
            records, pos = [], 0
            while pos < len(text):
                obj, pos = dec.raw_decode(text, pos)
                records.append(obj)
            check("\n" not in text, "json_stream body has separators")
        for rec in records:
            check(isinstance(rec, dict), "a record is not an object")
        return records

    def logs(self) -> list[str]:
        with self._lock:
            return [r["log"] for batch in self.accepted for r in batch]


def basic_auth(seen: Seen) -> tuple[str, str] | None:
    auth = seen.headers.get("Authorization", "")
    if not auth.startswith("Basic "):
        return None
    user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
    return user, pw


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class CountingReceiver(Receiver):
    """json_lines of records whose `log` starts with a 9-digit sequence number: keeps only a
    bitmap of the numbers seen (for large volumes), plus the count of duplicates."""

    def __init__(self, size: int, **kw: Any) -> None:
        self.seen_map = bytearray(size)
        self.distinct = 0
        self.duplicates = 0
        self.lines = 0
        super().__init__(**kw)

    def validate(self, seen: Seen) -> int:
        check(seen.headers.get("Content-Type") == "application/x-ndjson", "Content-Type")
        check(seen.body.endswith(b"\n"), "json_lines body must end with a newline")
        n = 0
        for line in seen.body.split(b"\n")[:-1]:
            pos = line.find(b'"log":"')
            check(pos >= 0 and line.startswith(b"{") and line.endswith(b"}"), "a record")
            seq = int(line[pos + 7 : pos + 16])
            with self._lock:
                if self.seen_map[seq]:
                    self.duplicates += 1
                else:
                    self.seen_map[seq] = 1
                    self.distinct += 1
                self.lines += 1
            n += 1
        seen.body = seen.raw = b""  # keep memory flat
        return n

    def accept(self, seen: Seen, payload: Any) -> None:
        seen.accepted = True
