#!/usr/bin/env bash
# Tool checks of the shipped monitoring assets: `promtool check rules` and `promtool test rules`
# (every alert fires and stays silent at its thresholds), and the dashboard is valid JSON.
# (That the dashboard only queries exported metrics is an integration test.)
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

files=$REPO_DIR/charts/mltenant-operator/files
promtool=$("$HACK_DIR/promtool.sh")
"$promtool" check rules "$files/prometheus-rules.yaml"
(cd "$files" && "$promtool" test rules tests/prometheus-rules.test.yaml)
python3 -m json.tool "$files/dashboard.json" >/dev/null || die "$files/dashboard.json is not valid JSON"
log "monitoring assets OK"
