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
  log "Prometheus $upstream with Kubernetes service discovery: a few minutes cold"
  ldflags="-s -w -X github.com/prometheus/common/version.Version=$upstream -X github.com/prometheus/common/version.Branch=module -X github.com/prometheus/common/version.Revision=$VERSION"
  module_build "$MODULE" "$VERSION" ./cmd/prometheus "$DIR/prometheus" "$ldflags"
fi
echo "$DIR/prometheus"
