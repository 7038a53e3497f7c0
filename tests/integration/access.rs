//! secretReaders on the real API server's RBAC: SubjectAccessReviews as the reader's
//! ServiceAccount show `get` on exactly the granted Secrets in the tenant's namespaces, and
//! nothing else.

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use mltenant_operator::api::labels;
use mltenant_operator::api::{BundleScope, SecretReader, SecretSpec};
use mltenant_operator::crypto::Certificate;

use crate::harness::*;

#[tokio::test]
async fn readers_may_get_exactly_the_granted_secrets() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let name = unique("readers");
    let other = unique("neighbour");
    for (b, t) in [(format!("{name}-b"), &name), (format!("{other}-b"), &other)] {
        let data = sealed(&cert, BundleScope::Tenant, t, "", &[("K", b"v")]);
        create_bundle(&client, &bundle(&b, BundleScope::Tenant, Some(t), None, data)).await;
    }
    let argo = ("argowf", "argo-workflow");

    let mut t = tenant(&name, &op.run_id, &["dev", "production"]);
    t.spec.secrets = Some(vec![
        SecretSpec::new("ml-platform", format!("{name}-b")),
        SecretSpec::new("ghcr", format!("{name}-b")).environments(&["production"]),
    ]);
    t.spec.secret_readers =
        Some(vec![SecretReader::new(argo.0, argo.1), SecretReader::new("argowf", "pull-only").secrets(&["ghcr"])]);
    create_tenant(&client, &t).await;
    // A neighbouring tenant with its own Secret and no readers.
    let mut n = tenant(&other, &op.run_id, &["dev"]);
    n.spec.secrets = Some(vec![SecretSpec::new("ml-platform", format!("{other}-b"))]);
    create_tenant(&client, &n).await;
    wait_condition(&client, &name, "AccessGranted", "True", None).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    wait_condition(&client, &other, "Ready", "True", None).await;

    let (dev, prod) = (format!("{name}-dev"), name.clone());
    assert!(may(&client, argo, "get", &dev, Some("ml-platform")).await);
    assert!(may(&client, argo, "get", &prod, Some("ml-platform")).await);
    assert!(may(&client, argo, "get", &prod, Some("ghcr")).await);
    assert!(!may(&client, argo, "get", &dev, Some("ghcr")).await, "ghcr is not distributed to dev");
    assert!(!may(&client, argo, "get", &dev, Some("some-other-secret")).await);
    assert!(!may(&client, argo, "list", &dev, None).await);
    assert!(!may(&client, argo, "watch", &dev, None).await);
    assert!(
        !may(&client, argo, "get", &format!("{other}-dev"), Some("ml-platform")).await,
        "another tenant's namespace"
    );
    assert!(may(&client, ("argowf", "pull-only"), "get", &prod, Some("ghcr")).await);
    assert!(!may(&client, ("argowf", "pull-only"), "get", &prod, Some("ml-platform")).await);

    // A Role deleted by hand comes back.
    let roles = Api::<Role>::namespaced(client.clone(), &dev);
    roles.delete("mltenant-reader-argowf-argo-workflow", &DeleteParams::default()).await.unwrap();
    wait_for("the reader's Role to be restored", TIMEOUT, || async {
        roles.get_opt("mltenant-reader-argowf-argo-workflow").await.unwrap().map(|_| ())
    })
    .await;
    assert!(may(&client, argo, "get", &dev, Some("ml-platform")).await);

    // Reader removed from spec: access gone.
    update_spec(&client, &name, |s| {
        s.secret_readers = Some(vec![SecretReader::new("argowf", "pull-only").secrets(&["ghcr"])])
    })
    .await;
    wait_for("argo-workflow's access to be revoked", TIMEOUT, || async {
        (!may(&client, argo, "get", &dev, Some("ml-platform")).await
            && !may(&client, argo, "get", &prod, Some("ghcr")).await)
            .then_some(())
    })
    .await;
    assert!(
        may(&client, ("argowf", "pull-only"), "get", &prod, Some("ghcr")).await,
        "the other reader keeps its grant"
    );

    // Tenant deleted: every grant goes. Roles and RoleBindings carry an ownerReference, so the
    // garbage collector would remove them once the tenant is gone: held, the tenant stays, and
    // the operator has to revoke them.
    delete_held(&client, &name).await;
    assert!(!may(&client, ("argowf", "pull-only"), "get", &prod, Some("ghcr")).await);
    for ns in [&dev, &prod] {
        let lp = ListParams::default().labels(&format!("{}={name}", labels::TENANT));
        assert!(Api::<Role>::namespaced(client.clone(), ns).list(&lp).await.unwrap().items.is_empty(), "Roles in {ns}");
        let bindings = Api::<RoleBinding>::namespaced(client.clone(), ns).list(&lp).await.unwrap();
        assert!(bindings.items.is_empty(), "RoleBindings in {ns}");
    }
    release(&client, &name).await;
}
