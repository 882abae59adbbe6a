#!/usr/bin/env bash
# Builds the Lua health-check harness (luaharness/: gopher-lua as Argo CD runs it) into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/apptopology/argocd-lua/<stamp>/argocd-lua-health
# and prints that path as the last line of stdout. The stamp hashes the module's files and the Go
# version, so a second run finds the binary and does nothing; progress goes to stderr.
#
# Environment:
#   ARGOCD_LUA_CACHE   override the cache root (default .../apptopology/argocd-lua)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
moddir="$here/luaharness"

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: ERROR: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH"

stamp="$(
  {
    cat "$moddir/go.mod" "$moddir/go.sum" "$moddir"/*.go
    go env GOVERSION GOOS GOARCH
  } | sha256sum | cut -c1-16
)"
cache_root="${ARGOCD_LUA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apptopology/argocd-lua}"
bindir="$cache_root/$stamp"
binary="$bindir/argocd-lua-health"

if [[ -x "$binary" ]]; then
  log "up to date: $binary"
  echo "$binary"
  exit 0
fi

mkdir -p "$bindir"
# One build at a time; a run that waited finds the binary.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$bindir/.build.lock"
  flock 9
  if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
  fi
fi
tmp="$(mktemp "$bindir/build.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
log "building the Argo CD Lua harness into $bindir"
(cd "$moddir" && CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -trimpath -o "$tmp" .)
chmod +x "$tmp"
mv -f "$tmp" "$binary"
echo "$binary"
