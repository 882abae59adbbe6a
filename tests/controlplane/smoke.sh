#!/usr/bin/env bash
# Checks that a control plane started by `run.sh up DIR` really works:
#   /version, garbage collection of a dependent, namespace deletion, NetworkPolicy,
#   a CRD with a CEL rule (x-kubernetes-validations) rejecting a bad object,
#   `kubectl explain` of the CRD, a minted user's identity and RBAC, the audit log.
#   smoke.sh DIR
set -euo pipefail

dir="$(cd "${1:?usage: $0 DIR}" && pwd)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KUBECTL="$(sed -n 's/^KUBECTL=//p' "$dir/env")"
export KUBECONFIG="$dir/kubeconfig"
k() { "$KUBECTL" "$@"; }
ns="smoke-$$"
pass=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
fail() { echo "FAIL: $*" >&2; exit 1; }

# poll SECONDS COMMAND...: until the command succeeds
poll() {
  local limit="$1" end; shift
  end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do (( SECONDS < end )) || return 1; sleep 0.2; done
}
gone() { ! k "$@" >/dev/null 2>&1; }

version="$(k get --raw /version)"
grep -q '"gitVersion": "v1\.' <<<"$version" || fail "/version: $version"
ok "/version $(sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' <<<"$version")"

k create namespace "$ns" >/dev/null

# Garbage collector: dependent with an ownerReference goes when the owner goes.
k -n "$ns" create configmap owner --from-literal=a=b >/dev/null
uid="$(k -n "$ns" get configmap owner -o jsonpath='{.metadata.uid}')"
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  namespace: $ns
  ownerReferences:
  - {apiVersion: v1, kind: ConfigMap, name: owner, uid: "$uid"}
data: {x: "1"}
EOF
k -n "$ns" get configmap dependent >/dev/null || fail "dependent not created"
t0=$SECONDS
k -n "$ns" delete configmap owner >/dev/null
poll 30 gone -n "$ns" get configmap dependent || fail "dependent not garbage-collected within 30s"
ok "garbage collector removed the dependent after $((SECONDS - t0))s"

# NetworkPolicy
k apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: $ns}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
EOF
k -n "$ns" get networkpolicy deny-all >/dev/null || fail "NetworkPolicy"
ok "NetworkPolicy created"

# CRD with a CEL validation rule
crd="widgets.smoke.apptopology.test"
k apply -f - >/dev/null <<EOF
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: $crd}
spec:
  group: smoke.apptopology.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: Widget spec.
            x-kubernetes-validations:
            - rule: "self.min <= self.max"
              message: "min must not exceed max"
            properties:
              min: {type: integer, description: Lower bound.}
              max: {type: integer, description: Upper bound.}
EOF
poll 30 k wait --for=condition=Established "crd/$crd" --timeout=5s || fail "CRD not established"
poll 30 k -n "$ns" get widgets || fail "CRD not served"
k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: smoke.apptopology.test/v1
kind: Widget
metadata: {name: good}
spec: {min: 1, max: 2}
EOF
if out="$(k -n "$ns" apply -f - 2>&1 <<EOF
apiVersion: smoke.apptopology.test/v1
kind: Widget
metadata: {name: bad}
spec: {min: 3, max: 2}
EOF
)"; then fail "bad Widget was accepted"; fi
grep -q "min must not exceed max" <<<"$out" || fail "bad Widget rejected for another reason: $out"
ok "CEL rule rejected a bad object"
poll 30 k explain widgets.spec.min || fail "kubectl explain widgets.spec.min"
k explain widgets.spec.min | grep -q "Lower bound" || fail "kubectl explain lacks the description"
ok "kubectl explain shows the CRD schema"

# A minted user: authenticated with its groups, denied until RBAC allows it.
sa_kc="$("$here/run.sh" sa-user "$dir" "$ns" operator)"
who="$(k --kubeconfig "$sa_kc" auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups}')"
grep -q "system:serviceaccount:$ns:operator" <<<"$who" || fail "whoami: $who"
grep -q "system:serviceaccounts:$ns" <<<"$who" || fail "whoami groups: $who"
k --kubeconfig "$sa_kc" -n "$ns" get configmaps >/dev/null 2>&1 && fail "unbound user could list configmaps"
k -n "$ns" create role cm-writer --verb=get,list,create --resource=configmaps >/dev/null
k -n "$ns" create rolebinding cm-writer --role=cm-writer --serviceaccount="$ns:operator" >/dev/null
poll 10 k --kubeconfig "$sa_kc" -n "$ns" get configmaps || fail "bound user cannot list configmaps"
k --kubeconfig "$sa_kc" -n "$ns" create configmap by-operator >/dev/null
ok "minted user: $who; RBAC applies"

# Audit log: the user's create is recorded with its identity.
audit="$dir/audit.log"
[[ -s "$audit" ]] || fail "audit log empty"
n="$(grep '"stage":"ResponseComplete"' "$audit" | grep '"verb":"create"' | grep '"resource":"configmaps"' \
  | grep -c "\"username\":\"system:serviceaccount:$ns:operator\"" || true)"
[[ "$n" == 1 ]] || fail "expected 1 audited create by the operator user, found $n"
ok "audit log has $(wc -l < "$audit") events, 1 configmap create by the operator user"

# Namespace deletion finishes (namespace controller).
t0=$SECONDS
k delete namespace "$ns" --wait=false >/dev/null
poll 60 gone get namespace "$ns" || fail "namespace $ns not deleted within 60s"
ok "namespace deleted after $((SECONDS - t0))s"
k delete crd "$crd" >/dev/null

echo "smoke: $pass passed, 0 failed"
