#!/bin/sh
# Build shipper's image from this checkout and, with --push, push it to your registry.
#
#   docker/build.sh IMAGE [--push] [extra build flags...]
#   docker/build.sh registry.example.com/team/shipper:0.1.0 --push
#
# IMAGE is the full name the cluster pulls (k8s/ manifests say REGISTRY/shipper:0.1.0 where it
# goes). No image is published for you: you build it and push it where your nodes can pull.
# Uses docker (BuildKit, the default since Docker 23), else podman, else buildah; set
# SHIPPER_BUILDER=docker|podman|buildah to choose. Run it from anywhere: the build context is
# always the repository root.
set -eu

usage() {
    echo "usage: $0 IMAGE [--push] [extra build flags...]" >&2
    echo "  e.g. $0 registry.example.com/team/shipper:0.1.0 --push" >&2
    exit 1
}

[ $# -ge 1 ] || usage
case "$1" in -*|"") usage ;; esac
image=$1
shift
push=""
if [ "${1:-}" = "--push" ]; then
    push=1
    shift
fi

root=$(cd "$(dirname "$0")/.." && pwd)
tool=${SHIPPER_BUILDER:-}
if [ -z "$tool" ]; then
    for candidate in docker podman buildah; do
        if command -v "$candidate" >/dev/null 2>&1; then
            tool=$candidate
            break
        fi
    done
fi
[ -n "$tool" ] || { echo "$0: needs docker, podman or buildah" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)
set -x
case "$tool" in
    docker) DOCKER_BUILDKIT=1 docker build -f "$root/docker/Dockerfile" \
                --build-arg "VERSION=$version" -t "$image" "$@" "$root" ;;
    podman) podman build -f "$root/docker/Dockerfile" \
                --build-arg "VERSION=$version" -t "$image" "$@" "$root" ;;
    buildah) buildah build -f "$root/docker/Dockerfile" \
                --build-arg "VERSION=$version" -t "$image" "$@" "$root" ;;
    *) echo "$0: unknown SHIPPER_BUILDER=$tool" >&2; exit 1 ;;
esac
if [ -n "$push" ]; then
    "$tool" push "$image"
fi
