"""Offline validation of every manifest under k8s/.

- Core kinds (ConfigMap, DaemonSet, Service, ...) against the Kubernetes OpenAPI schemas that
  the `kubernetes_validate` package ships, in strict mode (unknown fields are errors, as with
  `kubectl apply`'s default server-side field validation).
- RayCluster documents against the openAPIV3Schema of the KubeRay CRD in
  tests/fixtures/schemas/ray.io_rayclusters.yaml (the version named by their apiVersion).
  A structural CRD schema does not forbid unknown fields (the API server prunes them, or
  rejects them under strict field validation), so every object schema is closed with
  `additionalProperties: false` first; otherwise a misspelled field would pass. Their pod
  templates (and metadata) are also checked as core PodTemplates.
- Every ConfigMap's fluent-bit.conf passes `shipper --dry-run -c FILE` (exit 0), with the env
  the containers that mount it would get.
- Negative tests prove each check can fail.
- No manifest names an image nobody published: shipper's is the placeholder
  REGISTRY/shipper:<version> (the user builds and pushes it: docker/build.sh, README.md's
  migration section, whose steps are run here on a copy of k8s/), the others are upstream's.
- Consistency checks tie the manifests together (ports, probes, DB on a volume, the shutdown
  budget, the DaemonSet's hostPath layout), and one end-to-end run shows that the DaemonSet's
  records carry the pod name in their path key.
"""

from __future__ import annotations

import copy
import functools
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import orjson
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
FIXTURES = ROOT / "tests" / "fixtures"
CRD_FILE = FIXTURES / "schemas" / "ray.io_rayclusters.yaml"
SEED_FILE = FIXTURES / "ray-cluster.log.yaml"

# No shipper image is published: the manifests carry this placeholder, which README.md's
# migration steps replace with the name the user built and pushed.
IMAGE_REPO = "REGISTRY/shipper"
# Images the manifests may name besides shipper's: published upstream.
UPSTREAM_IMAGES = re.compile(r"rayproject/ray:\d+\.\d+\.\d+")
DROP_IN = "/fluent-bit/etc/fluent-bit.conf"
EXPECTED_FILES = (
    "README.md",
    "sidecar/raycluster.yaml",
    "sidecar-http/raycluster.yaml",
    "daemonset/shipper-daemonset.yaml",
    "daemonset/raycluster.yaml",
)

# The oldest Kubernetes minor the manifests are written for, and the newest schema set the
# installed kubernetes-validate ships (catches fields or APIs removed since).
K8S_OLDEST = "1.31"
K8S_VERSIONS = (K8S_OLDEST, kubernetes_validate.latest_version())

# `ray stop`'s default --grace-period: how long the Ray container's preStop may run.
RAY_STOP_GRACE = 16
K8S_DEFAULT_GRACE = 30


# ---------------------------------------------------------------------------- loading


def _load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    for d in docs:
        assert isinstance(d, dict), f"{path}: every YAML document must be a mapping"
    return docs


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml"))


def _all_docs() -> list[tuple[Path, int, dict[str, Any]]]:
    return [(p, i, d) for p in _manifest_files() for i, d in enumerate(_load(p))]


def _doc_id(path: Path, index: int, doc: dict[str, Any]) -> str:
    name = doc.get("metadata", {}).get("name", "?")
    return f"{path.relative_to(K8S)}#{index}:{doc.get('kind')}/{name}"


ALL_DOCS = _all_docs()
RAY_DOCS = [t for t in ALL_DOCS if t[2].get("apiVersion", "").startswith("ray.io/")]
CORE_DOCS = [t for t in ALL_DOCS if not t[2].get("apiVersion", "").startswith("ray.io/")]
CONFIGMAPS = [t for t in CORE_DOCS if t[2].get("kind") == "ConfigMap"]


def _ids(items: list[tuple[Path, int, dict[str, Any]]]) -> list[str]:
    return [_doc_id(*t) for t in items]


def pod_templates(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every pod template of a workload or RayCluster document."""
    spec = doc.get("spec", {})
    if doc.get("kind") == "RayCluster":
        yield spec["headGroupSpec"]["template"]
        for group in spec.get("workerGroupSpecs", []):
            yield group["template"]
    elif "template" in spec:
        yield spec["template"]


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Init containers and containers of a pod spec."""
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def shipper_containers(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) for every long-running shipper container of a document."""
    for template in pod_templates(doc):
        for c in template["spec"].get("containers", []):
            if c.get("image", "").startswith(IMAGE_REPO + ":"):
                yield template["spec"], c


# ------------------------------------------------------------------ Fluent Bit config


def parse_classic(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Enough of Fluent Bit's classic format for consistency checks: [SECTION] + key value."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].strip().upper(), []))
            continue
        key, _, value = line.partition(" ")
        sections[-1][1].append((key.lower(), value.strip()))
    return sections


def conf_get(text: str, kind: str, key: str) -> str | None:
    """The last value of `key` in the first section of `kind` (case-insensitive)."""
    for name, props in parse_classic(text):
        if name == kind.upper():
            values = [v for k, v in props if k == key.lower()]
            return values[-1] if values else None
    return None


def configmap_consumers(
    doc_path: Path, configmap: dict[str, Any]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) pairs, in the same file, that mount this ConfigMap."""
    name = configmap["metadata"]["name"]
    found = []
    for other in _load(doc_path):
        for template in pod_templates(other):
            spec = template["spec"]
            volumes = {
                v["name"]
                for v in spec.get("volumes", [])
                if v.get("configMap", {}).get("name") == name
            }
            for c in _containers(spec):
                if any(m["name"] in volumes for m in c.get("volumeMounts", [])):
                    found.append((spec, c))
    return found


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The env a container would get, with placeholders for values Kubernetes fills in."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "fieldRef" in var.get("valueFrom", {}):
            field = var["valueFrom"]["fieldRef"]["fieldPath"]
            env[var["name"]] = "example-" + re.sub(r"[^a-z0-9]+", "-", field.lower()).strip("-")
        else:  # secretKeyRef, configMapKeyRef, resourceFieldRef
            env[var["name"]] = "example-value"
    return env


def shipper_cmd() -> list[str]:
    """The installed `shipper` console script of this interpreter, else `python -m shipper`."""
    script = Path(sys.executable).with_name("shipper")
    return [str(script)] if script.exists() else [sys.executable, "-m", "shipper"]


def dry_run(conf: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SHIPPER_DEFAULT_CONFIG"}
    full_env.update(env)
    return subprocess.run(
        [*shipper_cmd(), "--dry-run", "-c", str(conf)],
        env=full_env,
        cwd=conf.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -------------------------------------------------------------------- CRD validation


def _load_crd() -> dict[str, Any]:
    with CRD_FILE.open(encoding="utf-8") as fh:
        crd = yaml.safe_load(fh)
    assert crd["kind"] == "CustomResourceDefinition"
    return crd


def close_objects(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a structural schema in which objects with declared properties reject any
    other field (unless the schema preserves unknown fields): strict field validation."""
    node = dict(schema)
    if "properties" in node:
        node["properties"] = {k: close_objects(v) for k, v in node["properties"].items()}
        if "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            node["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = close_objects(node["additionalProperties"])
    if isinstance(node.get("items"), dict):
        node["items"] = close_objects(node["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            node[key] = [close_objects(s) for s in node[key]]
    if isinstance(node.get("not"), dict):
        node["not"] = close_objects(node["not"])
    return node


def crd_version(api_version: str) -> dict[str, Any]:
    crd = _load_crd()
    group, _, version = api_version.partition("/")
    assert group == crd["spec"]["group"], f"{api_version}: not the CRD's group"
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v
    raise AssertionError(f"{api_version}: the CRD has no version {version!r}")


@functools.cache
def crd_validator(api_version: str, *, strict: bool = True) -> jsonschema.protocols.Validator:
    schema = crd_version(api_version)["schema"]["openAPIV3Schema"]
    if strict:
        schema = close_objects(schema)
    # OpenAPI v3.0 schemas use the draft-4-era keywords (type, properties, required, items,
    # anyOf, enum, pattern, ...), whose meaning is the same in draft 7.
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def crd_errors(doc: dict[str, Any], *, strict: bool = True) -> list[str]:
    validator = crd_validator(doc["apiVersion"], strict=strict)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def validate_templates_as_core(doc: dict[str, Any], version: str) -> None:
    """RayCluster metadata and pod templates, as a core PodTemplate (strict)."""
    for template in pod_templates(doc):
        wrapper = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": doc["metadata"],
            "template": template,
        }
        kubernetes_validate.validate(wrapper, version, strict=True)


def _k8s_error(exc: kubernetes_validate.ValidationError) -> str:
    return f"{'.'.join(map(str, exc.path)) or '<root>'}: {exc.message}"


# ========================================================================== the tests


def test_expected_manifests_exist() -> None:
    missing = [f for f in EXPECTED_FILES if not (K8S / f).is_file()]
    assert not missing, f"missing under k8s/: {missing}"
    assert CONFIGMAPS and RAY_DOCS, "no ConfigMap or RayCluster found under k8s/"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("path", "index", "doc"), CORE_DOCS, ids=_ids(CORE_DOCS))
def test_core_object_is_valid(path: Path, index: int, doc: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{_doc_id(path, index, doc)}: {exc.message}")
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{_doc_id(path, index, doc)} (Kubernetes {version}): {_k8s_error(exc)}")


@pytest.mark.parametrize(("path", "index", "doc"), RAY_DOCS, ids=_ids(RAY_DOCS))
def test_raycluster_matches_crd(path: Path, index: int, doc: dict[str, Any]) -> None:
    assert doc["kind"] == "RayCluster"
    # ray.io/v1 is the CRD's storage version; v1alpha1 is deprecated.
    assert doc["apiVersion"] == "ray.io/v1"
    version = crd_version(doc["apiVersion"])
    assert version["served"] and version["storage"] and not version.get("deprecated")
    errors = crd_errors(doc)
    assert not errors, f"{_doc_id(path, index, doc)}:\n  " + "\n  ".join(errors)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("path", "index", "doc"), RAY_DOCS, ids=_ids(RAY_DOCS))
def test_raycluster_pod_templates_are_valid(
    path: Path, index: int, doc: dict[str, Any], version: str
) -> None:
    try:
        validate_templates_as_core(doc, version)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{_doc_id(path, index, doc)} (Kubernetes {version}): {_k8s_error(exc)}")


def test_seed_validates_as_it_was() -> None:
    """The checker itself accepts the seed manifest against its own (v1alpha1) schema."""
    seed = _load(SEED_FILE)
    ray = [d for d in seed if d["kind"] == "RayCluster"]
    assert [d["apiVersion"] for d in ray] == ["ray.io/v1alpha1"]
    assert crd_errors(ray[0]) == []
    for d in seed:
        if d["kind"] != "RayCluster":
            kubernetes_validate.validate(d, K8S_OLDEST, strict=True)


def test_sidecar_is_the_seed_with_a_new_image() -> None:
    """k8s/sidecar/ is the drop-in migration: apiVersion and image changed, nothing else."""
    seed = _load(SEED_FILE)
    ours = _load(K8S / "sidecar" / "raycluster.yaml")
    assert [d["kind"] for d in ours] == [d["kind"] for d in seed]
    expected = copy.deepcopy(seed)
    for d in expected:
        if d["kind"] == "RayCluster":
            d["apiVersion"] = "ray.io/v1"
            for template in pod_templates(d):
                for c in template["spec"]["containers"]:
                    if c["image"].startswith("fluent/fluent-bit:"):
                        c["image"] = f"{IMAGE_REPO}:0.1.0"
    assert ours == expected


@pytest.mark.parametrize(("path", "index", "doc"), CONFIGMAPS, ids=_ids(CONFIGMAPS))
def test_embedded_config_passes_dry_run(
    path: Path, index: int, doc: dict[str, Any], tmp_path: Path
) -> None:
    data = doc.get("data", {})
    assert "fluent-bit.conf" in data, "the drop-in config key is fluent-bit.conf"
    for name, text in data.items():  # @INCLUDE'd siblings land next to it, as in the pod
        (tmp_path / name).write_text(text, encoding="utf-8")
    consumers = configmap_consumers(path, doc)
    assert consumers, f"{_doc_id(path, index, doc)} is not mounted by any container"
    for _spec, container in consumers:
        proc = dry_run(tmp_path / "fluent-bit.conf", container_env(container))
        assert proc.returncode == 0, (
            f"{_doc_id(path, index, doc)} with {container['name']}'s env: "
            f"shipper --dry-run exited {proc.returncode}\n{proc.stdout}{proc.stderr}"
        )


@pytest.mark.parametrize(("path", "index", "doc"), CONFIGMAPS, ids=_ids(CONFIGMAPS))
def test_config_env_vars_are_provided(path: Path, index: int, doc: dict[str, Any]) -> None:
    """Every ${VAR} in the config is set in every container that mounts it (an unset one
    would silently expand to an empty string, as in Fluent Bit)."""
    wanted = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", doc["data"]["fluent-bit.conf"]))
    for _spec, container in configmap_consumers(path, doc):
        if not container.get("image", "").startswith(IMAGE_REPO + ":"):
            continue
        missing = wanted - set(container_env(container))
        assert not missing, f"{container['name']} lacks env {sorted(missing)}"


# ------------------------------------------------------------------ image names


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def test_no_manifest_names_an_unpublished_image() -> None:
    """shipper's image is not published anywhere: every manifest names the placeholder
    REGISTRY/shipper:<version> (whose file says how to replace it), every other image is a
    published upstream one, and no file presents a registry of shipper's as existing."""
    placeholder = f"{IMAGE_REPO}:{_version()}"
    named: dict[str, set[str]] = {}
    for path, _index, doc in ALL_DOCS:
        for template in pod_templates(doc):
            for c in _containers(template["spec"]):
                image = c["image"]
                assert image == placeholder or UPSTREAM_IMAGES.fullmatch(image), (path, image)
                named.setdefault(image, set()).add(path.relative_to(K8S).as_posix())
    assert named.get(placeholder) == {
        "sidecar/raycluster.yaml",
        "sidecar-http/raycluster.yaml",
        "daemonset/shipper-daemonset.yaml",
    }, named
    for rel in named[placeholder]:
        header = (K8S / rel).read_text(encoding="utf-8").split("\napiVersion:")[0]
        assert "REGISTRY/shipper" in header and "docker/build.sh" in header, rel
    docs = [*K8S.rglob("*"), *(ROOT / "docker").iterdir(), ROOT / "README.md"]
    for path in (p for p in docs if p.is_file()):
        text = path.read_text(encoding="utf-8")
        for unpublished in ("ghcr.io", "shipper-dev", "docker.io/shipper", "quay.io"):
            assert unpublished not in text, (path, unpublished)
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    assert placeholder in readme and "docker/build.sh" in readme


# ------------------------------------------------------------------ negative tests


def test_core_validation_rejects_a_misspelled_field() -> None:
    doc = copy.deepcopy(next(d for _, _, d in CORE_DOCS if d["kind"] == "DaemonSet"))
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["volumeMount"] = container.pop("volumeMounts")
    with pytest.raises(kubernetes_validate.ValidationError, match="volumeMount"):
        kubernetes_validate.validate(doc, K8S_OLDEST, strict=True)


def test_crd_validation_rejects_a_misspelled_field() -> None:
    doc = copy.deepcopy(next(d for _, _, d in RAY_DOCS))
    head = doc["spec"]["headGroupSpec"]
    head["rayStartParam"] = head.pop("rayStartParams")
    container = head["template"]["spec"]["containers"][0]
    container["volumeMount"] = container.pop("volumeMounts")
    errors = crd_errors(doc)
    assert any("rayStartParam" in e for e in errors), errors
    assert any("volumeMount" in e for e in errors), errors
    # Why the schema is closed first: as published, the CRD schema lets both typos through
    # (the API server would prune them silently, or reject them under strict validation).
    assert crd_errors(doc, strict=False) == []


def test_crd_validation_rejects_a_wrong_type() -> None:
    doc = copy.deepcopy(next(d for _, _, d in RAY_DOCS))
    doc["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 1  # v1 wants strings
    errors = crd_errors(doc)
    assert any("rayStartParams.num-cpus" in e for e in errors), errors


def test_core_validation_of_templates_rejects_a_misspelled_field() -> None:
    doc = copy.deepcopy(next(d for _, _, d in RAY_DOCS))
    doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePulPolicy"):
        validate_templates_as_core(doc, K8S_OLDEST)


def test_dry_run_rejects_an_unknown_key(tmp_path: Path) -> None:
    conf = tmp_path / "fluent-bit.conf"
    text = (FIXTURES / "fluent-bit.conf").read_text(encoding="utf-8")
    conf.write_text(text.replace("Refresh_Interval 5", "Refresh_Intervall 5"), encoding="utf-8")
    proc = dry_run(conf, {})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Refresh_Intervall" in proc.stderr


# -------------------------------------------------------------- consistency checks


def _config_for(path: Path, spec: dict[str, Any], container: dict[str, Any]) -> str:
    """The fluent-bit.conf text a shipper container mounts at the drop-in path."""
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == DROP_IN]
    assert mounts, f"{container['name']} does not mount its config at {DROP_IN}"
    volume = next(v for v in spec["volumes"] if v["name"] == mounts[0]["name"])
    cm_name = volume["configMap"]["name"]
    cms = [d for d in _load(path) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name]
    assert cms, f"ConfigMap {cm_name} is not in {path.relative_to(ROOT)}"
    return str(cms[0]["data"][mounts[0].get("subPath", "fluent-bit.conf")])


def _mount_of(container: dict[str, Any], target: str) -> dict[str, Any] | None:
    """The volume mount whose mountPath holds `target` (the deepest one)."""
    path = PurePosixPath(target)
    holding = [
        m
        for m in container.get("volumeMounts", [])
        if PurePosixPath(m["mountPath"]) in (path, *path.parents)
    ]
    return max(holding, key=lambda m: len(PurePosixPath(m["mountPath"]).parts), default=None)


SHIPPER_PODS = [(p, i, d) for p, i, d in ALL_DOCS if any(shipper_containers(d))]


@pytest.mark.parametrize(("path", "index", "doc"), SHIPPER_PODS, ids=_ids(SHIPPER_PODS))
def test_shipper_containers_are_drop_in(path: Path, index: int, doc: dict[str, Any]) -> None:
    """No args: the image's entrypoint reads the config at Fluent Bit's mount point."""
    for spec, c in shipper_containers(doc):
        assert "command" not in c and "args" not in c, c["name"]
        assert _config_for(path, spec, c)
        assert c["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}


@pytest.mark.parametrize(("path", "index", "doc"), SHIPPER_PODS, ids=_ids(SHIPPER_PODS))
def test_http_server_ports_and_probes_agree(path: Path, index: int, doc: dict[str, Any]) -> None:
    for spec, c in shipper_containers(doc):
        conf = _config_for(path, spec, c)
        if (conf_get(conf, "SERVICE", "HTTP_Server") or "off").lower() not in ("on", "true"):
            continue
        port = int(conf_get(conf, "SERVICE", "HTTP_Port") or 2020)
        assert port in [p["containerPort"] for p in c.get("ports", [])], c["name"]
        for probe in ("livenessProbe", "readinessProbe"):
            get = c[probe]["httpGet"]
            assert (get["path"], get["port"]) == ("/api/v1/health", port), (c["name"], probe)


@pytest.mark.parametrize(("path", "index", "doc"), SHIPPER_PODS, ids=_ids(SHIPPER_PODS))
def test_writable_paths_are_volumes(path: Path, index: int, doc: dict[str, Any]) -> None:
    """The DB lives on a writable volume (not the image, which may be read-only), and a
    read-only root filesystem comes with a writable /tmp."""
    for spec, c in shipper_containers(doc):
        conf = _config_for(path, spec, c)
        db = conf_get(conf, "INPUT", "DB")
        if db:
            mount = _mount_of(c, db)
            assert mount is not None and not mount.get("readOnly"), (c["name"], db)
        if c.get("securityContext", {}).get("readOnlyRootFilesystem"):
            assert _mount_of(c, "/tmp/x") is not None, c["name"]
            assert c["securityContext"].get("runAsNonRoot") is True


@pytest.mark.parametrize(("path", "index", "doc"), SHIPPER_PODS, ids=_ids(SHIPPER_PODS))
def test_shutdown_budget(path: Path, index: int, doc: dict[str, Any]) -> None:
    """A shipper preStop sleep outlasts `ray stop`, and the grace period covers the sleep plus
    the drain ([SERVICE] Grace), so shipper is never SIGKILLed mid-flush."""
    for spec, c in shipper_containers(doc):
        pre_stop = c.get("lifecycle", {}).get("preStop")
        if not pre_stop:
            continue
        command = " ".join(pre_stop["exec"]["command"])
        m = re.search(r"\bsleep\s+(\d+)", command)
        assert m, f"{c['name']}: preStop should be a sleep, got {command!r}"
        sleep = int(m.group(1))
        grace = float(conf_get(_config_for(path, spec, c), "SERVICE", "Grace") or 5)
        budget = spec.get("terminationGracePeriodSeconds", K8S_DEFAULT_GRACE)
        ray = [
            x
            for x in spec["containers"]
            if x is not c
            and "ray stop"
            in shlex.join(
                x.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            )
        ]
        if ray:
            assert sleep > RAY_STOP_GRACE, f"{c['name']}: sleep {sleep} <= ray stop's grace"
        assert budget >= sleep + grace + 5, f"{c['name']}: {budget} < {sleep} + {grace} + 5"


def _daemonset_parts() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    agent = _load(K8S / "daemonset" / "shipper-daemonset.yaml")
    ds = next(d for d in agent if d["kind"] == "DaemonSet")
    cm = next(d for d in agent if d["kind"] == "ConfigMap")
    rays = [d for d in _load(K8S / "daemonset" / "raycluster.yaml") if d["kind"] == "RayCluster"]
    return ds, cm, rays


def test_daemonset_reads_where_ray_pods_write() -> None:
    ds, cm, rays = _daemonset_parts()
    assert rays, "k8s/daemonset/raycluster.yaml has no RayCluster"
    spec = ds["spec"]["template"]["spec"]
    agent = spec["containers"][0]
    conf = cm["data"]["fluent-bit.conf"]
    globs = [g.strip() for g in (conf_get(conf, "INPUT", "Path") or "").split(",")]
    assert "/var/log/ray/*/session_latest/logs/*" in globs
    assert conf_get(conf, "INPUT", "Path_Key"), "records need the path (it holds the pod name)"
    mount = _mount_of(agent, "/var/log/ray/x")
    assert mount is not None and mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    host_dir = volume["hostPath"]["path"]
    assert mount["mountPath"] == host_dir == "/var/log/ray"
    assert not spec.get("serviceAccountName") and spec["automountServiceAccountToken"] is False

    for ray in rays:
        for template in pod_templates(ray):
            pod = template["spec"]
            logs = {
                v["name"] for v in pod["volumes"] if v.get("hostPath", {}).get("path") == host_dir
            }
            assert logs, "Ray pods must write to the DaemonSet's hostPath"
            for c in _containers(pod):
                for m in c.get("volumeMounts", []):
                    if m["name"] in logs:
                        assert m["mountPath"] == "/tmp/ray", c["name"]
                        assert m["subPathExpr"] == "$(POD_NAME)", c["name"]
                        pod_name = next(e for e in c["env"] if e["name"] == "POD_NAME")
                        assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def _ray_line(n: int) -> str:
    return f"[2026-11-28 10:07:08,{n:03d} I 15251 15251] (raylet) main.cc:103: line {n}\n"


@pytest.mark.timeout(120)
def test_daemonset_records_carry_the_pod_name(tmp_path: Path) -> None:
    """Run the DaemonSet's [INPUT]/[FILTER] sections (paths re-rooted under tmp, stdout
    output) over two pods' directories whose session_latest links dangle, as they do in the
    agent's mount namespace; the path key of every record starts with <root>/<pod>/."""
    _ds, cm, _rays = _daemonset_parts()
    conf = str(cm["data"]["fluent-bit.conf"])
    root = tmp_path / "var" / "log" / "ray"
    pods = ("raycluster-node-logs-head-x7k2q", "raycluster-node-logs-workers-worker-9zr4m")
    for n, pod in enumerate(pods):
        session = f"session_2099-01-01_00-00-0{n}_000001_{100 + n}"
        logs = root / pod / session / "logs"
        logs.mkdir(parents=True)
        (logs / "raylet.out").write_text(_ray_line(n), encoding="utf-8")
        # Absolute, and meaningful only inside the Ray pod: dangling here.
        (root / pod / "session_latest").symlink_to(tmp_path / "elsewhere" / "tmp/ray" / session)

    text = conf.split("[OUTPUT]")[0]
    text = text.replace("/var/log/ray", str(root)).replace("/var/lib/shipper", str(tmp_path))
    text = re.sub(r"(?im)^(\s*HTTP_Server\s+)\S+", r"\1Off", text)
    text += "[OUTPUT]\n    Name stdout\n    Match *\n    Format json_lines\n"
    (tmp_path / "fluent-bit.conf").write_text(text, encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if k != "SHIPPER_DEFAULT_CONFIG"}
    env["NODE_NAME"] = "node-a"
    records: queue.Queue[dict[str, Any]] = queue.Queue()
    seen: dict[str, dict[str, Any]] = {}
    stderr_path = tmp_path / "shipper.stderr"
    with (
        stderr_path.open("wb") as stderr,
        subprocess.Popen(
            [*shipper_cmd(), "-c", str(tmp_path / "fluent-bit.conf")],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=tmp_path,
        ) as proc,
    ):
        out = proc.stdout
        assert out is not None

        def pump() -> None:
            for line in out:
                records.put(orjson.loads(line))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        try:
            while len(seen) < len(pods) and time.monotonic() < deadline:
                try:
                    rec = records.get(timeout=0.5)
                except queue.Empty:
                    if proc.poll() is not None:
                        break
                    continue
                rel = PurePosixPath(rec["path"]).relative_to(root)
                seen[rel.parts[0]] = rec
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
    err = stderr_path.read_text(encoding="utf-8", errors="replace")
    assert sorted(seen) == sorted(pods), f"records by pod: {seen}\nstderr:\n{err}"
    for pod, rec in seen.items():
        assert rec["node"] == "node-a"
        assert PurePosixPath(rec["path"]).parts[len(root.parts)] == pod
