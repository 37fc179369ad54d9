"""The HTTP plumbing shared by the `http`, `loki`, `es` and `opentelemetry` outputs.

One aiohttp session per output (keep-alive, at most `Workers` connections), TLS from the
`tls.*` keys, Basic auth, extra `Header`s, gzip, and the status rules of docs/delivery.md:
2xx delivered; 5xx, 408, 429 (Retry-After honoured) and connection errors or timeouts
retried; any other 4xx final for the batch. Secrets (passwords, auth/token/key headers) are
scrubbed from every log line (see secrets.py).
"""

from __future__ import annotations

import abc
import asyncio
import base64
import datetime as dt
import email.utils
import logging
import re
import ssl
import zlib
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from shipper import __version__
from shipper.chunk import Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import opt
from shipper.outputs.base import DeliveryError, Output
from shipper.outputs.secrets import SECRET_HEADER, redact, register_secrets

log = logging.getLogger(__name__)

NET_PREFIX = ("net.",)  # other net.* keys of Fluent Bit are accepted and ignored
_GZIP_IN_THREAD = 256 * 1024  # compress bigger payloads off the event loop
_SNIPPET = 300  # bytes of a response body quoted in a log line


def parse_header(text: str) -> tuple[str, str]:
    """`Header NAME VALUE` (the value may hold spaces)."""
    parts = text.strip().split(None, 1)
    if len(parts) != 2 or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", parts[0]):
        raise ValueError("expected 'Header NAME VALUE'")
    return parts[0], parts[1].strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpOptions:
    """Keys every HTTP based output shares (each plugin adds Port, URI and its own)."""

    host: str = opt("Host", "str", "127.0.0.1", help="Host name or IP address of the server.")
    http_user: str | None = opt("HTTP_User", "str", None, help="Basic auth user name.")
    http_passwd: str | None = opt(
        "HTTP_Passwd", "str", None, help="Basic auth password (never logged)."
    )
    headers: tuple[tuple[str, str], ...] = opt(
        "Header",
        "str",
        (),
        multi=True,
        convert=parse_header,
        help="Extra request header 'NAME VALUE'; repeatable. Values of headers named like "
        "auth/token/key/secret are never logged.",
    )
    compress: str | None = opt(
        "compress", "str", None, choices=("gzip",), help="Compress request bodies: gzip."
    )
    tls: bool = opt("tls", "bool", False, help="Use HTTPS.")
    tls_verify: bool = opt(
        "tls.verify", "bool", True, help="Verify the server's certificate chain."
    )
    tls_verify_hostname: bool = opt(
        "tls.verify_hostname",
        "bool",
        True,
        help="Check the certificate is for Host (or tls.vhost) "
        "(on here; Fluent Bit's default is off).",
    )
    tls_ca_file: str | None = opt("tls.ca_file", "str", None, help="CA bundle (PEM) to trust.")
    tls_ca_path: str | None = opt(
        "tls.ca_path", "str", None, help="Directory of hashed CA certificates to trust."
    )
    tls_crt_file: str | None = opt(
        "tls.crt_file", "str", None, help="Client certificate (PEM) for mutual TLS."
    )
    tls_key_file: str | None = opt(
        "tls.key_file", "str", None, help="Private key (PEM) of tls.crt_file."
    )
    tls_key_passwd: str | None = opt(
        "tls.key_passwd", "str", None, help="Password of tls.key_file (never logged)."
    )
    tls_vhost: str | None = opt(
        "tls.vhost", "str", None, help="Server name for SNI and the certificate check."
    )
    tls_debug: int = opt("tls.debug", "int", 1, help="Accepted for compatibility.")
    connect_timeout: float = opt(
        "net.connect_timeout", "time", 10.0, help="Seconds to wait for a connection."
    )
    io_timeout: float = opt(
        "net.io_timeout", "time", 60.0, help="Seconds to wait for a response (0: no limit)."
    )
    keepalive: bool = opt("net.keepalive", "bool", True, help="Reuse connections.")
    keepalive_idle_timeout: float = opt(
        "net.keepalive_idle_timeout", "time", 30.0, help="Seconds an idle connection is kept."
    )
    log_response_payload: bool = opt(
        "log_response_payload", "bool", True, help="Quote the server's answer in error messages."
    )


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


def _ssl_context(opts: HttpOptions, section: Section) -> ssl.SSLContext:
    def fail(key: str, exc: Exception) -> ConfigError:
        prop = section.get(key)
        reason = getattr(exc, "strerror", None) or str(exc)
        return ConfigError(
            f"cannot load TLS material: {reason}",
            file=section.file,
            line=prop.line if prop else section.line,
            key=key,
        )

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if opts.tls_verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = opts.tls_verify_hostname
        if opts.tls_ca_file or opts.tls_ca_path:
            try:
                ctx.load_verify_locations(cafile=opts.tls_ca_file, capath=opts.tls_ca_path)
            except (OSError, ssl.SSLError) as exc:
                raise fail("tls.ca_file" if opts.tls_ca_file else "tls.ca_path", exc) from None
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if opts.tls_crt_file:
        try:
            ctx.load_cert_chain(opts.tls_crt_file, opts.tls_key_file, password=opts.tls_key_passwd)
        except (OSError, ssl.SSLError) as exc:
            raise fail("tls.crt_file", exc) from None
    return ctx


def retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


class HttpClient:
    """Sends payloads to one server; raises DeliveryError by the section 7 rules."""

    def __init__(
        self,
        opts: HttpOptions,
        section: Section,
        *,
        port: int,
        extra_headers: dict[str, str] | None = None,
        secrets: tuple[str | None, ...] = (),
    ) -> None:
        self.opts = opts
        self.port = port
        host = opts.host.strip("[]")
        self.where = f"{host}:{port}"
        url_host = f"[{host}]" if ":" in host else host
        self.scheme = "https" if opts.tls else "http"
        self.origin = f"{self.scheme}://{url_host}:{port}"
        self.ssl: ssl.SSLContext | None = _ssl_context(opts, section) if opts.tls else None
        headers = {"User-Agent": f"shipper/{__version__}"}
        hidden: list[str] = [s for s in secrets if s]
        if opts.http_user is not None:
            token = base64.b64encode(f"{opts.http_user}:{opts.http_passwd or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
            hidden.append(token)
        if opts.http_passwd:
            hidden.append(opts.http_passwd)
        if opts.tls_key_passwd:
            hidden.append(opts.tls_key_passwd)
        headers.update(extra_headers or {})
        for name, value in opts.headers:
            headers[name] = value
        for name, value in headers.items():
            if SECRET_HEADER.search(name):
                hidden.append(value)
                hidden.extend(value.split(None, 1)[1:])  # "Bearer xyz": xyz alone as well
        register_secrets(hidden)
        self.headers = headers
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self, workers: int) -> None:
        connector = aiohttp.TCPConnector(
            limit=max(1, workers),
            force_close=not self.opts.keepalive,
            keepalive_timeout=self.opts.keepalive_idle_timeout if self.opts.keepalive else None,
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.opts.connect_timeout or None,
            sock_read=self.opts.io_timeout or None,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=False, auto_decompress=True
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def redact(text: str) -> str:
        return redact(text)

    def url(self, uri: str) -> URL:
        if not uri.startswith("/"):
            uri = "/" + uri
        return URL(self.origin + uri.replace(" ", "%20"), encoded=True)

    async def _gzip(self, body: bytes) -> bytes:
        def run() -> bytes:
            comp = zlib.compressobj(6, zlib.DEFLATED, 31)
            return comp.compress(body) + comp.flush()

        if len(body) >= _GZIP_IN_THREAD:
            return await asyncio.to_thread(run)
        return run()

    def _snippet(self, body: bytes) -> str:
        if not body or not self.opts.log_response_payload:
            return ""
        text = body[:_SNIPPET].decode("utf-8", "replace").strip()
        text = " ".join(text.split())
        return ": " + self.redact(text) + ("..." if len(body) > _SNIPPET else "")

    # -- the request ------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        uri: str,
        body: bytes,
        *,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request; a Reply for 2xx, DeliveryError otherwise."""
        if self._session is None:
            raise DeliveryError("output not started", retryable=True)
        hdrs = dict(self.headers)
        hdrs["Content-Type"] = content_type
        if headers:
            hdrs.update(headers)
        if self.opts.compress == "gzip":
            body = await self._gzip(body)
            hdrs["Content-Encoding"] = "gzip"
        try:
            async with self._session.request(
                method,
                self.url(uri),
                data=body,
                headers=hdrs,
                allow_redirects=False,
                ssl=self.ssl if self.ssl is not None else True,
                server_hostname=self.opts.tls_vhost if self.ssl is not None else None,
            ) as resp:
                data = await resp.read()
                status = resp.status
                after = resp.headers.get("Retry-After")
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = getattr(exc.certificate_error, "verify_message", None) or str(
                exc.certificate_error
            )
            raise DeliveryError(
                f"certificate verify failed for {self.where} ({reason}); "
                "check tls.ca_file, tls.vhost or tls.verify",
                retryable=True,
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise DeliveryError(
                f"TLS handshake with {self.where} failed: {self.redact(_os_reason(exc))}",
                retryable=True,
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise DeliveryError(
                f"cannot connect to {self.where}: {_os_reason(exc)}", retryable=True
            ) from None
        except aiohttp.ServerDisconnectedError:
            raise DeliveryError(
                f"{self.where} closed the connection before answering", retryable=True
            ) from None
        except TimeoutError:
            raise DeliveryError(
                f"{self.where} did not answer in time (net.connect_timeout "
                f"{self.opts.connect_timeout:g}s, net.io_timeout "
                f"{self.opts.io_timeout:g}s)",
                retryable=True,
            ) from None
        except aiohttp.ClientResponseError as exc:  # its text would quote the URL
            raise DeliveryError(
                f"{self.where} sent an invalid response ({exc.status}: "
                f"{self.redact(str(exc.message))})",
                retryable=True,
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(
                f"{self.where}: {type(exc).__name__}: {self.redact(_os_reason(exc))}",
                retryable=True,
            ) from None
        if 200 <= status < 300:
            return Reply(status, data)
        reason = f"{self.where} HTTP status={status}{self._snippet(data)}"
        if 400 <= status < 500 and status not in (408, 429):
            raise DeliveryError(reason, retryable=False)
        raise DeliveryError(
            reason, retryable=True, retry_after=retry_after(after) if status in (429, 503) else None
        )


def _os_reason(exc: BaseException) -> str:
    inner = getattr(exc, "os_error", None)
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class HttpOutput(Output):
    """An Output that owns an HttpClient: the session lives from start to stop."""

    client: HttpClient

    def __init__(self, *, client: HttpClient, **kw: Any) -> None:
        super().__init__(**kw)
        self.client = client

    async def open(self) -> None:
        await self.client.open(self.delivery.workers)

    async def close(self) -> None:
        await self.client.close()

    async def send(self, payload: bytes, records: list[Record]) -> None:
        try:
            await self.deliver(payload, records)
        except DeliveryError:
            raise
        except Exception as exc:  # a bug must not kill the worker: keep the data, retry
            self.log.error(
                "unexpected %s while sending: %s", type(exc).__name__, self.client.redact(str(exc))
            )
            raise DeliveryError(f"internal error ({type(exc).__name__})", retryable=True) from None

    @abc.abstractmethod
    async def deliver(self, payload: bytes, records: list[Record]) -> None:
        """Send one encoded batch; raise DeliveryError on failure."""
