//! The controllers and what they share.

pub mod apply;
pub mod bundle;
pub mod conditions;
pub mod index;
pub mod rejected;
pub mod tenant;
pub mod trim;

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt as _, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::Selector;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::api::{MLTenant, SealedBundle};
use crate::keyring::KeyRing;
use crate::labels;
use crate::metrics::Metrics;
use index::Cached;

/// Errors of one reconcile. Each maps to a metric label; none carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The reconcile panicked. Caught so that one object cannot take the process (and with it
    /// every tenant) down; the text is where it happened, never the panic's message, which could
    /// quote data.
    #[error("the reconcile panicked (a bug; reported, other objects are unaffected)")]
    Panic,
    /// Some child objects were refused; the rest was reconciled and the status written.
    #[error("{count} request(s) refused, first: {first}")]
    Partial { count: usize, first: String },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_api",
            Error::Panic => "panic",
            Error::Partial { .. } => "partial",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of the controller process.
#[derive(Clone, Debug)]
pub struct Config {
    /// How often a converged tenant is looked at again without any trigger.
    pub resync: Duration,
    /// Label selector limiting which MLTenants this installation handles (sharding).
    pub tenant_selector: Option<String>,
    /// Which SealedBundles this installation reports status on. Any bundle can still be
    /// distributed to the tenants it handles.
    pub bundle_selector: Selector,
    /// Name reported on Events (the pod name in a cluster).
    pub instance: Option<String>,
    /// Namespaces never touched, whatever a spec says.
    pub protected: tenant::environments::Protected,
    /// Reconciles run at once per controller: enough to keep the API server busy, few enough
    /// that a backlog (every tenant at start-up) does not flood it into refusing requests.
    pub concurrency: u16,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Namespaces labelled as managed by this operator (a label-selected watch).
    pub namespaces: Cached<Namespace>,
    /// Secrets distributed to tenants (a label-selected watch: no other Secret is cached).
    pub secrets: Cached<Secret>,
    /// Every SealedBundle (one cache for distribution and for bundle status).
    pub bundles: Store<SealedBundle>,
    /// Roles and RoleBindings granting `secretReaders` access (label-selected watches).
    pub roles: Cached<Role>,
    pub role_bindings: Cached<RoleBinding>,
    /// The sealing keys and what they opened.
    pub keys: Arc<KeyRing>,
    /// Raised once each cache above holds its initial list.
    synced: Vec<Arc<AtomicBool>>,
    /// Serialise "nobody holds this namespace, take it" decisions across tenants: one lock per
    /// stripe of namespace names, so claims of different namespaces run in parallel.
    namespace_claims: Vec<Mutex<()>>,
    /// Consecutive failed reconciles per object, for the backoff.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Fingerprint of the status this replica last wrote, per tenant UID (see `status::write`).
    written: std::sync::Mutex<std::collections::HashMap<String, [u8; 32]>>,
}

/// Locks for namespace claims; two names share one with probability 1/64.
const NAMESPACE_CLAIM_STRIPES: usize = 64;

impl Context {
    /// Hold this while deciding whether `namespace` may be taken and taking it.
    pub async fn claim(&self, namespace: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        namespace.hash(&mut hasher);
        self.namespace_claims[hasher.finish() as usize % NAMESPACE_CLAIM_STRIPES].lock().await
    }

    /// The fingerprint of the status this replica last wrote for the tenant `uid`.
    pub fn written_status(&self, uid: &str) -> Option<[u8; 32]> {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uid).copied()
    }

    pub fn wrote_status(&self, uid: String, fingerprint: [u8; 32]) {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(uid, fingerprint);
    }

    /// The tenant `uid` is gone: nothing of it stays in memory.
    pub fn forget(&self, uid: &str) {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
    }

    /// Report a refused request about one child of `tenant`: an Event on the tenant about that
    /// object, the metric, a log line. The caller records it in the status and goes on.
    pub async fn rejected(&self, tenant: &MLTenant, rejected: &rejected::Rejected) {
        warn!(tenant = %tenant.name_any(), kind = rejected.kind, object = %rejected.object, reason = rejected.reason, message = %rejected.message, "request refused");
        self.metrics.rejected_write(&tenant.name_any(), rejected.kind, rejected.reason);
        self.event(tenant, None, EventType::Warning, "WriteRejected", &rejected.to_string()).await;
    }

    /// Whether this installation reports `bundle`'s status (`--bundle-selector`).
    pub fn reports_on(&self, bundle: &SealedBundle) -> bool {
        use kube::core::SelectorExt as _;
        self.config.bundle_selector.matches(bundle.labels())
    }

    /// Whether every cache has its initial list: decisions like "nothing to write" or "this
    /// namespace is no longer wanted" are never taken on a cache still filling.
    pub fn caches_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    /// Record an Event on `obj`, about `related` when the event concerns one of its children
    /// (which also keeps events about different children from being merged into one series).
    /// Event delivery is best effort: a failure is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.to_owned()),
            action: "Reconcile".to_owned(),
            secondary: related,
        };
        if let Err(error) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(%error, reason, "could not record event");
        }
    }
}

fn error_policy(controller: &str, name: &str, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(controller, name, %error, "reconcile failed");
    ctx.metrics.reconcile_failed(controller, error);
    let attempt = {
        let mut failures = ctx.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(format!("{controller}/{name}")).or_default();
        *count = count.saturating_add(1);
        *count
    };
    Action::requeue(backoff(attempt, jitter()))
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
async fn guarded<K>(
    controller: &'static str,
    obj: Arc<K>,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action>>,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
{
    let metrics = ctx.metrics.clone();
    let result = metrics.time_reconcile(controller, catching(reconcile)).await;
    if result.is_ok() {
        let mut failures = ctx.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.remove(&format!("{controller}/{}", obj.meta().name.as_deref().unwrap_or_default()));
    }
    if matches!(result, Err(Error::Panic)) {
        let note = "the operator hit a bug reconciling this object; other objects are unaffected, it is retried";
        ctx.event(&*obj, None, EventType::Warning, "Panic", note).await;
    }
    result
}

/// `reconcile`'s result, or [`Error::Panic`] if it panicked.
async fn catching(reconcile: impl Future<Output = Result<Action>>) -> Result<Action> {
    std::panic::AssertUnwindSafe(reconcile).catch_unwind().await.unwrap_or(Err(Error::Panic))
}

/// Replace the default panic report (which prints the panic's message, and a message could
/// quote data from a spec) by its location only.
pub fn report_panics_without_their_message() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map_or_else(|| "unknown".to_owned(), ToString::to_string);
        tracing::error!(%location, "panic (message withheld)");
    }));
}

/// Whether every live watch cache has received its initial list (what `/readyz` reports).
/// Flags are held weakly: when the controllers stop (leadership lost), their caches and flags
/// go, and a standby is ready on what it still runs (the sealing keys).
#[derive(Default)]
pub struct Readiness {
    caches: std::sync::Mutex<Vec<std::sync::Weak<AtomicBool>>>,
}

impl Readiness {
    /// A new flag that must be raised before the process reports ready, as long as it is held.
    pub fn track(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        let mut caches = self.caches.lock().expect("not poisoned");
        caches.retain(|c| c.strong_count() > 0);
        caches.push(Arc::downgrade(&flag));
        flag
    }

    pub fn is_ready(&self) -> bool {
        let caches = self.caches.lock().expect("not poisoned");
        let live: Vec<Arc<AtomicBool>> = caches.iter().filter_map(std::sync::Weak::upgrade).collect();
        !live.is_empty() && live.iter().all(|c| c.load(Ordering::Acquire))
    }
}

/// Watch everything, or only what `selector` matches.
fn selected(selector: Option<&str>) -> watcher::Config {
    selector.map_or_else(watcher::Config::default, |s| watcher::Config::default().labels(s))
}

/// A watch of `api` kept in a cache indexed by tenant, and its readiness flag (tracked by
/// `readiness`), raised once the initial list is in. Watched on the stream:
/// `Store::wait_until_ready` wakes only one waiter, and the controller is one.
fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
    readiness: &Readiness,
) -> (Cached<K>, impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static, Arc<AtomicBool>)
where
    K: Resource<DynamicType = ()>
        + trim::Trim
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let synced = readiness.track();
    let flag = synced.clone();
    let (store, writer) = reflector::store();
    let cached = Cached::new(store);
    let mut index = cached.observer();
    let trimmed = watcher(api, config).modify(trim::Trim::trim);
    let events = reflector::reflector(writer, trimmed).default_backoff().inspect_ok(move |event| {
        index(event);
        if matches!(event, watcher::Event::InitDone) {
            flag.store(true, Ordering::Release);
        }
    });
    (cached, events, synced)
}

/// Run the controllers until `shutdown` resolves, then let the reconciles in flight finish.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    keys: Arc<KeyRing>,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let tenant_watch = selected(config.tenant_selector.as_deref());
    let (tenants, tenant_events, _) = cached(Api::<MLTenant>::all(client.clone()), tenant_watch, &readiness);
    let tenants = tenants.store;
    let managed = watcher::Config::default().labels(&labels::managed_selector());
    let (namespaces, namespace_events, namespaces_synced) =
        cached(Api::<Namespace>::all(client.clone()), managed, &readiness);
    let children = || watcher::Config::default().labels(&labels::tenant_children_selector());
    let (secrets, secret_events, secrets_synced) = cached(Api::<Secret>::all(client.clone()), children(), &readiness);
    let (roles, role_events, roles_synced) = cached(Api::<Role>::all(client.clone()), children(), &readiness);
    let (role_bindings, binding_events, bindings_synced) =
        cached(Api::<RoleBinding>::all(client.clone()), children(), &readiness);

    // One cache of every SealedBundle, shared: the tenant controller distributes them and the
    // bundle controller reports the status of those this installation is responsible for.
    let bundles_synced = readiness.track();
    let (bundles, bundle_writer) = reflector::store_shared(BUNDLE_EVENT_BUFFER);
    let bundle_changes = bundle_writer.subscribe().expect("a shared store");
    let bundle_triggers = bundle_writer.subscribe().expect("a shared store");
    let flag = bundles_synced.clone();
    let bundle_watch = reflector::reflector(
        bundle_writer,
        watcher(Api::<SealedBundle>::all(client.clone()), watcher::Config::default()).modify(trim::Trim::trim),
    )
    .default_backoff()
    .for_each(move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            flag.store(true, Ordering::Release);
        }
        future::ready(())
    });
    let synced = vec![namespaces_synced, secrets_synced, bundles_synced, roles_synced, bindings_synced];

    let _gauges = metrics.watch(tenants.clone(), bundles.clone(), config.bundle_selector.clone());
    let users = tenants.clone();
    let tenant_controller = Controller::for_stream(tenant_events.applied_objects(), tenants)
        .watches_stream(namespace_events.touched_objects(), |ns: Namespace| tenant_of(&ns))
        .watches_stream(secret_events.touched_objects(), |secret: Secret| tenant_of(&secret))
        .watches_stream(role_events.touched_objects(), |role: Role| tenant_of(&role))
        .watches_stream(binding_events.touched_objects(), |binding: RoleBinding| tenant_of(&binding))
        .watches_shared_stream(bundle_changes, move |bundle: Arc<SealedBundle>| {
            let name = bundle.name_any();
            users
                .state()
                .into_iter()
                .filter(|t| tenant::secrets::referenced_bundles(t).contains(name.as_str()))
                .map(|t| ObjectRef::from_obj(&*t))
                .collect::<Vec<_>>()
        })
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .reconcile_all_on(keys.changes())
        .graceful_shutdown_on(shutdown.clone());
    let bundle_controller = Controller::for_shared_stream(bundle_triggers, bundles.clone())
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .reconcile_all_on(keys.changes())
        .graceful_shutdown_on(shutdown);

    let reporter = Reporter { controller: labels::MANAGED_BY.to_owned(), instance: config.instance.clone() };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        config,
        metrics: metrics.clone(),
        namespaces,
        secrets,
        bundles,
        roles,
        role_bindings,
        keys,
        synced,
        namespace_claims: (0..NAMESPACE_CLAIM_STRIPES).map(|_| Mutex::new(())).collect(),
        failures: std::sync::Mutex::default(),
        written: std::sync::Mutex::default(),
    });
    info!("starting the tenant and bundle controllers");
    let tenants = tenant_controller
        .run(
            |tenant, ctx: Arc<Context>| guarded("tenant", tenant.clone(), ctx.clone(), tenant::reconcile(tenant, ctx)),
            |tenant, error, ctx| error_policy("tenant", &tenant.name_any(), error, ctx),
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    let bundles = bundle_controller
        .run(
            |bundle, ctx: Arc<Context>| guarded("bundle", bundle.clone(), ctx.clone(), bundle::reconcile(bundle, ctx)),
            |bundle, error, ctx| error_policy("bundle", &bundle.name_any(), error, ctx),
            ctx,
        )
        .for_each(|_| future::ready(()));
    // The shared watch only feeds the controllers: it ends with them.
    tokio::select! {
        _ = future::join(tenants, bundles) => {}
        () = bundle_watch => {}
    }
}

/// How many bundle events the shared cache holds for a slow subscriber before the watch waits.
const BUNDLE_EVENT_BUFFER: usize = 1024;

/// The tenant a managed child belongs to, from its label.
fn tenant_of<K: ResourceExt>(child: &K) -> Option<ObjectRef<MLTenant>> {
    child.labels().get(labels::TENANT).map(|t| ObjectRef::new(t))
}

#[cfg(test)]
mod tests {
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
