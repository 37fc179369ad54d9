"""The kubernetes filter's client of the Kubernetes API: GET one pod with the service
account's bearer token over TLS, and what the filter keeps of it.

One aiohttp session per filter. The token file is read again after `token_ttl` (projected
service account tokens rotate). A lookup never raises: it returns a Pod or a Failure saying why not,
which the filter logs and counts.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

log = logging.getLogger(__name__)

# A lookup gives up after this long; the records it holds go on without the API's metadata.
LOOKUP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Pod:
    """What the filter takes from a pod object (the API's JSON shape, v1 Pod)."""

    uid: str | None
    labels: dict[str, Any]
    annotations: dict[str, Any]
    host: str | None
    pod_ip: str | None
    owner_references: list[Any]
    # container name -> (image, imageID, container id) from status.containerStatuses
    containers: dict[str, tuple[str | None, str | None, str | None]] = field(default_factory=dict)
    main_container: str | None = None  # the first of spec.containers

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Pod:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        containers: dict[str, tuple[str | None, str | None, str | None]] = {}
        for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            for c in status.get(key) or ():
                if isinstance(c, dict) and "name" in c:
                    cid = c.get("containerID")
                    if isinstance(cid, str) and "://" in cid:  # containerd://<id>
                        cid = cid.split("://", 1)[1]
                    containers[c["name"]] = (c.get("image"), c.get("imageID"), cid)
        specs = [c for c in spec.get("containers") or () if isinstance(c, dict)]
        return cls(
            uid=meta.get("uid"),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            host=spec.get("nodeName"),
            pod_ip=status.get("podIP"),
            owner_references=list(meta.get("ownerReferences") or ()),
            containers=containers,
            main_container=specs[0].get("name") if specs else None,
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a pod could not be had. `unreachable`: the API itself is down (no answer, a
    connection error, a 5xx), so other pods would fail as well."""

    reason: str
    unreachable: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    url: str
    ca_file: str | None
    ca_path: str | None
    token_file: str
    token_ttl: float
    verify: bool
    verify_hostname: bool
    buffer_size: int  # 0: no limit


def ssl_context(s: ApiSettings) -> ssl.SSLContext:
    """Raises OSError / ssl.SSLError when the CA cannot be loaded."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not s.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.check_hostname = s.verify_hostname  # Fluent Bit: tls.verify_hostname, default off
    ctx.verify_mode = ssl.CERT_REQUIRED
    if s.ca_file or s.ca_path:
        ctx.load_verify_locations(cafile=s.ca_file, capath=s.ca_path)
    else:
        ctx.load_default_certs()
    return ctx


class KubeApi:
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.ssl: ssl.SSLContext | None = None
        self._ssl_error: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_read = -1e18

    async def open(self) -> None:
        if self.settings.url.lower().startswith("https"):
            try:
                self.ssl = ssl_context(self.settings)
            except (OSError, ssl.SSLError) as exc:
                # the agent runs on (records without the API's metadata); each lookup says why
                self._ssl_error = f"cannot load the CA ({getattr(exc, 'strerror', None) or exc})"
                log.error("Kube_CA_File/Kube_CA_Path: %s", self._ssl_error)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=LOOKUP_TIMEOUT),
            connector=aiohttp.TCPConnector(limit=8),
            trust_env=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _bearer(self) -> str | None:
        now = time.monotonic()
        if now - self._token_read >= self.settings.token_ttl:
            path = Path(self.settings.token_file)
            try:
                text = await asyncio.to_thread(path.read_text)
                self._token = text.strip() or None
            except OSError as exc:
                log.warning("cannot read Kube_Token_File %s: %s", path, exc.strerror or exc)
                self._token = None
            self._token_read = now
        return self._token

    async def pod(self, namespace: str, name: str) -> Pod | Failure:
        """The pod, or why it could not be had."""
        if self._session is None:
            return Failure("the filter is not started")
        if self._ssl_error is not None:
            return Failure(self._ssl_error)
        url = (
            f"{self.settings.url.rstrip('/')}/api/v1/namespaces/{quote(namespace, safe='')}"
            f"/pods/{quote(name, safe='')}"
        )
        headers = {"Accept": "application/json"}
        token = await self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        limit = self.settings.buffer_size
        try:
            async with self._session.get(
                url, headers=headers, ssl=self.ssl if self.ssl is not None else True
            ) as resp:  # ssl=True: plain http, or the default context
                body = await (resp.content.read(limit + 1) if limit else resp.read())
                status = resp.status
        except TimeoutError:
            return Failure(f"no answer within {LOOKUP_TIMEOUT:g}s", unreachable=True)
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            return Failure(f"request failed: {exc}", unreachable=True)
        if status != 200:
            reason = f"HTTP {status}{_status_message(body)}{_advice(status)}"
            return Failure(reason, unreachable=status >= 500)
        if limit and len(body) > limit:
            return Failure(
                f"the pod object is larger than Buffer_Size ({limit} bytes): raise Buffer_Size,"
                " or set it to 0 (no limit)"
            )
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return Failure(f"the API's answer is not JSON: {exc}")
        if not isinstance(obj, dict) or obj.get("kind", "Pod") != "Pod":
            return Failure("the API's answer is not a Pod")
        return Pod.of(obj)


def _status_message(body: bytes) -> str:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    msg = obj.get("message") if isinstance(obj, dict) else None
    return f": {msg}" if isinstance(msg, str) and msg else ""


def _advice(status: int) -> str:
    if status == 401:
        return " (check Kube_Token_File: the token is missing, wrong or expired)"
    if status == 403:
        return " (the service account needs RBAC: get, list, watch on pods)"
    return ""
