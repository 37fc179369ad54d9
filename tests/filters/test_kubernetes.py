"""The `kubernetes` filter through the CLI against a fake Kubernetes API server on 127.0.0.1
(tests/filters/kube_fake.py: TLS with its own CA, bearer token, v1 Pod and Status JSON):
container log files named as kubelet names them, tailed with `Tag kube.*` as Fluent Bit's
DaemonSet does."""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from shipper.config.classic import parse_classic_text
from shipper.config.model import ConfigError
from shipper.config.service import ServiceOptions
from shipper.filters.kube_api import LOOKUP_TIMEOUT, Pod
from shipper.filters.kubernetes import Entry, KubernetesFilter
from shipper.plugins import FILTERS, Context
from tests.agent import Agent, wait_for
from tests.filters.kube_fake import FakeKubeApi, pod_object
from tests.ops.conftest import free_port, get_json

HEAD = ("raycluster-head-x7k2q", "ray", "ray-head", "a" * 64)
NOISY = ("noisy-7d9f", "ray", "app", "b" * 64)
GHOST = ("ghost-1", "ray", "c", "d" * 64)
LATE = ("worker-2", "ml", "ray-worker", "e" * 64)


def log_file(logs: Path, ident: tuple[str, str, str, str]) -> Path:
    pod, ns, container, cid = ident
    return logs / f"{pod}_{ns}_{container}-{cid}.log"


def append(path: Path, *lines: str) -> None:
    with open(path, "a") as f:
        f.write("".join(x + "\n" for x in lines))


def config(tmp: Path, api: FakeKubeApi, logs: Path, extra: str, port: int) -> Path:
    prefix = "kube." + str(logs).replace("/", ".").lstrip(".") + "."
    cfg = tmp / "fluent-bit.conf"
    cfg.write_text(
        textwrap.dedent(f"""
        [SERVICE]
            Flush 0.2
            Log_Level info
            HTTP_Server On
            HTTP_Listen 127.0.0.1
            HTTP_Port {port}
        [INPUT]
            Name tail
            Path {logs}/*.log
            Tag kube.*
            Read_from_Head on
            Refresh_Interval 1
            Ray_Metadata off
        [FILTER]
            Name kubernetes
            Match kube.*
            Kube_URL {api.url}
            Kube_CA_File {api.ca_file}
            Kube_Token_File {tmp / "token"}
            Kube_Tag_Prefix {prefix}
        """)
        + textwrap.indent(textwrap.dedent(extra).strip(), "    ")
        + "\n[OUTPUT]\n    Name stdout\n    Match *\n"
    )
    return cfg


def by_pod(recs: list[dict[str, Any]], pod: str) -> list[dict[str, Any]]:
    return [r for r in recs if r["kubernetes"]["pod_name"] == pod]


def test_pod_metadata_merge_log_and_exclude(tmp_path: Path) -> None:
    logs = tmp_path / "var" / "log" / "containers"
    logs.mkdir(parents=True)
    (tmp_path / "token").write_text("sa-token-1\n")
    with FakeKubeApi(tmp_path) as api:
        api.add(
            pod_object(
                HEAD[0],
                "ray",
                uid="5f1c2b9e-0d7a-4c55-8f3e-2a1b3c4d5e6f",
                node="node-a",
                container="ray-head",
                labels={"ray.io/node-type": "head", "ray.io/cluster": "raycluster"},
                annotations={"ray.io/ft-enabled": "false"},
            )
        )
        api.add(
            pod_object(
                NOISY[0],
                "ray",
                uid="u-noisy",
                node="node-a",
                container="app",
                annotations={"fluentbit.io/exclude": "true"},
            )
        )
        head = log_file(logs, HEAD)
        append(head, json.dumps({"level": "INFO", "msg": "raylet started\n"}), "plain text")
        append(log_file(logs, NOISY), "excluded 1", "excluded 2")
        append(log_file(logs, GHOST), "from a pod the API does not know")
        port = free_port()
        extra = """
            Merge_Log On
            Keep_Log Off
            K8S-Logging.Exclude On
            Buffer_Size 0
        """
        with Agent(["-c", str(config(tmp_path, api, logs, extra, port))]) as agent:
            agent.wait_records(3)
            append(head, "later line")
            recs = agent.wait_records(4)
            _, metrics = get_json(port, "/api/v1/metrics")
            assert agent.stop() == 0
        assert api.errors == []
    expected = {
        "pod_name": HEAD[0],
        "namespace_name": "ray",
        "pod_id": "5f1c2b9e-0d7a-4c55-8f3e-2a1b3c4d5e6f",
        "labels": {"ray.io/node-type": "head", "ray.io/cluster": "raycluster"},
        "annotations": {"ray.io/ft-enabled": "false"},
        "host": "node-a",
        "pod_ip": "10.244.1.17",
        "container_name": "ray-head",
        "docker_id": HEAD[3],
        "container_hash": "docker.io/rayproject/ray@sha256:" + "ab" * 32,
        "container_image": "docker.io/rayproject/ray:2.60.0",
    }
    heads = by_pod(recs, HEAD[0])
    assert [r["kubernetes"] for r in heads] == [expected] * 3
    assert list(heads[0]["kubernetes"]) == list(expected)  # Fluent Bit's key order
    # Merge_Log: the JSON log's keys at the top, trimmed; Keep_Log Off: `log` gone once merged
    assert heads[0]["level"] == "INFO" and heads[0]["msg"] == "raylet started"
    assert "log" not in heads[0] and list(heads[0])[-1] == "kubernetes"
    assert [r.get("log") for r in heads[1:]] == ["plain text", "later line"]
    assert by_pod(recs, NOISY[0]) == []  # fluentbit.io/exclude: "true"
    (ghost,) = by_pod(recs, GHOST[0])  # 404: the tag's metadata only, the record goes on
    assert ghost["kubernetes"] == {
        "pod_name": GHOST[0],
        "namespace_name": "ray",
        "container_name": "c",
        "docker_id": GHOST[3],
    }
    assert api.lookups("ray", HEAD[0]) == 1  # cached: one request for three records
    assert 'pods "ghost-1" not found' in agent.err_text()
    stats = metrics["filter"]["kubernetes.0"]
    assert stats["kube_meta_missing"] == 1 and stats["drop_records"] == 2


def test_bad_token_and_api_down_never_block_records(tmp_path: Path) -> None:
    logs = tmp_path / "var" / "log" / "containers"
    logs.mkdir(parents=True)
    token = tmp_path / "token"
    token.write_text("expired-token\n")
    with FakeKubeApi(tmp_path) as api:
        api.add(pod_object(HEAD[0], "ray", uid="u-head", node="n1", container="ray-head"))
        api.add(pod_object(LATE[0], "ml", uid="u-late", node="n2", container="ray-worker"))
        head = log_file(logs, HEAD)
        append(head, "first")
        port = free_port()
        cfg = config(tmp_path, api, logs, "Kube_Token_TTL 1s", port)
        with Agent(["-c", str(cfg)]) as agent:
            (rec,) = agent.wait_records(1)
            assert "pod_id" not in rec["kubernetes"] and rec["kubernetes"]["pod_name"] == HEAD[0]
            agent.wait_stderr("HTTP 401: Unauthorized (check Kube_Token_File")
            token.write_text("sa-token-1\n")  # the token rotates: read again after its TTL

            def enriched(pod: str, path: Path) -> bool:
                got = [r for r in by_pod(agent.snapshot(), pod) if "pod_id" in r["kubernetes"]]
                if not got:
                    append(path, "again")  # each chunk asks; after the backoff it is fetched
                return bool(got)

            wait_for(lambda: enriched(HEAD[0], head), 15, "metadata once the token is good")
            api.down()
            late = log_file(logs, LATE)
            append(late, "while the API is down")
            rec = agent.wait_log("while the API is down")
            assert rec["kubernetes"]["pod_name"] == LATE[0] and "pod_id" not in rec["kubernetes"]
            agent.wait_stderr("no metadata for pod ml/worker-2")
            api.up()
            wait_for(lambda: enriched(LATE[0], late), 15, "metadata once the API is back")
            _, metrics = get_json(port, "/api/v1/metrics")
            assert agent.stop() == 0
        assert api.errors == []
    stats = metrics["filter"]["kubernetes.0"]
    assert stats["kube_api_errors"] >= 2 and stats["kube_meta_missing"] >= 2
    assert all(r["kubernetes"]["namespace_name"] in ("ray", "ml") for r in agent.snapshot())


@pytest.mark.parametrize(
    "body, key",
    [
        ("Use_Kubelet On", "Use_Kubelet"),
        ("Regex_Parser my-tag-parser", "Regex_Parser"),
        ("Merge_Parser json", "Merge_Parser"),
        ("K8S-Logging.Parser On", "K8S-Logging.Parser"),
        ("Namespace_Labels On", "Namespace_Labels"),
        ("Kube_CA_File {bad}", "Kube_CA_File"),
        ("Kube_Meta_Cache_TTL soon", "Kube_Meta_Cache_TTL"),
        ("Kube_Url_Typo x", "Kube_Url_Typo"),
    ],
)
def test_unsupported_keys_are_refused_by_name(tmp_path: Path, body: str, key: str) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate\n")
    body = body.format(bad=bad)
    text = f"[FILTER]\n    Name kubernetes\n    Match kube.*\n    {body}\n"
    doc = parse_classic_text(text, file="f.conf", env={})
    with pytest.raises(ConfigError) as err:
        FILTERS["kubernetes"](doc.sections[0], Context(service=ServiceOptions(), name="k.0"))
    assert err.value.key == key and err.value.line == 4


def test_missing_ca_at_start_logs_and_records_go_on(tmp_path: Path) -> None:
    """A pod without its service account files (automountServiceAccountToken: false): the
    agent says why there is no metadata and ships the records with the tag's."""
    logs = tmp_path / "var" / "log" / "containers"
    logs.mkdir(parents=True)
    with FakeKubeApi(tmp_path) as api:
        cfg = config(tmp_path, api, logs, "", free_port())
        api.ca_file.unlink()
        append(log_file(logs, HEAD), "no service account here")
        with Agent(["-c", str(cfg)]) as agent:
            (rec,) = agent.wait_records(1)
            agent.wait_stderr("cannot load the CA")
            assert agent.stop() == 0
        assert api.snapshot() == []  # no request without the CA
    assert rec["kubernetes"] == {
        "pod_name": HEAD[0],
        "namespace_name": "ray",
        "container_name": "ray-head",
        "docker_id": HEAD[3],
    }


def test_an_api_that_never_answers_delays_records_at_most_once(tmp_path: Path) -> None:
    """An API server that takes connections and never answers (a blackholed address): the
    first new pod's records wait for the lookup's timeout, then go on; while the API stays
    unreachable, another new pod's records do not wait at all."""
    logs = tmp_path / "var" / "log" / "containers"
    logs.mkdir(parents=True)
    (tmp_path / "token").write_text("sa-token-1\n")
    with socket.socket() as hole, FakeKubeApi(tmp_path) as api:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)  # never accepted: the TLS handshake never completes
        cfg = config(tmp_path, api, logs, "", free_port())
        cfg.write_text(
            cfg.read_text().replace(api.url, f"https://127.0.0.1:{hole.getsockname()[1]}")
        )
        append(log_file(logs, HEAD), "first pod")
        with Agent(["-c", str(cfg)]) as agent:
            agent.wait_log("first pod", timeout=LOOKUP_TIMEOUT + 10)
            assert f"no answer within {LOOKUP_TIMEOUT:g}s" in agent.err_text()
            start = time.monotonic()
            append(log_file(logs, LATE), "second pod")
            rec = agent.wait_log("second pod", timeout=LOOKUP_TIMEOUT + 10)
            waited = time.monotonic() - start
            assert agent.stop() == 0
    assert waited < LOOKUP_TIMEOUT, f"a new pod's records waited {waited:.1f}s for a dead API"
    assert rec["kubernetes"]["pod_name"] == LATE[0] and "pod_id" not in rec["kubernetes"]


def make(body: str) -> KubernetesFilter:
    text = "[FILTER]\n    Name kubernetes\n    Match kube.*\n" + textwrap.indent(
        textwrap.dedent(body).strip(), "    "
    )
    doc = parse_classic_text(text + "\n", file="f.conf", env={})
    flt = FILTERS["kubernetes"](doc.sections[0], Context(service=ServiceOptions(), name="k.0"))
    assert isinstance(flt, KubernetesFilter)
    return flt


def head_tag() -> str:
    pod, ns, container, cid = HEAD
    return f"kube.var.log.containers.{pod}_{ns}_{container}-{cid}.log"


def known(flt: KubernetesFilter, annotations: dict[str, str]) -> None:
    """As after a lookup (the API side is covered by the tests above)."""
    pod = pod_object(
        HEAD[0],
        "ray",
        uid="u1",
        node="n1",
        container="ray-head",
        labels={"app": "ray"},
        annotations=annotations,
    )
    flt._cache[("ray", HEAD[0])] = Entry(Pod.of(pod), time.monotonic())


def test_options_shape_the_record() -> None:
    flt = make("""
        Labels Off
        Annotations Off
        Owner_References On
        Merge_Log On
        Merge_Log_Key log_processed
        Merge_Log_Trim Off
    """)
    known(flt, {"a": "b"})
    (rec,) = flt.apply([{"log": '{"msg": "hi\\n", "n": 1}', "stream": "stdout"}], head_tag())
    assert rec["log_processed"] == {"msg": "hi\n", "n": 1} and rec["log"].startswith("{")
    meta = rec["kubernetes"]
    assert "labels" not in meta and "annotations" not in meta and meta["pod_id"] == "u1"
    assert meta["ownerReferences"][0]["kind"] == "RayCluster"
    assert list(rec) == ["log", "stream", "log_processed", "kubernetes"]


def test_tag_only_and_unmatched_tags() -> None:
    flt = make("Use_Tag_For_Meta On")
    assert flt.ready(head_tag()) is None  # never asks the API
    (rec,) = flt.apply([{"log": "x"}], head_tag())
    assert rec["kubernetes"] == {
        "pod_name": HEAD[0],
        "namespace_name": "ray",
        "container_name": "ray-head",
        "docker_id": HEAD[3],
    }
    assert flt.apply([{"log": "x"}], "kube.var.log.containers.not-a-pod-file.log") == [{"log": "x"}]
    assert flt.apply([{"log": "y"}], "other.tag") == [{"log": "y"}]


@pytest.mark.parametrize(
    "annotations, kept",
    [
        ({"fluentbit.io/exclude": "true"}, []),
        ({"fluentbit.io/exclude": "false"}, ["out", "err"]),
        ({"fluentbit.io/exclude_stderr": "true"}, ["out"]),
        ({"fluentbit.io/exclude-ray-head": "true"}, []),
        ({"fluentbit.io/exclude-other": "true"}, ["out", "err"]),
        (
            {"fluentbit.io/exclude": "true", "fluentbit.io/exclude-ray-head": "false"},
            ["out", "err"],
        ),
    ],
)
def test_exclude_annotations(annotations: dict[str, str], kept: list[str]) -> None:
    flt = make("K8S-Logging.Exclude On")
    known(flt, annotations)
    recs = [{"log": "out", "stream": "stdout"}, {"log": "err", "stream": "stderr"}]
    assert [r["log"] for r in flt.apply(recs, head_tag())] == kept


async def test_cache_ttl_refreshes_in_the_background(tmp_path: Path) -> None:
    """Kube_Meta_Cache_TTL: once an entry is older, the next chunk still goes on at once with
    the old metadata while the pod is fetched again; later chunks get the new one."""
    (tmp_path / "token").write_text("sa-token-1\n")
    with FakeKubeApi(tmp_path) as api:
        api.add(
            pod_object(HEAD[0], "ray", uid="u1", node="n1", container="ray-head", labels={"v": "1"})
        )
        flt = make(f"""
            Kube_URL {api.url}
            Kube_CA_File {api.ca_file}
            Kube_Token_File {tmp_path / "token"}
            Kube_Tag_Prefix kube.var.log.containers.
            Kube_Meta_Cache_TTL 0.3s
        """)
        await flt.start()
        try:
            first = flt.ready(head_tag())
            assert first is not None
            await first
            assert flt.ready(head_tag()) is None  # cached
            assert flt.apply([{}], head_tag())[0]["kubernetes"]["labels"] == {"v": "1"}
            api.add(
                pod_object(
                    HEAD[0], "ray", uid="u1", node="n1", container="ray-head", labels={"v": "2"}
                )
            )
            deadline = time.monotonic() + 10
            while flt.apply([{}], head_tag())[0]["kubernetes"]["labels"] != {"v": "2"}:
                assert time.monotonic() < deadline, "never refreshed"
                assert flt.ready(head_tag()) is None  # stale or fresh: never waits
                await asyncio.sleep(0.05)
            assert api.lookups("ray", HEAD[0]) >= 2
        finally:
            await flt.close()


def test_a_directory_per_pod_as_the_ray_daemonset(tmp_path: Path) -> None:
    """k8s/daemonset keeps each Ray pod's logs in /var/log/ray/<pod>/...; with shipper's
    Kube_Pod_Dir_Namespace the pod directory names the pod."""
    root = tmp_path / "var" / "log" / "ray"
    logs = root / HEAD[0] / "session_latest" / "logs"
    logs.mkdir(parents=True)
    (tmp_path / "token").write_text("sa-token-1\n")
    with FakeKubeApi(tmp_path) as api:
        api.add(
            pod_object(
                HEAD[0],
                "ray",
                uid="u-head",
                node="node-a",
                container="ray-head",
                labels={"ray.io/cluster": "raycluster", "ray.io/node-type": "head"},
            )
        )
        prefix = "ray." + str(root).replace("/", ".").lstrip(".") + "."
        cfg = tmp_path / "c.conf"
        cfg.write_text(
            textwrap.dedent(f"""
            [SERVICE]
                Flush 0.2
            [INPUT]
                Name tail
                Path {root}/*/session_latest/logs/*
                Tag ray.*
                Read_from_Head on
                Ray_Metadata off
            [FILTER]
                Name kubernetes
                Match ray.*
                Kube_URL {api.url}
                Kube_CA_File {api.ca_file}
                Kube_Token_File {tmp_path / "token"}
                Kube_Tag_Prefix {prefix}
                Kube_Pod_Dir_Namespace ray
            [OUTPUT]
                Name stdout
                Match *
            """)
        )
        append(logs / "raylet.out", "[2026-12-07 06:00:00,000 I 1 1] raylet started")
        with Agent(["-c", str(cfg)]) as agent:
            (rec,) = agent.wait_records(1)
            assert agent.stop() == 0
    assert rec["kubernetes"] == {
        "pod_name": HEAD[0],
        "namespace_name": "ray",
        "pod_id": "u-head",
        "labels": {"ray.io/cluster": "raycluster", "ray.io/node-type": "head"},
        "host": "node-a",
        "pod_ip": "10.244.1.17",
        "container_name": "ray-head",
        "docker_id": "c" * 64,
        "container_hash": "docker.io/rayproject/ray@sha256:" + "ab" * 32,
        "container_image": "docker.io/rayproject/ray:2.60.0",
    }
