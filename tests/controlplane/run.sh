#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) on loopback.
#
#   run.sh up DIR                    build (cached) and start; prints DIR/kubeconfig last on stdout
#   run.sh down DIR                  stop everything started in DIR and remove DIR
#   run.sh status DIR                exit 0 if all processes run and /readyz is ok
#   run.sh user DIR NAME [GROUP...]  mint a client-cert kubeconfig for user NAME (groups = O=)
#                                    and print its path (DIR/users/NAME.kubeconfig, ':' -> '_')
#   run.sh sa-user DIR NAMESPACE SA  the same for the identity a ServiceAccount's pod has:
#                                    user system:serviceaccount:NS:SA, groups system:serviceaccounts,
#                                    system:serviceaccounts:NS, system:authenticated
#   run.sh env DIR                   print DIR/env (KUBECONFIG=, KUBECTL=, APISERVER_URL=, ...)
#
# Environment for `up`: CONTROLPLANE_UP_TIMEOUT (seconds, default 120),
# CONTROLPLANE_APISERVER_ARGS / CONTROLPLANE_KCM_ARGS (extra flags, split on spaces,
# e.g. "--feature-gates=Foo=true").
#
# Everything lives in DIR: certificates, etcd data, logs (*.log), pid files (*.pid),
# the audit log (audit.log, JSON lines: Metadata level for every request, NetworkPolicy writes with
# their bodies) and kubeconfigs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICE_CIDR="10.0.0.0/24"
SERVICE_IP="10.0.0.1"          # first IP of SERVICE_CIDR: the "kubernetes" Service
CERT_DAYS=3650
UP_TIMEOUT="${CONTROLPLANE_UP_TIMEOUT:-120}"   # seconds to wait for readiness

t_start="${EPOCHREALTIME:-0}"
log() { printf 'run.sh [%5.1fs]: %s\n' "$(echo "${EPOCHREALTIME:-0} - $t_start" | awk '{print $1 - $3}')" "$*" >&2; }
die() { echo "run.sh: ERROR: $*" >&2; exit 1; }
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" >&2; exit 2; }

# ---------------------------------------------------------------- helpers

abspath() { mkdir -p "$1" && (cd "$1" && pwd); }

# free_ports N: ask the kernel for N distinct unused loopback ports (one per line).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

# b64 FILE: single-line base64
b64() { base64 -w0 < "$1"; }

# pid_alive NAME: the process recorded in DIR/NAME.pid is running (and is still ours).
pid_alive() {
  local pidfile="$dir/$1.pid" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  # Guard against pid reuse: argv[0] must be our binary.
  local argv0
  IFS= read -r -d '' argv0 2>/dev/null < "/proc/$pid/cmdline" || [[ -n "${argv0:-}" ]] || return 1
  [[ "$argv0" == */"$1" ]] || return 1
}

# ours: DIR is missing, empty, or was made by this script (it has the marker file).
ours() {
  [[ ! -e "$dir" ]] && return 0
  [[ -d "$dir" ]] || return 1
  [[ -f "$dir/.controlplane" ]] && return 0
  [[ -z "$(ls -A "$dir")" ]]
}

# start NAME ARGS...: run BIN/NAME in its own session, detached, log to DIR/NAME.log.
start() {
  local name="$1"; shift
  log "starting $name"
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$dir/$name.pid" "$bindir/$name" "$@" \
    > "$dir/$name.log" 2>&1 < /dev/null &
  # Wait for the pid file to be written by the child.
  local i
  for i in $(seq 50); do [[ -s "$dir/$name.pid" ]] && break; sleep 0.1; done
  [[ -s "$dir/$name.pid" ]] || die "$name did not start"
}

stop_one() {
  local name="$1" pidfile="$dir/$1.pid" pid i
  pid_alive "$name" || { rm -f "$pidfile"; return 0; }
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do           # up to 10 s
    pid_alive "$name" || break
    sleep 0.1
  done
  if pid_alive "$name"; then
    log "$name (pid $pid) did not stop on TERM, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 50); do pid_alive "$name" || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

stop_all() {
  local n
  for n in kube-controller-manager kube-apiserver etcd; do stop_one "$n"; done
}

show_logs() {
  local n
  for n in etcd kube-apiserver kube-controller-manager; do
    [[ -f "$dir/$n.log" ]] || continue
    echo "----- last lines of $dir/$n.log -----" >&2
    tail -n 25 "$dir/$n.log" >&2
  done
}

# kubeconfig OUT NAME CERT KEY: write a self-contained kubeconfig (embedded certs).
write_kubeconfig() {
  local out="$1" user="$2" cert="$3" key="$4" server
  server="$(cat "$dir/apiserver-url")"
  umask 077
  cat > "$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: controlplane
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$dir/pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(b64 "$cert")
    client-key-data: $(b64 "$key")
contexts:
- name: $user@controlplane
  context:
    cluster: controlplane
    user: $user
current-context: $user@controlplane
preferences: {}
EOF
}

# client_cert BASE CN [O...]: DIR/pki/BASE.{key,crt} signed by the CA for client auth.
# CLIENT_CA (default ca) names the signing CA.
client_cert() {
  local base="$1" cn="$2" ca="${CLIENT_CA:-ca}"; shift 2
  local subj="/CN=$cn" g
  for g in "$@"; do subj+="/O=$g"; done
  local p="$dir/pki"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$p/$base.key" 2>/dev/null
  openssl req -new -key "$p/$base.key" -subj "$subj" -out "$p/$base.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
    > "$p/$base.ext"
  openssl x509 -req -in "$p/$base.csr" -CA "$p/$ca.crt" -CAkey "$p/$ca.key" -CAcreateserial \
    -days "$CERT_DAYS" -sha256 -extfile "$p/$base.ext" -out "$p/$base.crt" 2>/dev/null \
    || die "signing the client certificate for $cn failed"
  rm -f "$p/$base.csr" "$p/$base.ext"
}

# make_ca BASE CN: a self-signed CA in DIR/pki/BASE.{key,crt}
make_ca() {
  local p="$dir/pki"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$p/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$p/$1.key" -subj "/CN=$2" -days "$CERT_DAYS" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$p/$1.crt" 2>/dev/null || die "creating the CA $2 failed"
}

gen_pki() {
  local p="$dir/pki"
  mkdir -p "$p"
  chmod 700 "$p"
  log "generating certificates in $p"
  make_ca ca apptopology-test-ca
  # Front proxy (request-header authentication): kube-controller-manager reads this CA
  # from kube-system/extension-apiserver-authentication, as in a kubeadm cluster.
  make_ca front-proxy-ca apptopology-test-front-proxy-ca
  CLIENT_CA=front-proxy-ca client_cert front-proxy-client front-proxy-client
  # API server serving certificate
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$p/apiserver.key" 2>/dev/null
  openssl req -new -key "$p/apiserver.key" -subj "/CN=kube-apiserver" -out "$p/apiserver.csr" 2>/dev/null
  cat > "$p/apiserver.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
  openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days "$CERT_DAYS" -sha256 -extfile "$p/apiserver.ext" -out "$p/apiserver.crt" 2>/dev/null \
    || die "signing the API server certificate failed"
  rm -f "$p/apiserver.csr" "$p/apiserver.ext"
  # Clients
  client_cert admin admin system:masters
  client_cert kube-controller-manager system:kube-controller-manager
  # Service-account token signing key pair
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$p/sa.key" 2>/dev/null
  openssl pkey -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
}

write_audit_policy() {
  cat > "$dir/audit-policy.yaml" <<'EOF'
# Every request is logged once (the RequestReceived stage is omitted, so count stage == ResponseComplete).
# NetworkPolicy writes at RequestResponse: the request body (object, patch or DeleteOptions) and the
# response (the object as stored or as deleted, with its resourceVersion), so a test can replay every
# state of a namespace's policies (tests/integration/judge.py). Everything else, reads of NetworkPolicies
# included, at Metadata level (user, groups, verb, objectRef, response code): the bodies of lists and
# watches would grow the log and tell nothing the writes do not.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: RequestResponse
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
  resources:
  - group: networking.k8s.io
    resources: ["networkpolicies"]
- level: Metadata
EOF
}

kubectl_admin() { "$bindir/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout=5s "$@"; }

# wait_for DESCRIPTION COMMAND...: retry until success or the deadline.
wait_for() {
  local what="$1"; shift
  while ! "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { show_logs; stop_all; die "timed out waiting for $what (logs kept in $dir)"; }
    local n
    for n in etcd kube-apiserver kube-controller-manager; do
      if [[ -f "$dir/$n.pid" ]] && ! pid_alive "$n"; then
        show_logs; stop_all; die "$n exited while waiting for $what (logs kept in $dir)"
      fi
    done
    sleep 0.25
  done
}

etcd_healthy() { curl -fsS --max-time 2 "$(cat "$dir/etcd-url")/health" | grep -q '"health":"true"'; }
apiserver_ready() { [[ "$(kubectl_admin get --raw /readyz 2>/dev/null)" == ok ]]; }
kcm_healthy() { curl -fsS --max-time 2 -k "https://127.0.0.1:$(cat "$dir/kcm-port")/healthz" | grep -qx ok; }
default_sa_exists() { kubectl_admin -n default get serviceaccount default; }

write_env() {
  cat > "$dir/env" <<EOF
KUBECONFIG=$dir/kubeconfig
KUBECTL=$bindir/kubectl
BIN_DIR=$bindir
APISERVER_URL=$(cat "$dir/apiserver-url")
ETCD_URL=$(cat "$dir/etcd-url")
AUDIT_LOG=$dir/audit.log
CA_CERT=$dir/pki/ca.crt
K8S_VERSION=$(basename "$(dirname "$bindir")")
EOF
}

all_running() {
  local n
  for n in etcd kube-apiserver kube-controller-manager; do pid_alive "$n" || return 1; done
}

# ---------------------------------------------------------------- commands

cmd_up() {
  bindir="$("$here/build.sh" | tail -n 1)"
  [[ -x "$bindir/kube-apiserver" ]] || die "build.sh did not give a bin dir (got '$bindir')"

  ours || die "$dir exists and was not made by run.sh: refusing to use it"
  mkdir -p "$dir"
  dir="$(abspath "$dir")"
  if [[ -f "$dir/kubeconfig" ]] && all_running && apiserver_ready; then
    log "already up in $dir"
    write_env
    echo "$dir/kubeconfig"
    return 0
  fi
  # Left-overs of a failed or half-stopped run: clear them.
  stop_all
  rm -rf "$dir"
  mkdir -p "$dir"
  touch "$dir/.controlplane"
  deadline=$((SECONDS + UP_TIMEOUT))

  gen_pki
  write_audit_policy

  local etcd_port etcd_peer_port api_port kcm_port
  { read -r etcd_port; read -r etcd_peer_port; read -r api_port; read -r kcm_port; } < <(free_ports 4)
  [[ -n "$kcm_port" ]] || die "could not pick free ports"
  echo "http://127.0.0.1:$etcd_port" > "$dir/etcd-url"
  echo "https://127.0.0.1:$api_port" > "$dir/apiserver-url"
  echo "$kcm_port" > "$dir/kcm-port"

  start etcd \
    --name=controlplane \
    --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="controlplane=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync=true \
    --log-level=warn
  wait_for "etcd /health" etcd_healthy

  start kube-apiserver \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$api_port" \
    --tls-cert-file="$dir/pki/apiserver.crt" \
    --tls-private-key-file="$dir/pki/apiserver.key" \
    --client-ca-file="$dir/pki/ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer="https://kubernetes.default.svc.cluster.local" \
    --service-account-key-file="$dir/pki/sa.pub" \
    --service-account-signing-key-file="$dir/pki/sa.key" \
    --requestheader-client-ca-file="$dir/pki/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$dir/pki/front-proxy-client.crt" \
    --proxy-client-key-file="$dir/pki/front-proxy-client.key" \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --audit-policy-file="$dir/audit-policy.yaml" \
    --audit-log-path="$dir/audit.log" \
    --audit-log-format=json \
    --audit-log-mode=blocking \
    --audit-log-maxsize=0 \
    --profiling=false \
    ${CONTROLPLANE_APISERVER_ARGS:-}
  # Admin kubeconfig first: readiness is checked through it.
  write_kubeconfig "$dir/kubeconfig" admin "$dir/pki/admin.crt" "$dir/pki/admin.key"
  write_kubeconfig "$dir/kube-controller-manager.kubeconfig" system:kube-controller-manager \
    "$dir/pki/kube-controller-manager.crt" "$dir/pki/kube-controller-manager.key"
  wait_for "kube-apiserver /readyz" apiserver_ready

  start kube-controller-manager \
    --kubeconfig="$dir/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$dir/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$dir/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$kcm_port" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --root-ca-file="$dir/pki/ca.crt" \
    --service-account-private-key-file="$dir/pki/sa.key" \
    --cluster-signing-cert-file="$dir/pki/ca.crt" \
    --cluster-signing-key-file="$dir/pki/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --flex-volume-plugin-dir="$dir/flexvolume" \
    --profiling=false \
    ${CONTROLPLANE_KCM_ARGS:-}
  wait_for "kube-controller-manager /healthz" kcm_healthy
  wait_for "namespace default" kubectl_admin get namespace default
  wait_for "serviceaccount default/default" default_sa_exists

  write_env
  log "up in $dir: $(cat "$dir/apiserver-url") (kubeconfig $dir/kubeconfig)"
  echo "$dir/kubeconfig"
}

cmd_down() {
  [[ -e "$dir" ]] || { log "nothing at $dir"; return 0; }
  ours || die "$dir was not made by run.sh: refusing to remove it"
  dir="$(cd "$dir" && pwd)"
  stop_all
  rm -rf "$dir"
  log "down: $dir removed"
}

cmd_status() {
  [[ -d "$dir" ]] || die "no control plane at $dir"
  dir="$(cd "$dir" && pwd)"
  bindir="$(sed -n 's/^BIN_DIR=//p' "$dir/env" 2>/dev/null || true)"
  all_running || die "not all processes are running in $dir"
  [[ -n "$bindir" ]] && apiserver_ready || die "kube-apiserver is not ready"
  log "ok: $dir"
}

# mint_user NAME GROUP...: DIR/users/<NAME with ':' as '_'>.kubeconfig
mint_user() {
  [[ -f "$dir/pki/ca.key" && -f "$dir/apiserver-url" ]] || die "no control plane at $dir (run 'up' first)"
  dir="$(cd "$dir" && pwd)"
  local name="$1"; shift
  [[ -n "$name" && "$name" != */* ]] || die "bad user name '$name'"
  local file="${name//:/_}"
  mkdir -p "$dir/users"
  client_cert "user-$file" "$name" "$@"
  write_kubeconfig "$dir/users/$file.kubeconfig" "$name" "$dir/pki/user-$file.crt" "$dir/pki/user-$file.key"
  echo "$dir/users/$file.kubeconfig"
}

cmd="${1:-}"
dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || usage
case "$cmd" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cat "$dir/env" ;;
  user)
    [[ $# -ge 3 ]] || usage
    mint_user "$3" "${@:4}" ;;
  sa-user)
    [[ $# -eq 4 ]] || usage
    mint_user "system:serviceaccount:$3:$4" system:serviceaccounts "system:serviceaccounts:$3" system:authenticated ;;
  *) usage ;;
esac
