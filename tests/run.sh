#!/usr/bin/env bash
# The project's test command: `bash tests/run.sh [pytest args...]`.
#
# On a fresh Debian machine (as root) it installs what the tests need, then runs pytest:
#   1. the project itself with its test extras (pip install -e '.[test]') into the current Python;
#   2. clickhouse-server from Debian's packages (apt-get), for tests marked `clickhouse`;
#   3. librdkafka from Debian's packages (apt-get), whose mock cluster is the Kafka-protocol
#      broker of the tests marked `kafka` (tests/outputs/kafka_broker.py);
#   4. Ray in its own virtualenv .venv-ray (kept apart: Ray pins its own dependencies), for tests
#      marked `ray`; they run it as a subprocess through tests.backends.ray_python();
#   5. mmdebstrap from Debian's packages (apt-get), with which tests/test_image_run.py builds the
#      container image's root filesystem (tests/image.py) to run the agent in it.
# Every step is skipped when already done, so a second run goes straight to pytest.
# (Step 5 is only the tool: the image itself is assembled by the test, cached in
# /var/tmp/shipper-image, and reused until the Dockerfile or the build context changes.)
# The exit code is pytest's (5, "no tests collected", is a failure like any other non-zero).
#
# Environment knobs:
#   SHIPPER_SKIP_INSTALL=1   skip all install steps (use whatever is there)
#   SHIPPER_NO_CLICKHOUSE=1  don't install clickhouse-server (its tests then skip)
#   SHIPPER_NO_KAFKA=1       don't install librdkafka1 (Kafka tests then skip)
#   SHIPPER_NO_RAY=1         don't create .venv-ray (Ray tests then skip)
#   SHIPPER_NO_MMDEBSTRAP=1  don't install mmdebstrap (the image run test then skips)
#   RAY_PIP_SPEC             what to pip-install into .venv-ray (default: "ray[default,serve]==2.60.0":
#                            the job server and Serve, which the fixtures' make.py runs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-python3}"
RAY_VENV="$ROOT/.venv-ray"
RAY_PIP_SPEC="${RAY_PIP_SPEC:-ray[default,serve]==2.60.0}"
STAMP_DIR="$ROOT/.venv-ray"

log() { printf '[tests/run.sh] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

build_inputs_sha() {
    cat pyproject.toml shipper/*/*.c | sha256sum | cut -d' ' -f1
}

install_project() {
    # Fast path: the package is importable from this tree and every test extra is present.
    # Run from / so that `import shipper` finds the installed one, not ./shipper: another
    # checkout's editable install must not pass for ours.
    if (cd / && "$PY" - "$ROOT") <<'EOF' 2>/dev/null
import importlib.util, os, sys
import shipper
here = os.path.realpath(sys.argv[1])
if not os.path.realpath(shipper.__file__).startswith(here + os.sep):
    sys.exit(1)
from importlib.metadata import distribution, PackageNotFoundError
from packaging.requirements import Requirement
dist = distribution("shipper")
for raw in dist.requires or []:
    req = Requirement(raw)
    if req.marker is not None and not req.marker.evaluate({"extra": "test"}):
        continue
    try:
        v = distribution(req.name).version
    except PackageNotFoundError:
        sys.exit(1)
    if req.specifier and not req.specifier.contains(v, prereleases=True):
        sys.exit(1)
EOF
    then
        # Re-install anyway when pyproject.toml or the C helper changed since the last install
        # (the editable install builds shipper/ray/_fastray.c in place).
        local mark="$ROOT/.pytest_cache/.shipper-pyproject.sha"
        local want; want="$(build_inputs_sha)"
        if [ -f "$mark" ] && [ "$(cat "$mark")" = "$want" ]; then
            log "project + test extras already installed"
            return
        fi
    fi
    log "pip install -e '.[test]'"
    "$PY" -m pip install --disable-pip-version-check -q -e '.[test]'
    mkdir -p "$ROOT/.pytest_cache"
    build_inputs_sha > "$ROOT/.pytest_cache/.shipper-pyproject.sha"
}

install_clickhouse() {
    if [ -n "${SHIPPER_NO_CLICKHOUSE:-}" ]; then log "clickhouse: skipped (SHIPPER_NO_CLICKHOUSE)"; return; fi
    if command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/bin/clickhouse ]; then
        log "clickhouse-server already installed"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "clickhouse: no apt-get here; ClickHouse tests will skip"
        return
    fi
    log "installing clickhouse-server (apt-get)"
    # Debian's package; its postinst may try to start a service: no init system here, so keep
    # it from doing so (policy-rc.d 101 = action forbidden), and never fail the run on that.
    local policy=/usr/sbin/policy-rc.d created_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"
        created_policy=1
    fi
    local rc=0 updated=""
    # An apt-get update only when the package lists don't know the package yet, or when an
    # install from the lists at hand fails (stale lists).
    if ! apt-cache policy clickhouse-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        as_root apt-get update -qq || true
        updated=1
    fi
    apt_install() {
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
            clickhouse-server clickhouse-client >/dev/null
    }
    apt_install || rc=$?
    if [ "$rc" -ne 0 ] && [ -z "$updated" ]; then
        as_root apt-get update -qq || true
        rc=0
        apt_install || rc=$?
    fi
    if [ -n "$created_policy" ]; then as_root rm -f "$policy"; fi
    if [ "$rc" -ne 0 ]; then
        log "clickhouse: apt-get install failed (rc=$rc); ClickHouse tests will skip"
    fi
}

install_kafka() {
    if [ -n "${SHIPPER_NO_KAFKA:-}" ]; then log "kafka: skipped (SHIPPER_NO_KAFKA)"; return; fi
    if ldconfig -p 2>/dev/null | grep -q 'librdkafka\.so\.1'; then
        log "librdkafka already installed"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "kafka: no apt-get here; Kafka tests will skip"
        return
    fi
    log "installing librdkafka1 (apt-get)"
    local rc=0
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
        librdkafka1 >/dev/null 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        as_root apt-get update -qq || true
        rc=0
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
            librdkafka1 >/dev/null || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        log "kafka: apt-get install librdkafka1 failed (rc=$rc); Kafka tests will skip"
    fi
}

install_ray() {
    if [ -n "${SHIPPER_NO_RAY:-}" ]; then log "ray: skipped (SHIPPER_NO_RAY)"; return; fi
    local stamp="$STAMP_DIR/.shipper-ray-spec"
    if [ -x "$RAY_VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$RAY_PIP_SPEC" ] \
        && "$RAY_VENV/bin/python" -c 'import ray' >/dev/null 2>&1; then
        log "ray already installed in .venv-ray ($("$RAY_VENV/bin/python" -c 'import ray; print(ray.__version__)'))"
        return
    fi
    log "creating .venv-ray with pip install $RAY_PIP_SPEC"
    local rc=0
    {
        [ -x "$RAY_VENV/bin/python" ] || "$PY" -m venv "$RAY_VENV"
        "$RAY_VENV/bin/python" -m pip install --disable-pip-version-check -q "$RAY_PIP_SPEC"
        "$RAY_VENV/bin/python" -c 'import ray'
    } || rc=$?
    if [ "$rc" -ne 0 ]; then
        log "ray: install failed (rc=$rc); Ray tests will skip"
        return
    fi
    printf '%s' "$RAY_PIP_SPEC" > "$stamp"
}

install_mmdebstrap() {
    if [ -n "${SHIPPER_NO_MMDEBSTRAP:-}" ]; then log "mmdebstrap: skipped (SHIPPER_NO_MMDEBSTRAP)"; return; fi
    if command -v mmdebstrap >/dev/null 2>&1; then
        log "mmdebstrap already installed"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "mmdebstrap: no apt-get here; the image run test will skip"
        return
    fi
    log "installing mmdebstrap (apt-get)"
    local rc=0
    if ! apt-cache policy mmdebstrap 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        as_root apt-get update -qq || true
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
        mmdebstrap >/dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        log "mmdebstrap: apt-get install failed (rc=$rc); the image run test will skip"
    fi
}

if [ -z "${SHIPPER_SKIP_INSTALL:-}" ]; then
    t0=$SECONDS
    install_project
    install_clickhouse
    install_kafka
    install_ray
    install_mmdebstrap
    log "setup took $((SECONDS - t0))s"
fi

set +e
"$PY" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    log "pytest collected no tests (exit 5)"
fi
exit "$rc"
