"""A forward-protocol server (Fluentd's in_forward, protocol v1) on 127.0.0.1 for tests.

Written from the public specification: every event mode (Message, Forward, PackedForward,
CompressedPackedForward), EventTime (ext 0) or integer times, the `chunk` option answered with
`{"ack": chunk}`, and the handshake (HELO with nonce and user-auth salt, PING checked against
the shared key and the users' passwords, PONG with the server's own digest). It can misbehave
on purpose: close the connection after reading a message but before acking it, or answer the
PING with a digest made from a wrong key.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import msgpack


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha512()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()


def _time(t: Any) -> float:
    if isinstance(t, msgpack.ExtType) and t.code == 0:
        sec, nsec = struct.unpack(">II", t.data)
        return sec + nsec / 1e9
    if isinstance(t, int | float):
        return float(t)
    raise ValueError(f"bad event time {t!r}")


@dataclass
class Event:
    tag: str
    time: float
    record: dict[str, Any]
    raw_time: Any  # as sent: an ExtType or an int


@dataclass
class ForwardServer:
    shared_key: str | None = None  # None: no handshake
    users: dict[str, str] = field(default_factory=dict)  # user auth when not empty
    hostname: str = "receiver"
    drop_before_ack: int = 0  # close this many connections after a message, before its ack
    wrong_pong_key: bool = False
    unix_path: str | None = None  # listen on this Unix socket instead of 127.0.0.1
    events: list[Event] = field(default_factory=list)
    options: list[dict[str, Any]] = field(default_factory=list)
    handshakes: list[list[Any]] = field(default_factory=list)  # PINGs that passed
    refused: list[str] = field(default_factory=list)  # why handshakes failed
    connections: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        class UnixServer(socketserver.ThreadingUnixStreamServer):
            daemon_threads = True

        self.server: socketserver.BaseServer
        if self.unix_path:
            self.server = UnixServer(self.unix_path, Handler)
            self.port = 0
        else:
            self.server = Server(("127.0.0.1", 0), Handler)
            self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ForwardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def records(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e.record for e in self.events]

    # -- one connection ------------------------------------------------------------------
    def _serve(self, sock: socket.socket) -> None:
        with self.lock:
            self.connections += 1
        unpacker = msgpack.Unpacker(raw=False)

        def messages() -> Any:
            while True:
                yield from unpacker
                data = sock.recv(65536)
                if not data:
                    return
                unpacker.feed(data)

        stream = messages()
        if self.shared_key is not None and not self._handshake(sock, stream):
            sock.close()
            return
        for msg in stream:
            _, events, options = self._decode(msg)
            with self.lock:
                if self.drop_before_ack > 0 and options.get("chunk"):
                    self.drop_before_ack -= 1
                    # The events count as received: the client cannot know, and re-sends.
                    self.events += events
                    sock.close()
                    return
                self.events += events
                self.options.append(options)
            if options.get("chunk"):
                sock.sendall(msgpack.packb({"ack": options["chunk"]}, use_bin_type=True))

    def _handshake(self, sock: socket.socket, stream: Any) -> bool:
        nonce, auth = os.urandom(16), os.urandom(16) if self.users else b""
        helo = ["HELO", {"nonce": nonce, "auth": auth, "keepalive": True}]
        # As Fluentd and Fluent Bit do: random bytes in msgpack str (not valid UTF-8).
        sock.sendall(msgpack.packb(helo, use_bin_type=False))
        ping = next(stream, None)
        if not (isinstance(ping, list) and len(ping) == 6 and ping[0] == "PING"):
            self.refused.append(f"bad PING {ping!r}")
            return False
        _, client_host, salt, digest, user, password_digest = ping
        key = self.shared_key or ""
        ok, reason = True, ""
        if digest != _digest(salt, client_host, nonce, key):
            ok, reason = False, "shared_key mismatch"
        elif self.users and (
            user not in self.users or password_digest != _digest(auth, user, self.users[user])
        ):
            ok, reason = False, "username/password mismatch"
        pong_key = key + "-wrong" if self.wrong_pong_key else key
        pong = ["PONG", ok, reason, self.hostname, _digest(salt, self.hostname, nonce, pong_key)]
        sock.sendall(msgpack.packb(pong, use_bin_type=True))
        with self.lock:
            if ok:
                self.handshakes.append(ping)
            else:
                self.refused.append(reason)
        return ok

    @staticmethod
    def _decode(msg: Any) -> tuple[str, list[Event], dict[str, Any]]:
        if not isinstance(msg, list) or len(msg) < 2 or not isinstance(msg[0], str):
            raise ValueError(f"not an event message: {msg!r}")
        tag = msg[0]
        if isinstance(msg[1], list):  # Forward mode
            options = msg[2] if len(msg) > 2 else {}
            entries = msg[1]
        elif isinstance(msg[1], bytes | str):  # PackedForward / CompressedPackedForward
            options = msg[2] if len(msg) > 2 else {}
            blob = msg[1].encode() if isinstance(msg[1], str) else msg[1]
            if options.get("compressed") == "gzip":
                blob = gzip.decompress(blob)
            entries = _unpack_all(blob)
        else:  # Message mode: [tag, time, record, options?]
            options = msg[3] if len(msg) > 3 else {}
            entries = [[msg[1], msg[2]]]
        if options.get("size") is not None and options["size"] != len(entries):
            raise ValueError(f"size option {options['size']} != {len(entries)} entries")
        events = [Event(tag, _time(t), rec, t) for t, rec in entries]
        return tag, events, options


def _unpack_all(blob: bytes) -> list[Any]:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(blob)
    return list(unpacker)
