"""A Kubernetes API server for the kubernetes filter's tests, faithful to what the filter
uses: HTTPS with a CA of its own (trustme), bearer tokens (401 with a v1 Status otherwise),
GET /api/v1/namespaces/{ns}/pods/{pod} answering a v1 Pod or a 404 Status, as the real API
server does. `down()`/`up()` stop and restart it on the same port."""

from __future__ import annotations

import json
import re
import ssl
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from tests.outputs.receivers import Receiver, Seen, check

_POD_PATH = re.compile(r"/api/v1/namespaces/([a-z0-9-]+)/pods/([a-z0-9.-]+)")


def pod_object(
    name: str,
    namespace: str,
    *,
    uid: str,
    node: str,
    container: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A v1 Pod as `kubectl get pod -o json` shows one (the fields a real one has)."""
    image = "docker.io/rayproject/ray:2.60.0"
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": "48213",
            "creationTimestamp": "2026-12-07T05:58:01Z",
            "labels": labels or {},
            "annotations": annotations or {},
            "ownerReferences": [
                {
                    "apiVersion": "ray.io/v1",
                    "kind": "RayCluster",
                    "name": "raycluster",
                    "uid": "0b7f3a8e-5d4c-4e1f-9a2b-3c4d5e6f7a8b",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [{"name": container, "image": image}],
            "nodeName": node,
            "serviceAccountName": "default",
            "restartPolicy": "Always",
        },
        "status": {
            "phase": "Running",
            "hostIP": "10.0.0.4",
            "podIP": "10.244.1.17",
            "podIPs": [{"ip": "10.244.1.17"}],
            "containerStatuses": [
                {
                    "name": container,
                    "image": image,
                    "imageID": "docker.io/rayproject/ray@sha256:" + "ab" * 32,
                    "containerID": "containerd://" + "c" * 64,
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": "2026-12-07T05:58:09Z"}},
                }
            ],
        },
    }


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.Response(status=code, text=json.dumps(body), content_type="application/json")


class FakeKubeApi(Receiver):
    def __init__(self, tmp: Path, *, token: str = "sa-token-1") -> None:
        self.ca = trustme.CA()
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "kubernetes.default.svc").configure_cert(server)
        self.ca_file = tmp / "ca.crt"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.token = token
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        super().__init__(ssl_context=server)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def add(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.pods[(meta["namespace"], meta["name"])] = pod

    def lookups(self, namespace: str, name: str) -> int:
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        return sum(1 for s in self.snapshot() if s.path == path and s.answered == 200)

    def validate(self, seen: Seen) -> tuple[str, str]:
        check(seen.method == "GET", f"method {seen.method}")
        m = _POD_PATH.fullmatch(seen.path)
        check(m is not None, f"not a pod's path: {seen.path}")
        assert m is not None
        return m.group(1), m.group(2)

    def answer(self, seen: Seen, payload: Any) -> web.StreamResponse:
        if seen.headers.get("Authorization") != f"Bearer {self.token}":
            seen.answered = 401
            return _status(401, "Unauthorized", "Unauthorized")
        pod = self.pods.get(payload)
        if pod is None:
            seen.answered = 404
            return _status(404, "NotFound", f'pods "{payload[1]}" not found')
        self.accept(seen, payload)
        seen.answered = 200
        return web.Response(text=json.dumps(pod), content_type="application/json")
