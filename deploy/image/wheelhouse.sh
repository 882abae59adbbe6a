#!/usr/bin/env bash
# Makes the wheels the Dockerfile installs, so that `docker build` needs no network:
#   dist/wheelhouse/   the pinned dependencies (requirements.txt here), as binary wheels for the image's
#                      platform (Linux, CPython 3.11, glibc of Debian bookworm; WHEEL_ARCH=aarch64 for arm64)
#   dist/project/      apptopology's own wheel, built from this checkout
# Run it where the package index (or your mirror: pip's usual configuration applies) is reachable, then
# build the image anywhere. Usage: deploy/image/wheelhouse.sh [SOURCE_DIR]   (default: this checkout)
# WHEELHOUSE=DIR takes the dependencies' wheels from DIR (made by an earlier run) instead of downloading.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$(cd "${1:-$root}" && pwd)"
python="${PYTHON:-python3}"
arch="${WHEEL_ARCH:-$(uname -m)}"

rm -rf "$root/dist/wheelhouse" "$root/dist/project"
mkdir -p "$root/dist/wheelhouse" "$root/dist/project"
if [[ -n "${WHEELHOUSE:-}" ]]; then
  cp "$WHEELHOUSE"/*.whl "$root/dist/wheelhouse/"
else
# Binary wheels only: the image has no compiler, and a wheel that would need one fails here, not there.
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
  --platform "manylinux_2_36_$arch" --platform "manylinux2014_$arch" --platform any \
  --requirement "$src/deploy/image/requirements.txt" --dest "$root/dist/wheelhouse"
fi
# From a copy of what the wheel is made of: a build in place would leave build/ and *.egg-info behind.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp -r "$src/pyproject.toml" "$src/README.md" "$src/operator" "$tmp/"
find "$tmp/operator" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$root/dist/project" "$tmp"
ls "$root/dist/project"
