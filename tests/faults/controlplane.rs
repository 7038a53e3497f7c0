//! The fault suite's hands on its control plane: kill and start components through
//! `hack/controlplane-component.sh` (the command lines `hack/controlplane-up.sh` used), and
//! read the API server's own metrics.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::Client;

use crate::harness::logs;

/// The state directory of the control plane these tests may break.
fn state() -> PathBuf {
    std::env::var_os("MLTENANT_TEST_CONTROLPLANE").map(PathBuf::from).unwrap_or_else(|| {
        panic!("MLTENANT_TEST_CONTROLPLANE is not set: run the fault suite with hack/test-faults.sh")
    })
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/controlplane-component.sh");

/// Run `hack/controlplane-component.sh STATE action name`; how long it took. The component's
/// log becomes one of this test's logs (printed if it fails).
pub async fn component(action: &str, name: &str) -> Duration {
    let state = state();
    logs::register(name, &state.join("logs").join(format!("{name}.log")));
    let start = Instant::now();
    let out =
        tokio::process::Command::new(SCRIPT).arg(&state).args([action, name]).output().await.expect("run the script");
    assert!(out.status.success(), "{action} {name}: {}", String::from_utf8_lossy(&out.stderr));
    start.elapsed()
}

/// `component` for a `Drop` (no runtime to await on, maybe unwinding): best effort.
pub fn component_blocking(action: &str, name: &str) {
    let out = std::process::Command::new(SCRIPT).arg(state()).args([action, name]).output();
    if !out.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("could not {action} {name}: {out:?}");
    }
}

/// The API server's `/metrics` text (as the admin).
pub async fn apiserver_metrics(client: &Client) -> String {
    let request = http::Request::get("/metrics").body(Vec::new()).expect("a request");
    client.request_text(request).await.expect("GET /metrics from the API server")
}
