#!/usr/bin/env bash
# `make demo`: local control plane, the operator (as its ServiceAccount identity), credentials
# sealed with `mltenant seal`, the tenants in examples/; waits until they are Ready and shows
# what was created. Keeps the operator running until Ctrl-C, or exits at once with
# DEMO_ONESHOT=1. DEMO_PROMETHEUS=1 also starts Prometheus (the Debian package's server, see
# hack/prometheus.sh) scraping the operator with the chart's alert rules, and prints its URL.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$REPO_DIR/target/controlplane-demo
cd "$REPO_DIR"
log "building the operator"
cargo build --locked --quiet --bin mltenant
env_file=$("$HACK_DIR/controlplane-up.sh" "$STATE")
operator_pid=
prometheus_pid=
cleanup() {
  [ -n "$prometheus_pid" ] && kill "$prometheus_pid" 2>/dev/null && wait "$prometheus_pid" 2>/dev/null
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null
  "$HACK_DIR/controlplane-down.sh" "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck disable=SC1090
source "$env_file"
"$HACK_DIR/install.sh"

start_operator target/debug/mltenant "$STATE/operator.log"
operator_pid=$OPERATOR_PID
log "operator ready (metrics on $OPERATOR_URL/metrics, log in $STATE/operator.log)"

if [ "${DEMO_PROMETHEUS:-0}" = 1 ]; then
  prometheus=$("$HACK_DIR/prometheus.sh")
  prom_port=$(free_port)
  mkdir -p "$STATE/prometheus"
  cat >"$STATE/prometheus.yml" <<PROM
global: {scrape_interval: 5s, scrape_timeout: 5s, evaluation_interval: 5s}
rule_files: ["$REPO_DIR/charts/mltenant-operator/files/prometheus-rules.yaml"]
scrape_configs:
- job_name: mltenant-operator
  static_configs: [{targets: ['${OPERATOR_URL#http://}']}]
PROM
  "$prometheus" --config.file="$STATE/prometheus.yml" --storage.tsdb.path="$STATE/prometheus" \
    --web.listen-address="127.0.0.1:$prom_port" >"$STATE/prometheus.log" 2>&1 &
  prometheus_pid=$!
  for _ in $(seq 150); do
    curl -fsS "http://127.0.0.1:$prom_port/-/ready" >/dev/null 2>&1 && break
    kill -0 "$prometheus_pid" 2>/dev/null || { tail -20 "$STATE/prometheus.log" >&2; die "prometheus exited"; }
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$prom_port/-/ready" >/dev/null 2>&1 || die "prometheus was not ready after 30s"
  log "Prometheus on http://127.0.0.1:$prom_port (alerts: /alerts, API: /api/v1/alerts; log in $STATE/prometheus.log)"
fi

# The platform engineer's step: seal the team's credentials to this cluster's key (with the
# fake values in examples/credentials/) and "commit" the bundles, here by applying them.
url=$OPERATOR_URL
target/debug/mltenant seal --name financial-ml-platform --scope Tenant --tenant financial-ml \
  --from-env-file examples/credentials/ml-platform.env --expires-in 90d --operator-url "$url" >"$STATE/financial-ml-platform.yaml"
echo "demo-registry-token" | target/debug/mltenant seal --name ghcr-financial --scope Cluster \
  --tenant-selector mltenant.io/registry-access=ghcr --docker-server ghcr.io --docker-username financial-ml-bot \
  --docker-password-stdin --expires-in 30d --operator-url "$url" >"$STATE/ghcr-financial.yaml"
target/debug/mltenant validate -f "$STATE/financial-ml-platform.yaml" >&2
kubectl apply -f "$STATE/financial-ml-platform.yaml" -f "$STATE/ghcr-financial.yaml" >&2
kubectl apply -f examples/ >&2
kubectl wait --for condition=Ready --timeout 60s mltenant --all >&2 || {
  kubectl get mltenant -o yaml >&2
  die "the example tenants did not become Ready"
}

echo
echo "== MLTenants"
kubectl get mltenants
echo
echo "== Namespaces created for them"
kubectl get namespaces -l app.kubernetes.io/managed-by=mltenant-operator -L mltenant.io/tenant,mltenant.io/environment
echo
echo "== Secrets distributed (names only)"
kubectl get secrets -A -l app.kubernetes.io/managed-by=mltenant-operator,mltenant.io/tenant \
  -o custom-columns='NAMESPACE:.metadata.namespace,NAME:.metadata.name,TYPE:.type,BUNDLE:.metadata.annotations.mltenant\.io/bundle,EXPIRES:.metadata.annotations.mltenant\.io/expires-at'
echo
echo "== Read access granted to secretReaders"
kubectl get roles -A -l app.kubernetes.io/managed-by=mltenant-operator \
  -o custom-columns='NAMESPACE:.metadata.namespace,ROLE:.metadata.name,VERBS:.rules[0].verbs,SECRETS:.rules[0].resourceNames'
echo
echo "== SealedBundles"
kubectl get sealedbundles
echo
echo "== Status conditions"
kubectl get mltenants -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{range .status.conditions[*]}{"  "}{.type}={.status} ({.reason}): {.message}{"\n"}{end}{end}'
echo
echo "== Events on the tenants"
events=$(kubectl get events -n default --field-selector involvedObject.kind=MLTenant 2>/dev/null)
if [ -n "$events" ]; then
  echo "$events"
else
  echo "none yet: a first converge records no Event (the conditions above say what was done);"
  echo "updates, recreated Secrets, refusals and failures do (try deleting a Secret)"
fi
echo
if [ -n "$prometheus_pid" ]; then
  echo "== Prometheus: http://127.0.0.1:$prom_port  (try /api/v1/query?query=mltenant_tenant_condition)"
  echo
fi
if [ "${DEMO_ONESHOT:-0}" = 1 ]; then
  log "DEMO_ONESHOT=1: stopping"
  exit 0
fi
log "the operator keeps running; try: source $env_file && kubectl delete ns financial-ml-dev   (Ctrl-C to stop)"
wait "$operator_pid"
