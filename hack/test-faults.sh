#!/usr/bin/env bash
# The fault suite (tests/faults/): kills and restarts kube-apiserver, etcd and the operator, and
# throttles the operator with API Priority and Fairness, on a control plane of its own (the
# normal suite's tests must never see these faults), with APF on. The tests run one at a
# time: each one breaks the whole control plane. Always stops the control plane.
#   hack/test-faults.sh [extra cargo test args, e.g. a test name filter]
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$REPO_DIR/target/controlplane-faults
# The throttling test needs API Priority and Fairness, whatever the environment says.
env_file=$(CONTROLPLANE_APF=true "$HACK_DIR/controlplane-up.sh" "$STATE")
trap '"$HACK_DIR/controlplane-down.sh" "$STATE"' EXIT
# shellcheck disable=SC1090
source "$env_file"

"$HACK_DIR/install.sh"
cd "$REPO_DIR"
start=$SECONDS
cargo test --locked --test faults -- --test-threads 1 --show-output "$@"
log "fault suite passed in $((SECONDS - start))s"
