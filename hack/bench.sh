#!/usr/bin/env bash
# `make bench`: N three-environment tenants (default 100) on the local control plane with a
# release build of the operator. Reports time to all Ready, API writes per tenant on first
# converge and on resync, reconcile count, and the operator's peak RSS (VmHWM).
#   BENCH_TENANTS=100 BENCH_RESYNC=10s make bench
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${BENCH_TENANTS:-100}
RESYNC=${BENCH_RESYNC:-10s}
STATE=$REPO_DIR/target/controlplane-bench
cd "$REPO_DIR"
cargo build --locked --release --quiet --bin mltenant
env_file=$("$HACK_DIR/controlplane-up.sh" "$STATE")
op=
trap '[ -n "$op" ] && kill $op 2>/dev/null; "$HACK_DIR/controlplane-down.sh" "$STATE"' EXIT
# shellcheck disable=SC1090
source "$env_file"
"$HACK_DIR/install.sh"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KUBECONFIG=$MLTENANT_TEST_OPERATOR_KUBECONFIG RUST_LOG=warn target/release/mltenant controller \
  --http-addr "127.0.0.1:$port" --resync-period "$RESYNC" >"$STATE/operator.log" 2>&1 &
op=$!
until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.2; done

metric() { # NAME LABEL-FILTER: sum of matching samples
  curl -fsS "http://127.0.0.1:$port/metrics" | awk -v n="$1" -v f="$2" '$1 ~ "^"n && index($1, f) {s += $2} END {print s+0}'
}
writes() { echo $(( $(metric mltenant_kube_requests_total POST) + $(metric mltenant_kube_requests_total PATCH) + $(metric mltenant_kube_requests_total PUT) + $(metric mltenant_kube_requests_total DELETE) )); }

manifest=$STATE/tenants.yaml
for i in $(seq -w 1 "$N"); do
  printf 'apiVersion: mltenant.io/v1alpha1\nkind: MLTenant\nmetadata: {name: bench-%s}\nspec:\n  environments: [{name: dev}, {name: staging}, {name: production}]\n---\n' "$i"
done >"$manifest"

start=$(date +%s.%N)
kubectl apply -f "$manifest" >/dev/null
while :; do
  ready=$(kubectl get mltenants -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
  [ "$ready" -ge "$N" ] && break
  sleep 0.2
done
elapsed=$(python3 -c "import time; print(f'{$(date +%s.%N) - $start:.2f}')")
sleep 2
first_writes=$(writes)
reconciles=$(metric mltenant_reconcile_total success)
log "waiting for a full resync of $N tenants (resync period $RESYNC)"
until [ "$(metric mltenant_reconcile_total success)" -ge $((reconciles + N)) ]; do sleep 0.5; done
resync_writes=$(( $(writes) - first_writes ))
rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$op/status")
namespaces=$(kubectl get ns -l app.kubernetes.io/managed-by=mltenant-operator --no-headers | wc -l)

cat <<REPORT
tenants:                         $N (3 environments each, $namespaces namespaces)
time to all Ready:               ${elapsed}s
API writes on first converge:    $first_writes ($(python3 -c "print(f'{$first_writes/$N:.1f}')") per tenant)
API writes during full resync:   $resync_writes
operator peak RSS (VmHWM):       $rss
REPORT
