// Validates the chart's Grafana dashboard with the Grafana Foundation SDK (Apache-2.0).
// See hack/build-dashboard-check.sh.
module mltenant.io/hack/dashboard-check

go 1.24.0

require github.com/grafana/grafana-foundation-sdk/go v0.0.22
