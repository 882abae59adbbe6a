#!/usr/bin/env bash
# Builds the Go programs the offline kind cluster needs that are not Kubernetes itself (that is
# tests/controlplane/build.sh) nor kube-router (tests/dataplane/build.sh), each from its module at a
# pinned version, through the Go module proxy:
#   kind                         the cluster tool (host)
#   helm                         the chart's lint, template, install, upgrade and uninstall (host)
#   containerd, ctr, containerd-shim-runc-v2, runc, crictl,
#   CNI plugins ptp, host-local, loopback, portmap      (inside the node image)
#   coredns                      (an image)
# into $E2E_CACHE/tools-<input hash>/bin, printed as the last line. A second run does nothing.
set -euo pipefail
LOG_TAG=tools
source "$(dirname "$0")/../lib.sh"

command -v go >/dev/null || die "go is not on PATH"
key="$( { recipe_of "$0"; go env GOVERSION GOOS GOARCH; } | hash_of -)"
out="$E2E_CACHE/tools-$key"
bin="$out/bin"
[[ -f "$bin/.done" ]] && { log "up to date: $bin"; echo "$bin"; exit 0; }

build() {
  [[ -f "$bin/.done" ]] && return 0
  local tmp start=$SECONDS
  tmp="$(mktemp -d "$out/build.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  export GOFLAGS=-buildvcs=false
# --- recipe ---
  local KIND=v0.33.0 HELM=v4.3.2 CONTAINERD=v2.4.2 RUNC=v1.4.3 CRICTL=v1.37.0 CNI=v1.9.1 COREDNS=v1.14.6
  local static=(env CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags=-s\ -w)
  log "kind $KIND"
  "${static[@]}" "sigs.k8s.io/kind@$KIND"
  log "helm $HELM"
  "${static[@]}" -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM" "helm.sh/helm/v4/cmd/helm@$HELM"
  log "containerd $CONTAINERD"
  "${static[@]}" -tags "no_btrfs no_zfs no_devmapper no_aufs" \
    -ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD"
  # runc with seccomp (cgo, libseccomp): pods under the restricted Pod Security Standard ask for the
  # RuntimeDefault profile, which a runc built without it refuses.
  log "runc $RUNC"
  CGO_ENABLED=1 GOBIN="$tmp" go install -trimpath -tags "seccomp urfave_cli_no_docs" \
    -ldflags="-s -w -X main.version=${RUNC#v}" "github.com/opencontainers/runc@$RUNC"
  log "crictl $CRICTL"
  "${static[@]}" -ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL"
  log "CNI plugins $CNI"
  "${static[@]}" "github.com/containernetworking/plugins/plugins/main/ptp@$CNI" \
    "github.com/containernetworking/plugins/plugins/main/loopback@$CNI" \
    "github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI" \
    "github.com/containernetworking/plugins/plugins/meta/portmap@$CNI"
  log "coredns $COREDNS"
  "${static[@]}" "github.com/coredns/coredns@$COREDNS"
# --- end recipe ---
  mkdir -p "$bin"
  mv "$tmp"/* "$bin/"
  touch "$bin/.done"
  log "built in $((SECONDS - start))s"
}

if [[ ! -f /usr/include/seccomp.h ]]; then
  [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null || die "runc needs libseccomp-dev (root and apt-get to install it)"
  log "installing libseccomp-dev (runc's seccomp support)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libseccomp-dev >/dev/null
fi
with_lock "$out" build
ls "$bin" >&2
echo "$bin"
