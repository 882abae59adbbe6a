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
.venv/bin/python -m pip install --quiet -e '.[dev]'

echo "== lint and types"
.venv/bin/ruff check
.venv/bin/ruff format --check
.venv/bin/mypy
.venv/bin/lint-imports

if [ -x tests/controlplane/build.sh ]; then
  echo "== control plane binaries (cached after the first build)"
  APPTOPOLOGY_CONTROLPLANE_BIN="$(tests/controlplane/build.sh | tail -n 1)"
  export APPTOPOLOGY_CONTROLPLANE_BIN
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
