#!/usr/bin/env bash
# Builds the Prometheus server from its Go module at the version of the Debian package the
# other tiers use (PROMETHEUS_DEB_VERSION in lib.sh: 2.42.0, module version v0.42.0), into a
# version-keyed cache directory, and prints the binary's path. Debian builds its package
# without the Kubernetes service discovery (its strings name no discovery/kubernetes; a
# kubernetes_sd_configs entry is "field not found"), which the e2e tier needs to scrape the
# pods the way the chart's ServiceMonitor selects them. The web UI's assets are not built in
# (no `builtinassets` tag): the API is all the tests use.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODULE=github.com/prometheus/prometheus
upstream=${PROMETHEUS_DEB_VERSION%%+*}
VERSION=${PROMETHEUS_MODULE_VERSION:-v0.${upstream#2.}}
DIR=$CACHE_DIR/tools/prometheus-$upstream-$VERSION-$(GOTOOLCHAIN=local go env GOVERSION)
need go golang-go
if [ ! -x "$DIR/prometheus" ]; then
  log "building Prometheus $upstream ($MODULE@$VERSION) with Kubernetes service discovery (once; a few minutes cold)"
  start=$SECONDS
  src=$(module_source "$MODULE" "$VERSION")
  ldflags="-s -w -X github.com/prometheus/common/version.Version=$upstream -X github.com/prometheus/common/version.Branch=module -X github.com/prometheus/common/version.Revision=$VERSION"
  mkdir -p "$DIR"
  (cd "$src" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0 \
    go build -trimpath -ldflags "$ldflags" -o "$DIR/prometheus.tmp" ./cmd/prometheus) >&2
  mv "$DIR/prometheus.tmp" "$DIR/prometheus"
  log "built Prometheus in $((SECONDS - start))s"
fi
echo "$DIR/prometheus"
