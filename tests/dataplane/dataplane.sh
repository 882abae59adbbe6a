#!/usr/bin/env bash
# The dataplane for people (see tests/dataplane/README.md). Needs root, iproute2, iptables, ipset, Go.
#   dataplane.sh up DIR [--example FILE]     node + control plane + kube-router + operator (+ an example)
#   dataplane.sh pod DIR NS/NAME [-l K=V]... [-p PORT[/PROTO][=NAME]]...
#   dataplane.sh pods DIR                    pods and outside clients, with IPs and ports
#   dataplane.sh probe DIR FROM TO PORT[/PROTO]   one real connection (exit 0 open, 1 blocked)
#   dataplane.sh kubectl DIR ARGS...         kubectl as admin, inside the node's network namespace
#   dataplane.sh down DIR                    stop everything, remove every network namespace
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
  echo "dataplane.sh: no $python: run \`python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'\` first" >&2
  exit 2
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "dataplane.sh: needs root (network namespaces, veth pairs, iptables)" >&2
  exit 2
fi
exec "$python" "$here/cli.py" "$@"
