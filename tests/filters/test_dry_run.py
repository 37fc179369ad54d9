"""`shipper --dry-run -c FILE` is the compatibility check a user runs: what these filters do
not support is refused with file, line and key, and exit code 1; what they do passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAD = "[INPUT]\n    Name tail\n    Path /x/*.log\n    Tag kube.*\n"
TAIL = "[OUTPUT]\n    Name stdout\n    Match *\n"
CASES = {
    "kubelet": ("Name kubernetes\n    Match kube.*\n    Use_Kubelet On", "Use_Kubelet"),
    "regex-parser": ("Name kubernetes\n    Match *\n    Regex_Parser kube-custom", "Regex_Parser"),
    "rule": ("Name rewrite_tag\n    Match *\n    Rule $log ^E", "Rule"),
    "storage": (
        "Name rewrite_tag\n    Match *\n    Rule $a b c false\n    Emitter_Storage.type filesystem",
        "Emitter_Storage.type",
    ),
    "nest": ("Name nest\n    Match *\n    Operation nest\n    Wildcard a*", "Nest_under"),
    "throttle": ("Name throttle\n    Match *\n    Rate 10\n    Burst 20", "Burst"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_by_name(tmp_path: Path, case: str) -> None:
    body, key = CASES[case]
    cfg = tmp_path / "fluent-bit.conf"
    cfg.write_text(HEAD + "[FILTER]\n    " + body + "\n" + TAIL)
    lines = cfg.read_text().splitlines()
    where = next((i + 1 for i, x in enumerate(lines) if x.strip().startswith(key)), 5)
    proc = subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"{cfg}:{where}" in proc.stderr and f"key '{key}'" in proc.stderr, proc.stderr


def test_fluent_bit_daemonset_filters_pass(tmp_path: Path) -> None:
    """The filters as Fluent Bit's docs write them (off-defaults of unsupported keys pass)."""
    cfg = tmp_path / "fluent-bit.conf"
    cfg.write_text(
        HEAD
        + """[FILTER]
    Name                kubernetes
    Match               kube.*
    Kube_URL            https://kubernetes.default.svc:443
    Kube_CA_File        /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    Kube_Token_File     /var/run/secrets/kubernetes.io/serviceaccount/token
    Kube_Tag_Prefix     kube.var.log.containers.
    Merge_Log           On
    Merge_Log_Key       log_processed
    K8S-Logging.Parser  Off
    K8S-Logging.Exclude On
    Kube_Meta_Cache_TTL 300s
[FILTER]
    Name          rewrite_tag
    Match         kube.*
    Rule          $kubernetes['namespace_name'] ^(ray)$ ray.$TAG false
    Emitter_Name  re_emitted
    Emitter_Mem_Buf_Limit 20M
[FILTER]
    Name       nest
    Match      ray.*
    Operation  lift
    Nested_under kubernetes
    Add_prefix kubernetes_
[FILTER]
    Name     throttle
    Match    *
    Rate     1000
    Window   300
    Interval 1s
    Print_Status true
"""
        + TAIL
    )
    proc = subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
