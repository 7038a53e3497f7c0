//! The e2e tier's hands on its cluster (started by `hack/e2e-cluster.sh`): helm, kubectl and
//! the `mltenant` CLI as the cluster's users, the chart's release and its pods, the API
//! server's audit log (who wrote what, pod by pod), and the processes the node runs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::{OnceCell, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::harness::{logs, wait_until};

pub const RELEASE: &str = "mltenant-operator";
pub const NAMESPACE: &str = "mltenant-system";
/// The chart's default `operator.leaseDuration`: a standby takes an unreleased Lease after it.
pub const LEASE: Duration = Duration::from_secs(15);
/// Generous bounds of waits on a 2-core machine; they bound a hung test, they are not
/// expectations (the timings are printed).
pub const ROLLOUT: Duration = Duration::from_secs(180);

pub fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run the e2e tier with `make e2e`"))
}

pub fn state() -> PathBuf {
    PathBuf::from(env("MLTENANT_E2E_STATE"))
}

/// The operator image as imported into the node: (repository, tag).
pub fn image() -> (String, String) {
    let reference = env("MLTENANT_E2E_IMAGE");
    let (repository, tag) = reference.rsplit_once(':').expect("IMAGE:TAG");
    (repository.to_owned(), tag.to_owned())
}

/// Tests that take the operator's pods away (deleting the leader, evicting, upgrading) run
/// alone; the others run side by side.
static PODS: RwLock<()> = RwLock::const_new(());

pub async fn shared() -> RwLockReadGuard<'static, ()> {
    PODS.read().await
}

pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    PODS.write().await
}

/// Run `program` with `args` (and `stdin`) as the user of kubeconfig `kubeconfig`; its output.
pub fn run_as(kubeconfig: &Path, program: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("MLTENANT_OPERATOR_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

pub fn admin_kubeconfig() -> PathBuf {
    PathBuf::from(env("MLTENANT_TEST_ADMIN_KUBECONFIG"))
}

/// A cluster-admin client that reports a 429 instead of retrying it: kube's default client
/// retries 429 (up to 15 times, minutes in all), and an eviction the PodDisruptionBudget refuses
/// is a 429.
pub async fn admin_without_retries() -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(admin_kubeconfig()).expect("readable kubeconfig");
    let options = kube::config::KubeConfigOptions::default();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("valid kubeconfig");
    config.default_retry = false;
    Client::try_from(config).expect("client")
}

/// Succeeded, or fail the test with what it printed.
pub fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

pub fn helm(args: &[&str]) -> Output {
    run_as(&admin_kubeconfig(), &env("MLTENANT_TEST_HELM"), args, b"")
}

pub fn kubectl(args: &[&str], stdin: &[u8]) -> Output {
    let kubectl = Path::new(&env("MLTENANT_TEST_BIN_DIR")).join("kubectl");
    run_as(&admin_kubeconfig(), kubectl.to_str().unwrap(), args, stdin)
}

/// The `mltenant` CLI (this build's) as the user of kubeconfig `var`.
pub fn mltenant(var: &str, args: &[&str], stdin: &[u8]) -> Output {
    run_as(Path::new(&env(var)), env!("CARGO_BIN_EXE_mltenant"), args, stdin)
}

pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/mltenant-operator");

/// `helm install` of the chart as its README says, with the image imported into the node
/// (never pulled) and nothing else changed; the namespace first, enforcing the restricted Pod
/// Security Standard (as deploy/namespace.yaml does), so the pods are admitted only as shipped.
pub fn helm_install() -> String {
    ok(
        "label the namespace restricted",
        kubectl(
            &["apply", "--server-side", "--field-manager", "e2e", "-f", "-"],
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n  labels:\n    \
                 pod-security.kubernetes.io/enforce: restricted\n"
            )
            .as_bytes(),
        ),
    );
    let (repository, tag) = image();
    let (repository, tag) = (format!("image.repository={repository}"), format!("image.tag={tag}"));
    let args = [
        "install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--set",
        &repository,
        "--set",
        &tag,
        "--set",
        "image.pullPolicy=Never",
    ];
    ok("helm install", helm(&args))
}

/// Installed once per test process (the first test to ask installs it, unless a release is
/// there already): how long from `helm install` until both replicas were Ready and one led.
static INSTALLED: OnceCell<Option<Duration>> = OnceCell::const_new();

pub async fn installed(client: &Client) -> Option<Duration> {
    register_logs();
    *INSTALLED
        .get_or_init(|| async {
            let deployed = helm(&["status", RELEASE, "--namespace", NAMESPACE]).status.success();
            let start = Instant::now();
            if !deployed {
                let notes = helm_install();
                println!("helm install:\n{notes}");
            }
            wait_release_ready(client).await;
            (!deployed).then(|| start.elapsed())
        })
        .await
}

pub fn selector() -> String {
    format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=mltenant-operator")
}

pub async fn pods(client: &Client) -> Vec<Pod> {
    let lp = ListParams::default().labels(&selector());
    Api::<Pod>::namespaced(client.clone(), NAMESPACE).list(&lp).await.expect("list the pods").items
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

pub fn pod_ip(pod: &Pod) -> String {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("a pod IP")
}

/// The holder of the release's Lease, if any.
pub async fn leader(client: &Client) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), NAMESPACE).get_opt(RELEASE).await.ok()??;
    lease.spec?.holder_identity
}

/// GET `path` from a pod's HTTP port, straight over the pod network.
pub async fn pod_get(pod: &Pod, path: &str) -> Option<(u16, String)> {
    let base = format!("http://{}:8080", pod_ip(pod));
    let answer = mltenant_operator::cli::operator::direct(&base, "GET", path, &[], b"");
    tokio::time::timeout(Duration::from_secs(10), answer).await.ok()?.ok()
}

/// Wait until the Deployment has rolled out completely (every replica updated, Ready and
/// available, nothing old left), one of its pods holds the Lease and says it leads, and every
/// one serves the same sealing certificate.
pub async fn wait_release_ready(client: &Client) {
    let deployments = Api::<Deployment>::namespaced(client.clone(), NAMESPACE);
    wait_until("the release's pods Ready, one of them leading", ROLLOUT, || async {
        let d = deployments.get_opt(RELEASE).await.ok().flatten().ok_or("no Deployment")?;
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let s = d.status.clone().unwrap_or_default();
        let rolled = s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(want)
            && s.ready_replicas == Some(want)
            && s.available_replicas == Some(want)
            && s.replicas == Some(want);
        if !rolled {
            return Err(format!("Deployment status {s:?}"));
        }
        let pods: Vec<Pod> = pods(client).await.into_iter().filter(is_ready).collect();
        let holder = leader(client).await.ok_or("no Lease holder")?;
        let leading =
            pods.iter().find(|p| name(p) == holder).ok_or(format!("Lease held by {holder}, not a Ready pod"))?;
        let metrics = pod_get(leading, "/metrics").await.ok_or("the leader's /metrics does not answer")?.1;
        let leads = crate::harness::operator::parse_metric(&metrics, "mltenant_leader", &[]);
        if leads != 1.0 || pods.len() != usize::try_from(want).unwrap() {
            return Err(format!("{} Ready pods, the holder {holder} reports mltenant_leader {leads}", pods.len()));
        }
        // What the chart's NOTES have users wait for before sealing: the first sealing key (the
        // leader creates it once it leads), served by every replica (a standby learns of it
        // through its watch), whichever one the service proxy picks.
        let mut certificates = std::collections::BTreeSet::new();
        for pod in &pods {
            let (code, body) = pod_get(pod, "/v1/cert.pem").await.ok_or(format!("{}: no answer", name(pod)))?;
            if code != 200 {
                return Err(format!("{} serves no certificate yet: {code} {body}", name(pod)));
            }
            certificates.insert(body);
        }
        (certificates.len() == 1).then_some(()).ok_or(format!("the replicas serve {} certificates", certificates.len()))
    })
    .await;
}

/// Print the components' logs, and the operator pods' logs as the node keeps them, if the
/// running test fails.
pub fn register_logs() {
    let logs_dir = state().join("logs");
    for component in
        ["kube-apiserver", "kubelet", "containerd", "kube-controller-manager", "argocd-application-controller"]
    {
        logs::register(component, &logs_dir.join(format!("{component}.log")));
    }
    if let Ok(dirs) = std::fs::read_dir("/var/log/pods") {
        for dir in dirs.flatten().filter(|d| d.file_name().to_string_lossy().starts_with(NAMESPACE)) {
            let log = dir.path().join("operator").join("0.log");
            logs::register(&format!("pod {}", dir.file_name().to_string_lossy()), &log);
        }
    }
}

/// A write the API server's audit log recorded, made by a pod's ServiceAccount.
#[derive(Debug, Clone)]
pub struct Write {
    pub pod: String,
    /// The verb and the object: `update leases/mltenant-system/mltenant-operator`.
    pub what: String,
    pub code: u16,
    pub received: jiff::Timestamp,
}

/// The writes of the release's ServiceAccount, in the order the API server received them.
pub fn audited_writes() -> Vec<Write> {
    let user = format!("system:serviceaccount:{NAMESPACE}:{RELEASE}");
    let text = std::fs::read_to_string(state().join("logs/audit.log")).expect("the audit log");
    let mut writes: Vec<Write> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|e| e["user"]["username"] == user.as_str())
        .map(|e| {
            let object = &e["objectRef"];
            Write {
                pod: e["user"]["extra"]["authentication.kubernetes.io/pod-name"][0].as_str().unwrap_or("").to_owned(),
                what: format!(
                    "{} {}/{}/{}",
                    e["verb"].as_str().unwrap_or(""),
                    object["resource"].as_str().unwrap_or(""),
                    object["namespace"].as_str().unwrap_or(""),
                    object["name"].as_str().unwrap_or("")
                ),
                code: e["responseStatus"]["code"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(0),
                received: e["requestReceivedTimestamp"].as_str().and_then(|t| t.parse().ok()).expect("a timestamp"),
            }
        })
        .collect();
    writes.sort_by_key(|w| w.received);
    writes
}

/// When `pod` took the Lease (its first successful write of it since `since`), per the audit log.
pub fn took_lease(writes: &[Write], pod: &str, since: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let lease = format!(" leases/{NAMESPACE}/{RELEASE}");
    writes
        .iter()
        .find(|w| w.pod == pod && w.received >= since && w.what.ends_with(&lease) && (200..300).contains(&w.code))
        .map(|w| w.received)
}

/// Assert that `old` (a leader that handed over to `new`, which began at `since`) wrote
/// nothing the API server accepted once `new` held the Lease, after proving the audit log
/// records `old`'s writes; how many it made in all.
pub fn assert_no_write_after_handover(old: &str, new: &str, since: jiff::Timestamp) -> usize {
    let writes = audited_writes();
    let from_old = writes.iter().filter(|w| w.pod == old && (200..300).contains(&w.code)).count();
    assert!(from_old > 0, "the audit log has no write of {old}: it cannot show what {old} did");
    let took = took_lease(&writes, new, since).unwrap_or_else(|| panic!("the audit log has no Lease write of {new}"));
    let late: Vec<&Write> =
        writes.iter().filter(|w| w.pod == old && w.received >= took && (200..300).contains(&w.code)).collect();
    assert!(late.is_empty(), "{old} wrote after {new} took the Lease at {took}: {late:#?}");
    from_old
}

/// The node's processes of the operator's containers: pod name -> pid.
pub fn operator_processes() -> BTreeMap<String, u32> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        if !cmdline.starts_with(b"/usr/local/bin/mltenant\0controller") {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let pod = environ
            .split(|b| *b == 0)
            .find_map(|v| v.strip_prefix(b"POD_NAME="))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        if let Some(pod) = pod {
            found.insert(pod, pid);
        }
    }
    found
}
