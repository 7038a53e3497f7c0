#!/usr/bin/env bash
# Installs the CRDs and the operator's RBAC into the cluster of $KUBECONFIG and waits until
# the CRDs are served.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kubectl apply --server-side --field-manager mltenant-install -f "$REPO_DIR/crds/" -f "$REPO_DIR/deploy/rbac.yaml" >/dev/null
kubectl wait --for condition=Established --timeout 60s crd/mltenants.mltenant.io crd/sealedbundles.mltenant.io >/dev/null
log "installed CRDs and operator RBAC"
