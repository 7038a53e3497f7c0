//! SIGTERM while the API server hangs: etcd frozen (SIGSTOP), so every request the operator
//! sends waits for an answer that does not come. Kubernetes SIGKILLs a pod 30 s after SIGTERM
//! (terminationGracePeriodSeconds' default); the operator must have exited by then, its
//! reconciles in flight and its Lease release bounded (an unbounded shutdown took 37.6 s).

use std::time::{Duration, Instant};

use crate::controlplane::component;
use crate::harness::*;

/// Kubernetes' default terminationGracePeriodSeconds.
const GRACE: Duration = Duration::from_secs(30);

/// A frozen component, thawed by `end` or when dropped (a failed test must not leave the
/// control plane hung for the next one).
struct Frozen {
    name: &'static str,
    ended: bool,
}

impl Frozen {
    async fn begin(name: &'static str) -> Self {
        component("freeze", name).await;
        Frozen { name, ended: false }
    }

    async fn end(mut self) {
        self.ended = true;
        component("thaw", self.name).await;
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.ended {
            crate::controlplane::component_blocking("thaw", self.name);
        }
    }
}

#[tokio::test]
async fn sigterm_with_etcd_frozen_exits_within_the_grace_period() {
    let client = admin().await;
    let run = unique("run");
    let op = Operator::start(&run).await;
    op.wait_leading().await;
    // Reconciles in flight when etcd stops answering: tenants just created.
    for n in 0..5 {
        create_tenant(&client, &tenant(&format!("{run}-{n}"), &run, &["dev", "production"])).await;
    }
    let frozen = Frozen::begin("etcd").await;
    // The API server still accepts connections: a request now hangs instead of failing.
    let probe = tokio::time::timeout(Duration::from_secs(3), client.apiserver_version()).await;
    let hangs = tokio::time::timeout(
        Duration::from_secs(3),
        kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get_opt("default"),
    )
    .await
    .is_err();
    assert!(probe.is_ok() && hangs, "the API server should answer /version but hang on reads with etcd frozen");
    let start = Instant::now();
    let status = op.terminate(GRACE).await;
    let took = start.elapsed();
    frozen.end().await;
    println!("fault: SIGTERM with etcd frozen: the operator exited after {took:.1?} ({status})");
    assert!(status.success(), "the operator exited with {status}");
    assert!(took < GRACE, "exited {took:?} after SIGTERM, past the {GRACE:?} grace period");
}
