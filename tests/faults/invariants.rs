//! The fleet's invariants themselves: a check that cannot see a violation proves nothing.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use mltenant_operator::api::labels::FIELD_MANAGER;
use mltenant_operator::crypto::Certificate;

use crate::fleet::Fleet;
use crate::harness::*;

/// A Secret and a Role written with the operator's field manager and no label at all, in a
/// namespace it does not manage (as a bug writing outside the managed namespaces would leave
/// them): the snapshot, which lists tenants' children by label, still sees them.
#[tokio::test]
async fn an_unlabelled_object_the_operator_wrote_is_unexpected() {
    let client = admin().await;
    let run = unique("run");
    let op = Operator::start(&run).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).expect("the operator serves its certificate");
    let fleet = Fleet::new(&client, &run, cert).await;
    let ns = unique("stray");
    create_namespace(&client, &ns, &[]).await;
    let meta = ObjectMeta { name: Some("stray".into()), namespace: Some(ns.clone()), ..Default::default() };
    let (secrets, roles) =
        (Api::<Secret>::namespaced(client.clone(), &ns), Api::<Role>::namespaced(client.clone(), &ns));
    let as_operator = PatchParams::apply(FIELD_MANAGER);
    // Each with a field of its own: an apply that sets nothing leaves no managedFields entry.
    let data = [("token".to_owned(), ByteString(b"stray".to_vec()))].into();
    let secret = Secret { metadata: meta.clone(), data: Some(data), ..Default::default() };
    secrets.patch("stray", &as_operator, &Patch::Apply(&secret)).await.expect("write the stray Secret");
    let rule = PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".into()]),
        verbs: vec!["get".into()],
        ..Default::default()
    };
    let role = Role { metadata: meta, rules: Some(vec![rule]) };
    roles.patch("stray", &as_operator, &Patch::Apply(&role)).await.expect("write the stray Role");

    let findings = fleet.check(&fleet.snapshot().await.expect("a snapshot"));
    let flagged = |what: &str| findings.unexpected.iter().any(|f| f.starts_with(&format!("{what} {ns}/stray ")));
    let (secret_flagged, role_flagged) = (flagged("Secret"), flagged("Role"));
    // Gone before any assertion: the next test's fleet must not find them.
    secrets.delete("stray", &DeleteParams::default()).await.expect("delete the stray Secret");
    roles.delete("stray", &DeleteParams::default()).await.expect("delete the stray Role");
    assert!(secret_flagged && role_flagged, "strays not both found: {}", findings.summary());
}
