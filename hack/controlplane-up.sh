#!/usr/bin/env bash
# Starts etcd, kube-apiserver (RBAC enforced) and kube-controller-manager (namespace and
# garbage-collector controllers) on loopback with free ports and a fresh data dir, then writes
# kubeconfigs for an admin and for the operator's ServiceAccount identity, plus env.sh.
#
#   hack/controlplane-up.sh [STATE_DIR]     (default: target/controlplane)
#
# API Priority and Fairness is on, as in any real cluster (the fault suite's throttling test
# needs it; measured: the integration suite takes as long with it as without);
# CONTROLPLANE_APF=false turns it off. CONTROLPLANE_PROFILING=true serves kube-apiserver's
# /debug/pprof (a CPU profile of the server during a bench, BENCH_APISERVER_PROFILE); off
# otherwise. Stop with hack/controlplane-down.sh; kill or restart one component with
# hack/controlplane-component.sh. Prints the path of env.sh.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=components.sh
source "$HACK_DIR/components.sh"

STATE=${1:-$REPO_DIR/target/controlplane}
OPERATOR_NS=${OPERATOR_NAMESPACE:-mltenant-system}
OPERATOR_SA=${OPERATOR_SERVICE_ACCOUNT:-mltenant-operator}
# switch NAME DEFAULT: the environment variable NAME (DEFAULT when unset), which must be true or false.
switch() {
  local value=${!1:-$2}
  case $value in true | false) echo "$value" ;; *) die "$1 must be true or false, not '$value'" ;; esac
}
APF=$(switch CONTROLPLANE_APF true)
PROFILING=$(switch CONTROLPLANE_PROFILING false)

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

read -r ETCD_PORT PEER_PORT API_PORT AUDIT_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
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
# The operator's audit sink (tests start it on $AUDIT_PORT): its serving certificate, and the
# client certificate the API server presents to it, as a cluster's PKI would issue them.
openssl req -newkey rsa:2048 -nodes -subj "/CN=mltenant-audit-sink" \
  -keyout "$pki/audit-sink.key" -out "$pki/audit-sink.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$pki/audit-sink.ext"
openssl x509 -req -in "$pki/audit-sink.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/audit-sink.ext" -out "$pki/audit-sink.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver-audit" \
  -keyout "$pki/audit-client.key" -out "$pki/audit-client.csr" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >"$pki/audit-client.ext"
openssl x509 -req -in "$pki/audit-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/audit-client.ext" -out "$pki/audit-client.crt" 2>/dev/null
# The bearer token the sink also accepts (a test posts with it; the API server uses its certificate).
openssl rand -hex 24 >"$pki/audit-token"
# The API server's audit webhook backend, pointed at the sink as docs/access.md describes, with
# the chart's audit policy.
cat >"$STATE/audit-webhook.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: mltenant-audit-sink
  cluster:
    server: https://127.0.0.1:$AUDIT_PORT/audit
    certificate-authority: $pki/ca.crt
users:
- name: kube-apiserver
  user:
    client-certificate: $pki/audit-client.crt
    client-key: $pki/audit-client.key
contexts:
- name: default
  context: {cluster: mltenant-audit-sink, user: kube-apiserver}
current-context: default
KC
cp "$REPO_DIR/charts/mltenant-operator/files/audit-policy.yaml" "$STATE/audit-policy.yaml"
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

# Everything the components' command lines need, so hack/controlplane-component.sh can restart
# one exactly as it was started (hack/components.sh has the command lines).
write_config "$STATE" BIN ETCD_PORT PEER_PORT API_PORT AUDIT_PORT APF PROFILING ADMIN_TOKEN
load_config "$STATE"
# A component that does not come up stops the others (its log tail is printed).
trap '"$HACK_DIR/controlplane-down.sh" "$STATE" >/dev/null 2>&1 || true' EXIT
for name in $COMPONENTS; do
  component_start "$name"
  component_wait_ready "$name" 90
done
trap - EXIT

write_env "$STATE/env.sh" KUBECONFIG="$STATE/admin.kubeconfig" MLTENANT_TEST_ADMIN_KUBECONFIG="$STATE/admin.kubeconfig" \
  MLTENANT_TEST_OPERATOR_KUBECONFIG="$STATE/operator.kubeconfig" MLTENANT_TEST_SEALER_KUBECONFIG="$STATE/sealer.kubeconfig" \
  MLTENANT_TEST_BIN_DIR="$BIN" MLTENANT_TEST_CONTROLPLANE="$STATE" MLTENANT_TEST_AUDIT_ADDR="127.0.0.1:$AUDIT_PORT"
log "control plane up: https://127.0.0.1:$API_PORT (state in $STATE)"
echo "$STATE/env.sh"
