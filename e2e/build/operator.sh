#!/usr/bin/env bash
# Builds the operator image from the checkout's Dockerfile, the air-gapped way (wheels made on the host
# by deploy/image/wheelhouse.sh, `pip install --no-index` in the build), under the name deploy/ and the
# chart use: ghcr.io/apptopology/apptopology-operator:<version of pyproject.toml>.
#   e2e/build/operator.sh            the checkout
#   e2e/build/operator.sh previous   the previous release (PREVIOUS_COMMIT below), for the upgrade test:
#                                    its source, packaged by this checkout's Dockerfile
# Prints the image name as the last line. With no registry reachable, the Python base is a stand-in
# built from Debian's python3 (images/python.Dockerfile); PYTHON_IMAGE=... names another.
set -euo pipefail
LOG_TAG=operator
source "$(dirname "$0")/../lib.sh"

IMAGE=ghcr.io/apptopology/apptopology-operator
PREVIOUS_COMMIT="$(awk '!/^#/ {print $2; exit}' "$E2E_DIR/previous-release")"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-$("$E2E_DIR/docker.sh" env | sed -n 's/^DOCKER_BUILDKIT=//p')}"

version_of() { sed -n 's/^version = "\(.*\)"$/\1/p' "$1/pyproject.toml" | head -1; }

python_image() {
  if [[ -n "${PYTHON_IMAGE:-}" ]]; then echo "$PYTHON_IMAGE"; return; fi
  local base key image
  base="$("$E2E_DIR/build/rootfs.sh" | tail -n 1)"
  key="$( { cat "$E2E_DIR/images/python.Dockerfile"; echo "$base"; } | hash_of -)"
  image="apptopology.local/python:3.11-bookworm-$key"
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    log "Python base stand-in $image (Debian python3 + venv)"
    docker build -q --build-arg "BASE=$base" -t "$image" -f "$E2E_DIR/images/python.Dockerfile" "$E2E_DIR/images" >/dev/null
  fi
  echo "$image"
}

src="$REPO_DIR"
revision="$(git -C "$REPO_DIR" rev-parse HEAD 2>/dev/null || echo unknown)"
# The build context is a copy (Dockerfile, requirements, dist/): the checkout's own dist/ is left alone.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ "${1:-}" == previous ]]; then
  src="$work/src"
  mkdir -p "$src"
  git -C "$REPO_DIR" archive "$PREVIOUS_COMMIT" pyproject.toml README.md operator deploy/image/requirements.txt \
    | tar -x -C "$src" || die "cannot read commit $PREVIOUS_COMMIT from the repository (a shallow clone?)"
  revision="$PREVIOUS_COMMIT"
fi
version="$(version_of "$src")"
base="$(python_image)"
start=$SECONDS
ctx="$work/ctx"
mkdir -p "$ctx/deploy/image"
cp "$REPO_DIR/Dockerfile" "$REPO_DIR/.dockerignore" "$ctx/"
cp "$src/deploy/image/requirements.txt" "$ctx/deploy/image/"
cp "$REPO_DIR/deploy/image/wheelhouse.sh" "$ctx/deploy/image/"
# The dependencies' wheels are cached by the pins' hash; the project's own wheel is built every time.
wheels="$E2E_CACHE/wheelhouse-$(hash_of "$src/deploy/image/requirements.txt")"
if [[ ! -f "$wheels/.done" ]]; then
  log "downloading the wheels of $src/deploy/image/requirements.txt"
  bash "$ctx/deploy/image/wheelhouse.sh" "$src" >/dev/null
  rm -rf "$wheels" && mkdir -p "$wheels" && cp "$ctx"/dist/wheelhouse/*.whl "$wheels/" && touch "$wheels/.done"
else
  WHEELHOUSE="$wheels" bash "$ctx/deploy/image/wheelhouse.sh" "$src" >/dev/null
fi
log "building $IMAGE:$version from $revision on $base"
docker build -q -t "$IMAGE:$version" --build-arg "PYTHON_IMAGE=$base" --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" "$ctx" >/dev/null
docker image inspect -f '{{.Size}}' "$IMAGE:$version" \
  | awk -v s=$((SECONDS - start)) '{printf "operator: image %.0f MB, built in %ds\n", $1/1e6, s}' >&2
echo "$IMAGE:$version"
