#!/usr/bin/env bash
# Tool checks of the Helm chart: `helm lint --strict` for the value combinations that matter,
# values.schema.json rejects bad values with a clear message, and deploy/ is what the chart
# renders. (Rendered manifests are applied with server-side dry-run, and their content checked,
# by the integration tests in tests/integration/chart.rs.)
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

chart=$REPO_DIR/charts/mltenant-operator
helm=$("$HACK_DIR/build-helm.sh")

combos=(
  "defaults|"
  "monitoring on|serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.namespace=monitoring"
  "everything optional off|replicaCount=1,podDisruptionBudget.enabled=false,networkPolicy.enabled=false,certAccess.enabled=false,grafanaDashboard.enabled=false,topologySpread.enabled=false,serviceAccount.create=false,serviceAccount.name=platform-operator"
  "a shard|fullnameOverride=mltenant-shard-b,operator.tenantSelector=shard=b,operator.bundleSelector=shard=b,networkPolicy.egress.apiServerCIDRs={10.0.0.1/32}"
  "pinned by digest|image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)
for combo in "${combos[@]}"; do
  name=${combo%%|*} set=${combo#*|}
  "$helm" lint --strict --namespace mltenant-system "$chart" ${set:+--set "$set"} >/dev/null \
    || { "$helm" lint --strict "$chart" ${set:+--set "$set"} >&2; die "helm lint --strict failed for: $name"; }
  log "helm lint --strict: $name"
done

# Bad values fail at install time with the offending field named.
rejected=(
  "replicaCount=0|/replicaCount"
  "operator.leaseDuration=soon|/operator/leaseDuration"
  "operator.logFormat=xml|/operator/logFormat"
  "serviceMonitor.enable=true|additional properties 'enable' not allowed"
  "certAccess.subjects=null|certAccess.subjects must not be empty"
)
for case in "${rejected[@]}"; do
  set=${case%%|*} expected=${case#*|}
  if output=$("$helm" template mltenant-operator "$chart" --set "$set" 2>&1); then
    die "helm template accepted --set $set"
  fi
  grep -qF -- "$expected" <<<"$output" || die "helm template --set $set failed without naming $expected: $output"
  log "values.schema.json rejects $set"
done

"$HACK_DIR/render-deploy.sh" --check
