#!/usr/bin/env bash
# Regenerates k8s/go.mod and k8s/go.sum for another Kubernetes release:
#   ./update-k8s.sh v1.37.2
# Reads the staging-module list and the godebug line from that release's own go.mod,
# replaces every staging module k8s.io/X with its published k8s.io/X v0.Y.Z, then tidies.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
moddir="$here/k8s"
version="${1:?usage: $0 vX.Y.Z}"
[[ "$version" =~ ^v1\.([0-9]+\.[0-9]+)$ ]] || { echo "want a version like v1.37.2" >&2; exit 2; }
staging_version="v0.${BASH_REMATCH[1]}"

upstream_mod="$(cd "$moddir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$version" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
[[ -f "$upstream_mod" ]] || { echo "could not download k8s.io/kubernetes@$version" >&2; exit 1; }

go_line="$(grep -m1 '^go ' "$upstream_mod")"
godebug_line="$(grep -m1 '^godebug ' "$upstream_mod" || true)"

{
  cat <<EOF
// Wrapper module: builds the Kubernetes control-plane binaries from the published
// k8s.io/kubernetes module. Kubernetes' own go.mod replaces its staging modules with
// local paths, so every one is replaced here by its published v0.Y.Z counterpart.
// To move to another release, run ../update-k8s.sh NEW_VERSION.
module apptopology.local/controlplane/k8s

$go_line
EOF
  [[ -n "$godebug_line" ]] && printf '\n%s\n' "$godebug_line"
  printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$version"
  grep '=> ./staging/' "$upstream_mod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
  printf ')\n'
} > "$moddir/go.mod"
rm -f "$moddir/go.sum"
(cd "$moddir" && go mod tidy)
echo "k8s/go.mod now requires k8s.io/kubernetes $version; run ./build.sh" >&2
