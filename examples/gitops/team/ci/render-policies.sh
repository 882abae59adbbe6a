#!/bin/sh
# Rendered manifests without the operator and without a plugin: CI renders the topologies into plain
# NetworkPolicies, the team commits them, and Argo CD syncs shop/network-rendered like any directory.
#   ci/render-policies.sh           validate shop/network and write shop/network-rendered/policies.yaml
#   ci/render-policies.sh --check   fail (exit 1) if the committed file is not what the topologies render
# TOPOLOGIES and OUTPUT override the two paths (relative to the repository root).
set -eu
cd "$(dirname "$0")/.."
topologies="${TOPOLOGIES:-shop/network}"
output="${OUTPUT:-shop/network-rendered/policies.yaml}"

apptopology validate -f "$topologies" >&2
rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
apptopology render -f "$topologies" > "$rendered"

if [ "${1:-}" = "--check" ]; then
  if ! cmp -s "$rendered" "$output"; then
    echo "$output is not what $topologies renders to; run ci/render-policies.sh and commit the result" >&2
    diff -u "$output" "$rendered" >&2 || true
    exit 1
  fi
  echo "$output is up to date" >&2
else
  mkdir -p "$(dirname "$output")"
  cp "$rendered" "$output"
  echo "wrote $output" >&2
fi
