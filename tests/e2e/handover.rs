//! What operators do to the pods, one at a time (each takes pods away): `kubectl delete pod`
//! of the leader, `kubectl drain`-style evictions against the PodDisruptionBudget, and `helm
//! upgrade` to another image tag. Leadership moves within one lease each time, and the API
//! server's audit log shows that the old leader wrote nothing once the new one held the Lease.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::EvictParams;

use crate::cluster::*;
use crate::harness::{admin, create_tenant, tenant, unique, wait_condition, wait_until};

/// The pods for this test alone (no other test uses them meanwhile), once the release has
/// rolled out and one of them leads; the cluster-admin client.
async fn alone_with_a_settled_release() -> (tokio::sync::RwLockWriteGuard<'static, ()>, kube::Client) {
    let pods = exclusive().await;
    let client = admin().await;
    installed(&client).await;
    wait_release_ready(&client).await;
    (pods, client)
}

/// Wait until someone other than `old` holds the Lease: (the new holder, how long it took).
async fn new_leader(client: &kube::Client, old: &str, since: Instant) -> (String, Duration) {
    let holder = wait_until(&format!("a leader other than {old}"), ROLLOUT, || async {
        leader(client).await.filter(|h| h != old).ok_or(format!("held by {:?}", leader(client).await))
    })
    .await;
    (holder, since.elapsed())
}

/// The new leader reconciles: a tenant created now converges.
async fn reconciles(client: &kube::Client) {
    let name = unique("handover");
    create_tenant(client, &tenant(&name, "e2e", &["dev"])).await;
    wait_condition(client, &name, "Ready", "True", None).await;
}

/// Wait until pod `name` is gone from the API server.
async fn gone(client: &kube::Client, name: &str) {
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    wait_until(&format!("pod {name} gone"), ROLLOUT, || async {
        pods.get_opt(name).await.unwrap().map_or(Ok(()), |_| Err("still there".to_owned()))
    })
    .await;
}

#[tokio::test]
async fn deleting_the_leader_pod_hands_over_within_one_lease() {
    let (_pods, client) = alone_with_a_settled_release().await;
    let old = leader(&client).await.expect("a leader");
    let (start, since) = (Instant::now(), jiff::Timestamp::now());
    ok("kubectl delete pod", kubectl(&["delete", "pod", &old, "-n", NAMESPACE, "--wait=false"], b""));
    let (new, took) = new_leader(&client, &old, start).await;
    println!("e2e: kubectl delete pod {old} (the leader) -> {new} leads after {took:.1?}");
    assert!(took < LEASE, "leadership moved after {took:?}, more than one lease ({LEASE:?})");
    reconciles(&client).await;
    gone(&client, &old).await;
    let writes = assert_no_write_after_handover(&old, &new, since);
    println!("e2e: the audit log holds {writes} writes of {old}, none after {new} took the Lease");
    wait_release_ready(&client).await;
}

/// `kubectl cordon` of the node until dropped: `kubectl uncordon`, also when a test fails.
struct Cordoned(String);

impl Cordoned {
    fn new(node: &str) -> Self {
        ok("kubectl cordon", kubectl(&["cordon", node], b""));
        Cordoned(node.to_owned())
    }
}

impl Drop for Cordoned {
    fn drop(&mut self) {
        let out = kubectl(&["uncordon", &self.0], b"");
        if !out.status.success() {
            eprintln!("kubectl uncordon {}: {}", self.0, String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// `kubectl drain` of the node, as it does it: cordon (the evicted replica's replacement cannot
/// start, there is one node), then evict every pod, retrying those the budget refuses.
#[tokio::test]
async fn evictions_honour_the_pod_disruption_budget() {
    let (_pods, client) = alone_with_a_settled_release().await;
    let api = Api::<Pod>::namespaced(admin_without_retries().await, NAMESPACE);
    // The budget as a drain finds it: two healthy replicas, one disruption allowed (the
    // disruption controller's count follows the pods, a little after them).
    let budgets = Api::<PodDisruptionBudget>::namespaced(client.clone(), NAMESPACE);
    wait_until("the PodDisruptionBudget to allow one disruption of two", ROLLOUT, || async {
        let pdb = budgets.get(RELEASE).await.unwrap();
        let s = pdb.status.clone().unwrap_or_default();
        let settled = s.observed_generation == pdb.metadata.generation
            && s.current_healthy == 2
            && s.expected_pods == 2
            && s.desired_healthy == 1
            && s.disruptions_allowed == 1;
        settled.then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    let names: Vec<String> = pods(&client).await.iter().filter(|p| is_ready(p)).map(name).collect();
    assert_eq!(names.len(), 2);
    let cordoned = Cordoned::new(&env("MLTENANT_E2E_NODE_IP"));
    api.evict(&names[0], &EvictParams::default()).await.expect("the first eviction is allowed (minAvailable 1 of 2)");
    // Its replacement stays Pending on the cordoned node: the last replica is protected, for
    // as long as that lasts.
    for _ in 0..3 {
        match api.evict(&names[1], &EvictParams::default()).await {
            Err(kube::Error::Api(status)) if status.code == 429 => {
                assert!(status.message.contains("disruption budget"), "{}", status.message)
            }
            other => panic!("evicting the last Ready replica {}: {other:?}", names[1]),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let ready: Vec<String> = pods(&client).await.iter().filter(|p| is_ready(p)).map(name).collect();
    assert_eq!(ready, vec![names[1].clone()], "the last replica keeps serving");
    // The node back (the drain done elsewhere, say): the replacement starts, and the eviction
    // `kubectl drain` keeps retrying goes through.
    drop(cordoned);
    let start = Instant::now();
    wait_until("the second eviction to be allowed", ROLLOUT, || async {
        match api.evict(&names[1], &EvictParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 429 => Err(status.message),
            Err(other) => panic!("evict {}: {other}", names[1]),
        }
    })
    .await;
    println!(
        "e2e: drain-style evictions: the last Ready replica refused 3 times while its peer could not start, \
         evicted {:.1?} after the node was uncordoned",
        start.elapsed()
    );
    wait_release_ready(&client).await;
    reconciles(&client).await;
}

#[tokio::test]
async fn helm_upgrade_to_another_tag_rolls_over_and_the_old_leader_stops_writing() {
    let (_pods, client) = alone_with_a_settled_release().await;
    let old = leader(&client).await.expect("a leader");
    let (_, tag) = image();
    let upgraded = format!("image.tag={tag}-upgrade");
    let (start, since) = (Instant::now(), jiff::Timestamp::now());
    let helm_upgrade = {
        let upgraded = upgraded.clone();
        tokio::task::spawn_blocking(move || {
            helm(&["upgrade", RELEASE, CHART, "--namespace", NAMESPACE, "--reuse-values", "--set", &upgraded])
        })
    };
    // Rolling: maxUnavailable 0, so never fewer than two Ready replicas while it rolls.
    let deployments = Api::<Deployment>::namespaced(client.clone(), NAMESPACE);
    let fewest = std::sync::atomic::AtomicI32::new(i32::MAX);
    let rolled = wait_until("the upgrade to roll out", ROLLOUT, || async {
        let d = deployments.get(RELEASE).await.unwrap();
        let s = d.status.clone().unwrap_or_default();
        fewest.fetch_min(s.ready_replicas.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        let image =
            d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default();
        let done = image.ends_with(&format!(":{tag}-upgrade"))
            && s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(2)
            && s.replicas == Some(2)
            && s.available_replicas == Some(2);
        done.then(|| start.elapsed()).ok_or(format!("{image}: {s:?}"))
    })
    .await;
    ok("helm upgrade", helm_upgrade.await.unwrap());
    let fewest = fewest.into_inner();
    assert!(fewest >= 2, "only {fewest} Ready replicas during the rollout");
    wait_release_ready(&client).await;
    let new = leader(&client).await.expect("a leader");
    assert_ne!(new, old, "the old leader's pod was replaced");
    println!("e2e: helm upgrade to {tag}-upgrade rolled out in {rolled:.1?}, never under 2 Ready; {old} -> {new}");
    reconciles(&client).await;
    gone(&client, &old).await;
    assert_no_write_after_handover(&old, &new, since);
    let pods: Vec<Pod> = pods(&client).await;
    for pod in &pods {
        let image = pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default();
        assert!(image.ends_with(&format!(":{tag}-upgrade")), "{}: {image}", name(pod));
    }
}
