//! Test harness: clients for the local control plane started by `hack/test-integration.sh`,
//! unique names so tests run in parallel, an operator child process per test running as the
//! operator's ServiceAccount identity, and waiting with a clear failure message.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use mltenant_operator::api::{BundleScope, EnvironmentSpec, MLTenant, MLTenantSpec, SealedBundle, SealedBundleSpec};
use mltenant_operator::cli::operator;
use mltenant_operator::crypto::{self, Certificate};
use secrecy::ExposeSecret as _;
use tokio::process::{Child, Command};

/// Label put on every tenant of one test; that test's operator only handles tenants with it.
pub const TEST_LABEL: &str = "mltenant.io/test-run";

fn kubeconfig_path(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the integration tests with `make test` (hack/test-integration.sh)")
    })
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

/// One test's operator: a `mltenant controller` child process handling only the tenants (and
/// reporting only on the SealedBundles) labelled with this test's run id.
pub struct Operator {
    child: Child,
    pub run_id: String,
    port: u16,
}

impl Operator {
    pub async fn start(run_id: &str) -> Self {
        Self::start_with(run_id, &[]).await
    }

    pub async fn start_with(run_id: &str, extra_args: &[&str]) -> Self {
        Self::start_on("127.0.0.1", run_id, extra_args).await
    }

    /// Like `start_with`, serving HTTP on `host` (e.g. `0.0.0.0`) instead of loopback only.
    pub async fn start_on(host: &str, run_id: &str, extra_args: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_mltenant"))
            .args(["controller", "--http-addr", &format!("{host}:{port}")])
            .args(["--tenant-selector", &format!("{TEST_LABEL}={run_id}")])
            .args(["--bundle-selector", &format!("{TEST_LABEL}={run_id}")])
            .args(["--lease-name", run_id])
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig_path("MLTENANT_TEST_OPERATOR_KUBECONFIG"))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the operator");
        let op = Operator { child, run_id: run_id.to_owned(), port };
        wait_for("the operator's /readyz", TIMEOUT, || async {
            http_get(op.port, "/readyz").await.filter(|(status, _)| *status == 200)
        })
        .await;
        op
    }

    /// Stop the operator abruptly (SIGKILL), as a crash would.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill the operator");
    }

    /// Stop the operator as Kubernetes does (SIGTERM) and wait for it to exit, failing the test
    /// if it takes longer than `timeout` (Kubernetes would SIGKILL it after the grace period).
    pub async fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let pid = self.child.id().expect("the operator is still running").to_string();
        let kill = Command::new("kill").args(["-TERM", &pid]).status().await.expect("run kill");
        assert!(kill.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the operator did not exit within {timeout:?} of SIGTERM"))
            .expect("wait for the operator")
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.1
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// POST `body` to `path` on the operator's HTTP server as the cluster admin: (status, body).
    pub async fn post(&self, path: &str, body: &[u8]) -> (u16, String) {
        self.post_as(Some(&token_of("MLTENANT_TEST_ADMIN_KUBECONFIG")), path, body).await
    }

    /// POST `body` to `path` with `token` as bearer token (or none): (status, body).
    pub async fn post_as(&self, token: Option<&str>, path: &str, body: &[u8]) -> (u16, String) {
        let base = format!("http://127.0.0.1:{}", self.port);
        let auth = token.map(|t| format!("Bearer {t}"));
        let header = auth.as_deref().map(|a| ("Authorization", a));
        operator::direct(&base, "POST", path, header, body).await.expect("the operator answers")
    }

    /// GET `path` with `token` as bearer token: (status, body).
    pub async fn get_as(&self, token: &str, path: &str) -> (u16, String) {
        let base = format!("http://127.0.0.1:{}", self.port);
        let auth = format!("Bearer {token}");
        operator::direct(&base, "GET", path, Some(("Authorization", &auth)), b"").await.expect("the operator answers")
    }

    /// GET `path` from the operator's HTTP server: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path).await.unwrap_or_else(|| panic!("the operator does not answer GET {path}"))
    }

    /// Sum of every sample of `name` whose labels include all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        parse_metric(&self.metrics().await, name, labels)
    }

    /// Write requests (anything but GET) the operator sent to the API server so far.
    pub async fn writes(&self) -> f64 {
        let text = self.metrics().await;
        ["POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .map(|m| parse_metric(&text, "mltenant_kube_requests_total", &[("method", m)]))
            .sum()
    }
}

fn parse_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' ')))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    operator::direct(&format!("http://127.0.0.1:{port}"), "GET", path, None, b"").await.ok()
}

/// The bearer token of the kubeconfig `var` points at (the local control plane uses static
/// tokens).
pub fn token_of(var: &str) -> String {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path(var)).expect("readable kubeconfig");
    let user = kubeconfig.auth_infos.into_iter().next().and_then(|u| u.auth_info).expect("a user");
    user.token.map(|t| t.expose_secret().to_owned()).expect("a token user")
}

/// An MLTenant named `name` with the given environments, labelled for `run_id`'s operator.
pub fn tenant(name: &str, run_id: &str, environments: &[&str]) -> MLTenant {
    let mut t = MLTenant::new(
        name,
        MLTenantSpec {
            environments: environments
                .iter()
                .map(|e| EnvironmentSpec { name: (*e).into(), namespace: None, labels: None })
                .collect(),
            secrets: None,
            secret_readers: None,
            deletion_policy: None,
            adopt_existing_namespaces: None,
        },
    );
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
            scope,
            tenant: tenant.map(Into::into),
            environment: env.map(Into::into),
            tenant_selector: (scope == BundleScope::Cluster).then(LabelSelector::default),
            type_: None,
            template: None,
            expires_at: None,
            encrypted_data: data,
        },
    )
}

pub async fn create_bundle(client: &Client, b: &SealedBundle) {
    Api::<SealedBundle>::all(client.clone()).create(&PostParams::default(), b).await.expect("create SealedBundle");
}

/// A real Prometheus server (the Debian package's, `hack/prometheus.sh`) on loopback, scraping
/// one test operator every second and evaluating the chart's alert rules file, unchanged, every
/// second. Its data directory and log are its own; the log is printed when the test fails.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// The rule file the chart ships (also the PrometheusRule's spec).
pub const ALERT_RULES: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/charts/mltenant-operator/files/prometheus-rules.yaml");

impl Prometheus {
    /// Start Prometheus scraping `op` as job `mltenant-operator` (the job the rules and the
    /// dashboard select) and wait until it is ready.
    pub async fn start(op: &Operator) -> Self {
        let binary = std::env::var_os("MLTENANT_TEST_PROMETHEUS").unwrap_or_else(|| {
            panic!("MLTENANT_TEST_PROMETHEUS is not set: run the integration tests with hack/test-integration.sh")
        });
        let dir = std::env::temp_dir().join(unique("mltenant-prometheus"));
        std::fs::create_dir_all(dir.join("data")).expect("create the Prometheus directory");
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{ALERT_RULES:?}]\n\
             scrape_configs:\n\
             - job_name: mltenant-operator\n  static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            op.port()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("create the Prometheus log");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, port, dir };
        wait_for("Prometheus /-/ready", TIMEOUT, || async {
            http_get(prometheus.port, "/-/ready").await.filter(|(status, _)| *status == 200)
        })
        .await;
        prometheus
    }

    /// GET an API path; the `data` of a successful answer.
    pub async fn api(&self, path_and_query: &str) -> serde_json::Value {
        let (status, body) = http_get(self.port, path_and_query)
            .await
            .unwrap_or_else(|| panic!("Prometheus does not answer GET {path_and_query}"));
        let answer: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path_and_query}: {e}: {body}"));
        assert!(status == 200 && answer["status"] == "success", "GET {path_and_query}: {status} {body}");
        answer["data"].clone()
    }

    /// An instant query: the result vector (or scalar) now.
    pub async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql))).await;
        match &data["result"] {
            serde_json::Value::Array(series) => series.clone(),
            scalar => vec![serde_json::json!({"metric": {}, "value": scalar})],
        }
    }

    /// A range query over the last `seconds` with a one-second step: the result matrix.
    pub async fn query_range(&self, promql: &str, seconds: u64) -> Vec<serde_json::Value> {
        let end = jiff::Timestamp::now().as_second();
        let start = end - i64::try_from(seconds).expect("a short range");
        let path = format!("/api/v1/query_range?query={}&start={start}&end={end}&step=1", url_encode(promql));
        self.api(&path).await["result"].as_array().cloned().unwrap_or_default()
    }

    /// The active alerts (pending or firing), each as (alertname, state, labels).
    pub async fn alerts(&self) -> Vec<(String, String, serde_json::Value)> {
        let data = self.api("/api/v1/alerts").await;
        data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let name = a["labels"]["alertname"].as_str().unwrap_or_default().to_owned();
                (name, a["state"].as_str().unwrap_or_default().to_owned(), a["labels"].clone())
            })
            .collect()
    }

    /// Every alerting rule, as (name, health, lastError, lastEvaluation).
    pub async fn rules(&self) -> Vec<(String, String, String, jiff::Timestamp)> {
        let data = self.api("/api/v1/rules").await;
        let mut rules = Vec::new();
        for group in data["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let text = |k: &str| rule[k].as_str().unwrap_or_default().to_owned();
                let evaluated = text("lastEvaluation").parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                rules.push((text("name"), text("health"), text("lastError"), evaluated));
            }
        }
        rules
    }

    /// Wait until every rule has been evaluated after `since` (so its result reflects what
    /// Prometheus had scraped by then).
    pub async fn wait_rules_evaluated_after(&self, since: jiff::Timestamp) {
        wait_for("every alert rule to be evaluated again", TIMEOUT, || async {
            let rules = self.rules().await;
            (!rules.is_empty() && rules.iter().all(|(_, _, _, at)| *at > since)).then_some(())
        })
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- Prometheus log ({}), last lines:", self.dir.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
