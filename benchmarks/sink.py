"""A counting HTTP sink on 127.0.0.1, run as its own process (`python -m benchmarks.sink`).

Accepts any POST/PUT (HTTP/1.1 keep-alive, Content-Length or chunked, gzip bodies), answers
200 with an empty body, and counts the sequence markers of the records in each body with
benchmarks.tally.Tally. Raw asyncio, so that the sink costs little of the machine the agent
is measured on.

stdout protocol: `PORT <n>` when listening; `P <epoch> <received>` after each request; on
SIGTERM or SIGINT `S <summary JSON>` (lost/duplicated against --expect) and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import signal
import sys
import time
import zlib
from pathlib import Path

from benchmarks.tally import Tally

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: text/plain\r\n\r\n"


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers from the agents we test
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return b"".join(parts)
    return await reader.readexactly(int(headers.get("content-length", "0")))


def _decode(body: bytes, headers: dict[str, str]) -> bytes:
    enc = headers.get("content-encoding", "").lower()
    if enc == "gzip":
        return gzip.decompress(body)
    if enc == "deflate":
        return zlib.decompress(body)
    return body


class Sink:
    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = _decode(await _read_body(reader, headers), headers)
                now = time.time()
                if body and not body.endswith(b"\n"):
                    body += b"\n"
                self.tally.feed(body, now)
                self.requests += 1
                writer.write(_OK)
                await writer.drain()
                sys.stdout.write(f"P {now:.6f} {self.tally.received}\n")
                sys.stdout.flush()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


def _expected(path: str | None) -> dict[int, int]:
    if not path:
        return {}
    return {int(k): int(v) for k, v in json.loads(Path(path).read_text()).items()}


async def serve(args: argparse.Namespace) -> int:
    tally = Tally(timed=args.timed)
    sink = Sink(tally)
    server = await asyncio.start_server(sink.handle, "127.0.0.1", args.port, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"PORT {port}", flush=True)
    async with server:
        await stop.wait()
    expected = _expected(args.expect)
    summary = tally.summary(expected).as_dict()
    summary["requests"] = sink.requests
    summary["last_time"] = tally.last_time
    print("S " + json.dumps(summary), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--expect", help="JSON {file index: marked lines written}")
    p.add_argument("--timed", action="store_true", help="lines carry write times (latency)")
    return asyncio.run(serve(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
