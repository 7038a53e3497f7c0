//! Preconditions of the harness, not tests of the operator: the local control plane behaves
//! as production does (CEL validation, garbage collection, RBAC), which the operator's tests
//! rely on. A failure here says the control plane is wrong, not the operator.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{ListParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use mltenant_operator::api::MLTenant;
use serde_json::json;

use crate::harness::*;

/// Create `manifest` as an admin and return the API server's rejection message.
async fn rejection(manifest: serde_json::Value) -> String {
    let api = Api::<MLTenant>::all(admin().await);
    let tenant: MLTenant = serde_json::from_value(manifest).expect("manifest matches the Rust type");
    match api.create(&PostParams::default(), &tenant).await {
        Ok(_) => panic!("the API server accepted an invalid MLTenant {}", tenant.name_any()),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[tokio::test]
async fn cel_rejects_duplicate_environments() {
    let message = rejection(json!({
        "apiVersion": "mltenant.io/v1alpha1", "kind": "MLTenant",
        "metadata": {"name": unique("cel-dup")},
        "spec": {"environments": [{"name": "dev"}, {"name": "dev"}]}
    }))
    .await;
    assert!(message.contains("environment names must be unique"), "{message}");
}

#[tokio::test]
async fn cel_rejects_namespace_longer_than_63_characters() {
    let name = format!("{}-{}", unique("cel-long"), "x".repeat(50));
    let message = rejection(json!({
        "apiVersion": "mltenant.io/v1alpha1", "kind": "MLTenant",
        "metadata": {"name": name},
        "spec": {"environments": [{"name": "staging"}]}
    }))
    .await;
    assert!(message.contains("exceeds 63 characters"), "{message}");
}

#[tokio::test]
async fn cel_rejects_unknown_environment_in_secrets() {
    let message = rejection(json!({
        "apiVersion": "mltenant.io/v1alpha1", "kind": "MLTenant",
        "metadata": {"name": unique("cel-env")},
        "spec": {
            "environments": [{"name": "dev"}],
            "secrets": [{"name": "ml-platform", "bundle": "b", "environments": ["production"]}]
        }
    }))
    .await;
    assert!(message.contains("secrets[].environments must only name environments declared"), "{message}");
}

/// The cleanup tests tell the operator's deletions from the garbage collector's
/// (`harness::cleanup`): that needs a collector that does delete.
#[tokio::test]
async fn precondition_the_garbage_collector_deletes_a_namespace_whose_owner_is_gone() {
    let client = admin().await;
    // No operator runs for this tenant, so it has no finalizer and deletes at once.
    let owner = create_tenant(&client, &tenant(&unique("gc-owner"), "nobody", &["dev"])).await;
    let ns_name = unique("gc-child");
    let mut ns = Namespace::default();
    ns.metadata.name = Some(ns_name.clone());
    ns.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
    assert!(get_namespace(&client, &ns_name).await.is_some());

    delete_tenant(&client, &owner.name_any()).await;
    wait_namespace_gone(&client, &ns_name).await;
}

#[tokio::test]
async fn operator_identity_gets_only_its_rbac() {
    let client = operator_identity().await;
    // Granted: listing namespaces.
    Api::<Namespace>::all(client.clone()).list(&ListParams::default().limit(1)).await.expect("namespaces are granted");
    // Not granted: anything outside its job, such as ConfigMaps or cluster-wide RBAC.
    let role: ClusterRole =
        serde_json::from_value(json!({"metadata": {"name": unique("escalation")}, "rules": []})).unwrap();
    match Api::<ClusterRole>::all(client.clone()).create(&PostParams::default(), &role).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
    match Api::<ConfigMap>::namespaced(client, "kube-system").list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}
