#!/usr/bin/env bash
# Builds, with no image registry, the kind node image the e2e cluster runs on, with every image the
# cluster needs preloaded into its containerd:
#   control plane  kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, etcd, pause,
#                  coredns (the names and tags `kubeadm config images list` gives for this version)
#   network        kube-router (NetworkPolicy), from tests/dataplane/build.sh
#   tests          agnhost, under its usual name
# Prints the node image's name as the last line. Everything is keyed by the hash of its inputs: a
# second run with the same inputs finds the image and does nothing.
#
# Where each part comes from:
#   Debian userland        debootstrap + apt, the host's Debian mirror (build/rootfs.sh)
#   Kubernetes, agnhost    one build of k8s.io/kubernetes (tests/controlplane/build.sh)
#   etcd                   the same build (go.etcd.io/etcd/server/v3 at the version Kubernetes requires)
#   containerd, runc, crictl, CNI plugins, coredns, kind, helm   the Go module proxy (build/tools.sh)
#   kube-router            the Go module proxy (tests/dataplane/build.sh)
#   pause                  build/pause/linux/pause.c of the k8s.io/kubernetes module, gcc -static
#   kind's node files      images/base/files of the sigs.k8s.io/kind module
set -euo pipefail
LOG_TAG=images
source "$(dirname "$0")/../lib.sh"

K8S_BIN="${K8S_BIN:-$("$REPO_DIR/tests/controlplane/build.sh" | tail -n 1)}"
TOOLS_BIN="${TOOLS_BIN:-$("$E2E_DIR/build/tools.sh" | tail -n 1)}"
KR_BIN="${KR_BIN:-$("$REPO_DIR/tests/dataplane/build.sh" | tail -n 1)}"
BASE="${BASE:-$("$E2E_DIR/build/rootfs.sh" | tail -n 1)}"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-$("$E2E_DIR/docker.sh" env | sed -n 's/^DOCKER_BUILDKIT=//p')}"

KIND_MODULE="sigs.k8s.io/kind@$("$TOOLS_BIN/kind" version | awk '{print $2}')"
K8S_VERSION="$("$K8S_BIN/kubeadm" version -o short)"
KR_VERSION="$(basename "$(dirname "$KR_BIN")")"; KR_VERSION="${KR_VERSION#kube-router-}"
AGNHOST_IMAGES=(registry.k8s.io/e2e-test-images/agnhost:2.52)
KUBE_ROUTER_IMAGE="apptopology.local/kube-router:$KR_VERSION"

key="$(
  {
    recipe_of "$0"; cat "$E2E_DIR"/images/*.Dockerfile
    echo "$K8S_BIN $TOOLS_BIN $BASE $KIND_MODULE"; cat "$KR_BIN/.stamp" "$K8S_BIN/.stamp"
  } | hash_of -
)"
NODE_IMAGE="apptopology.local/kind-node:$K8S_VERSION-$key"
if docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then log "up to date: $NODE_IMAGE"; echo "$NODE_IMAGE"; exit 0; fi

# --- recipe ---
# static_image NAME ENTRYPOINT FILE:PATH... : one layer holding the files, a passwd with root and 65532
# (nonroot), and /tmp; no shell, no package manager.
static_image() {
  local name="$1" entrypoint="$2"; shift 2
  local root
  root="$(mktemp -d "$tmp/static.XXXXXX")"
  mkdir -p "$root/etc" "$root/tmp" && chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
  local spec
  for spec in "$@"; do
    mkdir -p "$root/$(dirname "${spec#*:}")"
    install -m 0755 "${spec%%:*}" "$root/${spec#*:}"
  done
  tar -C "$root" --numeric-owner --owner=0 --group=0 -c . \
    | docker import --change "ENV PATH=/usr/local/bin:/usr/bin:/bin" --change "ENTRYPOINT [\"$entrypoint\"]" - "$name" >/dev/null
  rm -rf "$root"
}

# docker_build NAME DOCKERFILE CONTEXT : the legacy builder or BuildKit, whichever this host has.
docker_build() {
  docker build -q --build-arg "BASE=$BASE" -t "$1" -f "$2" "$3" >/dev/null
}

build() {
  docker image inspect "$NODE_IMAGE" >/dev/null 2>&1 && return 0
  local start=$SECONDS
  tmp="$(mktemp -d "$E2E_CACHE/images.XXXXXX")"
  trap 'rm -rf "$tmp"; [[ -n "${cid:-}" ]] && docker rm -f "$cid" >/dev/null 2>&1 || true' RETURN

  # The images kubeadm will start, by the names it will ask containerd for.
  local images=() image pause_sandbox=""
  mapfile -t images < <("$K8S_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION")
  log "kubeadm $K8S_VERSION wants: ${images[*]}"
  local kdir
  kdir="$(cd "$REPO_DIR/tests/controlplane/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
  for image in "${images[@]}"; do
    case "$image" in
      */kube-apiserver:*|*/kube-controller-manager:*|*/kube-scheduler:*)
        local b="${image##*/}"; b="${b%%:*}"
        static_image "$image" "/usr/local/bin/$b" "$K8S_BIN/$b:/usr/local/bin/$b" ;;
      */etcd:*) static_image "$image" /usr/local/bin/etcd "$K8S_BIN/etcd:/usr/local/bin/etcd" ;;
      */coredns:*) static_image "$image" /coredns "$TOOLS_BIN/coredns:/coredns" ;;
      */pause:*)
        gcc -Os -static -o "$tmp/pause" -DVERSION="${image##*:}" "$kdir/build/pause/linux/pause.c"
        strip "$tmp/pause"
        static_image "$image" /pause "$tmp/pause:/pause"
        # kind's containerd config names pause:3.10 as the sandbox image.
        pause_sandbox="${image%%:*}:3.10"
        docker tag "$image" "$pause_sandbox" ;;
      */kube-proxy:*)
        mkdir -p "$tmp/proxy/bin" && cp "$K8S_BIN/kube-proxy" "$tmp/proxy/bin/"
        docker_build "$image" "$E2E_DIR/images/debian-tools.Dockerfile" "$tmp/proxy" ;;
      *) die "no recipe for $image" ;;
    esac
  done
  images+=("$pause_sandbox")
  mkdir -p "$tmp/router/bin" && cp "$KR_BIN/kube-router" "$tmp/router/bin/"
  docker_build "$KUBE_ROUTER_IMAGE" "$E2E_DIR/images/debian-tools.Dockerfile" "$tmp/router"
  static_image "${AGNHOST_IMAGES[0]}" /agnhost "$K8S_BIN/agnhost:/agnhost"
  images+=("$KUBE_ROUTER_IMAGE" "${AGNHOST_IMAGES[@]}")
  log "images built in $((SECONDS - start))s"

  # The node's root: kind's files, the runtime, the CNI plugins, kubelet/kubeadm/kubectl.
  local kind_files r="$tmp/node/root"
  kind_files="$(go mod download -json "$KIND_MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/images/base/files"
  [[ -d "$kind_files" ]] || die "no images/base/files in $KIND_MODULE"
  mkdir -p "$r"
  cp -r "$kind_files/etc" "$kind_files/kind" "$kind_files/usr" "$r/"
  rm -f "$r/etc/systemd/system/containerd-fuse-overlayfs.service"
  chmod -R u+w,go-w "$r" && find "$r" -type f -exec chmod 0644 {} + && find "$r" -type d -exec chmod 0755 {} +
  chmod 0755 "$r"/usr/local/bin/* "$r"/kind/bin/*
  install -m 0755 -t "$r/usr/local/bin" "$TOOLS_BIN"/{containerd,ctr,containerd-shim-runc-v2,crictl}
  install -D -m 0755 "$TOOLS_BIN/runc" "$r/usr/local/sbin/runc"
  install -D -m 0755 -t "$r/opt/cni/bin" "$TOOLS_BIN"/{ptp,host-local,loopback,portmap}
  install -D -m 0755 -t "$r/usr/bin" "$K8S_BIN"/{kubelet,kubeadm,kubectl}
  echo "$K8S_VERSION" > "$r/kind/version"
  mkdir -p "$r/kind/manifests"
  # No dynamic provisioner (the e2e needs no volumes): a StorageClass kind can apply, and nothing to pull.
  printf '%s\n' 'apiVersion: storage.k8s.io/v1' 'kind: StorageClass' 'metadata:' '  name: standard' \
    'provisioner: kubernetes.io/no-provisioner' 'volumeBindingMode: WaitForFirstConsumer' > "$r/kind/manifests/default-storage.yaml"
  log "node base image"
  docker_build "$NODE_IMAGE-base" "$E2E_DIR/images/node.Dockerfile" "$tmp/node"

  # Preload: containerd in a throwaway node container imports every image (content only: containerd
  # unpacks on first use), then the container is committed as the node image.
  mkdir -p "$tmp/preload"
  docker save -o "$tmp/preload/images.tar" "${images[@]}"
  cid="$(docker run -d --privileged --entrypoint /bin/sleep -v "$tmp/preload:/preload:ro" "$NODE_IMAGE-base" infinity)"
  docker exec "$cid" bash -euc '
    containerd > /tmp/containerd.log 2>&1 &
    for i in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
    ctr -n k8s.io images import --all-platforms --no-unpack /preload/images.tar >/dev/null
    ctr -n k8s.io images ls -q | grep -v "^sha256:" | sort
    kill %1; wait || true
    rm -rf /run/containerd /tmp/containerd.log' >&2
  docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    "$cid" "$NODE_IMAGE" >/dev/null
  docker rm -f "$cid" >/dev/null && cid=""
  docker rmi "$NODE_IMAGE-base" >/dev/null
  log "node image $NODE_IMAGE in $((SECONDS - start))s"
}
# --- end recipe ---

mkdir -p "$E2E_CACHE"
with_lock "$E2E_CACHE/images" build
docker image inspect -f '{{.Size}}' "$NODE_IMAGE" | awk '{printf "images: node image %.0f MB\n", $1/1e6}' >&2
echo "$NODE_IMAGE"
