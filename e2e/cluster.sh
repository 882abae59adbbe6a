#!/usr/bin/env bash
# A kind cluster for the e2e suite, built here with no image pulls (e2e/README.md):
#   e2e/cluster.sh up          build (cached) and load every image, create the cluster apptopology-e2e with
#                              kube-router as its NetworkPolicy engine; prints the kubeconfig path last
#   e2e/cluster.sh env         KUBECONFIG=, KUBECTL=, KIND=, HELM= (and the images) of the running cluster
#   e2e/cluster.sh load IMAGE...   load local images into the cluster's node
#   e2e/cluster.sh down        delete the cluster
# Environment: CLUSTER (default apptopology-e2e).
# Host quirks are detected, not assumed: cgroup v1 (kubelet refuses it unless told), a capability bounding
# set without CAP_SYS_RESOURCE (containerd must not lower oom_score_adj; e2e/docker.sh handles the rest).
set -euo pipefail
LOG_TAG=cluster
source "$(dirname "$0")/lib.sh"

CLUSTER="${CLUSTER:-apptopology-e2e}"
STATE="$E2E_CACHE/cluster-$CLUSTER"
ENV_FILE="$STATE/env"

bins() {
  K8S_BIN="$("$REPO_DIR/tests/controlplane/build.sh" | tail -n 1)"
  TOOLS_BIN="$("$E2E_DIR/build/tools.sh" | tail -n 1)"
  KR_BIN="$("$REPO_DIR/tests/dataplane/build.sh" | tail -n 1)"
  export K8S_BIN TOOLS_BIN KR_BIN
}

# The cluster's node containers, by kind's label (no kind binary needed to find or remove them).
nodes() { docker ps -aq --filter "label=io.x-k8s.kind.cluster=$CLUSTER" 2>/dev/null; }
exists() { [[ -n "$(nodes)" ]]; }

kind_config() {  # NODE_IMAGE
  local cgroup dockerd
  cgroup="$(docker info -f '{{.CgroupVersion}}')"
  dockerd="$(pgrep -o -x dockerd || true)"
  cat <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  ipFamily: ipv4
  disableDefaultCNI: true       # kube-router (e2e/manifests/kube-router.yaml) instead of kindnet
  kubeProxyMode: iptables
nodes:
  - role: control-plane
    image: $1
    extraMounts:
      - hostPath: $STATE/audit
        containerPath: /etc/kubernetes/audit
kubeadmConfigPatchesJSON6902:
  - group: kubeadm.k8s.io
    version: v1beta4
    kind: ClusterConfiguration
    patch: |
      - op: add
        path: /apiServer/extraArgs/-
        value: {name: audit-policy-file, value: /etc/kubernetes/audit/policy.yaml}
      - op: add
        path: /apiServer/extraArgs/-
        value: {name: audit-log-path, value: /etc/kubernetes/audit/log/audit.log}
      - op: add
        path: /apiServer/extraVolumes
        value: [{name: audit, hostPath: /etc/kubernetes/audit, mountPath: /etc/kubernetes/audit, pathType: Directory}]
YAML
  if [[ "$cgroup" == 1 ]]; then
    log "cgroup v1 host: kubelet told not to refuse it (failCgroupV1: false)"
    printf '%s\n' 'kubeadmConfigPatches:' '  - |' '    kind: KubeletConfiguration' '    failCgroupV1: false'
  fi
  if [[ -n "$dockerd" && "$(missing_caps "$dockerd")" != 0 ]]; then
    log "containers lack capabilities $(missing_caps "$dockerd") (hex; CAP_SYS_RESOURCE is 1000000):" \
        "containerd in the node leaves oom_score_adj as it finds it"
    printf '%s\n' 'containerdConfigPatches:' '  - |-' '    [plugins."io.containerd.grpc.v1.cri"]' \
      '      restrict_oom_score_adj = true'
  fi
}

up() {
  local start=$SECONDS
  "$E2E_DIR/docker.sh" up
  bins
  local node_image operator previous
  node_image="$("$E2E_DIR/build/images.sh" | tail -n 1)"
  operator="$("$E2E_DIR/build/operator.sh" | tail -n 1)"
  previous="$("$E2E_DIR/build/operator.sh" previous | tail -n 1)"
  log "images ready after $((SECONDS - start))s"
  mkdir -p "$STATE/audit/log"
  cp "$E2E_DIR/manifests/audit-policy.yaml" "$STATE/audit/policy.yaml"
  local kubectl=("$K8S_BIN/kubectl" --kubeconfig "$STATE/kubeconfig")
  if exists; then
    log "cluster $CLUSTER exists: reusing it"
  else
    kind_config "$node_image" > "$STATE/kind.yaml"
    local t=$SECONDS
    "$TOOLS_BIN/kind" create cluster --name "$CLUSTER" --config "$STATE/kind.yaml" \
      --kubeconfig "$STATE/kubeconfig" --retain >&2 \
      || { "$TOOLS_BIN/kind" export logs "$STATE/logs" --name "$CLUSTER" >&2 || true
           "$TOOLS_BIN/kind" delete cluster --name "$CLUSTER" >&2 || true
           die "kind create cluster failed (node logs: $STATE/logs)"; }
    log "kind create cluster: $((SECONDS - t))s"
    local cidr service_cidr kr_version
    # The controller-manager assigns the node its pod CIDR a moment after the node registers: wait for it
    # (read at once, it was empty in one run, and the CNI config got no subnet).
    local i
    cidr=""
    for i in $(seq 1 120); do
      cidr="$("${kubectl[@]}" get nodes -o jsonpath='{.items[0].spec.podCIDR}' 2>/dev/null || true)"
      [[ -n "$cidr" ]] && break
      sleep 1
    done
    [[ -n "$cidr" ]] || die "the node got no pod CIDR within 120 s (node logs: $STATE/logs)"
    service_cidr="$(awk '/serviceSubnet/ {print $2; exit}' <("${kubectl[@]}" -n kube-system get cm kubeadm-config -o jsonpath='{.data.ClusterConfiguration}') | tr -d '"')"
    kr_version="$(basename "$(dirname "$KR_BIN")")"
    sed -e "s#@POD_CIDR@#$cidr#" -e "s#@SERVICE_CIDR@#$service_cidr#" \
        -e "s#@IMAGE@#apptopology.local/kube-router:${kr_version#kube-router-}#" \
        "$E2E_DIR/manifests/kube-router.yaml" | "${kubectl[@]}" apply -f - >/dev/null
    log "network: ptp + host-local on $cidr, kube-router NetworkPolicy, kube-proxy Services ($service_cidr)"
  fi
  "${kubectl[@]}" wait --for=condition=Ready nodes --all --timeout=180s >/dev/null
  "${kubectl[@]}" -n kube-system rollout status daemonset/kube-router --timeout=180s >/dev/null
  "${kubectl[@]}" -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null
  load "$operator" "$previous"
  cat > "$ENV_FILE" <<ENV
KUBECONFIG=$STATE/kubeconfig
KUBECTL=$K8S_BIN/kubectl
KIND=$TOOLS_BIN/kind
HELM=$TOOLS_BIN/helm
CLUSTER=$CLUSTER
OPERATOR_IMAGE=$operator
PREVIOUS_OPERATOR_IMAGE=$previous
AGNHOST_IMAGE=registry.k8s.io/e2e-test-images/agnhost:2.52
AUDIT_LOG=$STATE/audit/log/audit.log
ENV
  log "cluster $CLUSTER ready in $((SECONDS - start))s"
  echo "$STATE/kubeconfig"
}

load() {
  [[ -n "${TOOLS_BIN:-}" ]] || bins
  local image
  for image in "$@"; do
    "$TOOLS_BIN/kind" load docker-image --name "$CLUSTER" "$image" >&2
  done
}

down() {
  # What `kind delete cluster` does: the node containers go, with their volumes.
  local ids
  ids="$(nodes)"
  if [[ -n "$ids" ]]; then
    log "deleting cluster $CLUSTER"
    docker rm -f -v $ids >/dev/null
  fi
  rm -rf "$STATE"
}

case "${1:-}" in
  up) up ;;
  env) [[ -f "$ENV_FILE" ]] || die "no cluster $CLUSTER: run e2e/cluster.sh up"; cat "$ENV_FILE" ;;
  load) shift; load "$@" ;;
  down) down ;;
  *) echo "usage: $0 up|env|load IMAGE...|down" >&2; exit 2 ;;
esac
