#!/usr/bin/env bash
# Installs what the operator needs around it into the cluster of $KUBECONFIG: its namespace,
# the CRDs, its ServiceAccount and RBAC, all from deploy/ (rendered from the Helm chart, so the
# tests and the demo run the operator under the chart's RBAC), and waits until the CRDs are
# served. The Deployment is left out: the operator runs as a local process.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

deploy=$REPO_DIR/deploy
kubectl apply --server-side --field-manager mltenant-install -f "$deploy/namespace.yaml" -f "$deploy/mltenant.io.yaml" \
  -f "$deploy/serviceaccount.yaml" -f "$deploy/rbac.yaml" -f "$deploy/cert-access.yaml" >/dev/null
kubectl wait --for condition=Established --timeout 60s crd/mltenants.mltenant.io crd/sealedbundles.mltenant.io >/dev/null
log "installed the namespace, CRDs and operator RBAC from deploy/"
