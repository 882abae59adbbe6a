#!/usr/bin/env bash
# Install network-config-analyzer (command `nca`) into its own virtual environment.
#
# nca pins PyYAML 6.0.2 while the project's kubernetes client needs a newer one, so it
# cannot share the project venv. The venv lives in the user's cache directory, is created
# only once, and re-running this script is fast when it is already complete.
#
# The last line printed on stdout is the path of the `nca` executable.
#
# Environment:
#   NCA_VERSION   version to install (default 2.1.0)
#   NCA_PYTHON    interpreter used to create the venv (default: python3.11, python3)
set -euo pipefail

version="${NCA_VERSION:-2.1.0}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/apptopology"
venv="$cache/nca-venv-$version"
nca="$venv/bin/nca"
stamp="$venv/.installed-$version"

if [[ -x "$nca" && -f "$stamp" ]]; then
    echo "$nca"
    exit 0
fi

python="${NCA_PYTHON:-}"
if [[ -z "$python" ]]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then
            python="$candidate"
            break
        fi
    done
fi
if [[ -z "$python" ]]; then
    echo "setup-nca: no python3 interpreter found" >&2
    exit 1
fi

mkdir -p "$cache"
# A half-built venv from an interrupted run is rebuilt from scratch.
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "network-config-analyzer==$version" >&2
# Smoke check: the command must start.
"$nca" --help >/dev/null
touch "$stamp"
echo "$nca"
