//! Test harness: clients for the local control plane started by `hack/test-integration.sh`
//! (or `hack/test-faults.sh`, `hack/soak.sh`), unique names so tests run in parallel, an
//! operator child process per test running as the operator's ServiceAccount identity, logs per
//! test printed only on failure, and waiting with a clear failure message.

mod cleanup;
mod identity;
pub mod logs;
pub mod operator;
mod prometheus;
mod quiet;

pub use cleanup::*;
pub use identity::*;
pub use operator::Operator;
pub use prometheus::{ALERT_RULES, Prometheus};
pub use quiet::*;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use mltenant_operator::api::labels::{ACTIVE, SEALING_KEY};
use mltenant_operator::api::{
    BundleScope, MLTenant, MLTenantSpec, SealedBundle, SealedBundleSpec, SecretReader, SecretSpec,
};
use mltenant_operator::crypto::{self, Certificate};
use secrecy::ExposeSecret as _;
use serde_json::json;

/// Label put on every tenant of one test; that test's operator only handles tenants with it.
pub const TEST_LABEL: &str = "mltenant.io/test-run";

pub fn kubeconfig_path(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the integration tests with `make test` (hack/test-integration.sh)")
    })
}

/// The control plane's kubectl (built with it by hack/build-controlplane.sh), as the admin.
pub fn kubectl_command() -> std::process::Command {
    let bin_dir = std::env::var_os("MLTENANT_TEST_BIN_DIR").expect("MLTENANT_TEST_BIN_DIR (hack/test-integration.sh)");
    let mut command = std::process::Command::new(PathBuf::from(bin_dir).join("kubectl"));
    command.env("KUBECONFIG", kubeconfig_path("MLTENANT_TEST_ADMIN_KUBECONFIG"));
    command
}

async fn client_for(var: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path(var)).expect("readable kubeconfig");
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("valid kubeconfig");
    Client::try_from(config).expect("client")
}

/// A cluster-admin client, for test setup and for looking at results.
pub async fn admin() -> Client {
    client_for("MLTENANT_TEST_ADMIN_KUBECONFIG").await
}

/// A client authenticated as the operator's ServiceAccount (only the shipped RBAC applies).
pub async fn operator_identity() -> Client {
    client_for("MLTENANT_TEST_OPERATOR_KUBECONFIG").await
}

/// A name unique across tests and test runs: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id() % 100_000, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Poll `check` until it yields a value, failing the test with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The bearer token of the kubeconfig `var` points at (the local control plane uses static
/// tokens).
pub fn token_of(var: &str) -> String {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path(var)).expect("readable kubeconfig");
    let user = kubeconfig.auth_infos.into_iter().next().and_then(|u| u.auth_info).expect("a user");
    user.token.map(|t| t.expose_secret().to_owned()).expect("a token user")
}

/// An MLTenant named `name` with the given environments, labelled for `run_id`'s operator.
pub fn tenant(name: &str, run_id: &str, environments: &[&str]) -> MLTenant {
    let mut t = MLTenant::new(name, MLTenantSpec::with_environments(environments));
    t.metadata.labels = Some(BTreeMap::from([(TEST_LABEL.to_owned(), run_id.to_owned())]));
    t
}

pub async fn create_tenant(client: &Client, tenant: &MLTenant) -> MLTenant {
    Api::<MLTenant>::all(client.clone()).create(&PostParams::default(), tenant).await.expect("create the MLTenant")
}

/// Read, edit and replace `name` (as `kubectl edit` would), retrying when the operator's
/// status write got in between (409 Conflict).
pub async fn edit<K>(api: &Api<K>, name: &str, edit: impl Fn(&mut K))
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    for _ in 0..10 {
        let mut current = api.get(name).await.unwrap_or_else(|e| panic!("get {name}: {e}"));
        edit(&mut current);
        match api.replace(name, &PostParams::default(), &current).await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(other) => panic!("update {name}: {other}"),
        }
    }
    panic!("{name} kept conflicting");
}

/// Replace the tenant's spec (as `kubectl apply` of an edited manifest would).
pub async fn update_spec(client: &Client, name: &str, change: impl Fn(&mut MLTenantSpec)) {
    edit(&Api::<MLTenant>::all(client.clone()), name, |t: &mut MLTenant| change(&mut t.spec)).await;
}

pub async fn delete_tenant(client: &Client, name: &str) {
    Api::<MLTenant>::all(client.clone()).delete(name, &DeleteParams::default()).await.expect("delete the MLTenant");
}

/// Wait until the MLTenant `name` is completely gone (its finalizer done).
pub async fn wait_tenant_gone(client: &Client, name: &str) {
    wait_for(&format!("MLTenant {name} to be gone"), TIMEOUT, || async {
        Api::<MLTenant>::all(client.clone()).get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

/// Whether `t` is Ready for its current generation.
pub fn is_ready(t: &MLTenant) -> bool {
    let Some(status) = &t.status else { return false };
    status.observed_generation == t.metadata.generation
        && status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The value of condition `type_` on the tenant, as (status, reason, message).
pub async fn condition(client: &Client, name: &str, type_: &str) -> Option<(String, String, String)> {
    let tenant = Api::<MLTenant>::all(client.clone()).get_opt(name).await.ok()??;
    let c = tenant.status?.conditions.into_iter().find(|c| c.type_ == type_)?;
    Some((c.status, c.reason, c.message))
}

/// Wait until the tenant's condition has `status` (and `reason`, when given) for its current
/// generation; returns the message.
pub async fn wait_condition(client: &Client, name: &str, type_: &str, status: &str, reason: Option<&str>) -> String {
    let api = Api::<MLTenant>::all(client.clone());
    let what =
        format!("MLTenant {name} condition {type_}={status}{}", reason.map(|r| format!(" ({r})")).unwrap_or_default());
    wait_for(&what, TIMEOUT, || async {
        let t = api.get_opt(name).await.ok()??;
        let s = t.status.as_ref()?;
        if s.observed_generation != t.metadata.generation {
            return None;
        }
        let c = s.conditions.iter().find(|c| c.type_ == type_)?;
        (c.status == status && reason.is_none_or(|r| c.reason == r)).then(|| c.message.clone())
    })
    .await
}

pub async fn get_namespace(client: &Client, name: &str) -> Option<Namespace> {
    Api::<Namespace>::all(client.clone()).get_opt(name).await.expect("get namespace")
}

/// Wait until namespace `name` is completely gone (deleted and finalized by the namespace controller).
pub async fn wait_namespace_gone(client: &Client, name: &str) {
    wait_for(&format!("namespace {name} to be gone"), TIMEOUT, || async {
        get_namespace(client, name).await.is_none().then_some(())
    })
    .await;
}

/// Wait until namespace `name` exists, is not terminating, and satisfies `check`.
pub async fn wait_namespace(client: &Client, name: &str, what: &str, check: impl Fn(&Namespace) -> bool) -> Namespace {
    wait_for(&format!("namespace {name}: {what}"), TIMEOUT, || async {
        get_namespace(client, name).await.filter(|ns| ns.metadata.deletion_timestamp.is_none() && check(ns))
    })
    .await
}

/// Whether the API server's authorizer allows `user` in `groups` the request `attributes`.
pub async fn allowed(client: &Client, user: &str, groups: &[String], attributes: ResourceAttributes) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(groups.to_vec()),
            resource_attributes: Some(attributes),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await.unwrap();
    answer.status.is_some_and(|s| s.allowed)
}

/// Whether `namespace/name` ServiceAccount may `verb` Secret `secret` (or all Secrets) in `ns`.
pub async fn may(client: &Client, sa: (&str, &str), verb: &str, ns: &str, secret: Option<&str>) -> bool {
    let user = format!("system:serviceaccount:{}:{}", sa.0, sa.1);
    let groups =
        ["system:serviceaccounts".into(), format!("system:serviceaccounts:{}", sa.0), "system:authenticated".into()];
    let attributes = ResourceAttributes {
        namespace: Some(ns.into()),
        verb: Some(verb.into()),
        resource: Some("secrets".into()),
        name: secret.map(Into::into),
        ..Default::default()
    };
    allowed(client, &user, &groups, attributes).await
}

/// The Events recorded on MLTenant `tenant` with `reason`.
pub async fn events_for(client: &Client, tenant: &str, reason: &str) -> Vec<Event> {
    let events = Api::<Event>::namespaced(client.clone(), "default").list(&Default::default()).await.unwrap();
    events
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(tenant) && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

pub async fn get_secret(client: &Client, namespace: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await.expect("get secret")
}

/// A fresh operator namespace, so this test's keys are its own, with the operator's
/// namespaced RBAC (the leader-election Lease) as deploy/rbac.yaml grants it in mltenant-system.
pub async fn key_namespace(client: &Client) -> String {
    let name = unique("keys");
    create_namespace(client, &name, &[]).await;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "leader-election"},
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}],
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "leader-election"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leader-election"},
        "subjects": [{"kind": "ServiceAccount", "name": "mltenant-operator", "namespace": "mltenant-system"}],
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), &name).create(&PostParams::default(), &role).await.unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), &name).create(&PostParams::default(), &binding).await.unwrap();
    name
}

/// An operator of run `run` whose sealing keys live in a [`key_namespace`] of their own (which
/// it names): the keys it makes or is given are this test's alone.
pub async fn operator_with_own_keys(client: &Client, run: &str) -> (Operator, String) {
    let ns = key_namespace(client).await;
    (Operator::start_with(run, &["--namespace", &ns]).await, ns)
}

/// The sealing-key Secrets in `namespace`.
pub async fn sealing_keys(client: &Client, namespace: &str) -> Vec<Secret> {
    let lp = ListParams::default().labels(&format!("{SEALING_KEY}={ACTIVE}"));
    Api::<Secret>::namespaced(client.clone(), namespace).list(&lp).await.unwrap().items
}

pub async fn create_namespace(client: &Client, name: &str, labels: &[(&str, &str)]) {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    ns.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
}

/// Values sealed for one scope with one certificate.
pub fn sealed(
    cert: &Certificate,
    scope: BundleScope,
    tenant: &str,
    env: &str,
    data: &[(&str, &[u8])],
) -> BTreeMap<String, String> {
    let label = crypto::label(scope, tenant, env);
    data.iter().map(|(k, v)| (k.to_string(), crypto::encode_base64(&crypto::seal(cert, &label, v).unwrap()))).collect()
}

/// A SealedBundle of `scope` for `tenant`/`env` (Cluster scope: every tenant) with `data`.
pub fn bundle(
    name: &str,
    scope: BundleScope,
    tenant: Option<&str>,
    env: Option<&str>,
    data: BTreeMap<String, String>,
) -> SealedBundle {
    SealedBundle::new(
        name,
        SealedBundleSpec {
            tenant: tenant.map(Into::into),
            environment: env.map(Into::into),
            ..SealedBundleSpec::new(scope, data)
        },
    )
}

/// The Argo Workflows ServiceAccount, the reader the mission grants Secrets to.
pub const ARGO: (&str, &str) = ("argowf", "argo-workflow");

/// Operator arguments for tests that need it to look at a tenant again soon.
pub const RESYNC_1S: &[&str] = &["--resync-period", "1s"];

/// An operator of `run` started with `args`, its certificate, and a Tenant-scope bundle
/// `bundle_name` for `tenant` (`PASSWORD=s3cr3t`).
pub async fn operator_with_bundle(
    client: &Client,
    run: &str,
    args: &[&str],
    tenant: &str,
    bundle_name: &str,
) -> (Operator, Certificate) {
    let op = Operator::start_with(run, args).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let data = sealed(&cert, BundleScope::Tenant, tenant, "", &[("PASSWORD", b"s3cr3t")]);
    create_bundle(client, &bundle(bundle_name, BundleScope::Tenant, Some(tenant), None, data)).await;
    (op, cert)
}

/// A tenant of `run` whose `dev` environment gets Secret `ml-platform` from `bundle`, readable
/// by the Argo Workflows ServiceAccount.
pub fn tenant_with_secret(name: &str, run: &str, bundle: &str) -> MLTenant {
    let mut t = tenant(name, run, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new("ml-platform", bundle)]);
    t.spec.secret_readers = Some(vec![SecretReader::new(ARGO.0, ARGO.1)]);
    t
}

pub async fn create_bundle(client: &Client, b: &SealedBundle) {
    Api::<SealedBundle>::all(client.clone()).create(&PostParams::default(), b).await.expect("create SealedBundle");
}

/// Percent-encode a query parameter.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Like `wait_for`, for checks that can say what they see instead: the failure message ends
/// with the last thing `check` reported.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => {
                assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
