#!/usr/bin/env bash
# Builds, in one `go build` of the Kubernetes sources, the binaries that tests run on loopback and
# that e2e/ packs into its kind node image:
#   kube-apiserver, kube-controller-manager, kubectl   the control plane tests/ runs on loopback
#   kube-scheduler, kube-proxy, kubelet, kubeadm       the rest of a kind node (e2e/node-image.sh)
#   agnhost                                             the e2e test image (k8s.io/kubernetes/test/images)
#                                                       (all k8s.io/kubernetes, see k8s/go.mod)
#   etcd                                                (go.etcd.io/etcd/server/v3, the version
#                                                        Kubernetes itself requires)
# into  ${XDG_CACHE_HOME:-$HOME/.cache}/apptopology/controlplane/<k8s-version>-<input hash>/bin/
# The directory is named by the hash of the inputs, so a change of inputs never overwrites binaries
# another checkout is using. A second run finds the binaries and does nothing.
# The bin dir is printed as the last line of stdout; progress goes to stderr.
#
# Environment:
#   CONTROLPLANE_CACHE   override the cache root (default .../apptopology/controlplane)
#   CONTROLPLANE_REBUILD=1  rebuild even if the stamp matches
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
moddir="$here/k8s"

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: ERROR: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH (Go >= the version in k8s/go.mod is needed)"
[[ -f "$moddir/go.mod" && -f "$moddir/go.sum" ]] || die "missing $moddir/go.mod or go.sum"

# The Kubernetes version is the one the wrapper module requires.
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v[0-9]/ {print $2; exit}' "$moddir/go.mod")"
[[ "$k8s_version" =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || die "cannot read the k8s.io/kubernetes version from go.mod (got '$k8s_version')"
git_major="${BASH_REMATCH[1]}"
git_minor="${BASH_REMATCH[2]}"

cache_root="${CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apptopology/controlplane}"

# Stamp = hash of everything that decides the output, plus the Go version.
stamp="$(
  {
    cat "$moddir/go.mod" "$moddir/go.sum" "$moddir/etcd/main.go" "$moddir/tools.go"
    sed -n '/^# --- build recipe ---$/,/^# --- end build recipe ---$/p' "${BASH_SOURCE[0]}"
    go env GOVERSION GOOS GOARCH
  } | sha256sum | cut -d' ' -f1
)"
keydir="$cache_root/$k8s_version-${stamp:0:12}"
bindir="$keydir/bin"
stampfile="$bindir/.stamp"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl agnhost etcd)

all_present() {
  local b
  for b in "${binaries[@]}"; do [[ -x "$bindir/$b" ]] || return 1; done
}

up_to_date() {
  [[ "${CONTROLPLANE_REBUILD:-0}" != 1 ]] && all_present && [[ -f "$stampfile" ]] \
    && [[ "$(cat "$stampfile")" == "$stamp" ]]
}

if up_to_date; then
  log "up to date: $bindir"
  echo "$bindir"
  exit 0
fi

mkdir -p "$bindir"
# One build at a time (parallel test runners may all call this); the first one builds,
# the others wait and then find the binaries.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$keydir/.build.lock"
  flock 9
  if up_to_date; then
    log "up to date (built by another run meanwhile): $bindir"
    echo "$bindir"
    exit 0
  fi
fi
# Build into a temp dir next to bindir and move into place, so an interrupted build
# never leaves a half-written binary that looks current.
tmpdir="$(mktemp -d "$keydir/build.XXXXXX")"
trap 'rm -rf "$tmpdir"' EXIT

# --- build recipe ---
build_date="$(date -u +'%Y-%m-%dT%H:%M:%SZ')"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version"
  ldflags+=" -X $pkg.gitMajor=$git_major"
  ldflags+=" -X $pkg.gitMinor=$git_minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
  ldflags+=" -X $pkg.gitCommit="
  ldflags+=" -X $pkg.buildDate=$build_date"
done
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$moddir/go.mod")"
ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=module-$etcd_version"

log "building Kubernetes $k8s_version and etcd $etcd_version into $bindir (cold: 15+ minutes on 2 cores)"
start=$SECONDS
(
  cd "$moddir"
  # One go build for all the commands, so shared packages are compiled once.
  CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -trimpath -ldflags="$ldflags" -o "$tmpdir/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kube-proxy \
      k8s.io/kubernetes/cmd/kubelet \
      k8s.io/kubernetes/cmd/kubeadm \
      k8s.io/kubernetes/cmd/kubectl \
      k8s.io/kubernetes/test/images/agnhost \
      ./etcd
)
# --- end build recipe ---

for b in "${binaries[@]}"; do
  [[ -x "$tmpdir/$b" ]] || die "go build did not produce $b"
  mv -f "$tmpdir/$b" "$bindir/$b"
done
echo "$stamp" > "$stampfile"
log "built in $((SECONDS - start))s"
"$bindir/kube-apiserver" --version >&2 || die "kube-apiserver --version failed"
"$bindir/etcd" --version >&2 || die "etcd --version failed"
echo "$bindir"
