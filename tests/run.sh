#!/usr/bin/env bash
# The test command: sets up everything the tests need (idempotent, cached), then runs lint, types and
# the whole pytest suite. Works on a fresh machine with Python 3.11+ and Go; used as-is by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev,docs]'

echo "== lint and types"
.venv/bin/ruff check
.venv/bin/ruff format --check
.venv/bin/mypy
.venv/bin/lint-imports

echo "== docs"
.venv/bin/python docs/gen.py --check
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"

if [ -x tests/controlplane/build.sh ]; then
  echo "== control plane binaries (cached after the first build)"
  APPTOPOLOGY_CONTROLPLANE_BIN="$(tests/controlplane/build.sh | tail -n 1)"
  export APPTOPOLOGY_CONTROLPLANE_BIN
fi

if [ -x tests/dataplane/build.sh ]; then
  echo "== dataplane: iptables, ipset and kube-router (cached after the first build)"
  # Debian packages for the tools the dataplane suite runs inside its network namespaces.
  missing=""
  for pair in iptables:iptables ipset:ipset ip:iproute2 sysctl:procps; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "missing:$missing (needs root and apt-get to install): the dataplane suite will skip" >&2
    fi
  fi
  tests/dataplane/build.sh >/dev/null
fi

echo "== tests"
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$code"
