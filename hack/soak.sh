#!/usr/bin/env bash
# `make soak` (not part of `make test`): the release build (hack/build-release.sh, what the
# image ships) as two replicas on a control plane of its own, a fleet under continuous churn,
# invariants checked every few seconds (tests/soak/). Always stops the control plane.
#   SOAK_MINUTES=30 SOAK_TENANTS=200 make soak
# Also: SOAK_SEED (reproduce a churn), SOAK_GRACE_SECONDS (90), SOAK_ACTION_MS (1500),
# SOAK_CHECK_SECONDS (5), SOAK_RESTART_MINUTES (5).
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$REPO_DIR/target/controlplane-soak
MLTENANT_TEST_OPERATOR_BIN=$("$HACK_DIR/build-release.sh")
export MLTENANT_TEST_OPERATOR_BIN
env_file=$("$HACK_DIR/controlplane-up.sh" "$STATE")
trap '"$HACK_DIR/controlplane-down.sh" "$STATE"' EXIT
# shellcheck disable=SC1090
source "$env_file"
"$HACK_DIR/install.sh"

cd "$REPO_DIR"
cargo test --locked --test soak --no-run
# The program bounds each of its steps; this bounds the whole (churn, then up to 10 minutes
# to converge and 3 for the resync at rest, plus the initial converge).
limit=$(python3 -c "print(int((${SOAK_MINUTES:-30} + 30) * 60))")
timeout --signal INT --kill-after 60 "$limit" cargo test --locked --test soak
