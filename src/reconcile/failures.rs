//! What happens when a reconcile fails: per-object exponential backoff with jitter, a panic
//! caught and turned into a failed reconcile of that one object, panics reported without their
//! message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt as _;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::{debug, warn};

use super::context::Context;
use super::error::{Error, Result};
use crate::api::conditions::event;

/// Objects with failure counts below which the counts are never pruned.
const PRUNE_FROM: usize = 16;

/// Consecutive failed reconciles per object, for the backoff. Keyed by UID: an object deleted
/// and created again under the same name starts afresh. An object deleted while failing is
/// never reconciled again (so never succeeds), so the counts of objects gone from the
/// controller's cache (or replaced there by another of the same name) are dropped as failures
/// come in.
pub struct Failures<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    counts: Mutex<Counts<K>>,
}

struct Counts<K: Resource<DynamicType = ()>> {
    /// UID -> the object's reference in the cache, and its failures in a row.
    by_uid: HashMap<String, (ObjectRef<K>, u32)>,
    /// Prune when this many objects have counts: twice as many as the last pruning left, so
    /// that pruning costs O(1) per failure however many objects fail together.
    prune_at: usize,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Failures<K> {
    /// Counts for the objects of the controller whose cache is `store`.
    pub fn new(store: Store<K>) -> Self {
        Failures { store, counts: Mutex::new(Counts { by_uid: HashMap::new(), prune_at: PRUNE_FROM }) }
    }

    /// Count a failure of `obj`; its failures in a row so far.
    fn failed(&self, obj: &K) -> u32 {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.by_uid.len() >= counts.prune_at {
            counts.by_uid.retain(|uid, (reference, _)| self.cached(reference, uid));
            counts.prune_at = (counts.by_uid.len() * 2).max(PRUNE_FROM);
        }
        let (_, count) = counts.by_uid.entry(uid(obj)).or_insert_with(|| (ObjectRef::from_obj(obj), 0));
        *count = count.saturating_add(1);
        *count
    }

    fn succeeded(&self, obj: &K) {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).by_uid.remove(&uid(obj));
    }

    /// Whether the cache still holds the object `uid` under `reference`.
    fn cached(&self, reference: &ObjectRef<K>, uid: &str) -> bool {
        self.store.get(reference).is_some_and(|obj| obj.meta().uid.as_deref() == Some(uid))
    }
}

fn uid<K: Resource>(obj: &K) -> String {
    obj.meta().uid.clone().unwrap_or_default()
}

/// Log a failed reconcile (counted in [`guarded`]) and requeue it with a per-object backoff.
pub fn error_policy<K>(controller: &str, obj: &K, error: &Error, failures: &Failures<K>) -> Action
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (name, result) = (obj.meta().name.as_deref().unwrap_or_default(), error.metric_label());
    let error = error.chain();
    if result == "not_leader" {
        debug!(controller, name, error, "reconcile stopped: this replica no longer leads");
    } else {
        warn!(controller, name, step = result, error, "reconcile failed");
    }
    Action::requeue(backoff(failures.failed(obj), jitter()))
}

/// First retry after about a second, doubling per consecutive failure of the same object, capped
/// at five minutes; `jitter` (0..1) spreads retries of many objects failing together over ±25%.
fn backoff(attempt: u32, jitter: f64) -> Duration {
    const FIRST: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(300);
    let exponential = FIRST.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(CAP);
    exponential.mul_f64(0.75 + jitter / 2.0)
}

fn jitter() -> f64 {
    let mut byte = [0u8; 2];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut byte);
    f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX)
}

/// Run one reconcile, timed and counted, with a panic turned into [`Error::Panic`] plus a
/// Warning Event on the object.
pub async fn guarded<K>(
    controller: &'static str,
    obj: Arc<K>,
    ctx: Arc<Context>,
    failures: Arc<Failures<K>>,
    reconcile: impl Future<Output = Result<Action>>,
) -> Result<Action>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let metrics = ctx.metrics.clone();
    let result = metrics.time_reconcile(controller, catching(reconcile)).await;
    // Counted before any Event, so whoever sees the Event also sees the count.
    metrics.reconciled(controller, result.as_ref().map_or_else(Error::metric_label, |_| "success"));
    if result.is_ok() {
        failures.succeeded(&obj);
    }
    if matches!(result, Err(Error::Panic)) {
        let note = "the operator hit a bug reconciling this object; other objects are unaffected, it is retried";
        ctx.event(&*obj, None, EventType::Warning, event::PANIC, note).await;
    }
    result
}

/// `reconcile`'s result, or [`Error::Panic`] if it panicked.
async fn catching(reconcile: impl Future<Output = Result<Action>>) -> Result<Action> {
    std::panic::AssertUnwindSafe(reconcile).catch_unwind().await.unwrap_or(Err(Error::Panic))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[tokio::test]
    async fn a_panicking_reconcile_is_a_failed_reconcile() {
        let panicking = async {
            let name = "é".repeat(3);
            let _ = &name[..1]; // inside a multi-byte character
            Ok(Action::await_change())
        };
        assert!(matches!(catching(panicking).await, Err(Error::Panic)));
        assert!(catching(async { Ok(Action::await_change()) }).await.is_ok());
        assert_eq!(Error::Panic.metric_label(), "panic");
    }

    fn object(name: &str, uid: &str) -> ConfigMap {
        let metadata = ObjectMeta { name: Some(name.into()), uid: Some(uid.into()), ..Default::default() };
        ConfigMap { metadata, ..Default::default() }
    }

    /// Counts for a controller whose cache holds `cached`.
    fn failures(cached: &[&ConfigMap]) -> Failures<ConfigMap> {
        let (store, mut writer) = kube::runtime::reflector::store();
        for obj in cached {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply((*obj).clone()));
        }
        Failures::new(store)
    }

    #[test]
    fn failures_count_per_uid_and_a_success_starts_afresh() {
        let (first, recreated) = (object("t", "uid-1"), object("t", "uid-2"));
        let failures = failures(&[&recreated]);
        assert_eq!((failures.failed(&first), failures.failed(&first)), (1, 2));
        assert_eq!(failures.failed(&recreated), 1, "same name, another object: no inherited backoff");
        failures.succeeded(&first);
        assert_eq!(failures.failed(&first), 1);
    }

    #[test]
    fn the_counts_of_objects_gone_from_the_cache_are_dropped() {
        let (kept, replaced) = (object("kept", "k"), object("replaced", "r-old"));
        let failures = failures(&[&kept, &object("replaced", "r-new")]);
        failures.failed(&kept);
        failures.failed(&replaced);
        for n in 0..PRUNE_FROM - 2 {
            failures.failed(&object(&format!("deleted-{n}"), &format!("d{n}")));
        }
        assert_eq!(failures.counts.lock().unwrap().by_uid.len(), PRUNE_FROM, "nothing pruned yet");
        assert_eq!(failures.failed(&kept), 2, "a cached object keeps its count");
        let counts = failures.counts.lock().unwrap();
        assert_eq!(counts.by_uid.keys().collect::<Vec<_>>(), ["k"], "deleted and replaced objects dropped");
        assert_eq!(counts.prune_at, PRUNE_FROM, "pruned again once as many objects fail");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        assert_eq!(backoff(1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(4, 0.5), Duration::from_secs(8));
        assert_eq!(backoff(30, 0.5), Duration::from_secs(300));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(750));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(1250));
        assert!((0..100).map(|_| jitter()).all(|j| (0.0..=1.0).contains(&j)));
    }
}
