# The e2e cluster's components by name: the control plane of hack/components.sh with a node
# (containerd, kubelet, kube-proxy), kube-scheduler, and Argo CD's repo-server and application
# controller with their redis. Everything runs inside the tier's network namespace, where the
# node's address, the pod network and the Service network exist (hack/test-e2e.sh). Sourced
# after hack/components.sh, whose start/stop/wait helpers it reuses; it replaces the command
# lines and readiness checks. Everything a command line needs is in $STATE/config.env.
# shellcheck shell=bash

COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy redis argocd-repo-server argocd-application-controller"

# The controllers a node needs besides the namespace and garbage-collector controllers: node
# lifecycle and taint eviction, ServiceAccounts and the root CA ConfigMap (projected tokens),
# Endpoints and EndpointSlices (the service proxy, Prometheus' discovery), Deployments,
# ReplicaSets and the disruption controller (PodDisruptionBudgets), pod garbage collection.
E2E_CONTROLLERS=namespace-controller,garbage-collector-controller,node-lifecycle-controller,taint-eviction-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,endpoints-controller,endpointslice-controller,deployment-controller,replicaset-controller,disruption-controller,pod-garbage-collector-controller,clusterrole-aggregation-controller

component_command() {
  local pki=$STATE/pki
  case $1 in
    etcd) etcd_command e2e 2379 2380 ;;
    kube-apiserver)
      # Reached by pods at the `kubernetes` Service (10.0.0.1:443, kube-proxy's DNAT to the
      # advertised address), by everything else at the node's address. The audit log records
      # who wrote what, pod by pod, for the leader-handover tests.
      printf '%s\n' "$BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:2379" \
        --bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port 6443 \
        --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types InternalIP \
        --service-account-issuer https://kubernetes.default.svc \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --audit-policy-file "$STATE/audit-policy.yaml" --audit-log-path "$STATE/logs/audit.log" \
        --audit-log-format json --audit-log-maxbackup 0 \
        --profiling=false --v=1
      ;;
    kube-controller-manager)
      printf '%s\n' "$BIN/kube-controller-manager" \
        --kubeconfig "$STATE/kcm.kubeconfig" --controllers "$E2E_CONTROLLERS" \
        --root-ca-file "$pki/ca.crt" \
        --leader-elect=false --secure-port 0 --use-service-account-credentials=false --v=1
      ;;
    kube-scheduler)
      printf '%s\n' "$NODE_BIN/kube-scheduler" --kubeconfig "$STATE/scheduler.kubeconfig" \
        --leader-elect=false --secure-port 0 --v=1
      ;;
    containerd)
      printf '%s\n' containerd --config "$STATE/containerd/config.toml"
      ;;
    kubelet)
      # Named by its address: the API server resolves node names through DNS, and there is none.
      printf '%s\n' "$NODE_BIN/kubelet" --config "$STATE/kubelet/config.yaml" \
        --kubeconfig "$STATE/kubelet.kubeconfig" --hostname-override "$NODE_IP" --node-ip "$NODE_IP" \
        --root-dir "$STATE/kubelet/root" --v=1
      ;;
    kube-proxy)
      printf '%s\n' "$NODE_BIN/kube-proxy" --config "$STATE/kube-proxy.yaml" --v=1
      ;;
    redis)
      printf '%s\n' redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --dir "$STATE/redis"
      ;;
    argocd-repo-server)
      # Argo CD's repo-server runs git and its git-verify-wrapper.sh from PATH; no GnuPG. Plain
      # gRPC on loopback: --disable-tls refuses to start unless the mTLS client CA path, which
      # defaults to a file of Argo CD's pod, is emptied too (v3.6.2).
      printf '%s\n' env "PATH=$ARGOCD_DIR:$PATH" ARGOCD_GPG_ENABLED=false "HOME=$STATE/argocd/home" \
        "TMPDIR=$STATE/argocd/tmp" "$ARGOCD_DIR/argocd-repo-server" --address 127.0.0.1 --port 8081 \
        --metrics-address 127.0.0.1 --metrics-port 8084 --disable-tls --client-ca-path= --redis 127.0.0.1:6379 --loglevel info
      ;;
    argocd-application-controller)
      # --persist-resource-health: each resource's health (and our health checks' messages) in
      # the Application's status, where the tests read it.
      # In-cluster configuration, as in its pod (hack/e2e-cluster.sh writes /run/secrets).
      printf '%s\n' env "PATH=$ARGOCD_DIR:$PATH" "HOME=$STATE/argocd/home" "TMPDIR=$STATE/argocd/tmp" \
        KUBERNETES_SERVICE_HOST="$NODE_IP" KUBERNETES_SERVICE_PORT=6443 \
        "$ARGOCD_DIR/argocd-application-controller" --namespace argocd \
        --repo-server 127.0.0.1:8081 --repo-server-plaintext --redis 127.0.0.1:6379 --metrics-port 8082 \
        --status-processors 4 --operation-processors 2 --app-resync 20 --persist-resource-health --loglevel info
      ;;
    *) die "unknown component '$1' (one of: $COMPONENTS)" ;;
  esac
}

component_ready_check() {
  case $1 in
    etcd) curl -fsS "http://127.0.0.1:2379/health" ;;
    kube-apiserver)
      curl -fsS --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "https://$NODE_IP:6443/readyz"
      ;;
    # No serving port (--secure-port 0): running for a second is all there is to see.
    kube-controller-manager | kube-scheduler) sleep 1 && component_alive "$1" ;;
    containerd) ctr --address "$STATE/containerd/containerd.sock" version ;;
    kubelet) curl -fsS http://127.0.0.1:10248/healthz ;;
    kube-proxy) curl -fsS http://127.0.0.1:10256/healthz ;;
    redis) redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG ;;
    argocd-repo-server) curl -fsS http://127.0.0.1:8084/healthz ;;
    argocd-application-controller) curl -fsS http://127.0.0.1:8082/metrics ;;
  esac
}
