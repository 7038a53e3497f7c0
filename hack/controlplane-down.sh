#!/usr/bin/env bash
# Stops what hack/controlplane-up.sh started (whole process groups) and removes its state.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=components.sh
source "$HACK_DIR/components.sh"

STATE=${1:-$REPO_DIR/target/controlplane}
[ -f "$STATE/pids" ] || exit 0
# Reverse start order: controllers first, etcd last.
pids=$(tac "$STATE/pids" | awk '{print $2}')
for pid in $pids; do kill -TERM -- "-$pid" 2>/dev/null || true; done
for _ in $(seq 50); do
  left=0
  for pid in $pids; do pid_alive "$pid" && left=1; done
  [ $left = 0 ] && break
  sleep 0.2
done
for pid in $pids; do kill -KILL -- "-$pid" 2>/dev/null || true; done
rm -rf "$STATE"
log "control plane stopped"
