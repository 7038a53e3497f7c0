//! The shipped alert rules and Grafana dashboard, run by a real Prometheus (the Debian
//! package's server) that scrapes this test's operator every second and evaluates
//! `charts/mltenant-operator/files/prometheus-rules.yaml` unchanged. The rules' `for:`
//! durations are minutes to hours, so an alert is proven by reaching `pending`: its expression
//! holds on what the operator really exports. Each test has its own operator and its own
//! Prometheus, so alerts are scoped to the test.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};
use mltenant_operator::api::{BundleScope, SealedBundle, SecretSpec};
use mltenant_operator::crypto::{Certificate, SealingKey};
use serde_json::Value;

use crate::harness::operator::parse_metric;
use crate::harness::*;

fn days_from_now(days: i64) -> Time {
    Time(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days))
}

/// A Tenant-scoped bundle for `tenant`, labelled so `op` reports its status and metrics.
async fn labelled_bundle(
    client: &Client,
    op: &Operator,
    cert: &Certificate,
    name: &str,
    tenant: &str,
    expires: Option<Time>,
) {
    let data = sealed(cert, BundleScope::Tenant, tenant, "", &[("K", b"v")]);
    let mut b = bundle(name, BundleScope::Tenant, Some(tenant), None, data);
    b.spec.expires_at = expires;
    b.metadata.labels = Some([(TEST_LABEL.to_string(), op.run_id.clone())].into());
    create_bundle(client, &b).await;
}

async fn wait_secret(client: &Client, namespace: &str, name: &str) {
    wait_for(&format!("Secret {namespace}/{name}"), TIMEOUT, || async {
        Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await.unwrap()
    })
    .await;
}

/// Wait until `alert` is active (pending or firing) with `labels` among its labels.
async fn wait_alert(prometheus: &Prometheus, alert: &str, labels: &[(&str, &str)]) -> String {
    wait_until(&format!("alert {alert} {labels:?} to be pending"), TIMEOUT, || async {
        let active = prometheus.alerts().await;
        match active.iter().find(|(name, _, l)| name == alert && labels.iter().all(|(k, v)| l[*k] == *v)) {
            Some((_, state, _)) => Ok(state.clone()),
            None => Err(format!("active alerts {active:?}")),
        }
    })
    .await
}

/// Every rule evaluates without error on what the operator exports.
async fn assert_rules_healthy(prometheus: &Prometheus) {
    let rules = prometheus.rules().await;
    assert!(rules.len() >= 8, "Prometheus loaded too few rules from {ALERT_RULES}: {rules:?}");
    for (name, health, error, _) in rules {
        assert_eq!(health, "ok", "rule {name} does not evaluate: {error}");
    }
}

/// The operator retries a failing tenant at its resync period (5m by default); a short one
/// makes the repeated failures a real failing bundle causes fall inside the test.
const RETRYING: &[&str] = &["--resync-period", "2s"];

#[tokio::test]
async fn a_bundle_that_stops_decrypting_drives_both_decryption_alerts_to_pending() {
    let client = admin().await;
    let op = Operator::start_with(&unique("run"), RETRYING).await;
    let prometheus = Prometheus::start(&op).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let name = unique("undecryptable");
    labelled_bundle(&client, &op, &cert, &name, &name, None).await;
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new("ml-platform", &name)]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "Ready", "True", None).await;

    // Re-sealed to a key this cluster does not have (the wrong cluster's certificate): the
    // bundle stops opening, the tenant keeps its last good Secret.
    let stranger = SealingKey::generate(std::time::Duration::from_secs(3600)).unwrap();
    let data = sealed(stranger.certificate(), BundleScope::Tenant, &name, "", &[("K", b"v2")]);
    edit(&Api::<SealedBundle>::all(client.clone()), &name, |b: &mut SealedBundle| b.spec.encrypted_data = data.clone())
        .await;
    wait_condition(&client, &name, "SecretsSynced", "False", Some("DecryptionFailed")).await;

    let state = wait_alert(&prometheus, "MLTenantBundleNotDecryptable", &[("bundle", &name)]).await;
    assert_eq!(state, "pending", "MLTenantBundleNotDecryptable has for: 15m");
    let state = wait_alert(
        &prometheus,
        "MLTenantDecryptionFailing",
        &[("tenant", &name), ("bundle", &name), ("reason", "NoKeyCouldDecrypt")],
    )
    .await;
    assert_eq!(state, "pending", "MLTenantDecryptionFailing has for: 10m");
    assert_rules_healthy(&prometheus).await;
}

#[tokio::test]
async fn credentials_expiring_in_two_days_drive_the_critical_expiry_alert_only() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let prometheus = Prometheus::start(&op).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let name = unique("expiring");
    labelled_bundle(&client, &op, &cert, &name, &name, Some(days_from_now(2))).await;
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new("ml-platform", &name)]);
    create_tenant(&client, &t).await;
    wait_secret(&client, &format!("{name}-dev"), "ml-platform").await;

    let labels = [("tenant", name.as_str()), ("environment", "dev"), ("secret", "ml-platform"), ("bundle", &name)];
    let state = wait_alert(&prometheus, "MLTenantCredentialExpiringCritical", &labels).await;
    assert_eq!(state, "pending", "MLTenantCredentialExpiringCritical has for: 10m");
    // Two days is inside the critical window only: the 14-day warning starts at 3 days, and
    // nothing has expired.
    let active: BTreeSet<String> = prometheus.alerts().await.into_iter().map(|(n, _, _)| n).collect();
    assert!(!active.contains("MLTenantCredentialExpiringSoon"), "{active:?}");
    assert!(!active.contains("MLTenantCredentialExpired"), "{active:?}");
    assert_rules_healthy(&prometheus).await;
}

#[tokio::test]
async fn a_converged_fleet_has_no_pending_alert() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let prometheus = Prometheus::start(&op).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let mut names = Vec::new();
    for _ in 0..2 {
        let name = unique("calm");
        labelled_bundle(&client, &op, &cert, &name, &name, Some(days_from_now(90))).await;
        let mut t = tenant(&name, &op.run_id, &["dev", "production"]);
        t.spec.secrets = Some(vec![SecretSpec::new("ml-platform", &name)]);
        create_tenant(&client, &t).await;
        names.push(name);
    }
    for name in &names {
        wait_condition(&client, name, "Ready", "True", None).await;
    }
    // Prometheus has scraped the converged state (every tenant Ready, the operator up) ...
    wait_for("Prometheus to have scraped every tenant Ready", TIMEOUT, || async {
        let ready = prometheus.query(r#"mltenant_tenant_condition{condition="Ready",status="True"} == 1"#).await;
        let seen: BTreeSet<&str> = ready.iter().filter_map(|s| s["metric"]["tenant"].as_str()).collect();
        let up = prometheus.query(r#"up{job="mltenant-operator"} == 1"#).await;
        (names.iter().all(|n| seen.contains(n.as_str())) && !up.is_empty()).then_some(())
    })
    .await;
    // ... and evaluated every rule on it, twice. The operator's metrics also cover bundles of
    // the other tests running in this cluster (`mltenant_bundle_decryptable` is not limited by
    // --bundle-selector), so only alerts about this test's tenants and bundles, or about the
    // operator itself, count.
    let ours = |labels: &Value| {
        let about = |key: &str| labels[key].as_str().map(|v| names.iter().any(|n| n == v));
        about("tenant").or(about("bundle")).unwrap_or(true)
    };
    for _ in 0..2 {
        prometheus.wait_rules_evaluated_after(jiff::Timestamp::now()).await;
        let active: Vec<_> = prometheus.alerts().await.into_iter().filter(|(_, _, l)| ours(l)).collect();
        assert!(active.is_empty(), "a converged fleet has active alerts: {active:?}");
    }
    assert_rules_healthy(&prometheus).await;
}

/// A PromQL expression of a panel, with Grafana's variables replaced as Grafana would for a
/// Prometheus data source scraped every second (`$__rate_interval` is four scrape intervals).
fn grafana_expr(expr: &str, variables: &BTreeMap<&str, &str>) -> String {
    let mut out = expr.to_owned();
    for (name, value) in variables {
        out = out.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "the dashboard uses a template variable this test does not know: {expr}");
    out
}

/// Whether a query result holds at least one series with at least one real (non-NaN) value,
/// and for a graph (`activity`) one that is not zero: the fleet below fails and reconciles all
/// the time, and a flat zero line would hide that.
fn has_data(result: &[Value], activity: bool) -> bool {
    result.iter().any(|series| {
        let values = series["values"].as_array().cloned().unwrap_or_else(|| vec![series["value"].clone()]);
        values.iter().filter_map(|v| v[1].as_str()?.parse::<f64>().ok()).any(|v| !v.is_nan() && (!activity || v != 0.0))
    })
}

#[tokio::test]
async fn every_dashboard_panel_query_returns_data_from_prometheus() {
    let client = admin().await;
    let op = Operator::start_with(&unique("run"), RETRYING).await;
    let prometheus = Prometheus::start(&op).await;
    let started = jiff::Timestamp::now();
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    // A fleet in which every panel has something to show: a credential expiring within 14
    // days, a bundle that does not open (decryption failures), a missing bundle (a tenant not
    // Ready), reconciles, sealing keys.
    let name = unique("dash");
    labelled_bundle(&client, &op, &cert, &name, &name, Some(days_from_now(10))).await;
    let broken = format!("{name}-broken");
    let stranger = SealingKey::generate(std::time::Duration::from_secs(3600)).unwrap();
    let data = sealed(stranger.certificate(), BundleScope::Tenant, &name, "", &[("K", b"v")]);
    let mut b = bundle(&broken, BundleScope::Tenant, Some(&name), None, data);
    b.metadata.labels = Some([(TEST_LABEL.to_string(), op.run_id.clone())].into());
    create_bundle(&client, &b).await;
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    t.spec.secrets = Some(vec![
        SecretSpec::new("ml-platform", &name),
        SecretSpec::new("registry", &broken),
        SecretSpec::new("missing", format!("{name}-absent")),
    ]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "Ready", "False", None).await;
    wait_secret(&client, &format!("{name}-dev"), "ml-platform").await;

    let dashboard: Value =
        serde_json::from_str(include_str!("../../charts/mltenant-operator/files/dashboard.json")).expect("valid JSON");
    let known: BTreeSet<&str> =
        dashboard["templating"]["list"].as_array().unwrap().iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(known, BTreeSet::from(["datasource"]), "a new dashboard variable needs a value in this test");
    let variables = BTreeMap::from([("__rate_interval", "4s"), ("__interval", "1s")]);
    let mut targets = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title} must use the datasource variable");
        for target in panel["targets"].as_array().unwrap() {
            let instant = target["instant"].as_bool().unwrap_or(false);
            targets.push((title.clone(), grafana_expr(target["expr"].as_str().unwrap(), &variables), instant));
        }
    }
    assert!(targets.len() >= 12, "the dashboard has too few queries: {targets:?}");

    // Wait until every query has data; a stat's `or vector(0)` fallback does not count, so the
    // query without it must have data too.
    wait_until("every dashboard query to return data", TIMEOUT, || async {
        let window = u64::try_from((jiff::Timestamp::now() - started).get_seconds()).unwrap_or(0) + 1;
        let mut empty = Vec::new();
        for (title, expr, instant) in &targets {
            let mut exprs = vec![expr.clone()];
            if let Some(without) = expr.strip_suffix(" or vector(0)") {
                exprs.push(without.to_owned());
            }
            for e in exprs {
                let result =
                    if *instant { prometheus.query(&e).await } else { prometheus.query_range(&e, window).await };
                if !has_data(&result, !instant) {
                    empty.push(format!("{title}: {e}"));
                }
            }
        }
        if empty.is_empty() { Ok(()) } else { Err(format!("queries without data: {empty:#?}")) }
    })
    .await;
    assert_rules_healthy(&prometheus).await;
}

/// The standard `process_*` series are the operator process's own: its resident memory as the
/// kernel reports it, its open file descriptors, its start time (what an SRE compares with
/// the chart's memory limit and alerts on).
#[tokio::test]
async fn the_process_series_describe_the_operator_process() {
    let op = Operator::start(&unique("run")).await;
    let cpu_before = op.cpu_seconds().expect("the operator's /proc stat");
    let metrics = op.metrics().await;
    let cpu_after = op.cpu_seconds().expect("the operator's /proc stat");
    let rss_kib = op.rss_kib().expect("the operator's /proc status") as f64;
    let exported_kib = parse_metric(&metrics, "process_resident_memory_bytes", &[]) / 1024.0;
    assert!(
        exported_kib > rss_kib / 2.0 && exported_kib < rss_kib * 2.0,
        "process_resident_memory_bytes says {exported_kib} KiB, /proc says {rss_kib} KiB"
    );
    let open = parse_metric(&metrics, "process_open_fds", &[]);
    assert!(open > 0.0 && open < parse_metric(&metrics, "process_max_fds", &[]), "{open} open fds");
    let started = parse_metric(&metrics, "process_start_time_seconds", &[]);
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!(started <= now && started > now - 600.0, "started at {started}, now {now}");
    // The counter is in whole seconds, as the kernel's count truncated: the same number.
    assert!(metrics.lines().any(|l| l.starts_with("process_cpu_seconds_total ")), "no CPU series");
    let cpu = parse_metric(&metrics, "process_cpu_seconds_total", &[]);
    assert!(
        (cpu_before as f64..=cpu_after as f64).contains(&cpu),
        "process_cpu_seconds_total says {cpu}, /proc says {cpu_before}..{cpu_after} s"
    );
}
