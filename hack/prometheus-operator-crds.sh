#!/usr/bin/env bash
# Prints the paths of the ServiceMonitor and PrometheusRule CRDs from the prometheus-operator
# Go module's source (downloaded once into the Go module cache), for the chart's server-side
# dry-run tests.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODULE=github.com/prometheus-operator/prometheus-operator
VERSION=${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}
need go golang-go
src=$(module_source "$MODULE" "$VERSION")
for kind in servicemonitors prometheusrules; do
  file=$src/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml
  [ -f "$file" ] || die "$MODULE@$VERSION has no $file"
  echo "$file"
done
