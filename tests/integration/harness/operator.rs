//! One test's operator: a `mltenant controller` child process running as the operator's
//! ServiceAccount identity, handling only the tenants (and reporting only on the
//! SealedBundles) labelled with the test's run id, logging to its own file.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use mltenant_operator::api::SealedBundle;
use mltenant_operator::cli::operator;
use tokio::process::{Child, Command};

use super::{TEST_LABEL, TIMEOUT, kubeconfig_path, logs, token_of, wait_for};

pub struct Operator {
    child: Child,
    pub run_id: String,
    port: u16,
    log: PathBuf,
    /// Held while this operator serves the control plane's one audit sink address.
    _sink: Option<tokio::sync::MutexGuard<'static, ()>>,
}

/// The control plane's API server posts its audit events to one address
/// (`MLTENANT_TEST_AUDIT_ADDR`): one operator at a time serves it.
static AUDIT_SINK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The files of the control plane's PKI the audit sink is configured with (hack/controlplane-up.sh).
pub fn audit_pki(file: &str) -> String {
    let state = std::env::var("MLTENANT_TEST_CONTROLPLANE")
        .expect("MLTENANT_TEST_CONTROLPLANE (source the control plane's env.sh)");
    format!("{state}/pki/{file}")
}

/// Where the control plane's API server sends its audit events.
pub fn audit_addr() -> String {
    std::env::var("MLTENANT_TEST_AUDIT_ADDR").expect("MLTENANT_TEST_AUDIT_ADDR (source the control plane's env.sh)")
}

/// The binary under test: the test build's, or the one `MLTENANT_TEST_OPERATOR_BIN` names
/// (the soak runs the release build the image ships).
fn binary() -> PathBuf {
    std::env::var_os("MLTENANT_TEST_OPERATOR_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mltenant")), Into::into)
}

impl Operator {
    pub async fn start(run_id: &str) -> Self {
        Self::start_with(run_id, &[]).await
    }

    pub async fn start_with(run_id: &str, extra_args: &[&str]) -> Self {
        Self::start_on("127.0.0.1", run_id, extra_args).await
    }

    /// Like `start_with`, serving the audit sink the control plane's API server posts to, as
    /// docs/access.md configures it (its client certificate, or the token file); waits for any
    /// other test's sink to stop first.
    pub async fn start_with_audit(run_id: &str, extra_args: &[&str]) -> Self {
        let guard = AUDIT_SINK.lock().await;
        let (addr, cert, key, ca, token) = (
            audit_addr(),
            audit_pki("audit-sink.crt"),
            audit_pki("audit-sink.key"),
            audit_pki("ca.crt"),
            audit_pki("audit-token"),
        );
        let mut args: Vec<&str> = vec![
            "--audit-sink-addr",
            &addr,
            "--audit-sink-tls-cert",
            &cert,
            "--audit-sink-tls-key",
            &key,
            "--audit-sink-client-ca",
            &ca,
            "--audit-sink-client-names",
            "kube-apiserver-audit",
            "--audit-sink-token-file",
            &token,
        ];
        args.extend_from_slice(extra_args);
        let mut op = Self::start_with(run_id, &args).await;
        op._sink = Some(guard);
        op
    }

    /// Like `start_with`, serving HTTP on `host` (e.g. `0.0.0.0`) instead of loopback only.
    pub async fn start_on(host: &str, run_id: &str, extra_args: &[&str]) -> Self {
        Self::start_env(host, run_id, extra_args, &[]).await
    }

    /// Like `start`, with the fail points `failpoints` set (the `fail` crate's FAILPOINTS
    /// syntax, e.g. `tenant-reconcile=panic`; the tests' build of the operator has them).
    pub async fn start_failing(run_id: &str, failpoints: &str) -> Self {
        Self::start_env("127.0.0.1", run_id, &[], &[("FAILPOINTS", failpoints)]).await
    }

    async fn start_env(host: &str, run_id: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        // A free port is picked and let go, so another process can bind it before the operator
        // does (seen with a bench running beside the tests): pick another one.
        for _ in 0..3 {
            let op = Self::spawn_on(host, run_id, extra_args, env);
            if op.ready_unless_port_taken(TIMEOUT).await {
                return op;
            }
        }
        panic!("the operator found its HTTP port taken three times in a row");
    }

    /// Start the process and return at once, before it is ready (to crash it while it starts).
    pub fn spawn(run_id: &str, extra_args: &[&str]) -> Self {
        Self::spawn_on("127.0.0.1", run_id, extra_args, &[])
    }

    fn spawn_on(host: &str, run_id: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let (log, path) = logs::create("operator");
        let child = Command::new(binary())
            .args(["controller", "--http-addr", &format!("{host}:{port}")])
            .args(["--tenant-selector", &format!("{TEST_LABEL}={run_id}")])
            .args(["--bundle-selector", &format!("{TEST_LABEL}={run_id}")])
            .args(["--lease-name", run_id])
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig_path("MLTENANT_TEST_OPERATOR_KUBECONFIG"))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            // Plain text: the file is read by people and searched by tests.
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start the operator");
        Operator { child, run_id: run_id.to_owned(), port, log: path, _sink: None }
    }

    /// Wait until `/readyz` answers 200, failing early if the process exits.
    pub async fn wait_ready(&self, timeout: Duration) {
        assert!(self.ready_unless_port_taken(timeout).await, "the operator's HTTP port was taken");
    }

    /// Wait until `/readyz` answers 200 (true), or the process exited because its HTTP port was
    /// taken (false); failing if it exits for any other reason.
    async fn ready_unless_port_taken(&self, timeout: Duration) -> bool {
        let pid = self.pid();
        wait_for("the operator's /readyz", timeout, || async {
            if !process_alive(pid) {
                assert!(
                    self.log().contains("Address already in use"),
                    "the operator (pid {pid}) exited before it was ready"
                );
                return Some(false);
            }
            http_get(self.port, "/readyz").await.filter(|(status, _)| *status == 200).map(|_| true)
        })
        .await
    }

    /// Wait until this replica leads and its caches hold their initial lists (`/readyz` of a
    /// leader): the moment it can reconcile.
    pub async fn wait_leading(&self) {
        wait_for("the operator to lead with its caches synced", TIMEOUT, || async {
            let leads = self.metric("mltenant_leader", &[]).await == 1.0;
            let ready = http_get(self.port, "/readyz").await.is_some_and(|(status, _)| status == 200);
            (leads && ready).then_some(())
        })
        .await;
    }

    /// Stop the operator abruptly (SIGKILL), as a crash would, and reap it.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill the operator");
    }

    /// Stop the operator as Kubernetes does (SIGTERM) and wait for it to exit, failing the test
    /// if it takes longer than `timeout` (Kubernetes would SIGKILL it after the grace period).
    pub async fn terminate(mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM").await;
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the operator did not exit within {timeout:?} of SIGTERM"))
            .expect("wait for the operator")
    }

    /// Send `signal` (a name `kill -s` takes: TERM, STOP, CONT, ...) to the process.
    pub async fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        // Output captured, not inherited: nothing a test starts writes to the shared stdout.
        let kill = Command::new("kill").args(["-s", signal, &pid]).output().await.expect("run kill");
        assert!(kill.status.success(), "kill -s {signal} {pid}: {}", String::from_utf8_lossy(&kill.stderr));
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the operator has not been reaped")
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident set size in KiB (`VmRSS`), None once the process is gone.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// CPU time the process used so far, in whole seconds (user + system, as the kernel counts
    /// it in `/proc/<pid>/stat`, truncated as `process_cpu_seconds_total` is).
    pub fn cpu_seconds(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()?)).ok()?;
        // After the command name comes field 3 (state): utime (field 14) and stime (15) are at 11, 12.
        let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let output = std::process::Command::new("getconf").arg("CLK_TCK").output().ok()?;
        let per_second: u64 = String::from_utf8(output.stdout).ok()?.trim().parse().ok()?;
        Some(ticks / per_second)
    }

    /// This process's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

    /// POST `body` to `path` (with its query) with `token` as bearer token (or none): (status,
    /// body). The body is sent as it is, whatever it holds.
    pub async fn post_as(&self, token: Option<&str>, path: &str, body: &[u8]) -> (u16, String) {
        let base = format!("http://127.0.0.1:{}", self.port);
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| ("Authorization", a)).into_iter().collect();
        operator::direct(&base, "POST", path, &headers, body).await.expect("the operator answers")
    }

    /// POST `bundle` to `endpoint` (`/v1/verify`, `/v1/rotate`) as the CLI does (JSON, and the
    /// tenant it is sealed for in the URL) as the cluster admin: (status, body).
    pub async fn post_bundle(&self, endpoint: &str, bundle: &SealedBundle) -> (u16, String) {
        self.post_bundle_as(Some(&token_of("MLTENANT_TEST_ADMIN_KUBECONFIG")), endpoint, bundle).await
    }

    /// POST `bundle` to `endpoint` as the CLI does, with `token` as bearer token (or none).
    pub async fn post_bundle_as(&self, token: Option<&str>, endpoint: &str, bundle: &SealedBundle) -> (u16, String) {
        let body = serde_json::to_vec(bundle).expect("a SealedBundle encodes as JSON");
        self.post_as(token, &operator::bundle_path(endpoint, bundle), &body).await
    }

    /// GET `path` with `token` as bearer token: (status, body).
    pub async fn get_as(&self, token: &str, path: &str) -> (u16, String) {
        let base = format!("http://127.0.0.1:{}", self.port);
        let auth = format!("Bearer {token}");
        operator::direct(&base, "GET", path, &[("Authorization", &auth)], b"").await.expect("the operator answers")
    }

    /// File descriptors the process holds open now (`/proc/<pid>/fd`), None once it is gone.
    pub fn open_fds(&self) -> Option<usize> {
        Some(std::fs::read_dir(format!("/proc/{}/fd", self.child.id()?)).ok()?.count())
    }

    /// GET `path` from the operator's HTTP server: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path).await.unwrap_or_else(|| panic!("the operator does not answer GET {path}"))
    }

    /// GET `path` if the operator answers at all (it may be stopped, or busy restarting).
    pub async fn try_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path).await
    }

    /// Sum of every sample of `name` whose labels include all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        parse_metric(&self.metrics().await, name, labels)
    }

    /// Write requests (anything but GET) the operator sent to the API server so far.
    pub async fn writes(&self) -> f64 {
        writes_in(&self.metrics().await)
    }

    /// Reconciles of `controller` that ended in `success`.
    pub async fn successful_reconciles(&self, controller: &str) -> f64 {
        self.metric("mltenant_reconcile_total", &[("controller", controller), ("result", "success")]).await
    }
}

/// Write requests counted in a `/metrics` text.
pub fn writes_in(metrics: &str) -> f64 {
    ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .map(|m| parse_metric(metrics, "mltenant_kube_requests_total", &[("method", m)]))
        .sum()
}

pub fn parse_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' ')))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn process_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) still has /proc/<pid>; its state says so.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

pub(super) fn free_port() -> u16 {
    // Not a port the kernel hands out itself (binding :0): its next connect() from any process
    // tends to get the same one, and a client's connection on it keeps the operator from
    // binding 0.0.0.0 there. A random port below the ephemeral range (32768 and up), free on
    // every address now.
    use std::hash::{BuildHasher, Hasher};
    loop {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = 20_000 + (random % 12_000) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// GET `path` on loopback `port`; None when nothing answers within 10 s (a stopped or
/// crashed process must not hang the test).
pub(super) async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let base = format!("http://127.0.0.1:{port}");
    tokio::time::timeout(Duration::from_secs(10), operator::direct(&base, "GET", path, &[], b"")).await.ok()?.ok()
}
