#!/usr/bin/env bash
# Installs what the operator needs around it into the cluster of $KUBECONFIG: its namespace,
# the CRDs, its ServiceAccount and RBAC, the sealers' RBAC and the admission policies, all from
# deploy/ (rendered from the Helm chart, so the tests and the demo run the operator under the
# chart's RBAC and admission policy), and waits until the CRDs are served. The Deployment is
# left out: the operator runs as a local process.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

deploy=$REPO_DIR/deploy
kubectl apply --server-side --field-manager mltenant-install -f "$deploy/namespace.yaml" -f "$deploy/mltenant.io.yaml" \
  -f "$deploy/serviceaccount.yaml" -f "$deploy/rbac.yaml" -f "$deploy/cert-access.yaml" -f "$deploy/sealers.yaml" \
  -f "$deploy/admission-policy.yaml" -f "$deploy/tenant-guard.yaml" >/dev/null
kubectl wait --for condition=Established --timeout 60s crd/mltenants.mltenant.io crd/sealedbundles.mltenant.io >/dev/null
log "installed the namespace, CRDs, operator RBAC and admission policy from deploy/"
# The admission policy is enforced once the API server has loaded it; wait for that, probing
# with a server-side dry run as the operator's identity (when there is one, as in the tests).
if [ -n "${MLTENANT_TEST_OPERATOR_KUBECONFIG:-}" ]; then
  for _ in $(seq 150); do
    out=$(kubectl --kubeconfig "$MLTENANT_TEST_OPERATOR_KUBECONFIG" create secret generic admission-probe \
      -n kube-system --dry-run=server 2>&1 || true)
    case "$out" in *"mltenant-operator guard"*) log "the admission policy is enforced"; exit 0 ;; esac
    sleep 0.2
  done
  die "the admission policy was not enforced after 30s (last answer: $out)"
fi
