#!/usr/bin/env bash
# End-to-end check on kind: see e2e/README.md. Needs docker, kind, kubectl and network access to pull images.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-apptopology-e2e}"
IMAGE="ghcr.io/apptopology/apptopology-operator:e2e"
AGNHOST="registry.k8s.io/e2e-test-images/agnhost:2.52"
NS=production

cleanup() { [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; }
trap cleanup EXIT

kind create cluster --name "$CLUSTER" --wait 120s
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

kubectl kustomize deploy/ | sed "s#ghcr.io/apptopology/apptopology-operator:0.1.0#$IMAGE#" | kubectl apply -f -
kubectl -n apptopology-system rollout status deployment/apptopology-operator --timeout=180s

kubectl create namespace "$NS"
for tier in frontend api database; do
  kubectl -n "$NS" run "$tier" --image="$AGNHOST" --labels="tier=$tier" --port=8080 \
    -- netexec --http-port=8080 --udp-port=-1
done
kubectl -n "$NS" run db-port --image="$AGNHOST" --labels="tier=database,extra=5432" \
  -- netexec --http-port=5432 --udp-port=-1
kubectl -n "$NS" wait --for=condition=Ready pod --all --timeout=180s

kubectl apply -f examples/three-tier.yaml
kubectl -n "$NS" wait --for=jsonpath='{.status.conditions[?(@.type=="Ready")].status}'=True topo/shop --timeout=60s

ip() { kubectl -n "$NS" get pod "$1" -o jsonpath='{.status.podIP}'; }
probe() {  # probe FROM TO_IP PORT EXPECT(ok|blocked)
  local out
  if kubectl -n "$NS" exec "$1" -- /agnhost connect "$2:$3" --timeout=3s >/dev/null 2>&1; then out=ok; else out=blocked; fi
  if [ "$out" != "$4" ]; then echo "FAIL: $1 -> $2:$3 is $out, expected $4" >&2; exit 1; fi
  echo "ok: $1 -> $2:$3 $out"
}
probe frontend "$(ip api)" 8080 ok
probe frontend "$(ip db-port)" 5432 blocked
probe api "$(ip db-port)" 5432 ok
probe database "$(ip api)" 8080 blocked
DNS_IP="$(kubectl -n kube-system get service kube-dns -o jsonpath='{.spec.clusterIP}')"
for tier in frontend api database; do
  probe "$tier" "$DNS_IP" 53 ok   # DNS over TCP reaches kube-dns through the Service
done

# The offline answer agrees with the cluster.
apptopology explain -f examples/three-tier.yaml --from frontend --to api --port 8080 | grep -q '^ALLOWED'
apptopology explain -f examples/three-tier.yaml --from frontend --to database --port 5432 | grep -q '^DENIED'
echo "e2e: all checks passed"
