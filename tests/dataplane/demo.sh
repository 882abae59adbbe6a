#!/usr/bin/env bash
# Watch the operator enforce a topology on real packets, in one command, then leave nothing behind:
#   tests/dataplane/demo.sh examples/three-tier.yaml
# Brings up a control plane, a kube-router node and the operator (all in network namespaces), creates
# the example's pods, applies it, prints the NetworkPolicies the operator wrote and a live probe table
# next to `apptopology explain`'s answer, then tears everything down. Needs root, iptables, ipset, Go.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -ne 1 ]]; then
  echo "usage: $0 EXAMPLE   (e.g. examples/three-tier.yaml)" >&2
  exit 2
fi
exec bash "$here/dataplane.sh" demo "$1"
