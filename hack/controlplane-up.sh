#!/usr/bin/env bash
# Starts etcd, kube-apiserver (RBAC enforced) and kube-controller-manager (namespace and
# garbage-collector controllers) on loopback with free ports and a fresh data dir, then writes
# kubeconfigs for an admin and for the operator's ServiceAccount identity, plus env.sh.
#
#   hack/controlplane-up.sh [STATE_DIR]     (default: target/controlplane)
#
# Stop with hack/controlplane-down.sh. Prints the path of env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=${1:-$REPO_DIR/target/controlplane}
OPERATOR_NS=${OPERATOR_NAMESPACE:-mltenant-system}
OPERATOR_SA=${OPERATOR_SERVICE_ACCOUNT:-mltenant-operator}

need openssl openssl
need curl curl
need python3 python3
BIN=$("$HACK_DIR/build-controlplane.sh")

if [ -f "$STATE/pids" ]; then
  "$HACK_DIR/controlplane-down.sh" "$STATE" >/dev/null 2>&1 || true
fi
rm -rf "$STATE"
mkdir -p "$STATE/pki" "$STATE/logs"
STATE=$(cd "$STATE" && pwd)

read -r ETCD_PORT PEER_PORT API_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)

# --- PKI: one CA, the apiserver's serving cert, the service-account signing key. ---
pki=$STATE/pki
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mltenant-local-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
  -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1\nextendedKeyUsage=serverAuth\n' >"$pki/apiserver.ext"
openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

# --- Identities: static tokens. The operator authenticates exactly as its ServiceAccount
# would in a cluster, so it gets only the RBAC the project ships. ---
ADMIN_TOKEN=$(openssl rand -hex 24)
OPERATOR_TOKEN=$(openssl rand -hex 24)
KCM_TOKEN=$(openssl rand -hex 24)
SEALER_TOKEN=$(openssl rand -hex 24)
# The sealer is a platform engineer in the chart's documented group for /v1/verify and /v1/rotate.
cat >"$pki/tokens.csv" <<CSV
$ADMIN_TOKEN,mltenant-admin,uid-admin,"system:masters"
$OPERATOR_TOKEN,system:serviceaccount:$OPERATOR_NS:$OPERATOR_SA,uid-operator,"system:serviceaccounts,system:serviceaccounts:$OPERATOR_NS"
$KCM_TOKEN,system:kube-controller-manager,uid-kcm,"system:masters"
$SEALER_TOKEN,platform-engineer,uid-sealer,"mltenant:sealers"
CSV
chmod 600 "$pki/tokens.csv" "$pki"/*.key

kubeconfig() { # FILE USER TOKEN
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    token: $3
contexts:
- name: $2@local
  context: {cluster: local, user: $2}
current-context: $2@local
KC
  chmod 600 "$1"
}
kubeconfig "$STATE/admin.kubeconfig" admin "$ADMIN_TOKEN"
kubeconfig "$STATE/operator.kubeconfig" operator "$OPERATOR_TOKEN"
kubeconfig "$STATE/kcm.kubeconfig" kube-controller-manager "$KCM_TOKEN"
kubeconfig "$STATE/sealer.kubeconfig" platform-engineer "$SEALER_TOKEN"

# start NAME CMD...: run in its own session so stopping kills the whole group.
start() {
  local name=$1; shift
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo "$name $!" >>"$STATE/pids"
}
fail() {
  echo "error: $1 failed to start; last lines of $STATE/logs/$2.log:" >&2
  tail -n 25 "$STATE/logs/$2.log" >&2
  "$HACK_DIR/controlplane-down.sh" "$STATE" >/dev/null 2>&1 || true
  exit 1
}
alive() { kill -0 "$(awk -v n="$1" '$1==n {print $2}' "$STATE/pids")" 2>/dev/null; }
# wait_for NAME SECONDS CMD...: poll CMD until it succeeds, the component dies, or time runs out.
wait_for() {
  local name=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$name" || fail "$name" "$name"
    sleep 0.2
  done
  fail "$name (not ready after ${secs}s)" "$name"
}

start etcd "$BIN/etcd" --name local --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "local=http://127.0.0.1:$PEER_PORT" \
  --unsafe-no-fsync --quota-backend-bytes=2147483648 --log-level=warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --cert-dir "$STATE/pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
  --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 \
  --enable-priority-and-fairness=false --profiling=false --v=1
wait_for kube-apiserver 90 curl -fsS --cacert "$pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
  "https://127.0.0.1:$API_PORT/readyz"

# Only the controllers whose behaviour the operator relies on: namespace deletion and
# ownerReference cascading.
start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$STATE/kcm.kubeconfig" --controllers namespace-controller,garbage-collector-controller \
  --leader-elect=false --secure-port 0 --use-service-account-credentials=false --v=1
sleep 1
alive kube-controller-manager || fail kube-controller-manager kube-controller-manager

cat >"$STATE/env.sh" <<ENV
export KUBECONFIG=$STATE/admin.kubeconfig
export MLTENANT_TEST_ADMIN_KUBECONFIG=$STATE/admin.kubeconfig
export MLTENANT_TEST_OPERATOR_KUBECONFIG=$STATE/operator.kubeconfig
export MLTENANT_TEST_SEALER_KUBECONFIG=$STATE/sealer.kubeconfig
export MLTENANT_TEST_BIN_DIR=$BIN
export PATH=$BIN:\$PATH
ENV
log "control plane up: https://127.0.0.1:$API_PORT (state in $STATE)"
echo "$STATE/env.sh"
