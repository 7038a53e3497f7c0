//! The shipped Grafana dashboard and alert rules only query metrics the running operator
//! exports.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mltenant_operator::api::{BundleScope, SecretSpec};
use mltenant_operator::crypto::Certificate;

use crate::harness::*;

/// Identifiers in a PromQL expression.
fn identifiers(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).filter(|t| !t.is_empty())
}

#[tokio::test]
async fn dashboard_and_alerts_query_only_exported_metrics() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let name = unique("dash");
    // One working bundle with an expiry (labelled so this operator reports its status) and one
    // missing bundle, so every metric family has a sample.
    let data = sealed(&cert, BundleScope::Tenant, &name, "", &[("K", b"v")]);
    let mut bundle = bundle(&name, BundleScope::Tenant, Some(&name), None, data);
    bundle.spec.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30),
    ));
    bundle.metadata.labels = Some([(TEST_LABEL.to_string(), op.run_id.clone())].into());
    create_bundle(&client, &bundle).await;
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    let secret = |n: &str, b: &str| SecretSpec {
        name: n.into(),
        bundle: b.into(),
        environment_bundles: None,
        environments: None,
    };
    t.spec.secrets = Some(vec![secret("ml-platform", &name), secret("missing", &format!("{name}-absent"))]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "SecretsSynced", "False", Some("BundleNotFound")).await;
    wait_for("the distributed Secret", TIMEOUT, || async {
        Api::<Secret>::namespaced(client.clone(), &format!("{name}-dev")).get_opt("ml-platform").await.unwrap()
    })
    .await;

    let exported: BTreeSet<String> = wait_for("every metric family the dashboard uses", TIMEOUT, || async {
        let text = op.metrics().await;
        let names: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
            .collect();
        names.contains("mltenant_bundle_decryptable").then_some(names)
    })
    .await;

    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../charts/mltenant-operator/files/dashboard.json")).expect("valid JSON");
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {} must use the datasource variable",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            used.extend(identifiers(expr).filter(|t| t.starts_with("mltenant_")).map(str::to_owned));
        }
    }
    assert!(used.len() >= 8, "the dashboard uses too few metrics: {used:?}");
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics the operator does not export: {missing:?}");

    let rules: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../charts/mltenant-operator/files/prometheus-rules.yaml")).unwrap();
    let mut alerted = BTreeSet::new();
    for rule in rules["groups"][0]["rules"].as_sequence().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        alerted.extend(identifiers(expr).filter(|t| t.starts_with("mltenant_")).map(str::to_owned));
    }
    assert!(alerted.len() >= 6, "the alert rules use too few metrics: {alerted:?}");
    let missing: Vec<&String> = alerted.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(missing.is_empty(), "alert rules query metrics the operator does not export: {missing:?}");
}
