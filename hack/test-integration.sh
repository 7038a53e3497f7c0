#!/usr/bin/env bash
# Starts a fresh control plane, installs the CRDs and the operator's RBAC, runs the
# integration tests against it and stops it again, also when the tests fail.
#   hack/test-integration.sh [extra cargo test args, e.g. a test name filter]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$REPO_DIR/target/controlplane-test
# kubeseal, for the compatibility test that seals with it against the running operator.
MLTENANT_TEST_KUBESEAL=$("$HACK_DIR/build-kubeseal.sh")
export MLTENANT_TEST_KUBESEAL
env_file=$("$HACK_DIR/controlplane-up.sh" "$STATE")
trap '"$HACK_DIR/controlplane-down.sh" "$STATE"' EXIT
# shellcheck disable=SC1090
source "$env_file"

"$HACK_DIR/install.sh"
cd "$REPO_DIR"
# The tests mostly wait on the API server, so run more of them at once than there are cores.
cargo test --locked --test integration -- --test-threads "${TEST_THREADS:-8}" "$@"
