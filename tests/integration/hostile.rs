//! Hostile input and hostile neighbours, attacked as the people who can do it would: a bundle
//! author, someone allowed to update one object, patch one namespace or create Secrets in a
//! namespace of their own, a tenant author. Each test is named after the class of attack and
//! asserts what the attacker got (objects in the cluster, RBAC answers, the process's memory,
//! a replica's readiness), not only what the operator reports.

use std::collections::BTreeMap;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams, PropagationPolicy};
use kube::{Api, Client, ResourceExt};
use mltenant_operator::api::labels;
use mltenant_operator::api::{BundleScope, DeletionPolicy, EnvironmentSpec, MLTenant, SecretReader};
use mltenant_operator::crypto::Certificate;
use serde_json::json;

use crate::harness::*;

/// Wait until the operator has reconciled tenants `more` more times.
async fn wait_reconciles(op: &Operator, more: f64) {
    let from = op.successful_reconciles("tenant").await;
    wait_for(&format!("{more} more reconciles"), TIMEOUT, || async {
        (op.successful_reconciles("tenant").await >= from + more).then_some(())
    })
    .await;
}

/// Memory grows only with what a tenant of this installation claims. Anyone who may create a
/// Secret in a namespace of their own can give it the operator's labels (120 of them with large
/// annotations raised the resident memory by 25 MiB), and a team member may put large
/// annotations on the tenant's own Secret: neither may cost the operator memory.
#[tokio::test]
async fn labels_others_can_set_cost_no_memory() {
    let client = admin().await;
    let run = unique("run");
    let name = unique("squat");
    let b = unique("squat-b");
    let (op, _) = operator_with_bundle(&client, &run, RESYNC_1S, &name, &b).await;
    create_tenant(&client, &tenant_with_secret(&name, &run, &b)).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let dev = format!("{name}-dev");

    // Someone who may create and patch Secrets, in a namespace of their own and in the tenant's.
    let own = unique("squatter");
    create_namespace(&client, &own, &[]).await;
    let rule = PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".into()]),
        verbs: vec!["create".into(), "patch".into()],
        ..Default::default()
    };
    let attacker = client_as(&service_account_token(&client, "squatter", vec![rule]).await).await;

    let before = op.rss_kib().unwrap();
    let annotation = "x".repeat(180 * 1024);
    let forged = |ns: &str, i: usize| {
        let mut s = Secret::default();
        s.metadata.name = Some(format!("forged-{i}"));
        s.metadata.namespace = Some(ns.to_owned());
        s.metadata.labels = Some(labels::managed(&name, "dev"));
        s.metadata.annotations = Some(BTreeMap::from([("example.com/blob".to_string(), annotation.clone())]));
        s
    };
    for i in 0..120 {
        let ns = if i % 4 == 0 { &dev } else { &own };
        Api::<Secret>::namespaced(attacker.clone(), ns).create(&PostParams::default(), &forged(ns, i)).await.unwrap();
    }
    // Last, the tenant's own Secret: its watch event comes after every forged one, and it
    // makes the tenant reconcile, so once that happened the operator has seen them all.
    let reconciles = op.successful_reconciles("tenant").await;
    let path = format!("/api/v1/namespaces/{dev}/secrets/ml-platform");
    merge_patch(&attacker, &path, &json!({"metadata": {"annotations": {"example.com/blob": annotation}}}))
        .await
        .unwrap();
    wait_for("the operator to reconcile after the last event", TIMEOUT, || async {
        (op.successful_reconciles("tenant").await > reconciles).then_some(())
    })
    .await;
    let after = op.rss_kib().unwrap();
    let grown = after.saturating_sub(before);
    println!("21 MiB of labelled Secrets and annotations: RSS {before} KiB -> {after} KiB (+{grown} KiB)");
    assert!(grown < 8 * 1024, "the operator's memory grew by {grown} KiB");
    // And the tenant's Secret is still as the operator wrote it, annotation aside.
    let ours = get_secret(&client, &dev, "ml-platform").await.unwrap();
    assert_eq!(ours.data.unwrap()["PASSWORD"].0, b"s3cr3t");
}

/// Destructive decisions rest on facts only the operator writes. An identity allowed only to
/// `get` and `patch` one namespace gave it the operator's labels and annotations for a tenant
/// with `deletionPolicy: Delete` (managed-by, tenant, tenant-uid, origin: created), and the
/// operator deleted it with everything in it. Here the same forgery, on a namespace of no
/// environment and on one named like an environment the tenant adds and removes again, and
/// then the tenant deleted: only the namespace the operator created goes.
#[tokio::test]
async fn a_patch_of_a_namespace_never_becomes_its_deletion() {
    let client = admin().await;
    let run = unique("run");
    let op = Operator::start_with(&run, RESYNC_1S).await;
    let name = unique("deleter");
    let mut t = tenant(&name, &run, &["dev"]);
    t.spec.deletion_policy = Some(DeletionPolicy::Delete);
    let t = create_tenant(&client, &t).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let uid = t.uid().unwrap();

    // Two namespaces of someone else's, with something in them.
    let victim = unique("victim");
    let qa = format!("{name}-qa");
    for ns in [&victim, &qa] {
        create_namespace(&client, ns, &[]).await;
        let data = ConfigMap {
            metadata: ObjectMeta { name: Some("precious".into()), ..Default::default() },
            data: Some(BTreeMap::from([("k".into(), "v".into())])),
            ..Default::default()
        };
        Api::<ConfigMap>::namespaced(client.clone(), ns).create(&PostParams::default(), &data).await.unwrap();
    }
    // The attacker may only get and patch those two namespaces: never delete them.
    let rule = PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["namespaces".into()]),
        resource_names: Some(vec![victim.clone(), qa.clone()]),
        verbs: vec!["get".into(), "patch".into()],
        ..Default::default()
    };
    let attacker = client_as(&service_account_token(&client, "patcher", vec![rule]).await).await;
    let refused = refused_to_delete(&attacker, &victim).await;
    assert!(refused, "the attacker may delete the namespace itself");

    let forgery = |env: &str| {
        json!({"metadata": {
            "labels": {labels::MANAGED_BY_KEY: labels::MANAGED_BY, labels::TENANT: name, labels::ENVIRONMENT: env},
            "annotations": {labels::TENANT_UID: uid, labels::ORIGIN: labels::ORIGIN_CREATED},
        }})
    };
    merge_patch(&attacker, &format!("/api/v1/namespaces/{victim}"), &forgery("gone")).await.unwrap();
    merge_patch(&attacker, &format!("/api/v1/namespaces/{qa}"), &forgery("qa")).await.unwrap();
    // The tenant adds the environment whose namespace was forged, then drops it again.
    update_spec(&client, &name, |s| s.environments.push(EnvironmentSpec::named("qa"))).await;
    let message = wait_condition(&client, &name, "NamespacesReady", "False", Some("NamespaceConflict")).await;
    assert!(message.contains(&qa), "{message}");
    update_spec(&client, &name, |s| s.environments.retain(|e| e.name != "qa")).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    wait_reconciles(&op, 3.0).await;
    // Deleting the tenant deletes what it created, and only that.
    let created = format!("{name}-dev");
    delete_tenant(&client, &name).await;
    wait_tenant_gone(&client, &name).await;
    let dev_ns = get_namespace(&client, &created).await;
    assert!(dev_ns.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()), "its own namespace was not deleted");
    for ns in [&victim, &qa] {
        let kept = get_namespace(&client, ns).await.unwrap_or_else(|| panic!("{ns} was deleted"));
        assert!(kept.metadata.deletion_timestamp.is_none(), "{ns} is being deleted");
        let precious = Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt("precious").await.unwrap();
        assert!(precious.is_some(), "what was in {ns} is gone");
    }
}

/// Whether `attacker` is refused the deletion of namespace `name` (a server-side dry run).
async fn refused_to_delete(attacker: &Client, name: &str) -> bool {
    let dry_run = DeleteParams { dry_run: true, ..Default::default() };
    matches!(Api::<Namespace>::all(attacker.clone()).delete(name, &dry_run).await, Err(kube::Error::Api(s)) if s.code == 403)
}

/// Revocation is complete whatever the deletion propagation. Deleting a tenant with
/// `--cascade=orphan` (Argo CD's `PrunePropagationPolicy=orphan`) strips the children's
/// ownerReferences before the operator's finalizer runs: the Secret and the RoleBinding stayed
/// and the reader could still `get` the credentials. With orphaning the garbage collector
/// deletes nothing, so whatever goes, the operator deleted.
#[tokio::test]
async fn revocation_is_complete_whatever_the_deletion_propagation() {
    let client = admin().await;
    let run = unique("run");
    let op = Operator::start_with(&run, RESYNC_1S).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    for propagation in [PropagationPolicy::Orphan, PropagationPolicy::Foreground, PropagationPolicy::Background] {
        let name = unique("revoke");
        let b = format!("{name}-b");
        let data = sealed(&cert, BundleScope::Tenant, &name, "", &[("PASSWORD", b"s3cr3t")]);
        create_bundle(&client, &bundle(&b, BundleScope::Tenant, Some(&name), None, data)).await;
        create_tenant(&client, &tenant_with_secret(&name, &run, &b)).await;
        wait_condition(&client, &name, "Ready", "True", None).await;
        let dev = format!("{name}-dev");
        assert!(may(&client, ARGO, "get", &dev, Some("ml-platform")).await, "granted before");

        let params = DeleteParams { propagation_policy: Some(propagation.clone()), ..Default::default() };
        Api::<MLTenant>::all(client.clone()).delete(&name, &params).await.unwrap();
        wait_tenant_gone(&client, &name).await;
        assert!(get_secret(&client, &dev, "ml-platform").await.is_none(), "{propagation:?}: the Secret stayed");
        let grants = ListParams::default().labels(&format!("{}={name}", labels::TENANT));
        let bindings = Api::<RoleBinding>::namespaced(client.clone(), &dev).list(&grants).await.unwrap().items;
        let roles = Api::<Role>::namespaced(client.clone(), &dev).list(&grants).await.unwrap().items;
        assert!(bindings.is_empty() && roles.is_empty(), "{propagation:?}: grants stayed");
        assert!(!may(&client, ARGO, "get", &dev, Some("ml-platform")).await, "{propagation:?}: still readable");
        // Retain: the namespace itself stays, released.
        assert!(get_namespace(&client, &dev).await.is_some_and(|ns| ns.metadata.deletion_timestamp.is_none()));
    }
}

/// A tenant's namespace labels only ever tighten what a namespace has. A tenant adopting (with
/// its owner's consent) a namespace whose owner set `enforce: restricted` could set `baseline`;
/// `enforce-version: v1.0` loosens `restricted`; and once the tenant was deleted the owner's
/// label was gone altogether. The consent to adoption outlived the tenant, so a later tenant of
/// the same name took the namespace again without asking.
#[tokio::test]
async fn a_tenant_only_ever_tightens_pod_security() {
    let client = admin().await;
    let run = unique("run");
    let _op = Operator::start_with(&run, RESYNC_1S).await;
    let name = unique("psa");
    let owned = format!("{name}-dev");
    let enforce = "pod-security.kubernetes.io/enforce";
    create_namespace(&client, &owned, &[(enforce, "restricted"), (labels::ADOPTABLE_BY, &name)]).await;
    let loosening = |labels: &[(&str, &str)]| {
        let mut t = tenant(&name, &run, &["dev"]);
        t.spec.adopt_existing_namespaces = Some(true);
        t.spec.environments[0].labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        t
    };
    // An older policy version: refused by the API server.
    let pinned = loosening(&[(enforce, "restricted"), ("pod-security.kubernetes.io/enforce-version", "v1.0")]);
    match Api::<MLTenant>::all(client.clone()).create(&PostParams::default(), &pinned).await {
        Err(kube::Error::Api(status)) => assert!(status.message.contains("latest"), "{}", status.message),
        other => panic!("a pinned Pod Security version was accepted: {other:?}"),
    }
    create_tenant(&client, &loosening(&[(enforce, "baseline")])).await;
    let message = wait_condition(&client, &name, "NamespacesReady", "False", Some("PodSecurityKept")).await;
    assert!(message.contains(&format!("{enforce}=restricted")), "{message}");
    let adopted = wait_namespace(&client, &owned, "adopted", |ns| ns.labels().contains_key(labels::TENANT)).await;
    assert_eq!(adopted.labels().get(enforce).map(String::as_str), Some("restricted"), "loosened");
    assert!(!adopted.labels().contains_key(labels::ADOPTABLE_BY), "the consent outlives the adoption");
    // What the attacker wanted: a pod `restricted` refuses and `baseline` admits.
    assert_pod_security_refuses(&client, &owned).await;

    delete_tenant(&client, &name).await;
    wait_tenant_gone(&client, &name).await;
    let released = get_namespace(&client, &owned).await.unwrap();
    assert_eq!(released.labels().get(enforce).map(String::as_str), Some("restricted"), "the owner's level is gone");
    assert_pod_security_refuses(&client, &owned).await;
    // A later tenant of the same name finds no standing consent.
    create_tenant(&client, &loosening(&[(enforce, "restricted")])).await;
    let message = wait_condition(&client, &name, "NamespacesReady", "False", Some("NamespaceConflict")).await;
    assert!(message.contains("has not consented"), "{message}");
    delete_tenant(&client, &name).await;
}

/// A pod that runs as root with no seccomp profile: `baseline` admits it, `restricted` refuses.
async fn assert_pod_security_refuses(client: &Client, namespace: &str) {
    // The ServiceAccount admission looks for the pod's account first (no controller of the test
    // control plane creates `default`).
    let accounts = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), namespace);
    if accounts.get_opt("default").await.unwrap().is_none() {
        let account = serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
        accounts.create(&PostParams::default(), &account).await.unwrap();
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "runs-as-root"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    let dry_run = PostParams { dry_run: true, ..Default::default() };
    match Api::<Pod>::namespaced(client.clone(), namespace).create(&dry_run, &pod).await {
        Err(kube::Error::Api(status)) => {
            assert!(status.message.contains("violates PodSecurity \"restricted"), "{}", status.message)
        }
        other => panic!("Pod Security admitted a pod that violates restricted in {namespace}: {other:?}"),
    }
}

/// The inventory of what the operator created is the operator's alone: anyone else may write a
/// tenant's status (a condition cleared by hand), never add to or change that record (which
/// would aim the operator's deletions at objects of their choice).
#[tokio::test]
async fn only_the_operator_writes_the_inventory() {
    let client = admin().await;
    let run = unique("run");
    let _op = Operator::start(&run).await;
    let name = unique("inventory");
    create_tenant(&client, &tenant(&name, &run, &["dev"])).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let victim = unique("victim");
    create_namespace(&client, &victim, &[]).await;
    let uid = get_namespace(&client, &victim).await.unwrap().uid().unwrap();
    let path = format!("/apis/mltenant.io/v1alpha1/mltenants/{name}/status");
    let status = get_json(&client, &path).await.unwrap()["status"].clone();
    let mut owned = status["owned"].as_array().cloned().unwrap();
    assert_eq!(owned.len(), 1, "{owned:?}");
    owned.push(json!({"kind": "Namespace", "name": victim, "uid": uid}));
    match merge_patch(&client, &path, &json!({"status": {"owned": owned}})).await {
        Err(kube::Error::Api(refused)) => {
            assert!(refused.message.contains("only the operator writes status.owned"), "{}", refused.message)
        }
        other => panic!("the cluster admin rewrote the inventory: {other:?}"),
    }
    // The rest of the status is anyone's to write (the operator puts it back).
    merge_patch(&client, &path, &json!({"status": {"environmentsReady": "0/1"}})).await.unwrap();
    let namespaces = Api::<Namespace>::all(client.clone());
    assert!(namespaces.get_opt(&victim).await.unwrap().is_some());
}

/// Every field is bounded, labels included: Kubernetes bounds an object's labels only by its
/// size, and the operator keeps the labels of MLTenants and SealedBundles (selectors match
/// them). A bundle author's bundles of 2,400 labels each (800 KiB) raised the resident memory by
/// 42 MiB. The chart's tenant guard refuses more than 64, and of what it lets through the
/// memory stays small.
#[tokio::test]
async fn labels_on_tenants_and_bundles_are_bounded() {
    let client = admin().await;
    let run = unique("run");
    let op = Operator::start_with(&run, RESYNC_1S).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let author = client_as(
        &service_account_token(
            &client,
            "labeller",
            vec![rule("mltenant.io", &["mltenants", "sealedbundles"], &["create", "get"])],
        )
        .await,
    )
    .await;
    let prefix = format!("{}.example.com", "p".repeat(200));
    let labels_of = |i: usize, count: usize| -> BTreeMap<String, String> {
        let mut l: BTreeMap<String, String> =
            (0..count).map(|j| (format!("{prefix}/l{i:03}-{j:05}-{}", "n".repeat(40)), "v".repeat(63))).collect();
        l.insert(TEST_LABEL.into(), run.clone());
        l
    };
    let bundles = Api::<mltenant_operator::api::SealedBundle>::all(author.clone());
    let tenants = Api::<MLTenant>::all(author.clone());
    let value = sealed(&cert, BundleScope::Cluster, "", "", &[("K", b"v")]);
    let mut too_many = bundle(&unique("labelled-b"), BundleScope::Cluster, None, None, value.clone());
    too_many.metadata.labels = Some(labels_of(0, 2400));
    match bundles.create(&PostParams::default(), &too_many).await {
        Err(kube::Error::Api(refused)) => assert!(refused.message.contains("at most 64 labels"), "{}", refused.message),
        other => panic!("a bundle of 2,400 labels was stored: {:?}", other.map(|b| b.name_any())),
    }
    let mut t = tenant(&unique("labelled-t"), &run, &["dev"]);
    t.metadata.labels = Some(labels_of(0, 65));
    assert!(tenants.create(&PostParams::default(), &t).await.is_err(), "a tenant of 66 labels was stored");

    // As many as allowed, as long as allowed: 24 bundles and 16 tenants. The same round with
    // no labels first, so that what a first round costs whatever its labels (threads of the
    // decryption pool, connection buffers) is not counted against the labels.
    let mut before = 0;
    let mut sent = 0;
    for count in [0, 63] {
        before = op.rss_kib().unwrap();
        let (bundle_runs, tenant_runs) = (bundle_reconciles(&op).await, op.successful_reconciles("tenant").await);
        for i in 0..24 {
            let mut b = bundle(&unique("labelled-b"), BundleScope::Cluster, None, None, value.clone());
            b.metadata.labels = Some(labels_of(i, count));
            sent = serde_json::to_vec(&b.metadata.labels).unwrap().len();
            bundles.create(&PostParams::default(), &b).await.unwrap();
        }
        for i in 0..16 {
            let mut t = tenant(&unique("labelled-t"), &run, &["dev"]);
            t.metadata.labels = Some(labels_of(i, count));
            tenants.create(&PostParams::default(), &t).await.unwrap();
        }
        wait_for("the controllers to see every object", Duration::from_secs(120), || async {
            let seen = bundle_reconciles(&op).await >= bundle_runs + 24.0
                && op.successful_reconciles("tenant").await >= tenant_runs + 16.0;
            seen.then_some(())
        })
        .await;
    }
    let grown = op.rss_kib().unwrap().saturating_sub(before);
    println!("{} KiB of labels on each of 24 bundles and 16 tenants: RSS +{grown} KiB", sent / 1024);
    assert!(grown < 8 * 1024, "the operator's memory grew by {grown} KiB");
}

/// Reconciles of the bundle controller, whatever their outcome.
async fn bundle_reconciles(op: &Operator) -> f64 {
    op.metric("mltenant_reconcile_total", &[("controller", "bundle")]).await
}

/// Destructive decisions rest on facts only the operator writes, its record of them included.
/// A security review aimed a deletion by having a status writer (anyone granted
/// `mltenants/status`) remove an empty `status.owned`, so that the tenant looked older than the
/// record and the operator took over, by marks a namespace patcher had forged, a namespace it
/// never created. The tenant guard refuses the status writer; the namespace stays.
#[tokio::test]
async fn a_status_writer_cannot_aim_a_deletion() {
    use mltenant_operator::api::EnvironmentSpec;
    let client = admin().await;
    let run = unique("run");
    let _op = Operator::start_with(&run, RESYNC_1S).await;
    let name = unique("carry");
    let victim = unique("victim");
    create_namespace(&client, &victim, &[]).await;
    let precious: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "precious"}, "data": {"k": "v"}})).unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &victim).create(&PostParams::default(), &precious).await.unwrap();
    let author = client_as(
        &service_account_token(
            &client,
            "carrier",
            vec![
                rule("mltenant.io", &["mltenants"], &["create", "get", "update", "patch", "delete"]),
                rule("mltenant.io", &["mltenants/status"], &["get", "patch", "update"]),
            ],
        )
        .await,
    )
    .await;
    let mut r = rule("", &["namespaces"], &["get", "patch"]);
    r.resource_names = Some(vec![victim.clone()]);
    let patcher = client_as(&service_account_token(&client, "nspatcher", vec![r]).await).await;
    assert!(refused_to_delete(&patcher, &victim).await, "the patcher may delete the namespace itself");

    // A tenant whose spec only the run-time check refuses: its first status has an empty record.
    let mut t = tenant(&name, &run, &["dev"]);
    t.spec.environments[0] = EnvironmentSpec::named("dev").in_namespace(&victim);
    t.spec.deletion_policy = Some(DeletionPolicy::Delete);
    t.spec.secret_readers = Some(vec![SecretReader::new("a-b", "c"), SecretReader::new("a", "b-c")]);
    let created = Api::<MLTenant>::all(author.clone()).create(&PostParams::default(), &t).await.unwrap();
    let uid = created.uid().unwrap();
    wait_condition(&client, &name, "Ready", "False", Some("InvalidSpec")).await;
    let path = format!("/apis/mltenant.io/v1alpha1/mltenants/{name}/status");
    assert_eq!(get_json(&client, &path).await.unwrap()["status"]["owned"], json!([]), "an empty record");
    match merge_patch(&author, &path, &json!({"status": {"owned": null}})).await {
        Err(kube::Error::Api(refused)) => {
            assert!(refused.message.contains("only the operator writes status.owned"), "{}", refused.message)
        }
        other => panic!("a status writer removed the record: {other:?}"),
    }
    let forgery = json!({"metadata": {
        "labels": {labels::MANAGED_BY_KEY: labels::MANAGED_BY, labels::TENANT: name},
        "annotations": {labels::TENANT_UID: uid, labels::ORIGIN: labels::ORIGIN_CREATED},
    }});
    merge_patch(&patcher, &format!("/api/v1/namespaces/{victim}"), &forgery).await.unwrap();
    update_spec(&author, &name, |s| s.secret_readers = None).await;
    let message = wait_condition(&client, &name, "NamespacesReady", "False", Some("NamespaceConflict")).await;
    assert!(message.contains(&victim), "{message}");
    Api::<MLTenant>::all(author.clone()).delete(&name, &Default::default()).await.unwrap();
    wait_tenant_gone(&client, &name).await;
    let kept = get_namespace(&client, &victim).await.expect("the victim namespace was deleted");
    assert!(kept.metadata.deletion_timestamp.is_none(), "the victim namespace is being deleted");
    assert!(Api::<ConfigMap>::namespaced(client.clone(), &victim).get_opt("precious").await.unwrap().is_some());
}

/// Revocation is complete whatever the deletion's path: a tenant author who may update the
/// tenant removed the operator's finalizer, then deleted it with orphaning propagation, and the
/// reader kept `get` on the Secret. The tenant guard keeps the finalizer the operator's to
/// remove.
#[tokio::test]
async fn only_the_operator_removes_its_finalizer() {
    let client = admin().await;
    let run = unique("run");
    let name = unique("unfin");
    let b = format!("{name}-b");
    let (_op, _) = operator_with_bundle(&client, &run, RESYNC_1S, &name, &b).await;
    create_tenant(&client, &tenant_with_secret(&name, &run, &b)).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let dev = format!("{name}-dev");
    assert!(may(&client, ARGO, "get", &dev, Some("ml-platform")).await);
    let author = client_as(
        &service_account_token(
            &client,
            "unfinaliser",
            vec![rule("mltenant.io", &["mltenants"], &["get", "patch", "delete"])],
        )
        .await,
    )
    .await;
    let path = format!("/apis/mltenant.io/v1alpha1/mltenants/{name}");
    match merge_patch(&author, &path, &json!({"metadata": {"finalizers": null}})).await {
        Err(kube::Error::Api(refused)) => {
            assert!(refused.message.contains("only the operator removes its finalizer"), "{}", refused.message)
        }
        other => panic!("the tenant author removed the operator's finalizer: {other:?}"),
    }
    let orphan = DeleteParams { propagation_policy: Some(PropagationPolicy::Orphan), ..Default::default() };
    Api::<MLTenant>::all(author.clone()).delete(&name, &orphan).await.unwrap();
    wait_tenant_gone(&client, &name).await;
    assert!(!may(&client, ARGO, "get", &dev, Some("ml-platform")).await, "the reader keeps get");
    assert!(get_secret(&client, &dev, "ml-platform").await.is_none(), "the Secret stayed");
}

/// A tenant only ever tightens, also over time: a security review had a tenant adopt a
/// namespace whose owner enforced `baseline`, tighten it to `restricted` (the operator then owns
/// the label alone), then drop the level from the spec: the apply removed the label, looser
/// than the owner's. A level the spec no longer names stays.
#[tokio::test]
async fn a_level_the_spec_drops_stays() {
    let client = admin().await;
    let run = unique("run");
    let op = Operator::start_with(&run, RESYNC_1S).await;
    let name = unique("psa-drop");
    let owned = format!("{name}-dev");
    let enforce = "pod-security.kubernetes.io/enforce";
    create_namespace(&client, &owned, &[(enforce, "baseline"), (labels::ADOPTABLE_BY, &name)]).await;
    let mut t = tenant(&name, &run, &["dev"]);
    t.spec.adopt_existing_namespaces = Some(true);
    t.spec.environments[0].labels = Some(BTreeMap::from([(enforce.to_string(), "restricted".to_string())]));
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    wait_namespace(&client, &owned, "tightened", |ns| {
        ns.labels().get(enforce).map(String::as_str) == Some("restricted")
    })
    .await;
    update_spec(&client, &name, |s| s.environments[0].labels = None).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    wait_reconciles(&op, 2.0).await;
    let ns = get_namespace(&client, &owned).await.unwrap();
    assert_eq!(ns.labels().get(enforce).map(String::as_str), Some("restricted"), "{:?}", ns.labels());
    assert_pod_security_refuses(&client, &owned).await;
    delete_tenant(&client, &name).await;
    wait_tenant_gone(&client, &name).await;
    let released = get_namespace(&client, &owned).await.unwrap();
    assert_eq!(released.labels().get(enforce).map(String::as_str), Some("baseline"), "the owner's level, back");
}
