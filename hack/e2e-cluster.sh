#!/usr/bin/env bash
# The e2e cluster, started inside the tier's network namespace and a private mount namespace
# (hack/test-e2e.sh enters both, and cleans up whatever is left): the node's address on a veth,
# the pod network on the CNI bridge and the Service network through kube-proxy exist only
# there. Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
# kubelet, kube-proxy, redis and Argo CD's repo-server and application controller, imports the
# images, installs what the cluster has before its users arrive (Argo CD's CRDs and settings, a
# GKE-like admission policy refusing bindings to system:authenticated), runs COMMAND with
# $STATE/env.sh sourced, and stops everything again, also when COMMAND fails.
#
#   hack/e2e-cluster.sh STATE_DIR COMMAND...     (environment: see hack/test-e2e.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/components.sh"
source "$HACK_DIR/e2e-components.sh"

[ $# -ge 2 ] || die "usage: $0 STATE_DIR COMMAND..."
STATE=$1
shift
for var in BIN NODE_BIN ARGOCD_DIR NODE_IP POD_CIDR SERVICE_CIDR CGROUP_ROOT IMAGE_ARCHIVE IMAGE_REFERENCE PRIVATE_DIRS; do
  [ -n "${!var:-}" ] || die "$var is not set (run hack/test-e2e.sh)"
done
mkdir -p "$STATE/logs"
STATE=$(cd "$STATE" && pwd)
start=$SECONDS

# --- This namespace's network: loopback and the node's address, nothing else. ---
ip link set lo up
ip link add e2e0 type veth peer name e2e1
ip addr add "$NODE_IP/24" dev e2e0
ip link set e2e0 up
ip link set e2e1 up
# Mounts made from here on stay in this mount namespace; these directories, which containerd,
# the CNI plugins and kubelet use whatever their configuration, become private to the run.
for dir in $PRIVATE_DIRS; do mount -t tmpfs -o mode=0755 "e2e-$(basename "$dir")" "$dir"; done

# --- PKI: one CA, the API server's serving certificate, its kubelet client, the SA key. ---
pki=$STATE/pki
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mltenant-e2e-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
sign() { # NAME SUBJECT EXTENSIONS
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
    -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
}
kubernetes_ip=${SERVICE_CIDR%.*/*}.1
sign apiserver /CN=kube-apiserver "subjectAltName=IP:$NODE_IP,IP:$kubernetes_ip,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

# --- Identities: static tokens. Pods authenticate with their ServiceAccounts' real tokens. ---
token() { openssl rand -hex 24; }
ADMIN_TOKEN=$(token)
declare -A TOKENS=(
  [admin]="$ADMIN_TOKEN,mltenant-admin,uid-admin,\"system:masters\""
  [kcm]="$(token),system:kube-controller-manager,uid-kcm,\"system:masters\""
  [scheduler]="$(token),system:kube-scheduler,uid-scheduler,"
  [kubelet]="$(token),system:node:$NODE_IP,uid-node,\"system:nodes\""
  [kube-proxy]="$(token),system:kube-proxy,uid-kube-proxy,"
  [sealer]="$(token),platform-engineer,uid-sealer,\"mltenant:sealers\""
  [user]="$(token),data-scientist,uid-user,"
  [argocd]="$(token),system:serviceaccount:argocd:argocd-application-controller,uid-argocd,\"system:serviceaccounts,system:serviceaccounts:argocd\""
  [prometheus]="$(token),system:serviceaccount:monitoring:prometheus,uid-prometheus,\"system:serviceaccounts,system:serviceaccounts:monitoring\""
)
: >"$pki/tokens.csv"
for who in "${!TOKENS[@]}"; do echo "${TOKENS[$who]}" >>"$pki/tokens.csv"; done
chmod 600 "$pki/tokens.csv" "$pki"/*.key
for who in "${!TOKENS[@]}"; do
  IFS=, read -r secret user _ <<<"${TOKENS[$who]}"
  cat >"$STATE/$who.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$pki/ca.crt"}
users:
- name: "$user"
  user: {token: "$secret"}
contexts:
- name: e2e
  context: {cluster: e2e, user: "$user"}
current-context: e2e
KC
  chmod 600 "$STATE/$who.kubeconfig"
done

# --- Writes by ServiceAccounts, as the audit log records them (user, pod, time, answer). ---
cat >"$STATE/audit-policy.yaml" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts"]
  verbs: [create, update, patch, delete, deletecollection]
- level: None
YAML

# --- The node: containerd (runc, CNI bridge), kubelet (cgroupfs under its own root), kube-proxy. ---
mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/kubelet/root" "$STATE/redis" \
  "$STATE/argocd/home" "$STATE/argocd/tmp"
pause_image=$(cat "$NODE_BIN/pause.image")
# restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, so runc could not lower a
# container's oom_score_adj below containerd's own.
cat >"$STATE/containerd/config.toml" <<TOML
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$STATE/containerd/containerd.sock"
[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
TOML
cat >"$STATE/cni/net.d/10-mltenant-e2e.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "mltenant-e2e",
  "plugins": [{
    "type": "bridge", "bridge": "cni0", "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "dataDir": "$STATE/cni/ipam"}
  }]
}
JSON
# cgroup v1 with a hybrid unified mount here: cgroupfs driver, failCgroupV1 off; no swap
# accounting. Image garbage collection off: the images are imported, never pulled. The node's
# disk is the machine's, which other builds share: eviction only when it is nearly full (a
# share of it, kubelet's default, evicted the pods and then removed the pause image, which
# cannot be pulled, once other builds had left less than 1 % of a 250 GB disk free).
cat >"$STATE/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: "unix://$STATE/containerd/containerd.sock"
cgroupDriver: cgroupfs
cgroupRoot: "/$CGROUP_ROOT"
failCgroupV1: false
failSwapOn: false
resolvConf: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 256Mi, nodefs.inodesFree: 1%, imagefs.available: 256Mi}
YAML
# conntrack left alone (its limits are global, not per network namespace).
cat >"$STATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$STATE/kube-proxy.kubeconfig"}
mode: iptables
hostnameOverride: "$NODE_IP"
clusterCIDR: "$POD_CIDR"
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0}
iptables: {localhostNodePorts: false}
YAML
write_config "$STATE" BIN NODE_BIN ARGOCD_DIR NODE_IP SERVICE_CIDR ADMIN_TOKEN
load_config "$STATE"

cleanup() {
  local status=$?
  if [ -f "$STATE/pids" ]; then
    local pids pid left
    # Last started first.
    mapfile -t pids < <(tac "$STATE/pids" | awk '{print $2}')
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
      left=0
      for pid in "${pids[@]}"; do pid_alive "$pid" && left=1; done
      [ $left = 0 ] && break
      sleep 0.2
    done
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export KUBECONFIG=$STATE/admin.kubeconfig
export PATH=$BIN:$PATH
kctl() { "$BIN/kubectl" "$@"; }
started() { log "$1 ready after $((SECONDS - start))s"; }
for name in etcd kube-apiserver; do
  component_start "$name"
  component_wait_ready "$name" 90
done
started "the API server"
# What the cluster has before any user: RBAC for the processes that stand in for pods (Argo CD,
# Prometheus), Argo CD's CRDs, settings and default project, and the refusal of bindings to
# system:authenticated that GKE enforces since 1.32.2 (its Warden webhook's message).
kctl apply --server-side --field-manager e2e-bootstrap -f "$ARGOCD_DIR/crds" >/dev/null
# (kubectl wait fails outright on a CRD that has no status yet: ask until it has one.)
for _ in $(seq 150); do
  kctl wait --for condition=Established --timeout 30s crd/applications.argoproj.io crd/appprojects.argoproj.io \
    >/dev/null 2>&1 && break
  sleep 0.2
done
kctl apply --server-side --field-manager e2e-bootstrap -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: argocd}
---
apiVersion: v1
kind: Namespace
metadata: {name: monitoring}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: argocd-application-controller}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: argocd-application-controller, namespace: argocd}]
---
# What kube-prometheus-stack grants its Prometheus: service discovery and /metrics.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: prometheus}
rules:
- apiGroups: [""]
  resources: [services, endpoints, pods, nodes]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- nonResourceURLs: [/metrics]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: prometheus}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: prometheus}
subjects: [{kind: ServiceAccount, name: prometheus, namespace: monitoring}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: e2e-rbac-binding-limitation}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [rbac.authorization.k8s.io]
      apiVersions: ["*"]
      operations: [CREATE, UPDATE]
      resources: [rolebindings, clusterrolebindings]
  validations:
  - expression: "!has(object.subjects) || !object.subjects.exists(s, s.kind == 'Group' && s.name == 'system:authenticated')"
    message: "[denied by rbac-binding-limitation] Binding any Role or ClusterRole to Group \"system:authenticated\" is forbidden."
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: e2e-rbac-binding-limitation}
spec:
  policyName: e2e-rbac-binding-limitation
  validationActions: [Deny]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}
data: {}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: argocd}
spec:
  sourceRepos: ["*"]
  destinations: [{server: "*", namespace: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
YAML

# argocd-secret as argocd-server leaves it after its first start, with a random
# server.secretkey: without that key every Argo CD component refuses to reload its settings
# ("Unable to parse updated settings: server.secretkey is missing"), so health checks merged
# into argocd-cm later never reach the application controller's cluster cache, and a tenant's
# health changes only at the next periodic resync instead of when its status changes.
kctl apply --server-side --field-manager e2e-bootstrap -f - >/dev/null <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: argocd-secret
  namespace: argocd
  labels: {app.kubernetes.io/name: argocd-secret, app.kubernetes.io/part-of: argocd}
stringData:
  server.secretkey: "$(openssl rand -base64 32)"
YAML

for name in kube-controller-manager kube-scheduler containerd; do
  component_start "$name"
  component_wait_ready "$name" 90
done
ctr_() { ctr --address "$STATE/containerd/containerd.sock" --namespace k8s.io "$@"; }
ctr_ images import "$NODE_BIN/pause.oci.tar" >/dev/null
ctr_ images import "$IMAGE_ARCHIVE" >/dev/null
# A second tag of the same image, for the rolling upgrade (`helm upgrade --set image.tag=...`).
ctr_ images tag "$IMAGE_REFERENCE" "$IMAGE_REFERENCE-upgrade" >/dev/null
ctr_ images ls -q | grep -v '^sha256:' | sed 's/^/    image: /' >&2
for name in kubelet kube-proxy; do
  component_start "$name"
  component_wait_ready "$name" 90
done
kctl wait --for condition=Ready --timeout 120s "node/$NODE_IP" >/dev/null \
  || { tail -30 "$STATE/logs/kubelet.log" >&2; die "the node did not become Ready"; }
started "the node"
# The application controller reaches its own cluster (https://kubernetes.default.svc) with
# in-cluster configuration, as in its pod: the Service's address and a ServiceAccount's token.
sa=/run/secrets/kubernetes.io/serviceaccount
mkdir -p "$sa"
cp "$pki/ca.crt" "$sa/ca.crt"
IFS=, read -r argocd_token _ <<<"${TOKENS[argocd]}"
printf '%s' "$argocd_token" >"$sa/token"
printf argocd >"$sa/namespace"
for name in redis argocd-repo-server argocd-application-controller; do
  component_start "$name"
  component_wait_ready "$name" 90
done
started "Argo CD"

write_env "$STATE/env.sh" KUBECONFIG="$STATE/admin.kubeconfig" MLTENANT_TEST_ADMIN_KUBECONFIG="$STATE/admin.kubeconfig" \
  MLTENANT_TEST_SEALER_KUBECONFIG="$STATE/sealer.kubeconfig" MLTENANT_E2E_USER_KUBECONFIG="$STATE/user.kubeconfig" \
  MLTENANT_E2E_PROMETHEUS_KUBECONFIG="$STATE/prometheus.kubeconfig" MLTENANT_TEST_BIN_DIR="$BIN" \
  MLTENANT_E2E_STATE="$STATE" MLTENANT_E2E_NODE_IP="$NODE_IP"
# shellcheck disable=SC1091
source "$STATE/env.sh"
log "cluster up in $((SECONDS - start))s; running: $*"
"$@"
