//! The operator SIGKILLed where a crash could leave damage: while it creates its first sealing
//! key (a duplicate or a broken key would split what bundles are sealed to), and in the middle
//! of converging 100 tenants (a lost or half-written Secret).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use mltenant_operator::crypto::{Certificate, SealingKey};

use crate::fleet::{Fleet, Member};
use crate::harness::*;

/// The key pair in a sealing-key Secret; fails the test if the Secret does not hold one.
fn key_of(secret: &Secret) -> SealingKey {
    let field = |name: &str| {
        let bytes = secret.data.as_ref().and_then(|d| d.get(name)).unwrap_or_else(|| panic!("{name} missing"));
        String::from_utf8(bytes.0.clone()).expect("PEM text")
    };
    SealingKey::from_pem(&field("tls.crt"), &field("tls.key"))
        .unwrap_or_else(|e| panic!("sealing-key Secret {} does not hold a key pair: {e}", secret.name_any()))
}

/// Crash moments after the operator starts leading (and so starts making the key): RSA-4096
/// generation takes about a second or more, so the first ones land inside it, the last ones
/// after the key was stored.
const CRASH_AFTER_MS: [u64; 9] = [0, 50, 150, 300, 600, 1200, 2400, 4800, 9600];

#[tokio::test]
async fn operator_sigkilled_while_creating_its_first_sealing_key() {
    let client = admin().await;
    let ns = key_namespace(&client).await; // no key in it yet
    let args = ["--namespace", ns.as_str()];
    let (mut during_creation, mut rounds) = (0, 0);
    for delay in CRASH_AFTER_MS.map(Duration::from_millis) {
        rounds += 1;
        // A Lease of its own per round: a new replica need not wait for the dead one's to expire.
        let op = Operator::spawn(&unique("run"), &args);
        wait_for("the operator to lead", TIMEOUT, || async { op.log().contains("leads=true").then_some(()) }).await;
        tokio::time::sleep(delay).await; // the moment of the crash
        let created = op.log().contains("created a new sealing key");
        op.kill().await;
        let keys = sealing_keys(&client, &ns).await;
        let names: Vec<String> = keys.iter().map(ResourceExt::name_any).collect();
        assert!(keys.len() <= 1, "crash {delay:?} after leading: {} sealing keys {names:?}", keys.len());
        for key in &keys {
            key_of(key); // whole: a certificate and the private key that matches it
        }
        if keys.is_empty() && !created {
            during_creation += 1;
        }
        if !keys.is_empty() {
            println!("fault: operator SIGKILLed {delay:?} after it started leading: key {names:?} stored");
            break;
        }
        println!("fault: operator SIGKILLed {delay:?} after it started leading: no key stored yet");
    }
    assert!(during_creation >= 1, "no crash landed before the key was stored: the test did not crash key creation");

    // Two fresh replicas: the one key, whole, and both serve it.
    let started = Instant::now();
    let (run_a, run_b) = (unique("run"), unique("run"));
    let (a, b) = tokio::join!(Operator::start_with(&run_a, &args), Operator::start_with(&run_b, &args));
    let recovered = started.elapsed();
    let keys = sealing_keys(&client, &ns).await;
    assert_eq!(keys.len(), 1, "{:?}", keys.iter().map(ResourceExt::name_any).collect::<Vec<_>>());
    let key = key_of(&keys[0]);
    let slot = jiff::Timestamp::now().as_second() / (30 * 24 * 3600);
    assert_eq!(keys[0].name_any(), format!("sealing-key-{slot}"), "the key is not named after its time slot");
    for op in [&a, &b] {
        let served = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).expect("a served certificate");
        assert_eq!(served.fingerprint(), key.fingerprint(), "a replica serves another certificate than the stored key");
    }
    println!(
        "fault: {rounds} crashes, {during_creation} of them before the key was stored; afterwards exactly one \
         key, served by two new replicas {recovered:.1?} after they started"
    );
    let _ = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client).delete(&ns, &Default::default()).await;
}

const FLEET: usize = 100;

#[tokio::test]
async fn operator_sigkilled_during_a_100_tenant_converge() {
    let client = admin().await;
    let run = unique("run");
    // A first replica makes the sealing key the fleet is sealed to, then stops: the whole
    // fleet is there before the replica that is killed starts converging it, so the kill lands
    // in the middle of a converge (created while an operator ran, much of the fleet could be
    // converged by the time the last tenant was created).
    let keys = Operator::start(&run).await;
    let cert = Certificate::from_pem(&keys.get("/v1/cert.pem").await.1).expect("the operator serves its certificate");
    keys.terminate(TIMEOUT).await;
    let mut fleet = Fleet::new(&client, &run, cert).await;
    fleet.create_many(FLEET, &Member::new(&["dev", "production"]), 16).await;
    let wanted = FLEET * 2;
    let op = Operator::start(&run).await;
    // Killed as soon as Secrets are being written: a converge writes them in bursts.
    let written = wait_for("the first Secrets to be written", Duration::from_secs(180), || async {
        fleet.secrets_written().await.ok().filter(|n| *n > 0)
    })
    .await;
    op.kill().await;
    let killed = Instant::now();

    // Before anyone repairs anything: whatever the dead operator wrote is whole.
    let snap = fleet.snapshot().await.expect("a snapshot");
    let findings = fleet.check(&snap);
    assert!(findings.corrupt.is_empty(), "right after the crash: {}", findings.summary());
    assert!(findings.unexpected.is_empty(), "right after the crash: {}", findings.summary());
    let written_at_crash = fleet.secrets_written().await.expect("a count");
    assert!(
        written_at_crash < wanted,
        "all {wanted} Secrets were written before the crash: the test did not crash a converge"
    );

    // A new replica, same Lease: it takes over once the dead one's Lease expires.
    let mut again = Operator::start(&run).await;
    fleet.wait_converged(Duration::from_secs(300)).await;
    let recovered = killed.elapsed();
    assert!(again.is_running(), "the new replica exited");
    println!(
        "fault: operator SIGKILLed with {written_at_crash}/{wanted} Secrets written (saw {written} before the kill), \
         nothing half-written; the new replica converged all {FLEET} tenants {recovered:.1?} after the crash \
         (the old Lease expires after 15 s)"
    );
}
