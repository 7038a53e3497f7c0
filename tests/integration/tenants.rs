//! The MLTenant reconciler on the real control plane: namespaces per environment, conflicts,
//! drift, removal and deletion policies, restarts, and a quiet steady state.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use mltenant_operator::api::labels;
use mltenant_operator::api::{BundleScope, DeletionPolicy, EnvironmentSpec, MLTenant, OwnedKind, SecretSpec};
use serde_json::json;

use crate::harness::*;

fn has_our_labels(ns: &Namespace, tenant: &str, env: &str) -> bool {
    let l = ns.labels();
    l.get(labels::MANAGED_BY_KEY).map(String::as_str) == Some(labels::MANAGED_BY)
        && l.get(labels::TENANT).map(String::as_str) == Some(tenant)
        && l.get(labels::ENVIRONMENT).map(String::as_str) == Some(env)
}

fn released(ns: &Namespace, tenant: &str) -> bool {
    !ns.labels().contains_key(labels::TENANT)
        && !ns.labels().contains_key(labels::MANAGED_BY_KEY)
        && ns.owner_references().is_empty()
        && !ns.annotations().contains_key(labels::TENANT_UID)
        && ns.annotations().get(labels::RELEASED_FROM).map(String::as_str) == Some(tenant)
}

/// Namespaces currently labelled for `tenant`.
async fn labelled_namespaces(client: &Client, tenant: &str) -> BTreeSet<String> {
    let lp = ListParams::default().labels(&format!("{}={tenant}", labels::TENANT));
    Api::<Namespace>::all(client.clone()).list(&lp).await.unwrap().items.iter().map(|n| n.name_any()).collect()
}

async fn t_uid(client: &Client, name: &str) -> Option<String> {
    Api::<MLTenant>::all(client.clone()).get(name).await.unwrap().uid()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Start an operator for a fresh run id and create a tenant with `envs` for it.
async fn tenant_with_operator(
    prefix: &str,
    envs: &[&str],
    edit: impl FnOnce(&mut MLTenant),
) -> (Client, Operator, MLTenant) {
    tenant_with_operator_args(prefix, envs, &[], edit).await
}

/// Like `tenant_with_operator`, with extra operator arguments.
async fn tenant_with_operator_args(
    prefix: &str,
    envs: &[&str],
    args: &[&str],
    edit: impl FnOnce(&mut MLTenant),
) -> (Client, Operator, MLTenant) {
    let client = admin().await;
    let op = Operator::start_with(&unique("run"), args).await;
    let mut t = tenant(&unique(prefix), &op.run_id, envs);
    edit(&mut t);
    let created = create_tenant(&client, &t).await;
    (client, op, created)
}

#[tokio::test]
async fn three_environments_become_ready_with_labelled_namespaces() {
    let (client, op, t) = tenant_with_operator("fin", &["dev", "staging", "production"], |_| {}).await;
    let name = t.name_any();
    wait_condition(&client, &name, "Ready", "True", Some("Ready")).await;
    assert_eq!(condition(&client, &name, "NamespacesReady").await.unwrap().0, "True");

    let expected =
        [(format!("{name}-dev"), "dev"), (format!("{name}-staging"), "staging"), (name.clone(), "production")];
    for (ns_name, env) in &expected {
        let ns = get_namespace(&client, ns_name).await.unwrap_or_else(|| panic!("namespace {ns_name} missing"));
        assert!(has_our_labels(&ns, &name, env), "labels of {ns_name}: {:?}", ns.labels());
        assert_eq!(ns.annotations().get(labels::ORIGIN).map(String::as_str), Some("created"));
        assert_eq!(ns.annotations().get(labels::TENANT_UID), t.uid().as_ref());
        // Retain (the default): no ownerReference, so the garbage collector can never take it.
        assert!(ns.owner_references().is_empty(), "{:?}", ns.owner_references());
    }
    let current = Api::<MLTenant>::all(client.clone()).get(&name).await.unwrap();
    let status = current.status.unwrap();
    assert_eq!(status.environments_ready.as_deref(), Some("3/3"));
    let ready: Vec<(String, bool)> = status.environments.iter().map(|e| (e.namespace.clone(), e.ready)).collect();
    assert_eq!(ready, expected.iter().map(|(n, _)| (n.clone(), true)).collect::<Vec<_>>());
    // The write budget of a first converge: one write per object, the finalizer, one status
    // write putting on record what is about to be created (the inventory, before any create is
    // sent) and one status write at the end (the creations are reported by the status, not by an
    // Event each).
    assert_eq!(op.writes().await, 6.0, "writes for 3 namespaces, the finalizer, the record and the status");
    let owned = status.owned.expect("an inventory");
    assert_eq!(owned.len(), 3, "{owned:?}");
    for (ns_name, _) in &expected {
        let recorded = owned.iter().find(|o| o.kind == OwnedKind::Namespace && o.name == *ns_name).expect("on record");
        let live = get_namespace(&client, ns_name).await.unwrap();
        assert_eq!((recorded.uid.as_ref(), recorded.adopted), (live.uid().as_ref(), false), "{ns_name}");
    }
}

#[tokio::test]
async fn adding_an_environment_creates_its_namespace() {
    let (client, _op, t) = tenant_with_operator("add", &["dev"], |_| {}).await;
    let name = t.name_any();
    wait_condition(&client, &name, "Ready", "True", None).await;
    update_spec(&client, &name, |s| s.environments.push(EnvironmentSpec::named("qa"))).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let qa = format!("{name}-qa");
    assert!(has_our_labels(&get_namespace(&client, &qa).await.unwrap(), &name, "qa"));
    assert_eq!(labelled_namespaces(&client, &name).await, set(&[&format!("{name}-dev"), &qa]));
}

#[tokio::test]
async fn removing_an_environment_under_retain_releases_its_namespace() {
    // Resyncs every second, so that the operator provably looks at the tenant again below.
    let (client, op, t) = tenant_with_operator_args("rm-retain", &["dev", "staging"], RESYNC_1S, |_| {}).await;
    let name = t.name_any();
    wait_condition(&client, &name, "Ready", "True", None).await;
    update_spec(&client, &name, |s| s.environments.retain(|e| e.name != "staging")).await;
    let staging = format!("{name}-staging");
    wait_namespace(&client, &staging, "released", |ns| released(ns, &name)).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    wait_event_subjects(&client, &name, "NamespaceReleased", &[&staging]).await;
    // Released means kept. The garbage collector has nothing to act on (`released` checked
    // that no ownerReference is left, and the tenant exists); what could still delete it is
    // the operator, so let it reconcile the tenant again (+2: the reconcile in flight may have
    // started before the release) and look.
    let reconciles = op.successful_reconciles("tenant").await;
    wait_for("two more reconciles of the tenant", TIMEOUT, || async {
        (op.successful_reconciles("tenant").await >= reconciles + 2.0).then_some(())
    })
    .await;
    let ns = get_namespace(&client, &staging).await.expect("the released namespace was deleted");
    assert!(ns.metadata.deletion_timestamp.is_none() && released(&ns, &name), "{:?}", ns.metadata);
    assert_eq!(labelled_namespaces(&client, &name).await, set(&[&format!("{name}-dev")]));
}

#[tokio::test]
async fn removing_an_environment_under_delete_deletes_its_namespace() {
    let (client, _op, t) = tenant_with_operator("rm-delete", &["dev", "staging"], |t| {
        t.spec.deletion_policy = Some(DeletionPolicy::Delete)
    })
    .await;
    let name = t.name_any();
    wait_condition(&client, &name, "Ready", "True", None).await;
    // Under Delete, a namespace the tenant created is owned by it.
    let owner = get_namespace(&client, &format!("{name}-staging")).await.unwrap().owner_references()[0].clone();
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("MLTenant", name.as_str(), Some(true)));
    assert_eq!(Some(&owner.uid), t.uid().as_ref());
    update_spec(&client, &name, |s| s.environments.retain(|e| e.name != "staging")).await;
    wait_namespace_gone(&client, &format!("{name}-staging")).await;
    assert!(get_namespace(&client, &format!("{name}-dev")).await.is_some());
    // The tenant exists, so its ownerReference kept the garbage collector away: this was the
    // operator, and it says so.
    let staging = format!("{name}-staging");
    assert_eq!(wait_event_subjects(&client, &name, "NamespaceDeleted", &[&staging]).await, set(&[&staging]));
}

#[tokio::test]
async fn adoption_needs_consent_from_both_sides_and_an_adopted_namespace_is_never_deleted() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let name = unique("adopt");
    let dev = format!("{name}-dev");
    create_namespace(&client, &dev, &[("team", "hand-made")]).await;
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    t.spec.deletion_policy = Some(DeletionPolicy::Delete);
    create_tenant(&client, &t).await;

    let message = wait_condition(&client, &name, "Ready", "False", Some("NamespaceConflict")).await;
    assert!(message.contains(&dev) && message.contains("adoptExistingNamespaces"), "{message}");
    assert!(message.contains(&format!("{}={name}", labels::ADOPTABLE_BY)), "{message}");
    assert_eq!(condition(&client, &name, "NamespacesReady").await.unwrap().1, "NamespaceConflict");
    assert!(!events_for(&client, &name, "NamespaceConflict").await.is_empty());

    // The tenant's side alone is not enough: the namespace's owner has not consented.
    update_spec(&client, &name, |s| s.adopt_existing_namespaces = Some(true)).await;
    let message = wait_condition(&client, &name, "Ready", "False", Some("NamespaceConflict")).await;
    assert!(message.contains("has not consented"), "{message}");
    // Consent for another tenant is no consent (checked after the operator looked again).
    let reconciles = op.metric("mltenant_reconcile_total", &[("controller", "tenant")]).await;
    label_namespace(&client, &dev, labels::ADOPTABLE_BY, "someone-else").await;
    wait_for("the operator to look at the tenant again", TIMEOUT, || async {
        // +2: the one in flight when the label was set may have read the namespace before it.
        (op.metric("mltenant_reconcile_total", &[("controller", "tenant")]).await >= reconciles + 2.0).then_some(())
    })
    .await;
    let message = wait_condition(&client, &name, "Ready", "False", Some("NamespaceConflict")).await;
    assert!(message.contains("has not consented"), "{message}");
    assert!(
        !get_namespace(&client, &dev).await.unwrap().labels().contains_key(labels::TENANT),
        "untouched while in conflict"
    );

    label_namespace(&client, &dev, labels::ADOPTABLE_BY, &name).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let ns = get_namespace(&client, &dev).await.unwrap();
    assert!(has_our_labels(&ns, &name, "dev"));
    assert_eq!(ns.labels().get("team").map(String::as_str), Some("hand-made"), "foreign labels are kept");
    assert_eq!(ns.annotations().get(labels::ORIGIN).map(String::as_str), Some("adopted"));

    // deletionPolicy Delete only deletes what the tenant created: an adopted namespace is
    // released (by the operator: the garbage collector never releases anything).
    delete_tenant(&client, &name).await;
    wait_tenant_gone(&client, &name).await;
    let ns = wait_namespace(&client, &dev, "released", |ns| released(ns, &name)).await;
    assert_eq!(ns.labels().get("team").map(String::as_str), Some("hand-made"));
    wait_event_subjects(&client, &name, "NamespaceReleased", &[&dev]).await;
    assert!(event_subjects(&client, &name, "NamespaceDeleted").await.is_empty());
}

async fn label_namespace(client: &Client, name: &str, key: &str, value: &str) {
    let patch = json!({"metadata": {"labels": {key: value}}});
    Api::<Namespace>::all(client.clone()).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[tokio::test]
async fn two_tenants_competing_for_one_namespace_first_keeps_it() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let shared = unique("shared");
    let with_shared_ns = |name: &str| {
        let mut t = tenant(name, &op.run_id, &["dev"]);
        t.spec.environments[0].namespace = Some(shared.clone());
        t.spec.adopt_existing_namespaces = Some(true); // adoption never takes another tenant's namespace
        t
    };
    let first = unique("first");
    let second = unique("second");
    create_tenant(&client, &with_shared_ns(&first)).await;
    wait_condition(&client, &first, "Ready", "True", None).await;
    create_tenant(&client, &with_shared_ns(&second)).await;

    let message = wait_condition(&client, &second, "Ready", "False", Some("NamespaceConflict")).await;
    assert!(message.contains(&format!("namespace {shared} belongs to MLTenant {first}")), "{message}");
    let ns = get_namespace(&client, &shared).await.unwrap();
    assert!(has_our_labels(&ns, &first, "dev"));
    let first_uid = Api::<MLTenant>::all(client.clone()).get(&first).await.unwrap().uid();
    assert_eq!(ns.annotations().get(labels::TENANT_UID), first_uid.as_ref());
    assert_eq!(condition(&client, &first, "Ready").await.unwrap().0, "True");
}

#[tokio::test]
async fn a_managed_namespace_deleted_by_hand_is_recreated() {
    let (client, _op, t) = tenant_with_operator("restore", &["dev"], |_| {}).await;
    let name = t.name_any();
    wait_condition(&client, &name, "Ready", "True", None).await;
    let dev = format!("{name}-dev");
    let before = get_namespace(&client, &dev).await.unwrap().uid();
    Api::<Namespace>::all(client.clone()).delete(&dev, &DeleteParams::default()).await.unwrap();

    let again =
        wait_namespace(&client, &dev, "recreated", |ns| ns.uid() != before && has_our_labels(ns, &name, "dev")).await;
    assert_eq!(again.annotations().get(labels::ORIGIN).map(String::as_str), Some("created"));
    wait_condition(&client, &name, "Ready", "True", None).await;
    wait_event_subjects(&client, &name, "NamespaceRestored", &[&dev]).await;
    assert_eq!(events_for(&client, &name, "NamespaceRestored").await.len(), 1, "one NamespaceRestored event");
}

#[tokio::test]
async fn stripped_labels_are_restored() {
    let (client, _op, t) = tenant_with_operator("strip", &["dev"], |_| {}).await;
    let name = t.name_any();
    wait_condition(&client, &name, "Ready", "True", None).await;
    let dev = format!("{name}-dev");
    let strip = json!({"metadata": {"labels": {
        labels::MANAGED_BY_KEY: null, labels::TENANT: null, labels::ENVIRONMENT: null
    }}});
    // Look at the patch's own answer: the operator may restore the labels before a later read.
    let stripped = Api::<Namespace>::all(client.clone())
        .patch(&dev, &PatchParams::default(), &Patch::Merge(&strip))
        .await
        .unwrap();
    assert!(!stripped.labels().contains_key(labels::TENANT));

    wait_namespace(&client, &dev, "labels restored", |ns| has_our_labels(ns, &name, "dev")).await;
    wait_for("a NamespaceRestored event", TIMEOUT, || async {
        (!events_for(&client, &name, "NamespaceRestored").await.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_a_tenant_under_retain_keeps_its_namespaces() {
    let (client, _op, t) = tenant_with_operator("del-retain", &["dev", "production"], |_| {}).await;
    let name = t.name_any();
    wait_condition(&client, &name, "Ready", "True", None).await;
    let marker = gc_marker(&client, &t).await;
    delete_tenant(&client, &name).await;
    wait_tenant_gone(&client, &name).await;
    // Once the garbage collector has taken the marker it has acted on the tenant's dependents:
    // a namespace with an ownerReference left behind would be going too.
    wait_collected(&client, &marker).await;
    for ns_name in [format!("{name}-dev"), name.clone()] {
        let ns = get_namespace(&client, &ns_name).await.unwrap_or_else(|| panic!("{ns_name} was deleted under Retain"));
        assert!(ns.metadata.deletion_timestamp.is_none(), "{ns_name} is terminating under Retain");
        assert!(released(&ns, &name), "{ns_name} not released: {:?}", ns.metadata);
    }
    let dev = format!("{name}-dev");
    assert_eq!(wait_event_subjects(&client, &name, "NamespaceReleased", &[&dev, &name]).await, set(&[&dev, &name]));
}

#[tokio::test]
async fn deleting_a_tenant_under_delete_removes_its_namespaces() {
    let (client, _op, t) = tenant_with_operator("del-delete", &["dev", "production"], |t| {
        t.spec.deletion_policy = Some(DeletionPolicy::Delete)
    })
    .await;
    let name = t.name_any();
    wait_condition(&client, &name, "Ready", "True", None).await;
    // Both namespaces carry an ownerReference to the tenant, so the garbage collector would
    // delete them once the tenant is gone: held, the tenant stays, and the operator has to.
    delete_held(&client, &name).await;
    for ns in [format!("{name}-dev"), name.clone()] {
        assert!(get_namespace(&client, &ns).await.is_none(), "{ns} still exists after the operator's cleanup");
    }
    let dev = format!("{name}-dev");
    assert_eq!(wait_event_subjects(&client, &name, "NamespaceDeleted", &[&dev, &name]).await, set(&[&dev, &name]));
    release(&client, &name).await;
}

#[tokio::test]
async fn operator_restarted_mid_way_converges_without_duplicates_or_losses() {
    let client = admin().await;
    let run = unique("run");
    let op = Operator::start(&run).await;
    let name = unique("restart");
    create_tenant(&client, &tenant(&name, &run, &["dev", "staging", "production"])).await;
    // Killed once staging is there (the environment the spec drops next), whether or not the
    // converge got further.
    let staging = format!("{name}-staging");
    wait_for("the staging namespace", TIMEOUT, || async {
        labelled_namespaces(&client, &name).await.contains(&staging).then_some(())
    })
    .await;
    op.kill().await;

    // While no operator runs, the spec changes: staging goes, qa comes.
    update_spec(&client, &name, |s| {
        s.environments.retain(|e| e.name != "staging");
        s.environments.push(EnvironmentSpec::named("qa"));
    })
    .await;
    let _op = Operator::start(&run).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let expected = set(&[&format!("{name}-dev"), &format!("{name}-qa"), &name]);
    wait_for("exactly the declared namespaces", TIMEOUT, || async {
        (labelled_namespaces(&client, &name).await == expected).then_some(())
    })
    .await;
    for ns in &expected {
        let ns = get_namespace(&client, ns).await.unwrap();
        assert_eq!(ns.annotations().get(labels::TENANT_UID), t_uid(&client, &name).await.as_ref());
    }
    let staging = get_namespace(&client, &staging).await.expect("staging was created: it is kept, released");
    assert!(released(&staging, &name), "{:?}", staging.metadata);
}

#[tokio::test]
async fn resync_of_a_converged_tenant_makes_no_writes() {
    let client = admin().await;
    let op = Operator::start_with(&unique("run"), RESYNC_1S).await;
    let name = unique("quiet");
    create_tenant(&client, &tenant(&name, &op.run_id, &["dev", "staging", "production"])).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    assert_resyncs_write_nothing(&op, "tenant", 3).await;

    // And the counter still counts on this operator: a change is written.
    let writes = op.writes().await;
    update_spec(&client, &name, |s| s.environments.retain(|e| e.name != "staging")).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    assert!(op.writes().await > writes, "releasing a namespace was not counted as a write");
}

#[tokio::test]
async fn resync_of_converged_secrets_makes_no_writes_and_no_decryption() {
    let client = admin().await;
    let op = Operator::start_with(&unique("run"), &["--resync-period", "1s"]).await;
    let cert = mltenant_operator::crypto::Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let name = unique("quiet-secrets");
    let data = sealed(&cert, BundleScope::Tenant, &name, "", &[("K", b"v")]);
    create_bundle(&client, &bundle(&name, BundleScope::Tenant, Some(&name), None, data)).await;
    let mut t = tenant(&name, &op.run_id, &["dev", "staging", "production"]);
    t.spec.secrets = Some(vec![SecretSpec::new("ml-platform", &name)]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;

    wait_at_rest(&op, "tenant").await;
    let decryptions = op.metric("mltenant_decryptions_total", &[]).await;
    assert!(decryptions >= 1.0, "the decryption counter does not count");
    assert_resyncs_write_nothing(&op, "tenant", 3).await;
    assert_eq!(op.metric("mltenant_decryptions_total", &[]).await, decryptions, "a converged resync decrypted");
}

/// Argo CD prunes with foreground propagation by default: the garbage collector then deletes
/// every dependent that carries an ownerReference to the tenant, before any finalizer logic
/// can release it. Retained namespaces must survive that.
#[tokio::test]
async fn foreground_deletion_of_a_tenant_under_retain_keeps_its_namespaces() {
    let (client, _op, t) = tenant_with_operator("fg-retain", &["dev"], |_| {}).await;
    let name = t.name_any();
    wait_condition(&client, &name, "Ready", "True", None).await;
    let marker = gc_marker(&client, &t).await;
    Api::<MLTenant>::all(client.clone()).delete(&name, &DeleteParams::foreground()).await.unwrap();
    wait_tenant_gone(&client, &name).await;
    // Foreground: the collector deletes the dependents first; the marker blocks the owner's
    // deletion, so it is gone by now, and so would be a namespace with an ownerReference.
    wait_collected(&client, &marker).await;
    let dev = format!("{name}-dev");
    let ns = get_namespace(&client, &dev).await.unwrap_or_else(|| panic!("{dev} was deleted under Retain"));
    assert!(ns.metadata.deletion_timestamp.is_none(), "{dev} is terminating under Retain");
    assert!(released(&ns, &name), "{dev} not released: {:?}", ns.metadata);
}

/// A tenant whose Delete-policy namespace cannot finish terminating (something inside has a
/// finalizer) stays, and its status says which namespace it waits for.
#[tokio::test]
async fn a_tenant_stuck_in_deletion_explains_why() {
    let (client, _op, t) =
        tenant_with_operator("stuck", &["dev"], |t| t.spec.deletion_policy = Some(DeletionPolicy::Delete)).await;
    let name = t.name_any();
    wait_condition(&client, &name, "Ready", "True", None).await;
    let dev = format!("{name}-dev");
    let blocker = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "blocker", "namespace": dev, "finalizers": ["example.com/hold"]},
    });
    let configmaps = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &dev);
    configmaps.create(&Default::default(), &serde_json::from_value(blocker).unwrap()).await.unwrap();

    delete_tenant(&client, &name).await;
    let api = Api::<MLTenant>::all(client.clone());
    let message = wait_for("the tenant to explain what it waits for", TIMEOUT, || async {
        let t = api.get_opt(&name).await.unwrap()?;
        let c = t.status?.conditions.into_iter().find(|c| c.type_ == "NamespacesReady")?;
        (c.reason == "Terminating" && c.status == "False").then_some(c.message)
    })
    .await;
    assert!(message.contains(&dev), "{message}");
    assert!(api.get_opt(&name).await.unwrap().is_some(), "the finalizer holds the tenant while {dev} terminates");

    assert_eq!(wait_event_subjects(&client, &name, "NamespaceDeleted", &[&dev]).await, set(&[&dev]));

    let release = json!({"metadata": {"finalizers": null}});
    configmaps.patch("blocker", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    wait_namespace_gone(&client, &dev).await;
    wait_tenant_gone(&client, &name).await;
}

/// A reconcile that panics (a bug) is a failed reconcile, not a dead operator: a Warning Event
/// `Panic` on the tenant, the failure counted, and the retry converges. The panic is injected
/// once by a fail point of the tests' build.
#[tokio::test]
async fn a_panicking_reconcile_is_reported_and_retried() {
    let client = admin().await;
    let run = unique("run");
    let mut op = Operator::start_failing(&run, "tenant-reconcile=1*panic").await;
    let name = unique("panics");
    create_tenant(&client, &tenant(&name, &run, &["dev"])).await;
    let event =
        wait_for("the Panic Event", TIMEOUT, || async { events_for(&client, &name, "Panic").await.pop() }).await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event.note.as_deref().is_some_and(|n| n.contains("hit a bug")), "{:?}", event.note);
    assert_eq!(op.metric("mltenant_reconcile_total", &[("controller", "tenant"), ("result", "panic")]).await, 1.0);
    wait_condition(&client, &name, "Ready", "True", None).await;
    assert!(op.is_running(), "the operator exited");
}
