#!/usr/bin/env bash
# Tool checks of the shipped monitoring assets: `promtool check rules` and `promtool test rules`
# (every alert fires and stays silent at its thresholds), and the dashboard loads as written:
# the Grafana Foundation SDK's strict decode and Validate() per panel type
# (hack/dashboard-check), which must also refuse the dashboard with a misspelt field.
# (That the dashboard only queries exported metrics is an integration test.)
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

files=$REPO_DIR/charts/mltenant-operator/files
promtool=$("$HACK_DIR/promtool.sh")
"$promtool" check rules "$files/prometheus-rules.yaml"
(cd "$files" && "$promtool" test rules tests/prometheus-rules.test.yaml)
python3 -m json.tool "$files/dashboard.json" >/dev/null || die "$files/dashboard.json is not valid JSON"
check=$("$HACK_DIR/build-dashboard-check.sh")
"$check" "$files/dashboard.json" >&2 || die "$files/dashboard.json does not pass the Grafana Foundation SDK's checks"
# Each mistake, made in a copy, must be refused with the field named: proof that the check
# sees panel options, panel fields, field config and panel types.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mistakes=(
  's/"sortBy"/"sortyBy"/|sortyBy'
  's/"showHeader": true/"showHeader": "yes"/|showHeader'
  's/"gridPos"/"gridpos"/|gridpos'
  's/"unit"/"units"/|units'
  's/"type": "timeseries"/"type": "time-series"/|time-series'
  's/"schemaVersion"/"schemaversion"/|schemaVersion'
)
for mistake in "${mistakes[@]}"; do
  edit=${mistake%|*} named=${mistake##*|}
  sed "$edit" "$files/dashboard.json" >"$tmp/dashboard.json"
  ! cmp -s "$tmp/dashboard.json" "$files/dashboard.json" || die "'$edit' changes nothing in the dashboard: pick another mistake"
  if out=$("$check" "$tmp/dashboard.json" 2>&1); then die "the dashboard check accepted '$edit'"; fi
  grep -qF -- "$named" <<<"$out" || die "the dashboard check refused '$edit' without naming $named: $out"
done
log "the dashboard check refuses ${#mistakes[@]} kinds of mistakes"
log "monitoring assets OK"
