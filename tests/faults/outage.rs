//! kube-apiserver, then etcd, killed (SIGKILL) while the operator converges a fleet, kept down
//! for longer than the operator's Lease renew deadline, and started again with the same flags
//! and data. Afterwards every tenant converges with the right Secrets, nothing is duplicated
//! or orphaned, and no second sealing key appeared.

use std::time::{Duration, Instant};

use mltenant_operator::crypto::Certificate;

use crate::controlplane::component;
use crate::fleet::{Fleet, Member};
use crate::harness::operator::parse_metric;
use crate::harness::*;

/// Enough that most are still converging when the first is Ready (with 30, 23 were once Ready
/// by the time etcd was killed).
const TENANTS: usize = 60;
/// The operator's default Lease duration: its last renewal was before the kill, so the Lease
/// can expire this long after it at the latest, and by then the leader must have stopped.
const LEASE: Duration = Duration::from_secs(15);
/// Generous: this bounds a test that would otherwise hang, it is not the expectation.
const CONVERGE: Duration = Duration::from_secs(240);

/// Kill `name` once the first of `TENANTS` tenants is Ready, keep it down until the leader has
/// stepped down (it cannot renew its Lease) or the Lease could have expired, start it again and
/// check the invariants.
async fn outage_mid_converge(name: &str) {
    let client = admin().await;
    let run = unique("run");
    let mut op = Operator::start(&run).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).expect("the operator serves its certificate");
    let keys_before = sealing_keys(&client, "mltenant-system").await.len();
    let mut fleet = Fleet::new(&client, &run, cert).await;
    fleet.create_many(TENANTS, &Member::new(&["dev", "production"]), 16).await;
    let ready =
        wait_for("a first tenant to be Ready", TIMEOUT, || async { fleet.ready().await.ok().filter(|n| *n >= 1) })
            .await;
    assert!(ready < TENANTS, "all {TENANTS} tenants converged before {name} was killed: raise TENANTS");

    let outage = Outage::begin(name).await;
    let stepped_down = leads_within(&op, false, LEASE).await;
    assert!(op.is_running(), "the operator exited while {name} was down");
    let (down, restart) = outage.end().await;
    // Leading again first: tenants that were Ready before the kill could otherwise make the
    // fleet look converged while the replica is still out.
    let led_again = leads_within(&op, true, CONVERGE).await;
    assert!(led_again.is_some(), "the only replica does not lead again within {CONVERGE:?} of {name} coming back");
    let converged = fleet.wait_converged(CONVERGE).await;

    assert!(op.is_running(), "the operator exited after {name} came back");
    assert_eq!(sealing_keys(&client, "mltenant-system").await.len(), keys_before, "a sealing key was added");
    let failed = op.metric("mltenant_reconcile_total", &[]).await
        - op.metric("mltenant_reconcile_total", &[("result", "success")]).await;
    println!(
        "fault: {name} killed with {ready}/{TENANTS} tenants Ready, down {down:.1?} (start took {restart:.1?}); \
         the leader stepped down {}; it led again {:.1?} after {name} was back and all {TENANTS} \
         converged {converged:.1?} later; {failed} failed reconciles",
        stepped_down.map_or_else(|| format!("NOT within {LEASE:?}"), |d| format!("{d:.1?} after the kill")),
        led_again.unwrap_or_default(),
    );
    assert!(
        stepped_down.is_some(),
        "the leader kept leading for {LEASE:?} without renewing its Lease while {name} was down: \
         a standby could have taken the expired Lease and reconciled alongside it"
    );
}

/// How long after now `op` reported leading (or not, `leads` false), if within `limit`.
async fn leads_within(op: &Operator, leads: bool, limit: Duration) -> Option<Duration> {
    let want = if leads { 1.0 } else { 0.0 };
    let start = Instant::now();
    while start.elapsed() < limit {
        if op.try_get("/metrics").await.is_some_and(|(_, text)| parse_metric(&text, "mltenant_leader", &[]) == want) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// A component killed; started again by `end`, or when dropped (a failed test must not leave
/// the control plane broken for the next one).
struct Outage {
    name: String,
    killed: Instant,
    ended: bool,
}

impl Outage {
    async fn begin(name: &str) -> Self {
        component("kill", name).await;
        Outage { name: name.to_owned(), killed: Instant::now(), ended: false }
    }

    /// Start the component again: (how long it was down, how long starting took).
    async fn end(mut self) -> (Duration, Duration) {
        self.ended = true;
        let start = component("start", &self.name).await;
        (self.killed.elapsed(), start)
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.ended {
            crate::controlplane::component_blocking("start", &self.name);
        }
    }
}

#[tokio::test]
async fn kube_apiserver_killed_mid_converge() {
    outage_mid_converge("kube-apiserver").await;
}

#[tokio::test]
async fn etcd_killed_mid_converge() {
    outage_mid_converge("etcd").await;
}
