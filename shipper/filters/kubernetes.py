"""The `kubernetes` filter (Fluent Bit's): pod metadata from the Kubernetes API under a
`kubernetes` key, found from the tag of a container log file.

The tag, less `Kube_Tag_Prefix`, holds the log file's name, `<pod>_<namespace>_<container>-
<container id>.log` (/var/log/containers/*.log read by `tail` with `Tag kube.*`). The pod is
fetched once (GET /api/v1/namespaces/NS/pods/POD with the service account's token) and kept
for `Kube_Meta_Cache_TTL` (0: for ever, refreshed in the background once it expires).

shipper's `Kube_Pod_Dir_Namespace NS` also reads a tag that is not a container log file as
`Kube_Tag_Prefix` + `<pod>.<...>`: one directory per pod, as k8s/daemonset keeps Ray's logs
(/var/log/ray/<pod>/...); the pod is looked up in NS and its first container is the one named.

The pipeline does not wait per record: `ready(tag)` is asked once per chunk; when the pod is
not known yet the chunk (and every chunk after it, to keep the order) waits for that one
lookup, which ends within kube_api.LOOKUP_TIMEOUT. When the API is down, refuses the token or
does not know the pod, records go on with what the tag says (pod_name, namespace_name,
container_name, docker_id): logged, counted (shipper_filter_kube_meta_missing_total), and the
pod is asked again after a backoff (2 s doubling to 60 s) during which records do not wait.
While the API is unreachable (no answer, connection refused, 5xx), records of pods not known
yet do not wait either (UNREACHABLE_HOLD); a chunk queued behind a waiting one starts its
own lookup at once (prefetch), so many new pods cost one timeout, not one each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any

import orjson

from shipper import telemetry
from shipper.chunk import Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build
from shipper.filters.common import refuse
from shipper.filters.kube_api import ApiSettings, Failure, KubeApi, Pod, ssl_context
from shipper.filters.kube_options import UNSUPPORTED, KubernetesOptions
from shipper.match import Matcher

log = logging.getLogger(__name__)

# Fluent Bit's tag layout: the log file name kubelet writes under /var/log/containers.
TAG_REGEX = re.compile(
    r"(?P<pod_name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*)"
    r"_(?P<namespace_name>[^_]+)_(?P<container_name>.+)-(?P<docker_id>[a-z0-9]{64})\.log$"
)
# A directory per pod (shipper's Kube_Pod_Dir_Namespace): the tag's first part is the pod.
POD_DIR = re.compile(r"([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.")
CACHE_MAX = 4096  # pods (and tags) remembered; the oldest go first
BACKOFF_MAX = 60.0
# After the API was unreachable, new pods' records do not wait for this long (their lookups
# run in the background); the first lookup that succeeds ends it.
UNREACHABLE_HOLD = 30.0


@dataclass(frozen=True, slots=True)
class Ident:
    pod_name: str
    namespace_name: str
    container_name: str
    docker_id: str


@dataclass(slots=True)
class Entry:
    pod: Pod | None
    at: float  # when the pod was fetched
    retry_at: float = 0.0  # after a failure: no new lookup before
    fails: int = 0


class KubernetesFilter:
    plugin = "kubernetes"

    def __init__(self, *, name: str, matcher: Matcher, opts: KubernetesOptions, api: KubeApi):
        self.name = name
        self.matcher = matcher
        self.opts = opts
        self.api = api
        self.stats = telemetry.REGISTRY.filter(name)
        self.log = logging.getLogger(f"shipper.{name}")
        self._idents: dict[str, Ident | None] = {}
        self._cache: dict[tuple[str, str], Entry] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[None]] = {}
        # While the API is unreachable, a pod not known yet does not make its records wait:
        # its lookup runs in the background (each pod on its own backoff).
        self._unreachable_until = 0.0

    async def start(self) -> None:
        if not self.opts.use_tag_for_meta:
            await self.api.open()

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await self.api.close()

    # -- tag -> pod -------------------------------------------------------------------------
    def ident(self, tag: str) -> Ident | None:
        if tag in self._idents:
            return self._idents[tag]
        prefix = self.opts.kube_tag_prefix
        rest = tag[len(prefix) :] if tag.startswith(prefix) else None
        m = TAG_REGEX.search(rest) if rest is not None else None
        ident = Ident(**m.groupdict()) if m else None
        namespace = self.opts.kube_pod_dir_namespace
        if ident is None and rest is not None and namespace:
            d = POD_DIR.match(rest)  # k8s/daemonset: /var/log/ray/<pod>/...
            ident = Ident(d.group(1), namespace, "", "") if d else None
        if ident is None:
            self.log.warning(
                "tag %s is not Kube_Tag_Prefix (%s) + <pod>_<namespace>_"
                "<container>-<id>.log: its records pass unchanged",
                tag,
                prefix,
            )
        _bounded(self._idents)[tag] = ident
        return ident

    def ready(self, tag: str) -> asyncio.Task[None] | None:
        """None when the records of `tag` can be enriched now (or cannot be at all)."""
        if self.opts.use_tag_for_meta:
            return None
        ident = self.ident(tag)
        if ident is None:
            return None
        key = (ident.namespace_name, ident.pod_name)
        now = time.monotonic()
        entry = self._cache.get(key)
        pending = self._inflight.get(key)
        if entry is not None and entry.pod is not None:
            ttl = self.opts.kube_meta_cache_ttl
            stale = ttl > 0 and now - entry.at >= ttl
            if stale and pending is None and now >= entry.retry_at:
                self._lookup(key)  # in the background: the old metadata serves meanwhile
            return None
        if entry is not None and now < entry.retry_at:
            return None  # failed lately: no waiting until the next try
        if pending is None:
            pending = self._lookup(key)
        return None if now < self._unreachable_until else pending

    def prefetch(self, tag: str) -> None:
        """A chunk of `tag` waits behind others: start its lookup now, so that lookups for
        many new pods run side by side rather than one after the other."""
        self.ready(tag)

    def _lookup(self, key: tuple[str, str]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._fetch(key), name=f"{self.name}-pod")
        self._inflight[key] = task
        return task

    async def _fetch(self, key: tuple[str, str]) -> None:
        try:
            result = await self.api.pod(*key)
        except Exception as exc:  # never fail the chunks that wait for it
            result = Failure(f"unexpected error: {exc!r}")
        finally:
            self._inflight.pop(key, None)
        now = time.monotonic()
        prev = self._cache.pop(key, None)
        if isinstance(result, Pod):
            self._unreachable_until = 0.0
            _bounded(self._cache)[key] = Entry(result, now)
            self.log.debug("metadata of pod %s/%s cached", *key)
            return
        fails = prev.fails + 1 if prev else 1
        wait = min(BACKOFF_MAX, 2.0**fails)
        if result.unreachable:
            self._unreachable_until = now + UNREACHABLE_HOLD
        self.stats.count("kube_api_errors")
        self.log.warning(
            "no metadata for pod %s/%s from %s: %s; its records go on with the tag's metadata"
            " (next try in %.0fs)",
            key[0],
            key[1],
            self.opts.kube_url,
            result.reason,
            wait,
        )
        old = prev.pod if prev else None
        _bounded(self._cache)[key] = Entry(old, prev.at if prev else now, now + wait, fails)

    # -- records ----------------------------------------------------------------------------
    def apply(self, records: list[Record], tag: str) -> list[Record]:
        ident = self.ident(tag)
        if ident is None:
            return records
        entry = self._cache.get((ident.namespace_name, ident.pod_name))
        pod = entry.pod if entry is not None else None
        if pod is None and not self.opts.use_tag_for_meta:
            self.stats.count("kube_meta_missing", len(records))
        meta = self._meta(ident, pod)
        excluded = self._exclusions(ident, pod)
        out: list[Record] = []
        for rec in records:
            if excluded and (None in excluded or rec.get("stream") in excluded):
                continue
            if self.opts.merge_log:
                rec = self._merge(rec)
            rec.pop("kubernetes", None)
            rec["kubernetes"] = dict(meta)
            out.append(rec)
        return out

    def _meta(self, ident: Ident, pod: Pod | None) -> dict[str, Any]:
        o = self.opts
        meta: dict[str, Any] = {"pod_name": ident.pod_name, "namespace_name": ident.namespace_name}
        if pod is not None:
            if pod.uid:
                meta["pod_id"] = pod.uid
            if o.labels and pod.labels:
                meta["labels"] = pod.labels
            if o.annotations and pod.annotations:
                meta["annotations"] = pod.annotations
            if o.owner_references and pod.owner_references:
                meta["ownerReferences"] = pod.owner_references
            if pod.host:
                meta["host"] = pod.host
            if pod.pod_ip:
                meta["pod_ip"] = pod.pod_ip
        container, docker_id = ident.container_name, ident.docker_id
        if not container and pod is not None and pod.main_container:
            container = pod.main_container  # a pod directory: the pod's (first) container
        none: tuple[str | None, str | None, str | None] = (None, None, None)
        image, image_id, status_id = pod.containers.get(container, none) if pod else none
        if container:
            meta["container_name"] = container
        if docker_id or status_id:
            meta["docker_id"] = docker_id or status_id
        if image_id:
            meta["container_hash"] = image_id
        if image:
            meta["container_image"] = image
        return meta

    def _exclusions(self, ident: Ident, pod: Pod | None) -> set[str | None]:
        """fluentbit.io/exclude[_stream][-container] "true": the streams excluded (None: all)."""
        if not self.opts.k8s_logging_exclude or pod is None:
            return set()
        out: set[str | None] = set()
        for stream in (None, "stdout", "stderr"):
            base = "fluentbit.io/exclude" + (f"_{stream}" if stream else "")
            for key in (f"{base}-{ident.container_name}", base):
                value = pod.annotations.get(key)
                if value is not None:
                    if str(value).strip().lower() == "true":
                        out.add(stream)
                    break  # the container's own annotation wins over the pod's
        return out

    def _merge(self, rec: Record) -> Record:
        text = rec.get("log")
        if not isinstance(text, str) or not text.lstrip().startswith("{"):
            return rec
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return rec
        if not isinstance(obj, dict):
            return rec
        if self.opts.merge_log_trim:
            obj = {k: v.strip("\r\n") if isinstance(v, str) else v for k, v in obj.items()}
        if not self.opts.keep_log:
            del rec["log"]
        if self.opts.merge_log_key:
            rec[self.opts.merge_log_key] = obj
        else:
            for k, v in obj.items():
                rec.pop(k, None)
                rec[k] = v
        return rec


def _bounded(d: dict[Any, Any]) -> dict[Any, Any]:
    while len(d) >= CACHE_MAX:
        del d[next(iter(d))]
    return d


def create(section: Section, *, name: str, matcher: Matcher) -> KubernetesFilter:
    refuse(section, UNSUPPORTED)
    opts = build(KubernetesOptions, section)
    settings = ApiSettings(
        url=opts.kube_url,
        ca_file=opts.kube_ca_file,
        ca_path=opts.kube_ca_path,
        token_file=opts.kube_token_file,
        token_ttl=opts.kube_token_ttl,
        verify=opts.tls_verify,
        verify_hostname=opts.tls_verify_hostname,
        buffer_size=opts.buffer_size,
    )
    https = opts.kube_url.lower().startswith("https") and not opts.use_tag_for_meta
    for key, path in (("Kube_CA_File", opts.kube_ca_file), ("Kube_CA_Path", opts.kube_ca_path)):
        if not https or not path:
            continue
        prop = section.get(key)
        if not os.path.exists(path):
            # the service account's files exist in the pod, not where a config is checked;
            # KubeApi.open says so again at start, and lookups then fail (logged, counted)
            log.info(
                "%s:%d: %s %s does not exist here",
                section.file,
                prop.line if prop else section.line,
                key,
                path,
            )
            continue
        try:
            ssl_context(
                dataclasses.replace(settings, ca_path=None)
                if key == "Kube_CA_File"
                else dataclasses.replace(settings, ca_file=None)
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the API's CA: {getattr(exc, 'strerror', None) or exc}",
                file=section.file,
                line=prop.line if prop else section.line,
                key=key,
            ) from None
    return KubernetesFilter(name=name, matcher=matcher, opts=opts, api=KubeApi(settings))
