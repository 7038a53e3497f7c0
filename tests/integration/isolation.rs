//! AccessIsolated on the real API server's RBAC (kube-controller-manager aggregating
//! ClusterRoles, SubjectAccessReviews answered by the RBAC authoriser): one extra grant at a
//! time flips the condition and its metric within seconds and names the binding; removing it
//! flips them back.
//!
//! Every grant here names this test's own Secret (a unique name) or lives in its own namespaces,
//! so that tenants of tests running beside it are not concerned.

use std::time::{Duration, Instant};

use kube::api::{DeleteParams, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use mltenant_operator::api::{SecretReader, SecretSpec};
use serde_json::{Value, json};

use crate::harness::*;

/// An RBAC object made from `manifest` (a Role, ClusterRole, RoleBinding or ClusterRoleBinding).
struct Rbac {
    api: Api<DynamicObject>,
    name: String,
}

async fn create(client: &Client, manifest: Value) -> Rbac {
    let kind = manifest["kind"].as_str().unwrap().to_owned();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", &kind));
    let api = match manifest["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let mut object: DynamicObject = serde_json::from_value(manifest).unwrap();
    object.types = Some(kube::core::TypeMeta { api_version: "rbac.authorization.k8s.io/v1".into(), kind });
    let name = object.metadata.name.clone().unwrap();
    api.create(&PostParams::default(), &object).await.unwrap_or_else(|e| panic!("create {name}: {e}"));
    Rbac { api, name }
}

async fn remove(objects: Vec<Rbac>) {
    for o in objects {
        o.api.delete(&o.name, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("delete {}: {e}", o.name));
    }
}

fn binding(kind: &str, name: &str, namespace: Option<&str>, role: (&str, &str), subject: Value) -> Value {
    let mut b = json!({
        "kind": kind, "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role.0, "name": role.1},
        "subjects": [subject],
    });
    if let Some(ns) = namespace {
        b["metadata"]["namespace"] = json!(ns);
    }
    b
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name})
}

#[tokio::test]
async fn each_extra_grant_flips_access_isolated_and_removing_it_flips_it_back() {
    let client = admin().await;
    let run = unique("run");
    let name = unique("isolated");
    let bundle_name = format!("{name}-b");
    let (op, _) = operator_with_bundle(&client, &run, &[], &name, &bundle_name).await;
    let secret = unique("creds");
    let readers = unique("readers");
    create_namespace(&client, &readers, &[]).await;
    let mut t = tenant(&name, &run, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new(&secret, &bundle_name)]);
    t.spec.secret_readers = Some(vec![SecretReader::new(&readers, "pipeline")]);
    create_tenant(&client, &t).await;
    let ns = format!("{name}-dev");
    wait_condition(&client, &name, "Ready", "True", None).await;
    wait_condition(&client, &name, "AccessIsolated", "True", Some("Isolated")).await;
    let gauge = |metric: &'static str| {
        let (op, name, secret) = (&op, name.clone(), secret.clone());
        async move { op.metric(metric, &[("tenant", &name), ("environment", "dev"), ("secret", &secret)]).await }
    };
    assert_eq!(gauge("mltenant_secret_unexpected_readers").await, 0.0);

    let u = unique("x");
    let names_secret =
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": [secret]}]);
    type Step = (&'static str, Vec<Value>, &'static str, &'static str, String);
    let steps: Vec<Step> = vec![
        (
            "a ClusterRole aggregated into view, view bound in the namespace",
            vec![
                json!({"kind": "ClusterRole", "metadata": {"name": format!("{u}-agg"),
                    "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}, "rules": names_secret}),
                binding(
                    "RoleBinding",
                    &format!("{u}-view"),
                    Some(&ns),
                    ("ClusterRole", "view"),
                    user(&format!("{u}-viewer")),
                ),
            ],
            "UnexpectedReaders",
            "mltenant_secret_unexpected_readers",
            format!("User {u}-viewer through RoleBinding {ns}/{u}-view (ClusterRole view)"),
        ),
        (
            "view and a custom Secret reader for another team's ServiceAccount",
            vec![
                json!({"kind": "Role", "metadata": {"name": format!("{u}-peek"), "namespace": ns}, "rules": names_secret}),
                binding(
                    "RoleBinding",
                    &format!("{u}-view"),
                    Some(&ns),
                    ("ClusterRole", "view"),
                    json!({"kind": "ServiceAccount", "name": "bot", "namespace": "other-team"}),
                ),
                binding(
                    "RoleBinding",
                    &format!("{u}-peek"),
                    Some(&ns),
                    ("Role", &format!("{u}-peek")),
                    json!({"kind": "ServiceAccount", "name": "bot", "namespace": "other-team"}),
                ),
            ],
            "UnexpectedReaders",
            "mltenant_secret_unexpected_readers",
            format!("ServiceAccount other-team/bot through RoleBinding {ns}/{u}-peek (Role {u}-peek)"),
        ),
        (
            "a ClusterRoleBinding of every verb, group and resource (of this Secret's name)",
            vec![
                json!({"kind": "ClusterRole", "metadata": {"name": format!("{u}-all")},
                    "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"], "resourceNames": [secret]}]}),
                binding(
                    "ClusterRoleBinding",
                    &format!("{u}-all"),
                    None,
                    ("ClusterRole", &format!("{u}-all")),
                    user(&format!("{u}-root")),
                ),
            ],
            "UnexpectedReaders",
            "mltenant_secret_unexpected_readers",
            format!("User {u}-root through ClusterRoleBinding {u}-all (ClusterRole {u}-all)"),
        ),
        (
            "pods/create in the namespace",
            vec![
                json!({"kind": "Role", "metadata": {"name": format!("{u}-run"), "namespace": ns},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]}),
                binding(
                    "RoleBinding",
                    &format!("{u}-run"),
                    Some(&ns),
                    ("Role", &format!("{u}-run")),
                    user(&format!("{u}-runner")),
                ),
            ],
            "IndirectReaders",
            "mltenant_secret_indirect_readers",
            format!("User {u}-runner may create pods in {ns} through RoleBinding {ns}/{u}-run (Role {u}-run)"),
        ),
        (
            "tokens of the declared reader",
            vec![
                json!({"kind": "Role", "metadata": {"name": format!("{u}-tokens"), "namespace": readers},
                    "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"], "resourceNames": ["pipeline"]}]}),
                binding(
                    "RoleBinding",
                    &format!("{u}-tokens"),
                    Some(&readers),
                    ("Role", &format!("{u}-tokens")),
                    user(&format!("{u}-minter")),
                ),
            ],
            "IndirectReaders",
            "mltenant_secret_indirect_readers",
            format!("User {u}-minter may create tokens of ServiceAccount {readers}/pipeline"),
        ),
    ];
    let mut took = Vec::new();
    for (why, manifests, reason, metric, named) in steps {
        let start = Instant::now();
        let mut objects = Vec::new();
        for manifest in manifests {
            objects.push(create(&client, manifest).await);
        }
        let message = wait_condition(&client, &name, "AccessIsolated", "False", Some(reason)).await;
        let flipped = start.elapsed();
        assert!(message.contains(&named), "{why}: the message names the subject and binding: {message}");
        assert!(gauge(metric).await >= 1.0, "{why}: {metric}");
        wait_for(&format!("{why}: an Event naming {named}"), TIMEOUT, || async {
            let events = events_for(&client, &name, reason).await;
            events.iter().any(|e| e.note.as_deref().is_some_and(|n| n.contains(&named))).then_some(())
        })
        .await;
        let start = Instant::now();
        remove(objects).await;
        wait_condition(&client, &name, "AccessIsolated", "True", Some("Isolated")).await;
        took.push((why, flipped, start.elapsed()));
        wait_for(&format!("{why}: {metric} back to 0"), TIMEOUT, || async {
            (gauge(metric).await == 0.0).then_some(())
        })
        .await;
    }
    for (why, flipped, back) in &took {
        eprintln!("AccessIsolated: {why}: False after {flipped:?}, True again after {back:?}");
        assert!(*flipped < Duration::from_secs(20) && *back < Duration::from_secs(20), "{why}: within seconds");
    }
}

/// A namespace admin of a tenant's namespace attacks the operator's RBAC cache: a binding of
/// 10,000 subjects is counted, not held (its unexamined subjects are reported as such); past
/// 1 MiB of names (or 1,024 objects) the namespace's grants are not known (reported), and memory stays
/// bounded however large each Role is.
#[tokio::test]
async fn a_namespace_admin_cannot_grow_the_rbac_cache_or_hide_behind_numbers() {
    let client = admin().await;
    let run = unique("run");
    let name = unique("crowded");
    let bundle_name = format!("{name}-b");
    let (op, _) = operator_with_bundle(&client, &run, &[], &name, &bundle_name).await;
    create_tenant(&client, &tenant_with_secret(&name, &run, &bundle_name)).await;
    let ns = format!("{name}-dev");
    wait_condition(&client, &name, "AccessIsolated", "True", Some("Isolated")).await;

    // The namespace's admin: itself an unexpected reader.
    let attacker_ns = unique("attacker");
    create_namespace(&client, &attacker_ns, &[]).await;
    let token = token_for(&client, &attacker_ns, "admin").await;
    let sa = json!({"kind": "ServiceAccount", "name": "admin", "namespace": attacker_ns});
    create(&client, binding("RoleBinding", "ns-admin", Some(&ns), ("ClusterRole", "admin"), sa)).await;
    let message = wait_condition(&client, &name, "AccessIsolated", "False", Some("UnexpectedReaders")).await;
    assert!(message.contains(&format!("ServiceAccount {attacker_ns}/admin")), "{message}");
    let attacker = client_as(&token).await;

    // A binding of 10,000 subjects.
    let crowd: Vec<Value> = (0..10_000).map(|i| user(&format!("u-{i:05}"))).collect();
    let mut manifest = binding("RoleBinding", "crowd", Some(&ns), ("ClusterRole", "edit"), json!(null));
    manifest["subjects"] = json!(crowd);
    create(&attacker, manifest).await;
    let message = wait_until("the crowd reported", TIMEOUT, || async {
        let (_, _, message) = condition(&client, &name, "AccessIsolated").await.unwrap_or_default();
        if message.contains(&format!("9936 more subjects of RoleBinding {ns}/crowd, not examined")) {
            Ok(message)
        } else {
            Err(message)
        }
    })
    .await;
    assert!(message.len() < 32 * 1024, "the message stays bounded: {} bytes", message.len());
    let labels = [("tenant", name.as_str()), ("secret", "ml-platform")];
    assert!(op.metric("mltenant_secret_unexpected_readers", &labels).await >= 10_000.0);

    // Roles as large as a Role's names can usefully be (64 names of 253 characters, plus a name
    // no Secret can have): past 1 MiB of names in the namespace, no more are kept.
    let rss_before = op.rss_kib().unwrap();
    let long: Vec<String> = (0..64).map(|i| format!("{i:03}{}", "n".repeat(250))).collect();
    let useless = "x".repeat(16 * 1024);
    let start = Instant::now();
    for i in 0..80 {
        let mut names = long.clone();
        names.push(useless.clone());
        let role = json!({"kind": "Role", "metadata": {"name": format!("r-{i:04}"), "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": names}]});
        create(&attacker, role).await;
    }
    let created = start.elapsed();
    let message = wait_condition(&client, &name, "AccessIsolated", "Unknown", Some("TooManyRBACObjects")).await;
    assert!(
        message.contains(&format!("namespace {ns} holds more Roles or RoleBindings than are examined")),
        "{message}"
    );
    let held = op.metric("mltenant_rbac_objects", &[("kind", "Role")]).await;
    let grown = op.rss_kib().unwrap().saturating_sub(rss_before);
    eprintln!(
        "RBAC cache: 80 Roles of {} KiB each created in {created:?}; {held} Roles held in all; RSS grown by {grown} KiB",
        (64 * 253 + useless.len()) / 1024
    );
    assert!(grown < 16 * 1024, "the operator's memory grew by {grown} KiB");
}

/// `mltenant access TENANT` as the admin runs it: exit code 0 while only declared readers and
/// expected identities can read, 2 with the subject named once a binding lets someone else; it
/// reads RBAC itself, so it answers with the operator stopped.
#[tokio::test]
async fn the_access_command_reports_who_can_read_with_the_operator_stopped() {
    let client = admin().await;
    let run = unique("run");
    let name = unique("audited");
    let bundle_name = format!("{name}-b");
    let (op, _) = operator_with_bundle(&client, &run, &[], &name, &bundle_name).await;
    create_tenant(&client, &tenant_with_secret(&name, &run, &bundle_name)).await;
    wait_condition(&client, &name, "AccessIsolated", "True", Some("Isolated")).await;
    op.kill().await;
    let ns = format!("{name}-dev");
    let access = |review: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mltenant"));
        command.args(["access", &name]).env("KUBECONFIG", kubeconfig_path("MLTENANT_TEST_ADMIN_KUBECONFIG"));
        if review {
            command.arg("--review");
        }
        let output = command.output().expect("run mltenant access");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, report) = access(false);
    assert_eq!(code, Some(0), "{report}");
    let reader = format!("declared   ServiceAccount argowf/argo-workflow through RoleBinding {ns}/");
    assert!(report.contains(&reader), "{report}");
    assert!(report.contains("expected   Group system:masters through ClusterRoleBinding cluster-admin"), "{report}");

    let u = unique("peeker");
    let grant = create(&client, binding("RoleBinding", &u, Some(&ns), ("ClusterRole", "edit"), user(&u))).await;
    for review in [false, true] {
        let (code, report) = access(review);
        assert_eq!(code, Some(2), "{report}");
        let named = format!("UNEXPECTED User {u} through RoleBinding {ns}/{u} (ClusterRole edit)");
        assert!(report.contains(&named), "review {review}: {report}");
        assert!(report.contains(&format!("indirect   User {u} may create pods in {ns}")), "{report}");
    }
    remove(vec![grant]).await;
    assert_eq!(access(true).0, Some(0));
}
