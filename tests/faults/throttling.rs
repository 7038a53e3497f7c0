//! The operator throttled by API Priority and Fairness: a FlowSchema puts its ServiceAccount's
//! requests into a priority level of about three seats (nominalConcurrencyShares 1 of the
//! server's 600) with one queue of one. Lease renewals stay with the built-in
//! `workload-leader-election` schema, which matches first (precedence 200), as it would for
//! any FlowSchema a cluster admin writes for an operator. The fleet converges anyway, and the
//! API server's own metrics prove the throttle was in force and rejected requests.

use std::time::{Duration, Instant};

use kube::api::{DynamicObject, PostParams};
use kube::discovery::ApiResource;
use kube::{Api, Client, ResourceExt};
use mltenant_operator::crypto::Certificate;
use serde_json::json;

use crate::controlplane::apiserver_metrics;
use crate::fleet::{Fleet, Member};
use crate::harness::operator::parse_metric;
use crate::harness::*;

const LEVEL: &str = "mltenant-test-tiny";
const SCHEMA: &str = "mltenant-test-operator";
const TENANTS: usize = 50;

fn flowcontrol(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "flowcontrol.apiserver.k8s.io".into(),
        version: "v1".into(),
        api_version: "flowcontrol.apiserver.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The FlowSchema and its priority level; deleted when dropped, also when the test fails (the
/// next fault test must not be throttled).
struct Throttle {
    level_uid: String,
}

impl Throttle {
    async fn install(client: &Client) -> Self {
        let level: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
            "metadata": {"name": LEVEL},
            "spec": {"type": "Limited", "limited": {
                "nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Queue", "queuing": {"queues": 1, "handSize": 1, "queueLengthLimit": 1}},
            }},
        }))
        .unwrap();
        let schema: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": {"name": SCHEMA},
            "spec": {
                "matchingPrecedence": 1000,
                "priorityLevelConfiguration": {"name": LEVEL},
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [{
                    "subjects": [{"kind": "ServiceAccount",
                                  "serviceAccount": {"namespace": "mltenant-system", "name": "mltenant-operator"}}],
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                       "clusterScope": true, "namespaces": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }],
            },
        }))
        .unwrap();
        let pp = PostParams::default();
        let levels = Api::<DynamicObject>::all_with(
            client.clone(),
            &flowcontrol("PriorityLevelConfiguration", "prioritylevelconfigurations"),
        );
        let level = levels.create(&pp, &level).await.expect("create the priority level");
        let schemas = Api::<DynamicObject>::all_with(client.clone(), &flowcontrol("FlowSchema", "flowschemas"));
        schemas.create(&pp, &schema).await.expect("create the FlowSchema");
        Throttle { level_uid: level.uid().expect("a stored object") }
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let kubectl =
            std::path::Path::new(&std::env::var_os("MLTENANT_TEST_BIN_DIR").unwrap_or_default()).join("kubectl");
        let out = std::process::Command::new(kubectl)
            .args([
                "delete",
                "--ignore-not-found",
                &format!("flowschema/{SCHEMA}"),
                &format!("prioritylevelconfiguration/{LEVEL}"),
            ])
            .env("KUBECONFIG", kubeconfig_path("MLTENANT_TEST_ADMIN_KUBECONFIG"))
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("could not delete the throttle: {out:?}");
        }
    }
}

/// The priority level the API server put a request of the operator's identity into (it says
/// so in a response header).
async fn operator_priority_level() -> Option<String> {
    let request = http::Request::get("/api/v1/namespaces?limit=1").body(kube::client::Body::from(Vec::new())).unwrap();
    let response = operator_identity().await.send(request).await.ok()?;
    let uid = response.headers().get("X-Kubernetes-PF-PriorityLevel-UID")?;
    Some(uid.to_str().ok()?.to_owned())
}

#[tokio::test]
async fn operator_throttled_by_priority_and_fairness_still_converges() {
    let client = admin().await;
    let throttle = Throttle::install(&client).await;
    wait_for("the API server to classify the operator into the tiny priority level", TIMEOUT, || async {
        (operator_priority_level().await.as_deref() == Some(throttle.level_uid.as_str())).then_some(())
    })
    .await;

    let started = Instant::now();
    let run = unique("run");
    let op = Operator::start(&run).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).expect("the operator serves its certificate");
    let mut fleet = Fleet::new(&client, &run, cert).await;
    fleet.create_many(TENANTS, &Member::new(&["dev", "production"]), 16).await;
    // Converging is all that is asserted: how slowly is the throttle's business.
    fleet.wait_converged(Duration::from_secs(300)).await;
    let converged = started.elapsed();

    let metrics = apiserver_metrics(&client).await;
    let ours = [("priority_level", LEVEL), ("flow_schema", SCHEMA)];
    let dispatched = parse_metric(&metrics, "apiserver_flowcontrol_dispatched_requests_total", &ours);
    let rejected = parse_metric(&metrics, "apiserver_flowcontrol_rejected_requests_total", &ours);
    let seats = parse_metric(&metrics, "apiserver_flowcontrol_nominal_limit_seats", &[("priority_level", LEVEL)]);
    assert!(dispatched > 0.0, "no request went through {LEVEL}: the FlowSchema did not apply");
    assert!(rejected > 0.0, "{LEVEL} rejected nothing: the operator was not throttled, the test proved nothing");
    let failed = op.metric("mltenant_reconcile_total", &[]).await
        - op.metric("mltenant_reconcile_total", &[("result", "success")]).await;
    assert_eq!(op.metric("mltenant_leader", &[]).await, 1.0, "the operator does not lead");
    println!(
        "fault: operator throttled by APF ({seats} seats, one queue of 1): {dispatched} requests dispatched, \
         {rejected} rejected (429); {failed} failed reconciles; all {TENANTS} tenants converged {converged:.1?} after start"
    );
}
