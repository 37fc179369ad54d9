"""The `forward` output: Fluentd's forward protocol (v1) over TCP or a Unix socket.

Each batch goes as one message per tag in Forward mode, `[tag, [[time, record], ...], options]`
(time as an EventTime, msgpack ext type 0, or whole seconds with Time_as_Integer), or with
`Compress gzip` in CompressedPackedForward mode, `[tag, gzip(entries), {"compressed": "gzip"}]`.
Options carry `size` (Send_options) and `chunk` (Require_ack_response); with acks, a batch is
acknowledged only once the server answered `{"ack": chunk}` for every message of it, and a
connection lost before that sends the batch again on a new one (at least once: the server may
see it twice). Without acks, as in Fluent Bit, written to the socket is delivered.

With Shared_Key (or Empty_Shared_Key) each connection starts with the handshake: the server's
HELO (nonce, user-auth salt), our PING (hostname, salt, SHA-512 of salt+hostname+nonce+key,
and Username/Password digested with the auth salt) and the server's PONG, whose digest we check
so that a server without the key is never sent data.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from shipper.accessor import Accessor
from shipper.chunk import Chunk, Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.match import Matcher
from shipper.outputs.base import Delivery, DeliveryError, Output

# Known Fluent Bit keys this output does not do, and what to do instead.
REFUSED = {
    "upstream": "load balancing over an Upstream file is not supported: one Host/Port per output",
    "tls": "TLS (secure forward over TLS) is not supported: use a TLS-terminating proxy or "
    "the http output with tls on",
}
REFUSED_PREFIXES = ("tls.", "net.")
CONNECT_TIMEOUT = 10.0
ACK_TIMEOUT = 60.0  # how long a message may wait for its ack before the batch is sent again


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardOptions:
    host: str = opt("Host", "str", "127.0.0.1", help="Server address.")
    port: int = opt("Port", "int", 24224, help="Server TCP port.")
    unix_path: str = opt("Unix_Path", "str", "", help="Unix socket of the server (over Host).")
    tag: str = opt("Tag", "str", "", help="Send every record with this tag instead of its own.")
    time_as_integer: bool = opt(
        "Time_as_Integer", "bool", False, help="Whole seconds instead of EventTime (Fluentd 0.12)."
    )
    send_options: bool = opt(
        "Send_options", "bool", False, help="Always send options (size = number of entries)."
    )
    require_ack_response: bool = opt(
        "Require_ack_response",
        "bool",
        False,
        help="Send a chunk id and wait for the server's ack: at least once.",
    )
    compress: str = opt(
        "Compress",
        "str",
        "text",
        choices=("text", "gzip"),
        help="gzip: CompressedPackedForward mode; text: none.",
    )
    shared_key: str = opt("Shared_Key", "str", "", help="Handshake with this shared key.")
    empty_shared_key: bool = opt(
        "Empty_Shared_Key", "bool", False, help="Handshake with an empty shared key."
    )
    self_hostname: str = opt("Self_Hostname", "str", "localhost", help="Our name in the PING.")
    username: str = opt("Username", "str", "", help="User for the server's user auth.")
    password: str = opt("Password", "str", "", help="Password for the server's user auth.")
    fluentd_compat: bool = opt(
        "Fluentd_Compat", "bool", False, help="Accepted: logs go out the same either way."
    )
    retain_metadata_in_forward_mode: bool = opt(
        "Retain_metadata_in_forward_mode", "bool", True, help="Accepted: records carry none."
    )


_TAG_PART = re.compile(
    r"""\$TAG(?:\[(\d+)\])?|\$([A-Za-z0-9_\-@]+(?:\[(?:'[^']*'|"[^"]*"|\d+)\])*)"""
)


def tag_template(text: str) -> Callable[[str, Record], str] | None:
    """Tag with record accessors, as Fluent Bit translates it per record: `$TAG`, `$TAG[n]`
    (the n-th dot-separated part), `$key['sub']`; a missing value is empty. None: static."""
    if "$" not in text:
        return None
    parts: list[str | tuple[int | None] | Accessor] = []
    pos = 0
    for m in _TAG_PART.finditer(text):
        if text.startswith("[", m.end()):
            raise ValueError(f"invalid record accessor in {text!r} (at {text[m.start() :]!r})")
        parts.append(text[pos : m.start()])
        if m.group(2) is not None:
            parts.append(Accessor.parse("$" + m.group(2)))
        else:
            parts.append((int(m.group(1)) if m.group(1) is not None else None,))
        pos = m.end()
    parts.append(text[pos:])

    def render(tag: str, rec: Record) -> str:
        out: list[str] = []
        for p in parts:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, Accessor):
                out.append(p.string(rec) or "")
            elif p[0] is None:
                out.append(tag)
            else:
                pieces = tag.split(".")
                out.append(pieces[p[0]] if p[0] < len(pieces) else "")
        return "".join(out)

    return render


def event_time(t: float) -> msgpack.ExtType:
    sec = int(t)
    return msgpack.ExtType(0, struct.pack(">II", sec, round((t - sec) * 1e9) % 1_000_000_000))


def hexdigest(*parts: str | bytes) -> str:
    h = hashlib.sha512()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()


class ProtocolError(Exception):
    pass


class Connection:
    """One established connection (after the handshake when a shared key is set)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        # raw: Fluentd and Fluent Bit send the nonce and salt as msgpack str holding random
        # bytes, which are not UTF-8.
        self.unpacker = msgpack.Unpacker(raw=True)

    async def next_message(self, wait: float) -> Any:
        while True:
            for msg in self.unpacker:
                return msg
            data = await asyncio.wait_for(self.reader.read(65536), wait)
            if not data:
                raise ConnectionResetError("the server closed the connection")
            self.unpacker.feed(data)

    def close(self) -> None:
        self.writer.close()


class ForwardOutput(Output):
    plugin = "forward"

    def __init__(self, *, opts: ForwardOptions, **kw: Any) -> None:
        super().__init__(**kw)
        self.opts = opts
        self.secure = bool(opts.shared_key) or opts.empty_shared_key
        self.tag_of = tag_template(opts.tag)
        self._pool: list[Connection] = []  # open connections no worker is using

    # -- encoding -------------------------------------------------------------------------
    def encode_chunks(self, batch: list[Chunk]) -> bytes | None:
        """[[tag, count, entries], ...]: one group per run of chunks with the same tag, the
        entries ([time, record] each) already packed, so that a re-send packs nothing again."""
        pack = msgpack.Packer(use_bin_type=True).pack
        as_int = self.opts.time_as_integer
        groups: list[list[Any]] = []
        render = self.tag_of
        for chunk in batch:
            static = self.opts.tag or chunk.tag
            for rec in chunk.records:
                tag = render(chunk.tag, rec) if render is not None else static
                t = rec.get("date", 0.0)
                t = t if isinstance(t, int | float) else 0.0
                body = {k: v for k, v in rec.items() if k != "date"}
                entry = pack([int(t) if as_int else event_time(t), body])
                if groups and groups[-1][0] == tag:
                    groups[-1][1] += 1
                    groups[-1][2].append(entry)
                else:
                    groups.append([tag, 1, [entry]])
        for group in groups:
            group[2] = b"".join(group[2])
        packed: bytes = msgpack.packb(groups, use_bin_type=True)
        return packed

    def encode(self, records: list[Record]) -> bytes:  # pragma: no cover - encode_chunks rules
        raise NotImplementedError

    def _message(self, tag: str, count: int, entries: bytes, chunk_id: str | None) -> bytes:
        options: dict[str, Any] = {}
        gzipped = self.opts.compress == "gzip"
        if self.opts.send_options or chunk_id or gzipped:
            options["size"] = count
        if chunk_id:
            options["chunk"] = chunk_id
        if gzipped:
            options["compressed"] = "gzip"
            out: bytes = msgpack.packb([tag, gzip.compress(entries, 6), options], use_bin_type=True)
            return out
        packer = msgpack.Packer(use_bin_type=True)
        head: bytes = packer.pack_array_header(3 if options else 2) + packer.pack(tag)
        size: bytes = packer.pack_array_header(count)
        tail: bytes = packer.pack(options) if options else b""
        return head + size + entries + tail

    # -- delivery -------------------------------------------------------------------------
    async def send(self, payload: bytes, records: list[Record]) -> None:
        groups = msgpack.unpackb(payload, raw=False)
        conn: Connection | None = None
        try:
            conn = self._reuse() or await self._connect()
            ids: list[str] = []
            for tag, count, entries in groups:
                chunk_id = None
                if self.opts.require_ack_response:
                    chunk_id = base64.b64encode(os.urandom(16)).decode()
                    ids.append(chunk_id)
                conn.writer.write(self._message(tag, count, entries, chunk_id))
            await conn.writer.drain()
            await self._wait_acks(conn, ids)
        except (OSError, TimeoutError, ProtocolError, ValueError) as exc:
            if conn is not None:
                conn.close()
            reason = "no ack in time" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            where = self.opts.unix_path or f"{self.opts.host}:{self.opts.port}"
            raise DeliveryError(f"forward to {where}: {reason}", retryable=True) from None
        except BaseException:  # cancelled (Grace ran out): the connection's state is unknown
            if conn is not None:
                conn.close()
            raise
        self._pool.append(conn)

    def _reuse(self) -> Connection | None:
        """An idle connection the server has not closed meanwhile (writing to one it closed
        would succeed locally and, without acks, lose the batch)."""
        while self._pool:
            conn = self._pool.pop()
            if not (conn.reader.at_eof() or conn.writer.is_closing()):
                return conn
            conn.close()
        return None

    async def _wait_acks(self, conn: Connection, ids: list[str]) -> None:
        waiting = set(ids)
        while waiting:
            msg = await conn.next_message(ACK_TIMEOUT)
            ack = msg.get(b"ack") if isinstance(msg, dict) else None
            if isinstance(ack, bytes) and ack.decode(errors="replace") in waiting:
                waiting.discard(ack.decode())
            else:
                self.log.warning("unexpected answer from the server: %r", msg)

    async def _connect(self) -> Connection:
        if self.opts.unix_path:
            opening = asyncio.open_unix_connection(self.opts.unix_path)
        else:
            opening = asyncio.open_connection(self.opts.host, self.opts.port)
        reader, writer = await asyncio.wait_for(opening, CONNECT_TIMEOUT)
        conn = Connection(reader, writer)
        if self.secure:
            try:
                await self._handshake(conn)
            except BaseException:
                conn.close()
                raise
        return conn

    async def _handshake(self, conn: Connection) -> None:
        helo = await conn.next_message(CONNECT_TIMEOUT)
        if not (isinstance(helo, list) and len(helo) == 2 and helo[0] == b"HELO") or not isinstance(
            helo[1], dict
        ):
            raise ProtocolError(f"expected HELO, got {helo!r:.200}")
        nonce, auth_salt = helo[1].get(b"nonce", b""), helo[1].get(b"auth", b"")
        key, host = self.opts.shared_key, self.opts.self_hostname
        salt = os.urandom(16).hex()
        user, password_digest = "", ""
        if auth_salt:
            user = self.opts.username
            password_digest = hexdigest(auth_salt, user, self.opts.password)
        ping = ["PING", host, salt, hexdigest(salt, host, nonce, key), user, password_digest]
        conn.writer.write(msgpack.packb(ping, use_bin_type=True))
        await conn.writer.drain()
        pong = await conn.next_message(CONNECT_TIMEOUT)
        if not (isinstance(pong, list) and len(pong) == 5 and pong[0] == b"PONG"):
            raise ProtocolError(f"expected PONG, got {pong!r:.200}")
        _, ok, reason, server_host, digest = pong
        if not ok:
            why = reason.decode(errors="replace") if isinstance(reason, bytes) else reason
            raise ProtocolError(f"the server refused the handshake: {why}")
        if (
            not isinstance(server_host, bytes)
            or digest != hexdigest(salt, server_host, nonce, key).encode()
        ):
            raise ProtocolError("the server's PONG digest does not match the shared key")

    async def close(self) -> None:
        for conn in self._pool:
            conn.close()
        self._pool.clear()


def create(section: Section, *, name: str, matcher: Matcher, delivery: Delivery) -> ForwardOutput:
    names = {p.name for p in section.props}
    for prop in section.props:
        reason = REFUSED.get(prop.name)
        if reason is None and prop.name.startswith(REFUSED_PREFIXES):
            reason = "TLS and net.* settings are not supported by this output"
        if reason is not None and not (prop.name == "tls" and prop.value.strip().lower() == "off"):
            raise ConfigError(reason, file=prop.file, line=prop.line, key=prop.key)
    opts = build(ForwardOptions, section, extra_keys={"tls"} & names)
    if opts.compress == "gzip" and opts.time_as_integer:
        where = section.get("compress")
        raise ConfigError(
            "Compress gzip is incompatible with Time_as_Integer (as in Fluent Bit)",
            file=section.file,
            line=where.line if where else section.line,
            key="Compress",
        )
    try:
        tag_template(opts.tag)
    except ValueError as exc:
        where = section.get("tag")
        raise ConfigError(
            str(exc), file=section.file, line=where.line if where else section.line, key="Tag"
        ) from None
    if (opts.username or opts.password) and not (opts.shared_key or opts.empty_shared_key):
        user = section.get("username") or section.get("password")
        raise ConfigError(
            "Username/Password need Shared_Key or Empty_Shared_Key (user auth is part of the "
            "handshake)",
            file=section.file,
            line=user.line if user else section.line,
            key=user.key if user else "Username",
        )
    return ForwardOutput(opts=opts, name=name, matcher=matcher, delivery=delivery)
