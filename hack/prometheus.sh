#!/usr/bin/env bash
# Prints the path of the Prometheus server, extracted (once, cached) from the same Debian package
# as promtool (hack/promtool.sh). The integration tests and `DEMO_PROMETHEUS=1 make demo` start
# it themselves, on loopback, with their own configuration and data directory.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

echo "$(prometheus_package_dir)/prometheus"
