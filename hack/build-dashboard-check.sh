#!/usr/bin/env bash
# Builds hack/dashboard-check (the Grafana Foundation SDK's strict decode and Validate() of a
# dashboard) into a cache directory keyed by its source and go.sum, and prints the binary's
# path. A second run with the same source does nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need go golang-go
src=$HACK_DIR/dashboard-check
key=$(cat "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
DIR=$CACHE_DIR/tools/dashboard-check-$(GOTOOLCHAIN=local go env GOVERSION)-$key
if [ ! -x "$DIR/dashboard-check" ]; then
  log "building hack/dashboard-check (Grafana Foundation SDK $(cd "$src" && GOTOOLCHAIN=local go list -m -f '{{.Version}}' github.com/grafana/grafana-foundation-sdk/go))"
  go_build "$src" . "$DIR/dashboard-check" "-s -w"
fi
echo "$DIR/dashboard-check"
