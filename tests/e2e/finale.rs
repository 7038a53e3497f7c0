//! Run last, alone (hack/test-e2e.sh's second phase): `helm uninstall`, and what stays. Helm
//! removes what it installed from templates; the CRDs (Helm's `crds/`, never deleted by Helm),
//! the MLTenants and SealedBundles (so their finalizers stay, waiting for an operator), the
//! Secrets distributed into tenant namespaces, the sealing keys and the Lease (the operator
//! created those, not Helm) and the namespace stay. With the pods gone, Prometheus' alert
//! MLTenantOperatorDown goes pending and fires after its `for: 5m`. Installed again, the
//! operator takes up the same sealing key, so the bundles in Git still open.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};
use mltenant_operator::api::{MLTenant, SealedBundle};

use crate::cluster::*;
use crate::harness::{admin, unique, wait_condition, wait_until};
use crate::scrape;

const SEALER: &str = "MLTENANT_TEST_SEALER_KUBECONFIG";
/// MLTenantOperatorDown's `for:`, plus what a rule evaluation and the targets' staleness add.
const FIRES_WITHIN: Duration = Duration::from_secs(5 * 60 + 60);

async fn alert_state(prometheus: &crate::harness::Prometheus) -> Option<String> {
    let alerts = prometheus.alerts().await;
    alerts.into_iter().find(|(name, _, _)| name == "MLTenantOperatorDown").map(|(_, state, _)| state)
}

async fn sealing_keys(client: &kube::Client) -> Vec<String> {
    let lp = ListParams::default().labels("mltenant.io/sealing-key=active");
    let mut keys: Vec<String> = Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .map(|k| k.name_any())
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn helm_uninstall_leaves_tenants_and_their_secrets_and_the_operator_down_alert_fires() {
    let _pods = exclusive().await;
    let client = admin().await;
    installed(&client).await;
    // A tenant of this test's own, converged by the installed operator.
    let name = unique("finale");
    let bundle = ok(
        "seal",
        mltenant(
            SEALER,
            &["seal", "--name", &name, "--scope", "Tenant", "--tenant", &name, "--from-env-file", "-"],
            b"KEY=kept\n",
        ),
    );
    let manifest = format!(
        "{bundle}\n---\napiVersion: mltenant.io/v1alpha1\nkind: MLTenant\nmetadata:\n  name: {name}\nspec:\n  \
         environments: [{{name: dev}}]\n  secrets: [{{name: creds, bundle: {name}}}]\n  deletionPolicy: Retain\n"
    );
    ok("kubectl apply", kubectl(&["apply", "-f", "-"], manifest.as_bytes()));
    wait_condition(&client, &name, "Ready", "True", None).await;
    let keys = sealing_keys(&client).await;
    assert!(!keys.is_empty());

    let prometheus = scrape::start().await;
    wait_until("both pods up in Prometheus", ROLLOUT, || async {
        let up = scrape::number(&prometheus, &format!("sum(up{{job=\"{RELEASE}\"}})")).await;
        (up == 2.0).then_some(()).ok_or(format!("up {up}"))
    })
    .await;
    // Pending from Prometheus' start until it first scraped the pods: inactive once evaluated since.
    prometheus.wait_rules_evaluated_after(jiff::Timestamp::now()).await;
    wait_until("MLTenantOperatorDown inactive while both pods are up", ROLLOUT, || async {
        let state = alert_state(&prometheus).await;
        state.is_none().then_some(()).ok_or(format!("{state:?}"))
    })
    .await;

    let start = Instant::now();
    ok("helm uninstall", helm(&["uninstall", RELEASE, "--namespace", NAMESPACE, "--wait"]));
    wait_until("the pods gone", ROLLOUT, || async {
        let left = pods(&client).await.len();
        (left == 0).then_some(()).ok_or(format!("{left} pods"))
    })
    .await;
    println!("e2e: helm uninstall: pods gone after {:.1?}", start.elapsed());

    // Gone: everything Helm rendered from templates.
    assert!(Api::<Deployment>::namespaced(client.clone(), NAMESPACE).get_opt(RELEASE).await.unwrap().is_none());
    assert!(Api::<Service>::namespaced(client.clone(), NAMESPACE).get_opt(RELEASE).await.unwrap().is_none());
    assert!(Api::<ClusterRole>::all(client.clone()).get_opt(RELEASE).await.unwrap().is_none());
    // Stays: the CRDs, the tenants and bundles, their Secrets, the sealing keys, the namespace.
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in ["mltenants.mltenant.io", "sealedbundles.mltenant.io"] {
        assert!(crds.get_opt(crd).await.unwrap().is_some(), "CRD {crd} stays");
    }
    let tenant = Api::<MLTenant>::all(client.clone()).get(&name).await.expect("the MLTenant stays");
    assert!(tenant.finalizers().iter().any(|f| f == "mltenant.io/cleanup"), "with its finalizer");
    assert!(Api::<SealedBundle>::all(client.clone()).get_opt(&name).await.unwrap().is_some(), "the bundle stays");
    let creds = Api::<Secret>::namespaced(client.clone(), &format!("{name}-dev")).get("creds").await;
    assert_eq!(creds.expect("the tenant's Secret stays").data.unwrap()["KEY"].0, b"kept");
    assert_eq!(sealing_keys(&client).await, keys, "the sealing keys stay");
    assert!(Api::<Namespace>::all(client.clone()).get_opt(NAMESPACE).await.unwrap().is_some());

    // Prometheus: the targets are gone, the alert goes pending, then fires after `for: 5m`.
    let pending = wait_until("MLTenantOperatorDown pending", ROLLOUT, || async {
        alert_state(&prometheus).await.map(|_| start.elapsed()).ok_or("inactive".to_owned())
    })
    .await;
    let fired = wait_until("MLTenantOperatorDown firing", FIRES_WITHIN, || async {
        let state = alert_state(&prometheus).await;
        (state.as_deref() == Some("firing")).then(|| start.elapsed()).ok_or(format!("{state:?}"))
    })
    .await;
    println!("e2e: MLTenantOperatorDown pending {pending:.1?} and firing {fired:.1?} after helm uninstall");

    // Installed again: the same key, the tenant still Ready, the alert resolved.
    let start = Instant::now();
    helm_install();
    wait_release_ready(&client).await;
    assert_eq!(sealing_keys(&client).await, keys, "no new sealing key: what was sealed before still opens");
    wait_condition(&client, &name, "Ready", "True", None).await;
    wait_until("MLTenantOperatorDown resolved", ROLLOUT, || async {
        let state = alert_state(&prometheus).await;
        state.is_none().then_some(()).ok_or(format!("{state:?}"))
    })
    .await;
    println!("e2e: installed again in {:.1?}: same sealing key, tenant Ready, alert resolved", start.elapsed());
}
