//! The trust boundaries, attacked as an MLTenant or SealedBundle author (or any pod) would, on
//! the real control plane with the operator running as its ServiceAccount. Each test is named
//! after the attack and asserts what the attacker gets (SubjectAccessReviews, the objects in the
//! cluster), not only the condition the operator reports.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use mltenant_operator::api::labels;
use mltenant_operator::api::{
    BundleScope, EnvironmentSpec, MLTenant, SealedBundle, SecretReader, SecretSpec, SecretTemplate,
};
use mltenant_operator::crypto::Certificate;

use crate::harness::*;

fn argo_reader() -> SecretReader {
    SecretReader::new(ARGO.0, ARGO.1)
}

fn has_tenant_label(ns: &Namespace) -> bool {
    ns.labels().contains_key(labels::TENANT) || ns.labels().contains_key(labels::MANAGED_BY_KEY)
}

async fn roles_for(client: &Client, namespace: &str, tenant: &str) -> Vec<Role> {
    let lp = ListParams::default().labels(&format!("{}={tenant}", labels::TENANT));
    Api::<Role>::namespaced(client.clone(), namespace).list(&lp).await.unwrap().items
}

async fn create_user_secret(client: &Client, namespace: &str, name: &str, value: &[u8]) -> Secret {
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(BTreeMap::from([("password".to_string(), ByteString(value.to_vec()))])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace).create(&PostParams::default(), &secret).await.unwrap()
}

/// The API server's refusal of `tenant` (CEL), as text.
async fn refused(client: &Client, tenant: &MLTenant) -> String {
    match Api::<MLTenant>::all(client.clone()).create(&PostParams::default(), tenant).await {
        Err(kube::Error::Api(status)) => status.message,
        Ok(_) => panic!("the API server accepted MLTenant {}", tenant.name_any()),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn an_environment_in_the_operators_own_namespace_gets_nothing_and_the_sealing_key_stays_out_of_reach() {
    let client = admin().await;
    let name = unique("keythief");
    let b = unique("keythief-b");
    let (op, _) = operator_with_bundle(&client, &unique("run"), &[], &name, &b).await;
    let keys = Api::<Secret>::namespaced(client.clone(), "mltenant-system")
        .list(&ListParams::default().labels("mltenant.io/sealing-key=active"))
        .await
        .unwrap();
    let key_name = keys.items.first().expect("a sealing key exists").name_any();

    // The attack: an environment pointed at the operator's namespace, a Secret named like the
    // sealing key (so a reader Role would name it), and a reader.
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    t.spec.environments.push(EnvironmentSpec::named("ops").in_namespace("mltenant-system"));
    t.spec.secrets = Some(vec![SecretSpec::new(&key_name, &b)]);
    t.spec.secret_readers = Some(vec![argo_reader()]);
    create_tenant(&client, &t).await;

    let message = wait_condition(&client, &name, "NamespacesReady", "False", Some("ProtectedNamespace")).await;
    assert!(message.contains("mltenant-system is protected"), "{message}");
    assert_eq!(condition(&client, &name, "Ready").await.unwrap().1, "ProtectedNamespace");
    assert!(!events_for(&client, &name, "ProtectedNamespace").await.is_empty());
    // The other environment still converges.
    wait_for("the dev environment's Secret", TIMEOUT, || async {
        get_secret(&client, &format!("{name}-dev"), &key_name).await
    })
    .await;

    let ns = get_namespace(&client, "mltenant-system").await.unwrap();
    assert!(!has_tenant_label(&ns), "the operator's namespace gained our labels: {:?}", ns.labels());
    assert!(roles_for(&client, "mltenant-system", &name).await.is_empty());
    assert!(!may(&client, ARGO, "get", "mltenant-system", Some(&key_name)).await, "the reader may get the sealing key");
    let key = get_secret(&client, "mltenant-system", &key_name).await.unwrap();
    assert_eq!(key.type_.as_deref(), Some("kubernetes.io/tls"), "the sealing key was overwritten");
    assert!(!key.labels().contains_key(labels::TENANT));
}

#[tokio::test]
async fn builtin_protected_namespaces_are_refused_by_the_api_server() {
    let client = admin().await;
    let explicit = |ns: &str| {
        let mut t = tenant(&unique("sys"), "none", &["dev"]);
        t.spec.environments[0].namespace = Some(ns.into());
        t
    };
    // kube-* is Kubernetes' prefix: kube-flannel may not exist yet, and must not be claimed.
    for target in ["kube-system", "kube-public", "kube-node-lease", "kube-flannel", "default"] {
        let message = refused(&client, &explicit(target)).await;
        assert!(message.contains("protected namespace"), "{target}: {message}");
    }
    // Computed names reach them too: tenant `default`'s production, tenant `kube`'s `system`,
    // tenant `kube-ml`'s production.
    for (name, env) in [("default", "production"), ("kube", "system"), ("kube-ml", "production"), ("kube-ml", "dev")] {
        let message = refused(&client, &tenant(name, "none", &[env])).await;
        assert!(message.contains("protected namespace"), "{name}/{env}: {message}");
    }
    // What the attacker wanted stays out of reach.
    assert!(!may(&client, ARGO, "get", "kube-system", Some("bootstrap-token-abcdef")).await);
    assert!(!may(&client, ARGO, "get", "default", None).await);
}

#[tokio::test]
async fn a_namespace_protected_by_flag_is_never_adopted_or_written() {
    let client = admin().await;
    let name = unique("flagged");
    let target = unique("platform-db");
    let b = unique("flagged-b");
    // Even with consent from both sides, a protected namespace is not adopted.
    create_namespace(&client, &target, &[(labels::ADOPTABLE_BY, &name)]).await;
    create_user_secret(&client, &target, "db-password", b"root").await;
    let protected = format!("--protected-namespaces=other,{}*", &target[..target.len() - 2]);
    let (op, _) = operator_with_bundle(&client, &unique("run"), &[&protected], &name, &b).await;
    let mut t = tenant(&name, &op.run_id, &["db"]);
    t.spec.environments[0].namespace = Some(target.clone());
    t.spec.adopt_existing_namespaces = Some(true);
    t.spec.secrets = Some(vec![SecretSpec::new("db-password", &b)]);
    t.spec.secret_readers = Some(vec![argo_reader()]);
    create_tenant(&client, &t).await;

    wait_condition(&client, &name, "NamespacesReady", "False", Some("ProtectedNamespace")).await;
    assert!(!has_tenant_label(&get_namespace(&client, &target).await.unwrap()));
    let secret = get_secret(&client, &target, "db-password").await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"root");
    assert!(roles_for(&client, &target, &name).await.is_empty());
    assert!(!may(&client, ARGO, "get", &target, Some("db-password")).await);
}

#[tokio::test]
async fn a_users_secret_of_the_same_name_is_never_taken_over_or_deleted() {
    let client = admin().await;
    let name = unique("squat");
    let b = unique("squat-b");
    let (op, _) = operator_with_bundle(&client, &unique("run"), &[], &name, &b).await;
    let t = tenant(&name, &op.run_id, &["dev"]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let dev = format!("{name}-dev");
    // A team member's own Secret, created before the tenant lists the name.
    let before = create_user_secret(&client, &dev, "ml-platform", b"hand-made").await;

    update_spec(&client, &name, |s| {
        s.secrets = Some(vec![SecretSpec::new("ml-platform", &b)]);
        s.secret_readers = Some(vec![argo_reader()]);
    })
    .await;
    let message = wait_condition(&client, &name, "SecretsSynced", "False", Some("SecretConflict")).await;
    assert!(message.contains(&format!("{dev}/ml-platform already exists")), "{message}");
    assert!(!events_for(&client, &name, "SecretConflict").await.is_empty());
    let during = get_secret(&client, &dev, "ml-platform").await.unwrap();
    assert_eq!(during.data, before.data, "the user's Secret was merged into");
    assert_eq!(during.metadata.resource_version, before.metadata.resource_version, "the user's Secret was written");
    assert!(!may(&client, ARGO, "get", &dev, Some("ml-platform")).await, "the reader was granted the user's Secret");
    assert!(roles_for(&client, &dev, &name).await.is_empty(), "a Role names a Secret the operator did not write");

    // The tenant drops the name again: the user's Secret stays, byte for byte.
    update_spec(&client, &name, |s| s.secrets = Some(vec![])).await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;
    let after = get_secret(&client, &dev, "ml-platform").await.expect("the user's Secret was deleted");
    assert_eq!(after.data, before.data);
    assert_eq!(after.metadata.uid, before.metadata.uid);
}

/// A user creates a Secret of a wanted name between the operator's read and its first write.
/// That race cannot be timed from outside, so the first write is made here as the operator
/// sends it (as the admin: the admission policy would refuse the operator's own identity
/// anyway), onto a user's Secret whose keys are not ours, so that no field clashes.
#[tokio::test]
async fn a_secret_created_just_before_the_first_write_is_never_merged_into() {
    use mltenant_operator::reconcile::apply;
    let admin = admin().await;
    let ns = unique("race");
    create_namespace(&admin, &ns, &[]).await;
    let api = Api::<Secret>::namespaced(admin.clone(), &ns);
    let ours = |name: &str| Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels::managed("race", "dev")),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("AWS_SECRET_ACCESS_KEY".to_string(), ByteString(b"ours".to_vec()))])),
        ..Default::default()
    };
    // The threat is real: an apply without force merges into it, which would make it look ours.
    create_user_secret(&admin, &ns, "merged", b"hand-made").await;
    let merged = api
        .patch(
            "merged",
            &kube::api::PatchParams::apply(labels::FIELD_MANAGER),
            &kube::api::Patch::Apply(ours("merged")),
        )
        .await
        .unwrap();
    assert_eq!(merged.labels().get(labels::MANAGED_BY_KEY).map(String::as_str), Some(labels::MANAGED_BY));

    let user = create_user_secret(&admin, &ns, "ml-platform", b"hand-made").await;
    let guarded = Api::<mltenant_operator::reconcile::guard::Guarded<Secret>>::namespaced(admin.clone(), &ns);
    let refused = apply::apply(&guarded, "ml-platform", &ours("ml-platform"), false).await.unwrap_err();
    assert!(apply::is_conflict(&refused), "{refused}");
    let after = api.get("ml-platform").await.unwrap();
    assert_eq!(
        (after.data, after.metadata.labels),
        (user.data, user.metadata.labels),
        "the user's Secret is untouched"
    );
    assert_eq!(after.metadata.resource_version, user.metadata.resource_version);
    // A free name is created.
    let created = apply::apply(&guarded, "free", &ours("free"), false).await.unwrap();
    let stored = api.get("free").await.unwrap();
    assert_eq!((stored.metadata.uid, stored.data), (created.uid, ours("free").data));
}

#[tokio::test]
async fn readers_get_only_secrets_the_operator_wrote() {
    let client = admin().await;
    let name = unique("grants");
    let b = unique("grants-b");
    let (op, _) = operator_with_bundle(&client, &unique("run"), &[], &name, &b).await;
    create_tenant(&client, &tenant(&name, &op.run_id, &["dev"])).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let dev = format!("{name}-dev");
    create_user_secret(&client, &dev, "db-password", b"root").await;

    // The attack: ask for a reader on a Secret name the operator never writes (its bundle does
    // not exist), next to one it does write.
    update_spec(&client, &name, |s| {
        s.secrets = Some(vec![SecretSpec::new("ml-platform", &b), SecretSpec::new("db-password", unique("absent"))]);
        s.secret_readers = Some(vec![argo_reader()]);
    })
    .await;
    wait_condition(&client, &name, "SecretsSynced", "False", None).await;
    let roles = wait_for("the reader's Role", TIMEOUT, || async {
        Some(roles_for(&client, &dev, &name).await).filter(|r| !r.is_empty())
    })
    .await;
    let names = roles[0].rules.as_ref().unwrap()[0].resource_names.clone().unwrap();
    assert_eq!(names, ["ml-platform"]);
    assert!(may(&client, ARGO, "get", &dev, Some("ml-platform")).await);
    assert!(!may(&client, ARGO, "get", &dev, Some("db-password")).await, "the reader may get the user's Secret");
}

#[tokio::test]
async fn a_bundle_cannot_make_kubernetes_mint_a_service_account_token() {
    let client = admin().await;
    let name = unique("minter");
    let mut token_type =
        bundle(&unique("token"), BundleScope::Tenant, Some(&name), None, [("K".into(), "AgB".into())].into());
    token_type.spec.type_ = Some("kubernetes.io/service-account-token".into());
    let mut annotated =
        bundle(&unique("annotated"), BundleScope::Tenant, Some(&name), None, [("K".into(), "AgB".into())].into());
    annotated.spec.template = Some(SecretTemplate {
        annotations: Some([("kubernetes.io/service-account.name".into(), "default".into())].into()),
        ..Default::default()
    });
    let mut argo = annotated.clone();
    argo.metadata.name = Some(unique("argo"));
    argo.spec.template = Some(SecretTemplate {
        labels: Some([("argocd.argoproj.io/secret-type".into(), "cluster".into())].into()),
        ..Default::default()
    });
    for (what, b, expect) in [
        ("type", &token_type, "type must be one of Opaque"),
        ("token annotation", &annotated, "must not use the prefixes"),
        ("Argo CD label", &argo, "must not use the prefixes"),
    ] {
        match Api::<SealedBundle>::all(client.clone()).create(&PostParams::default(), b).await {
            Err(kube::Error::Api(status)) => assert!(status.message.contains(expect), "{what}: {}", status.message),
            other => panic!("{what}: the API server accepted it: {other:?}"),
        }
    }
    let tokens = Api::<Secret>::all(client.clone())
        .list(&ListParams::default().fields("type=kubernetes.io/service-account-token"))
        .await
        .unwrap();
    assert!(tokens.items.iter().all(|s| !s.labels().contains_key(labels::TENANT)), "a token Secret carries our labels");
}

#[tokio::test]
async fn a_type_change_never_leaves_the_namespace_without_its_secret() {
    let client = admin().await;
    let name = unique("retype");
    let b = unique("retype-b");
    let (op, cert) = operator_with_bundle(&client, &unique("run"), &[], &name, &b).await;
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new("web", &b)]);
    create_tenant(&client, &t).await;
    let dev = format!("{name}-dev");
    let before = wait_for("the Opaque Secret", TIMEOUT, || async { get_secret(&client, &dev, "web").await }).await;

    // Type tls, but the values are not a certificate and key: refused before anything is deleted.
    let api = Api::<SealedBundle>::all(client.clone());
    edit(&api, &b, |bundle: &mut SealedBundle| bundle.spec.type_ = Some("kubernetes.io/tls".into())).await;
    let message = wait_condition(&client, &name, "SecretsSynced", "False", Some("InvalidPayload")).await;
    assert!(message.contains("tls.crt"), "{message}");
    let during = get_secret(&client, &dev, "web").await.expect("the Secret was deleted for a type change that failed");
    assert_eq!((during.metadata.uid, during.type_.as_deref()), (before.metadata.uid.clone(), Some("Opaque")));

    // A valid certificate and key: the Secret is replaced by one of the new type.
    let crt = std::fs::read("tests/fixtures/crypto/sealing-key.crt").unwrap();
    let key = std::fs::read("tests/fixtures/crypto/sealing-key.key").unwrap();
    let data = sealed(&cert, BundleScope::Tenant, &name, "", &[("tls.crt", &crt), ("tls.key", &key)]);
    edit(&api, &b, |bundle: &mut SealedBundle| bundle.spec.encrypted_data = data.clone()).await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;
    let after = get_secret(&client, &dev, "web").await.unwrap();
    assert_eq!(after.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(after.data.unwrap()["tls.crt"].0, crt);
}

#[tokio::test]
async fn a_multi_byte_reader_name_is_refused_and_cannot_stop_the_next_tenant() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    // Refused by the schema: a ServiceAccount name is a DNS subdomain.
    let mut t = tenant(&unique("unicode"), &op.run_id, &["dev"]);
    t.spec.secret_readers = Some(vec![SecretReader::new("argowf", "é".repeat(200))]);
    let message = refused(&client, &t).await;
    assert!(message.contains("secretReaders[0].serviceAccount.name"), "{message}");
    // The longest names the schema allows are shortened into valid Role names, and the next
    // tenant converges on the same process.
    let name = unique("longest");
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    let long = format!("{}.{}", "a".repeat(126), "b".repeat(126));
    t.spec.secret_readers = Some(vec![SecretReader::new("n".repeat(63), long)]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let next = unique("next");
    create_tenant(&client, &tenant(&next, &op.run_id, &["dev"])).await;
    wait_condition(&client, &next, "Ready", "True", None).await;
    assert_eq!(op.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn a_thousand_missing_bundle_names_leave_a_bounded_number_of_series() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let name = unique("series");
    let names = |round: usize| -> Vec<SecretSpec> {
        (0..32).map(|i| SecretSpec::new(format!("s{i}"), format!("{name}-missing-{round}-{i}"))).collect()
    };
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    t.spec.secrets = Some(names(0));
    create_tenant(&client, &t).await;
    let series = || async {
        op.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("mltenant_decryption_failures_total{") && l.contains(&name))
            .count()
    };
    wait_for("the first failure series", TIMEOUT, || async { (series().await == 32).then_some(()) }).await;
    // 32 rounds of 32 new names: 1,024 distinct missing bundles over the tenant's life.
    for round in 1..32 {
        update_spec(&client, &name, |s| s.secrets = Some(names(round))).await;
        wait_condition(&client, &name, "SecretsSynced", "False", Some("BundleNotFound")).await;
    }
    let failures =
        op.metric("mltenant_decryption_failures_total", &[("bundle", &format!("{name}-missing-31-0"))]).await;
    assert!(failures >= 1.0, "the last round's failures are counted");
    assert!(series().await <= 32, "{} series for 32 referenced bundles", series().await);
    delete_tenant(&client, &name).await;
    wait_tenant_gone(&client, &name).await;
    wait_for("no series of the deleted tenant", TIMEOUT, || async { (series().await == 0).then_some(()) }).await;
}

#[tokio::test]
async fn verify_and_rotate_need_an_authorised_caller() {
    let client = admin().await;
    let name = unique("oracle");
    let b = unique("oracle-b");
    let (op, _) = operator_with_bundle(&client, &unique("run"), &[], &name, &b).await;
    let bundle = Api::<SealedBundle>::all(client.clone()).get(&b).await.unwrap();
    for path in ["/v1/verify", "/v1/rotate"] {
        assert_eq!(op.post_bundle_as(None, path, &bundle).await.0, 401, "{path} without a token");
        assert_eq!(op.post_bundle_as(Some("not-a-token"), path, &bundle).await.0, 401, "{path} with a made-up token");
        let (code, message) =
            op.post_bundle_as(Some(&token_of("MLTENANT_TEST_OPERATOR_KUBECONFIG")), path, &bundle).await;
        assert_eq!(code, 403, "{path} as an identity without the right: {message}");
        let subresource = path.trim_start_matches("/v1/");
        assert!(
            message.contains(&format!("may not create mltenants/{subresource} (mltenant.io) for tenant {name}")),
            "{message}"
        );
        let (code, message) =
            op.post_bundle_as(Some(&token_of("MLTENANT_TEST_SEALER_KUBECONFIG")), path, &bundle).await;
        assert_eq!(code, 200, "{path} as a member of mltenant:sealers: {message}");
    }
    // With --metrics-auth, /metrics too (`get` on the non-resource URL, which the admin has).
    let guarded = Operator::start_with(&unique("run"), &["--metrics-auth"]).await;
    assert_eq!(guarded.get("/metrics").await.0, 401);
    assert_eq!(guarded.get_as(&token_of("MLTENANT_TEST_SEALER_KUBECONFIG"), "/metrics").await.0, 403);
    let (code, text) = guarded.get_as(&token_of("MLTENANT_TEST_ADMIN_KUBECONFIG"), "/metrics").await;
    assert_eq!(code, 200);
    assert!(text.contains("mltenant_leader"), "{text}");
}

/// A caller without a token announces a body and never sends it (the way slow uploads hold a
/// server's memory): it is refused before the operator waits for, or holds, a byte of it. A
/// caller with a token gets no more than the body limit read.
#[tokio::test]
async fn an_anonymous_caller_cannot_make_the_operator_read_or_hold_a_body() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let op = Operator::start(&unique("run")).await;
    for path in ["/v1/verify", "/v1/rotate"] {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", op.port())).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: operator\r\nContent-Length: 1048576\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 512];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await;
        let read = read.unwrap_or_else(|_| panic!("{path}: no answer while the announced body is missing"));
        let answer = String::from_utf8_lossy(&answer[..read.unwrap()]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 401"), "{path} answered: {answer}");
    }
    let too_large = vec![b'x'; 3 * 1024 * 1024];
    let (code, message) =
        op.post_as(Some(&token_of("MLTENANT_TEST_SEALER_KUBECONFIG")), "/v1/verify", &too_large).await;
    assert_eq!(code, 413, "{message}");
}

/// The admission policy holds the operator's own identity to the trust boundaries, whatever
/// the operator's code does.
#[tokio::test]
async fn the_admission_policy_refuses_the_operators_identity_what_it_must_never_do() {
    let admin = admin().await;
    let operator = operator_identity().await;
    let ns = unique("guarded");
    create_namespace(&admin, &ns, &[]).await;
    let user_secret = create_user_secret(&admin, &ns, "users-own", b"hand-made").await;
    let ours = |name: &str, type_: &str| Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels::managed_by()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        ..Default::default()
    };
    let refusal = |result: kube::Result<Secret>| match result {
        Err(kube::Error::Api(status)) => status.message,
        other => panic!("the operator's identity was allowed: {other:?}"),
    };
    let secrets = |namespace: &str| Api::<Secret>::namespaced(operator.clone(), namespace);
    let pp = PostParams::default();

    let message = refusal(secrets("kube-system").create(&pp, &ours(&unique("x"), "Opaque")).await);
    assert!(message.contains("namespace kube-system is protected"), "{message}");
    let message = refusal(secrets("mltenant-system").create(&pp, &ours(&unique("x"), "Opaque")).await);
    assert!(message.contains("is protected"), "{message}");
    let mut unlabelled = ours(&unique("x"), "Opaque");
    unlabelled.metadata.labels = None;
    let message = refusal(secrets(&ns).create(&pp, &unlabelled).await);
    assert!(message.contains("must carry app.kubernetes.io/managed-by"), "{message}");
    let mut token = ours(&unique("x"), "kubernetes.io/service-account-token");
    token.metadata.annotations =
        Some([("kubernetes.io/service-account.name".to_string(), "default".to_string())].into());
    let message = refusal(secrets(&ns).create(&pp, &token).await);
    assert!(message.contains("Secret type outside"), "{message}");
    let take = serde_json::json!({"metadata": {"labels": labels::managed_by()}, "data": {"password": "dGFrZW4="}});
    let message = refusal(secrets(&ns).patch("users-own", &Default::default(), &kube::api::Patch::Merge(&take)).await);
    assert!(message.contains("only update or delete a Secret, Role or RoleBinding it manages"), "{message}");
    match secrets(&ns).delete("users-own", &Default::default()).await {
        Err(kube::Error::Api(status)) => assert!(status.message.contains("it manages"), "{}", status.message),
        other => panic!("the operator's identity deleted a user's Secret: {other:?}"),
    }
    let namespaces = Api::<Namespace>::all(operator.clone());
    let patch = serde_json::json!({"metadata": {"labels": {labels::TENANT: "thief"}}});
    match namespaces.patch(&ns, &Default::default(), &kube::api::Patch::Merge(&patch)).await {
        Err(kube::Error::Api(status)) => {
            assert!(status.message.contains("neither managed by it"), "{}", status.message)
        }
        other => panic!("the operator's identity labelled a foreign namespace: {other:?}"),
    }
    match namespaces.delete(&ns, &Default::default()).await {
        Err(kube::Error::Api(status)) => {
            assert!(status.message.contains("namespaces it created"), "{}", status.message)
        }
        other => panic!("the operator's identity deleted a foreign namespace: {other:?}"),
    }
    let mut replicated = ours(&unique("x"), "Opaque");
    replicated.metadata.annotations =
        Some([("replicator.v1.mittwald.de/replicate-to".to_string(), "*".to_string())].into());
    let message = refusal(secrets(&ns).create(&pp, &replicated).await);
    assert!(message.contains("never sets reserved label or annotation keys other than its own"), "{message}");
    assert!(message.contains("replicator.v1.mittwald.de/replicate-to"), "{message}");

    // RBAC content: the operator holds `list` on Secrets, so RBAC's escalation check would let
    // it grant that; the policy does not.
    let roles = Api::<Role>::namespaced(operator.clone(), &ns);
    let role = |name: &str, verbs: &[&str], names: &[&str]| Role {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels::managed_by()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            resource_names: Some(names.iter().map(|n| n.to_string()).collect()).filter(|n: &Vec<_>| !n.is_empty()),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }]),
    };
    let role_refusal = |result: kube::Result<Role>| match result {
        Err(kube::Error::Api(status)) => status.message,
        other => panic!("the operator's identity wrote a Role: {other:?}"),
    };
    for (verbs, names) in [(&["get", "list"][..], &["users-own"][..]), (&["get"], &[])] {
        let message = role_refusal(roles.create(&pp, &role(&unique("wide"), verbs, names)).await);
        assert!(
            message.contains("grants only get on secrets listed by resourceNames"),
            "{verbs:?} {names:?}: {message}"
        );
    }
    let reader = unique("reader");
    roles.create(&pp, &role(&reader, &["get"], &["users-own"])).await.expect("the Role it writes for a reader");
    let bindings = Api::<RoleBinding>::namespaced(operator.clone(), &ns);
    let binding = |name: &str, role: &str, kind: &str| RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels::managed_by()),
            ..Default::default()
        },
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: role.into() },
        subjects: Some(vec![Subject {
            kind: kind.into(),
            name: "someone".into(),
            namespace: (kind == "ServiceAccount").then(|| ns.clone()),
            api_group: (kind == "User").then(|| "rbac.authorization.k8s.io".into()),
        }]),
    };
    for (name, kind) in [(reader.clone(), "User"), (unique("other-name"), "ServiceAccount")] {
        match bindings.create(&pp, &binding(&name, &reader, kind)).await {
            Err(kube::Error::Api(status)) => {
                assert!(
                    status.message.contains("binds the Role of its own name to ServiceAccounts only"),
                    "{}",
                    status.message
                )
            }
            other => panic!("the operator's identity wrote a RoleBinding ({name}, {kind}): {other:?}"),
        }
    }
    bindings.create(&pp, &binding(&reader, &reader, "ServiceAccount")).await.expect("the RoleBinding it writes");

    // What the operator legitimately does still passes: RBAC allows it and the policy does not
    // refuse everything.
    let name = unique("fine");
    secrets(&ns).create(&pp, &ours(&name, "Opaque")).await.expect("a labelled Opaque Secret");
    secrets(&ns).delete(&name, &Default::default()).await.expect("deleting its own Secret");
    assert_eq!(get_secret(&admin, &ns, "users-own").await.unwrap().data, user_secret.data);
}

/// The one change the admission policy lets the operator's identity make to a sealing key is
/// to its finalizers (the deletion guard). Anything else on the key (its labels, its data, an
/// ownerReference that would hand it to the garbage collector) stays refused. Dry runs: the
/// API server admits them as it would the real request, and the shared key stays as it is.
#[tokio::test]
async fn the_operator_may_change_a_sealing_keys_finalizers_and_nothing_else() {
    let admin = admin().await;
    let _op = Operator::start(&unique("run")).await;
    let key = wait_for("a sealing key", TIMEOUT, || async {
        sealing_keys(&admin, "mltenant-system").await.into_iter().next()
    })
    .await;
    let name = key.metadata.name.clone().unwrap();
    let keys = Api::<Secret>::namespaced(operator_identity().await, "mltenant-system");
    let dry_run = kube::api::PatchParams { dry_run: true, ..Default::default() };
    let patch = |change: serde_json::Value| {
        let keys = keys.clone();
        let (name, dry_run) = (name.clone(), dry_run.clone());
        async move { keys.patch(&name, &dry_run, &kube::api::Patch::Merge(&change)).await }
    };
    let mut finalizers = key.metadata.finalizers.clone().unwrap_or_default();
    finalizers.push("example.com/held".into());
    patch(serde_json::json!({"metadata": {"finalizers": finalizers}}))
        .await
        .expect("a finalizer change is let through");

    let owner = serde_json::json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "00000000-0000-0000-0000-000000000000"}]);
    let changes = [
        ("an ownerReference", serde_json::json!({"metadata": {"ownerReferences": owner}})),
        ("a label", serde_json::json!({"metadata": {"labels": {labels::SEALING_KEY: "retired"}}})),
        ("the data", serde_json::json!({"data": {"tls.key": "eA=="}})),
        ("immutability", serde_json::json!({"immutable": true})),
    ];
    for (what, change) in changes {
        match patch(change).await {
            Err(kube::Error::Api(status)) => {
                assert!(status.message.contains("is protected"), "{what}: {}", status.message)
            }
            other => panic!("the operator's identity changed {what} of a sealing key: {other:?}"),
        }
    }
}

/// `create` on `mltenants/verify` and `mltenants/rotate` for `tenants`; none: for every tenant
/// and for Cluster scope (a rule without resourceNames).
fn sealer_rule(tenants: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![mltenant_operator::api::GROUP.into()]),
        resources: Some(vec!["mltenants/verify".into(), "mltenants/rotate".into()]),
        resource_names: (!tenants.is_empty()).then(|| tenants.iter().map(|t| t.to_string()).collect()),
        verbs: vec!["create".into()],
        ..Default::default()
    }
}

/// What a refused `/v1/rotate` must never hold: a SealedBundle, i.e. values re-sealed.
fn assert_no_bundle(what: &str, answer: &str) {
    assert!(
        !answer.contains("encryptedData") && serde_yaml::from_str::<SealedBundle>(answer).is_err(),
        "{what}: the answer holds a SealedBundle"
    );
}

/// A caller allowed to verify and re-seal for its own tenant only (`resourceNames: [own]`)
/// posts the victim's bundle: under its own bundle's name (what a check on the body's name let
/// through), with its own tenant or the victim's in the URL, and with the claims edited to its
/// own tenant. It learns nothing about the victim's ciphertexts and gets none of them re-sealed.
/// Cluster-scope ciphertexts, which open for any tenant, need a rule without resourceNames.
#[tokio::test]
async fn authorisation_follows_what_the_ciphertext_opens_not_the_name_in_the_body() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let (own, victim) = (unique("own"), unique("victim"));
    let mine = bundle(
        &unique("mine"),
        BundleScope::Tenant,
        Some(&own),
        None,
        sealed(&cert, BundleScope::Tenant, &own, "", &[("PASSWORD", b"own-password")]),
    );
    let victims = [
        bundle(
            &unique("theirs"),
            BundleScope::Tenant,
            Some(&victim),
            None,
            sealed(&cert, BundleScope::Tenant, &victim, "", &[("PASSWORD", b"victim-password")]),
        ),
        bundle(
            &unique("theirs-prod"),
            BundleScope::Environment,
            Some(&victim),
            Some("prod"),
            sealed(&cert, BundleScope::Environment, &victim, "prod", &[("PASSWORD", b"victim-prod-password")]),
        ),
    ];
    let attacker = service_account_token(&client, "attacker", vec![sealer_rule(&[&own])]).await;
    let platform = service_account_token(&client, "platform", vec![sealer_rule(&[])]).await;

    // Its own tenant's bundle: verified and re-sealed.
    let (code, answer) = op.post_bundle_as(Some(&attacker), "/v1/verify", &mine).await;
    assert_eq!(code, 200, "verify of its own bundle: {answer}");
    let (code, answer) = op.post_bundle_as(Some(&attacker), "/v1/rotate", &mine).await;
    assert_eq!(code, 200, "rotate of its own bundle: {answer}");
    let rotated: SealedBundle = serde_yaml::from_str(&answer).unwrap();
    assert_eq!((rotated.name_any(), rotated.spec.tenant), (mine.name_any(), Some(own.clone())));

    for theirs in &victims {
        let scope = theirs.spec.scope;
        // The threat is real: these ciphertexts open, for whoever may open the victim's.
        let (code, answer) = op.post_bundle_as(Some(&platform), "/v1/verify", theirs).await;
        assert_eq!(code, 200, "{scope:?}: the victim's bundle opens for an authorised caller: {answer}");

        let mut renamed = theirs.clone();
        renamed.metadata.name = mine.metadata.name.clone();
        let body = serde_json::to_vec(&renamed).unwrap();
        for endpoint in ["/v1/verify", "/v1/rotate"] {
            let subresource = endpoint.trim_start_matches("/v1/");
            let what = format!("{endpoint}, the victim's {scope:?} bundle renamed {}", mine.name_any());
            let (code, answer) = op.post_as(Some(&attacker), &format!("{endpoint}?tenant={own}"), &body).await;
            assert_eq!(code, 403, "{what}, ?tenant={own}: {answer}");
            assert_eq!(
                answer,
                format!(
                    "the body is sealed for tenant {victim} (scope {scope:?}), but the request was authorised for tenant {own}"
                )
            );
            assert_no_bundle(&what, &answer);
            let (code, answer) = op.post_as(Some(&attacker), &format!("{endpoint}?tenant={victim}"), &body).await;
            assert_eq!(code, 403, "{what}, ?tenant={victim}: {answer}");
            assert!(
                answer.ends_with(&format!("may not create mltenants/{subresource} (mltenant.io) for tenant {victim}"))
            );
            assert_no_bundle(&what, &answer);
            let (code, answer) = op.post_as(Some(&attacker), endpoint, &body).await;
            assert_eq!(code, 403, "{what}, no tenant: {answer}");
            assert!(answer.contains("for Cluster-scope bundles (a rule without resourceNames)"), "{answer}");
            assert_no_bundle(&what, &answer);
        }

        // The claims edited to its own tenant: authorised, but the ciphertexts open only under
        // the victim's label, so nothing opens and nothing is re-sealed.
        let mut claimed = renamed.clone();
        claimed.spec.tenant = Some(own.clone());
        let (code, answer) = op.post_bundle_as(Some(&attacker), "/v1/verify", &claimed).await;
        assert_eq!(code, 422, "{scope:?} claimed for its own tenant: {answer}");
        assert!(answer.contains("\"decryptable\":false") && answer.contains("no key could decrypt"), "{answer}");
        let (code, answer) = op.post_bundle_as(Some(&attacker), "/v1/rotate", &claimed).await;
        assert_eq!(code, 422, "{scope:?} claimed for its own tenant, rotate: {answer}");
        assert_no_bundle("rotate of the victim's values claimed for its own tenant", &answer);
        // Claimed as Cluster scope: a Cluster-scope request, which its grant does not cover.
        let mut shared = renamed.clone();
        (shared.spec.scope, shared.spec.tenant, shared.spec.environment) = (BundleScope::Cluster, None, None);
        let (code, answer) = op.post_bundle_as(Some(&attacker), "/v1/rotate", &shared).await;
        assert_eq!(code, 403, "{scope:?} claimed as Cluster scope: {answer}");
        assert_no_bundle("rotate of the victim's values claimed as Cluster scope", &answer);
    }

    // Cluster-scope ciphertexts open for any tenant: a grant naming tenants does not cover them,
    // one without resourceNames does.
    let cluster = bundle(
        &unique("shared"),
        BundleScope::Cluster,
        None,
        None,
        sealed(&cert, BundleScope::Cluster, "", "", &[("PASSWORD", b"shared-password")]),
    );
    for endpoint in ["/v1/verify", "/v1/rotate"] {
        let (code, answer) = op.post_bundle_as(Some(&attacker), endpoint, &cluster).await;
        assert_eq!(code, 403, "{endpoint} of a Cluster-scope bundle with resourceNames: {answer}");
        assert_no_bundle(endpoint, &answer);
        let (code, answer) = op.post_bundle_as(Some(&platform), endpoint, &cluster).await;
        assert_eq!(code, 200, "{endpoint} of a Cluster-scope bundle without resourceNames: {answer}");
    }
}

/// A YAML body of one anchor and `aliases` aliases to it, about `size` bytes: what a parser
/// that expands aliases turns into `aliases` times `size`.
fn alias_bomb(tenant: &str, size: usize, aliases: usize) -> String {
    let anchor = "x".repeat(size - aliases * 4);
    let list = vec!["*a"; aliases].join(", ");
    format!(
        "apiVersion: mltenant.io/v1alpha1\nkind: SealedBundle\nmetadata:\n  name: bomb\n  annotations:\n    a: &a \"{anchor}\"\n\
         spec:\n  scope: Tenant\n  tenant: {tenant}\n  encryptedData:\n    K: AgB\n  bomb: [{list}]\n"
    )
}

/// A JSON SealedBundle whose metadata holds `members` tiny annotations.
fn many_members(tenant: &str, members: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let key = |mut i: usize| {
        let mut key = Vec::new();
        loop {
            key.push(DIGITS[i % DIGITS.len()]);
            i /= DIGITS.len();
            if i == 0 {
                return String::from_utf8(key).unwrap();
            }
        }
    };
    let annotations: Vec<String> = (0..members).map(|i| format!("\"{}\":\"\"", key(i))).collect();
    format!(
        "{{\"apiVersion\":\"mltenant.io/v1alpha1\",\"kind\":\"SealedBundle\",\"metadata\":{{\"name\":\"members\",\"annotations\":{{{}}}}},\"spec\":{{\"scope\":\"Tenant\",\"tenant\":\"{tenant}\",\"encryptedData\":{{\"K\":\"AgB\"}}}}}}",
        annotations.join(",")
    )
}

/// Run `requests` while sampling the operator's RSS: the highest value seen, in KiB.
async fn peak_rss_during<T>(op: &Operator, requests: impl Future<Output = T>) -> (u64, T) {
    let peak = std::sync::atomic::AtomicU64::new(op.rss_kib().unwrap());
    let sample = || peak.fetch_max(op.rss_kib().unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    let sampler = async {
        let mut every = tokio::time::interval(Duration::from_millis(2));
        loop {
            every.tick().await;
            sample();
        }
    };
    let answers = tokio::select! {
        answers = requests => answers,
        never = sampler => never,
    };
    sample();
    (peak.into_inner(), answers)
}

/// A caller without the right posts what used to be parsed before it was authorised: a YAML
/// alias bomb (half a MiB that expands to half a GiB) and a JSON object of 200,000 members,
/// four at a time to both endpoints. Refused from its headers: the operator's memory does not
/// move. An authorised caller's same bodies are read but never parsed (415, 413).
#[tokio::test]
async fn an_unauthorised_caller_gets_nothing_parsed() {
    const BOUND_KIB: u64 = 16 * 1024;
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    // Leading with every cache listed: the controllers' start (lists of the shared control
    // plane's tenants, bundles and RBAC) is not what is measured.
    op.wait_leading().await;
    let tenant = unique("parsed");
    let nobody = service_account_token(&client, "nobody", vec![]).await;
    let sealer = service_account_token(&client, "sealer", vec![sealer_rule(&[&tenant])]).await;
    let bomb = alias_bomb(&tenant, 524 * 1024, 999);
    let members = many_members(&tenant, 200_000);
    assert!(bomb.len() > 500 * 1024 && members.len() > 1024 * 1024 && members.len() < 2 * 1024 * 1024);
    // A legitimate request first, so the clients and threads every request uses exist before
    // the measurement.
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let data = sealed(&cert, BundleScope::Tenant, &tenant, "", &[("K", b"v")]);
    let small = bundle("small", BundleScope::Tenant, Some(&tenant), None, data);
    assert_eq!(op.post_bundle_as(Some(&sealer), "/v1/verify", &small).await.0, 200);

    for (caller, token, expected) in [("unauthorised", &nobody, [403, 403]), ("authorised", &sealer, [415, 413])] {
        let baseline = op.rss_kib().unwrap();
        let requests = async {
            let mut answers = Vec::new();
            for endpoint in ["/v1/verify", "/v1/rotate"] {
                let path = format!("{endpoint}?tenant={tenant}");
                for (body, expected) in [(&bomb, expected[0]), (&members, expected[1])] {
                    let four = (0..4).map(|_| op.post_as(Some(token), &path, body.as_bytes()));
                    for answer in futures::future::join_all(four).await {
                        answers.push((endpoint, expected, answer));
                    }
                }
            }
            answers
        };
        let (peak, answers) = peak_rss_during(&op, requests).await;
        for (endpoint, expected, (code, message)) in answers {
            assert_eq!(code, expected, "{caller} {endpoint}: {message}");
            match code {
                403 => assert!(message.contains(&format!("may not create mltenants/{}", &endpoint[4..])), "{message}"),
                415 => assert!(message.contains("send the SealedBundle as JSON"), "{message}"),
                413 => assert!(message.contains("more than 4096 JSON values and members"), "{message}"),
                _ => unreachable!(),
            }
        }
        let rise = peak.saturating_sub(baseline);
        println!("{caller}: 16 hostile bodies, RSS {baseline} KiB before, peak {peak} KiB (+{rise} KiB)");
        assert!(rise < BOUND_KIB, "{caller}: RSS rose by {rise} KiB (from {baseline} to {peak})");
    }
}
