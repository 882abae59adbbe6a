#!/usr/bin/env bash
# Builds kube-router (the NetworkPolicy dataplane the packet tests run on) from its Go module, once:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/apptopology/dataplane/kube-router-<version>/bin/kube-router
# A second run finds the binary (and a stamp of the inputs) and does nothing. The bin dir is printed
# as the last line of stdout; progress goes to stderr.
#
# Environment:
#   DATAPLANE_CACHE      override the cache root (default .../apptopology/dataplane)
#   DATAPLANE_REBUILD=1  rebuild even if the stamp matches
set -euo pipefail

# v2.1.0 is the newest release the module proxy serves here (2.1.1 fixes IPv6 policies; see README.md).
KUBE_ROUTER_VERSION=v2.1.0
MODULE=github.com/cloudnativelabs/kube-router/v2

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: ERROR: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH (kube-router $KUBE_ROUTER_VERSION needs Go >= 1.21)"

cache_root="${DATAPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apptopology/dataplane}"
bindir="$cache_root/kube-router-$KUBE_ROUTER_VERSION/bin"
stampfile="$bindir/.stamp"

# Stamp = the build recipe (which includes the version) plus the Go toolchain.
stamp="$(
  {
    sed -n '/^# --- build recipe ---$/,/^# --- end build recipe ---$/p' "${BASH_SOURCE[0]}"
    go env GOVERSION GOOS GOARCH
  } | sha256sum | cut -d' ' -f1
)"

up_to_date() {
  [[ "${DATAPLANE_REBUILD:-0}" != 1 && -x "$bindir/kube-router" && -f "$stampfile" ]] \
    && [[ "$(cat "$stampfile")" == "$stamp" ]]
}

if up_to_date; then
  log "up to date: $bindir"
  echo "$bindir"
  exit 0
fi

mkdir -p "$bindir"
# One build at a time; a run that waited finds the binary built by the other.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_root/kube-router-$KUBE_ROUTER_VERSION/.build.lock"
  flock 9
  if up_to_date; then
    log "up to date (built by another run meanwhile): $bindir"
    echo "$bindir"
    exit 0
  fi
fi
# Build next to bindir and move into place: an interrupted build never leaves a binary that looks current.
tmpdir="$(mktemp -d "$cache_root/kube-router-$KUBE_ROUTER_VERSION/build.XXXXXX")"
trap 'rm -rf "$tmpdir"' EXIT

log "building kube-router $KUBE_ROUTER_VERSION into $bindir (cold: about 5 minutes on 2 cores)"
start=$SECONDS
# --- build recipe ---
# `go install module@version` builds with the module's own go.mod and go.sum (it has no replace
# directives), checked against the checksum database. The version ldflags make `--version` meaningful.
build_date="$(date -u +'%Y-%m-%dT%H:%M:%SZ')"
GOBIN="$tmpdir" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath \
  -ldflags="-s -w -X $MODULE/pkg/version.Version=$KUBE_ROUTER_VERSION -X $MODULE/pkg/version.BuildDate=$build_date" \
  "$MODULE/cmd/kube-router@$KUBE_ROUTER_VERSION"
# --- end build recipe ---

[[ -x "$tmpdir/kube-router" ]] || die "go install did not produce kube-router"
mv -f "$tmpdir/kube-router" "$bindir/kube-router"
echo "$stamp" > "$stampfile"
log "built in $((SECONDS - start))s"
"$bindir/kube-router" --version >&2 || die "kube-router --version failed"
echo "$bindir"
