#!/usr/bin/env bash
# `make bench`: N three-environment tenants (default 100), each with two secrets (its own
# Tenant-scope ml-platform bundle of 9 values and one Cluster-scope ghcr bundle shared by all),
# on the local control plane with a release build. Reports:
#   - time from apply to all Ready (namespaces and 6 Secrets per tenant), API writes and
#     decryptions per tenant, the operator's peak RSS (VmHWM);
#   - writes and decryptions during a full resync (both should be 0);
#   - time until every tenant's ghcr Secret carries a re-sealed shared bundle.
#   BENCH_TENANTS=100 BENCH_RESYNC=10s make bench
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${BENCH_TENANTS:-100}
RESYNC=${BENCH_RESYNC:-10s}
STATE=$REPO_DIR/target/controlplane-bench
cd "$REPO_DIR"
# The binary the image ships (hack/build-release.sh is the Dockerfile's build step).
MLTENANT=$("$HACK_DIR/build-release.sh")
env_file=$("$HACK_DIR/controlplane-up.sh" "$STATE")
op=
trap '[ -n "$op" ] && kill $op 2>/dev/null; "$HACK_DIR/controlplane-down.sh" "$STATE"' EXIT
# shellcheck disable=SC1090
source "$env_file"
"$HACK_DIR/install.sh"

export RUST_LOG=warn
start_operator "$MLTENANT" "$STATE/operator.log" --resync-period "$RESYNC"
op=$OPERATOR_PID
url=$OPERATOR_URL

metric() { # NAME [LABEL-FILTER]: sum of matching samples
  curl -fsS "$url/metrics" | awk -v n="$1" -v f="${2:-}" '($1 == n || index($1, n"{") == 1) && index($1, f) {s += $2} END {printf "%d\n", s}'
}
writes() { echo $(( $(metric mltenant_kube_requests_total POST) + $(metric mltenant_kube_requests_total PATCH) + $(metric mltenant_kube_requests_total PUT) + $(metric mltenant_kube_requests_total DELETE) )); }
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.2f}')"; }

log "sealing $N tenant bundles and one shared bundle"
dir=$STATE/manifests
mkdir -p "$dir"
echo "demo-registry-token" | "$MLTENANT" seal --name ghcr-shared --scope Cluster --tenant-selector '' \
  --docker-server ghcr.io --docker-username bot --docker-password-stdin --operator-url "$url" >"$dir/ghcr-shared.yaml"
for i in $(seq -w 1 "$N"); do
  "$MLTENANT" seal --name "bench-$i-platform" --scope Tenant --tenant "bench-$i" \
    --from-env-file examples/credentials/ml-platform.env --operator-url "$url" >"$dir/bench-$i-platform.yaml"
  cat >"$dir/bench-$i.yaml" <<T
apiVersion: mltenant.io/v1alpha1
kind: MLTenant
metadata: {name: bench-$i}
spec:
  environments: [{name: dev}, {name: staging}, {name: production}]
  secrets: [{name: ml-platform, bundle: bench-$i-platform}, {name: ghcr, bundle: ghcr-shared}]
T
done

ready_count() {
  kubectl get mltenants -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true
}
start=$(now)
kubectl apply -f "$dir" >/dev/null
until [ "$(ready_count)" -ge "$N" ]; do sleep 0.2; done
converge=$(since "$start")
sleep 2
first_writes=$(writes)
first_decryptions=$(metric mltenant_decryptions_total)
secrets=$(kubectl get secrets -A -l app.kubernetes.io/managed-by=mltenant-operator,mltenant.io/tenant --no-headers | wc -l)
rss_converge=$(awk '/VmHWM/ {print $2, $3}' "/proc/$op/status")

log "waiting for a full resync of $N tenants (resync period $RESYNC)"
reconciles=$(metric mltenant_reconcile_total 'controller="tenant",result="success"')
until [ "$(metric mltenant_reconcile_total 'controller="tenant",result="success"')" -ge $((reconciles + N)) ]; do sleep 0.5; done
resync_writes=$(( $(writes) - first_writes ))
resync_decryptions=$(( $(metric mltenant_decryptions_total) - first_decryptions ))

log "re-sealing the shared bundle"
old_hash=$(kubectl get secret ghcr -n "bench-$(seq -w 1 "$N" | head -1)-dev" -o jsonpath='{.metadata.annotations.mltenant\.io/source-hash}')
echo "rotated-registry-token" | "$MLTENANT" seal --merge-into "$dir/ghcr-shared.yaml" \
  --docker-server ghcr.io --docker-username bot --docker-password-stdin --operator-url "$url"
start=$(now)
kubectl apply -f "$dir/ghcr-shared.yaml" >/dev/null
stale() {
  kubectl get secrets -A -l app.kubernetes.io/managed-by=mltenant-operator -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.annotations.mltenant\.io/source-hash}{"\n"}{end}' \
    | awk -v h="$old_hash" '$1 == "ghcr" && $2 == h' | wc -l
}
until [ "$(stale)" -eq 0 ]; do sleep 0.2; done
reseal=$(since "$start")
rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$op/status")

cat <<REPORT
tenants:                          $N (3 environments, 2 secrets each: $secrets Secrets)
cold converge to all Ready:       ${converge}s
API writes on first converge:     $first_writes ($(python3 -c "print(f'{$first_writes/$N:.1f}')") per tenant)
values decrypted on first converge: $first_decryptions
full resync:                      $resync_writes writes, $resync_decryptions decryptions
re-seal of the shared bundle:     ${reseal}s until all $((N * 3)) ghcr Secrets were updated
operator peak RSS (VmHWM):        $rss_converge after converge, $rss at the end
REPORT
