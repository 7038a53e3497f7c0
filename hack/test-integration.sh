#!/usr/bin/env bash
# Starts a fresh control plane, installs the CRDs and the operator's RBAC (plus the
# prometheus-operator CRDs the chart's ServiceMonitor and PrometheusRule need), finds kubeseal,
# helm and prometheus for the tests that run them, runs the integration tests against it and
# stops it again, also when the tests fail.
#   hack/test-integration.sh [extra cargo test args, e.g. a test name filter]
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$REPO_DIR/target/controlplane-test
# kubeseal, for the compatibility test that seals with it against the running operator.
MLTENANT_TEST_KUBESEAL=$("$HACK_DIR/build-kubeseal.sh")
# helm, for the chart tests (render, then server-side dry-run against the control plane).
MLTENANT_TEST_HELM=$("$HACK_DIR/build-helm.sh")
# Prometheus (the Debian package's server), for the alert and dashboard tests: each test starts
# its own, scraping its own operator.
MLTENANT_TEST_PROMETHEUS=$("$HACK_DIR/prometheus.sh")
log "prometheus: Debian package $(cat "$(dirname "$MLTENANT_TEST_PROMETHEUS")/version") ($("$MLTENANT_TEST_PROMETHEUS" --version 2>&1 | head -1))"
export MLTENANT_TEST_KUBESEAL MLTENANT_TEST_HELM MLTENANT_TEST_PROMETHEUS
crd_files=$("$HACK_DIR/prometheus-operator-crds.sh")
prometheus_crds=()
while read -r file; do prometheus_crds+=(-f "$file"); done <<<"$crd_files"
env_file=$("$HACK_DIR/controlplane-up.sh" "$STATE")
trap '"$HACK_DIR/controlplane-down.sh" "$STATE"' EXIT
# shellcheck disable=SC1090
source "$env_file"

# kubectl's and the API server's versions (hack/controlplane/go.mod pins both).
log "$(kubectl version 2>/dev/null | grep -E '^(Client|Server) Version' | paste -sd ',' | sed 's/,/, /')"
"$HACK_DIR/install.sh"
kubectl apply --server-side --field-manager mltenant-test "${prometheus_crds[@]}" >/dev/null
cd "$REPO_DIR"
# The tests mostly wait on the API server, so run more of them at once than there are cores.
cargo test --locked --features failpoints --test integration -- --test-threads "${TEST_THREADS:-8}" "$@"
