#!/usr/bin/env bash
# Prints the path of promtool, extracted (once, cached) from Debian's prometheus package without
# installing or starting the Prometheus service.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

echo "$(prometheus_package_dir)/promtool"
