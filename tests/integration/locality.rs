//! Failures stay local: a namespace and a Secret the API server refuses (here by an admission
//! policy aimed at them) are reported on those objects, while the tenant's other environment,
//! Secret, reader grant and status are reconciled; once the API server accepts them, the tenant
//! converges without any change to it.

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use mltenant_operator::api::labels;
use mltenant_operator::api::{BundleScope, EnvironmentSpec, SecretReader, SecretSpec};
use mltenant_operator::crypto::Certificate;
use serde_json::json;

use crate::harness::*;

/// An admission policy refusing the operator's writes of objects whose name starts with `prefix`.
async fn refuse_names(client: &Client, prefix: &str) {
    let user = "system:serviceaccount:mltenant-system:mltenant-operator";
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": prefix},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                "resources": ["namespaces", "secrets"],
            }]},
            "matchConditions": [{"name": "operator", "expression": format!("request.userInfo.username == '{user}'")}],
            "validations": [{"expression": format!("!request.name.startsWith('{prefix}')"), "message": "refused by the test"}],
        },
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": prefix},
        "spec": {"policyName": prefix, "validationActions": ["Deny"]},
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(client.clone()).create(&PostParams::default(), &policy).await.unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    // Enforced once the API server has loaded it: probe with a dry run as the operator.
    let operator = operator_identity().await;
    let mut probe = Namespace::default();
    probe.metadata.name = Some(format!("{prefix}-probe"));
    let dry = PostParams { dry_run: true, ..Default::default() };
    wait_for("the test's admission policy to be enforced", TIMEOUT, || async {
        let answer = Api::<Namespace>::all(operator.clone()).create(&dry, &probe).await;
        matches!(answer, Err(kube::Error::Api(ref s)) if s.message.contains("refused by the test")).then_some(())
    })
    .await;
}

async fn stop_refusing(client: &Client, prefix: &str) {
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone()).delete(prefix, &Default::default()).await.unwrap();
    Api::<ValidatingAdmissionPolicy>::all(client.clone()).delete(prefix, &Default::default()).await.unwrap();
}

#[tokio::test]
async fn a_refused_namespace_and_secret_leave_the_rest_of_the_tenant_converged() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let name = unique("local");
    let prefix = unique("refused");
    refuse_names(&client, &prefix).await;
    let b = unique("local-b");
    let data = sealed(&cert, BundleScope::Tenant, &name, "", &[("K", b"v")]);
    create_bundle(&client, &bundle(&b, BundleScope::Tenant, Some(&name), None, data)).await;
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    let refused_ns = format!("{prefix}-ns");
    t.spec.environments.push(EnvironmentSpec::named("blocked").in_namespace(&refused_ns));
    // The refused Secret comes first: the one after it must still be written.
    t.spec.secrets = Some(vec![SecretSpec::new(format!("{prefix}-secret"), &b), SecretSpec::new("good", &b)]);
    t.spec.secret_readers = Some(vec![SecretReader::new("argowf", "argo-workflow")]);
    create_tenant(&client, &t).await;

    let dev = format!("{name}-dev");
    let message = wait_condition(&client, &name, "NamespacesReady", "False", Some("NamespaceRejected")).await;
    assert!(message.contains(&refused_ns) && message.contains("refused by the test"), "{message}");
    let message = wait_condition(&client, &name, "SecretsSynced", "False", Some("SecretRejected")).await;
    assert!(message.contains(&format!("{dev}/{prefix}-secret")), "{message}");
    assert!(get_namespace(&client, &refused_ns).await.is_none());
    assert!(get_secret(&client, &dev, &format!("{prefix}-secret")).await.is_none());
    let good = get_secret(&client, &dev, "good").await.expect("the Secret after the refused one was written");
    assert_eq!(good.data.unwrap()["K"].0, b"v");
    let roles = Api::<Role>::namespaced(client.clone(), &dev)
        .list(&ListParams::default().labels(&format!("{}={name}", labels::TENANT)))
        .await
        .unwrap();
    assert_eq!(roles.items[0].rules.as_ref().unwrap()[0].resource_names.as_deref(), Some(&["good".to_string()][..]));
    assert!(!events_for(&client, &name, "WriteRejected").await.is_empty());
    for kind in ["Namespace", "Secret"] {
        let labels = [("tenant", name.as_str()), ("kind", kind)];
        assert!(op.metric("mltenant_rejected_writes_total", &labels).await >= 1.0, "no {kind} rejection counted");
    }

    // The API server accepts them again: retried with backoff, the tenant converges.
    stop_refusing(&client, &prefix).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    for namespace in [&dev, &refused_ns] {
        assert!(get_secret(&client, namespace, &format!("{prefix}-secret")).await.is_some(), "{namespace}");
    }
}
