//! What every reconcile shares: the client, the caches, the key ring, the Event recorder, and
//! the little state kept between reconciles (claim locks, status fingerprints).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::GetParams;
use kube::core::Selector;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, warn};

use super::guard::Guarded;
use super::index::Cached;
use super::invalid::Invalids;
use super::rbac::RbacView;
use super::rejected;
use super::watches::Caches;
use crate::access::exposure::identity::Expected;
use crate::access::usage::Usage;
use crate::api::conditions::event;
use crate::api::labels;
use crate::api::limits::Protected;
use crate::api::{MLTenant, OwnedObject, SealedBundle};
use crate::keys::ring::KeyRing;
use crate::metrics::Metrics;
use crate::runtime::client::is_not_leader;
use crate::striped::Striped;
use crate::unseal::{Failure, Opened};

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
    pub protected: Protected,
    /// Reconciles run at once per controller: enough to keep the API server busy, few enough
    /// that a backlog (every tenant at start-up) does not flood it into refusing requests.
    pub concurrency: u16,
    /// The platform identities expected to read the distributed Secrets, besides their
    /// declared readers (this operator among them).
    pub expected: Expected,
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
    /// The objects the watches could not read.
    pub invalids: Arc<Invalids>,
    /// The RBAC that decides who can read the distributed Secrets.
    pub rbac: Arc<RbacView>,
    /// What the audit sink counts, when it runs.
    pub usage: Option<Arc<Usage>>,
    /// The sealing keys and what they opened.
    pub keys: Arc<KeyRing>,
    /// Raised once each cache above holds its initial list.
    synced: Vec<Arc<AtomicBool>>,
    /// Serialise "nobody holds this namespace, take it" decisions across tenants: one lock per
    /// stripe of namespace names, so claims of different namespaces run in parallel.
    namespace_claims: Striped,
    /// Fingerprint of the status this replica last wrote, per tenant UID (see `publish::write`).
    written: std::sync::Mutex<std::collections::HashMap<String, [u8; 32]>>,
    /// Each tenant's inventory as this replica last had it, per tenant UID: while it leads, it
    /// is the only writer, and newer than the cached status (see `inventory::load`).
    inventories: std::sync::Mutex<std::collections::HashMap<String, Vec<OwnedObject>>>,
    /// Room for the values of Secrets being written (KiB), whichever tenants they are for.
    writing: tokio::sync::Semaphore,
}

/// What Secrets being written may hold at once, at most: what the largest tenants with the
/// largest bundles (512 Secrets of up to 1 MiB of values each) cost in memory while they
/// converge, whatever their number.
const WRITING_KIB: u32 = 32 * 1024;

/// Locks for namespace claims; two names share one with probability 1/64.
const NAMESPACE_CLAIM_STRIPES: usize = 64;

impl Context {
    /// The context of controllers running on `client`, with the caches of `watches`.
    pub fn new(
        client: Client,
        config: Config,
        metrics: Arc<Metrics>,
        keys: Arc<KeyRing>,
        watches: Caches,
        usage: Option<Arc<Usage>>,
    ) -> Self {
        let reporter = Reporter { controller: labels::MANAGED_BY.to_owned(), instance: config.instance.clone() };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            namespaces: watches.namespaces,
            secrets: watches.secrets,
            bundles: watches.bundles,
            roles: watches.roles,
            role_bindings: watches.role_bindings,
            invalids: watches.invalids,
            rbac: watches.rbac,
            usage,
            keys,
            synced: watches.synced,
            namespace_claims: Striped::new(NAMESPACE_CLAIM_STRIPES),
            written: std::sync::Mutex::default(),
            inventories: std::sync::Mutex::default(),
            writing: tokio::sync::Semaphore::new(WRITING_KIB as usize),
        }
    }

    /// Hold this while deciding whether `namespace` may be taken and taking it.
    pub async fn claim(&self, namespace: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.namespace_claims.lock(namespace).await
    }

    /// The fingerprint of the status this replica last wrote for the tenant `uid`.
    pub fn written_status(&self, uid: &str) -> Option<[u8; 32]> {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uid).copied()
    }

    pub fn wrote_status(&self, uid: String, fingerprint: [u8; 32]) {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(uid, fingerprint);
    }

    /// Wait for room to build and write a Secret of `values` bytes of values; the room is
    /// given back when the guard is dropped.
    pub async fn writing(&self, values: usize) -> tokio::sync::SemaphorePermit<'_> {
        // While it is written a Secret's values are held three times (the Secret, and the
        // request's JSON, where base64 makes them a third larger), with a few KiB of metadata;
        // one larger than the whole budget waits for all of it.
        let kib = u32::try_from(values.saturating_mul(3) / 1024).unwrap_or(u32::MAX).saturating_add(4).min(WRITING_KIB);
        self.writing.acquire_many(kib).await.expect("the semaphore is never closed")
    }

    /// The inventory of the tenant `uid` as this replica last had it.
    pub fn inventory(&self, uid: &str) -> Option<Vec<OwnedObject>> {
        self.inventories.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uid).cloned()
    }

    pub fn keep_inventory(&self, uid: String, owned: Vec<OwnedObject>) {
        self.inventories.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(uid, owned);
    }

    /// The tenant `uid` is gone: nothing of it stays in memory.
    pub fn forget(&self, uid: &str) {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
        self.inventories.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
    }

    /// Report a refused request about one child of `tenant`: an Event on the tenant about that
    /// object, the metric, a log line. The caller records it in the status and goes on.
    /// A write the leadership fence stopped is no news about the object (and an Event would be
    /// stopped too): `mltenant_fenced_writes_total` counted it, a debug line is enough.
    pub async fn rejected(&self, tenant: &MLTenant, rejected: &rejected::Rejected) {
        if rejected.fenced() {
            debug!(tenant = %tenant.name_any(), kind = rejected.kind, object = %rejected.object, "not written: not leading");
            return;
        }
        warn!(tenant = %tenant.name_any(), kind = rejected.kind, object = %rejected.object, reason = rejected.reason, message = %rejected.message, "request refused");
        self.metrics.rejected_write(&tenant.name_any(), rejected.kind, rejected.reason);
        self.event(tenant, None, EventType::Warning, event::WRITE_REJECTED, &rejected.to_string()).await;
    }

    /// Open `bundle` (from the shared cache) under `label`. A value not opened before is
    /// decrypted from the bundle as the API server's watch cache has it (no older than ours):
    /// the shared cache keeps digests, not ciphertexts.
    pub async fn open(&self, bundle: &SealedBundle, label: Vec<u8>) -> kube::Result<Result<Opened, Failure>> {
        self.keys.open(bundle, label, self.fetch(bundle)).await
    }

    /// [`Context::open`] of every value, past one that fails, with every key the bundle needs:
    /// what its status reports.
    pub async fn open_all(&self, bundle: &SealedBundle, label: Vec<u8>) -> kube::Result<crate::unseal::Opening> {
        self.keys.open_all(bundle, label, self.fetch(bundle)).await
    }

    /// Read `bundle` with its ciphertexts, as the API server's watch cache has it.
    fn fetch(&self, bundle: &SealedBundle) -> impl Future<Output = kube::Result<Option<SealedBundle>>> + use<> {
        let api = Api::<Guarded<SealedBundle>>::all(self.client.clone());
        let at = GetParams::at(bundle.resource_version().as_deref().unwrap_or("0"));
        let name = bundle.name_any();
        async move {
            match api.get_with(&name, &at).await {
                Ok(sealed) => sealed.into_result().map(Some),
                Err(kube::Error::Api(status)) if status.is_not_found() => Ok(None),
                Err(error) => Err(error),
            }
        }
    }

    /// Whether this installation reports `bundle`'s status (`--bundle-selector`).
    pub fn reports_on(&self, bundle: &SealedBundle) -> bool {
        self.reports_on_labels(bundle.labels())
    }

    /// [`Context::reports_on`] a bundle with `labels` (one that cannot be read has only those).
    pub fn reports_on_labels(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        use kube::core::SelectorExt as _;
        self.config.bundle_selector.matches(labels)
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
        self.event_on(obj.object_ref(&()), related, type_, reason, note).await;
    }

    /// [`Context::event`] on the object `reference` points at (one the operator cannot read).
    pub async fn event_on(
        &self,
        reference: ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        self.publish(reference, related, type_, reason, note, "Reconcile".to_owned()).await;
    }

    /// [`Context::event`] for a note that says what changed: the recorder folds Events of the same
    /// reason and action into one series that keeps its first note, so the action carries a
    /// digest of the note (the same note again counts in its series, another one is an Event).
    pub async fn event_per_note<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let digest = crate::text::sha256(&[note.as_bytes()]);
        let action = format!("Reconcile-{}", crate::text::hex(&digest[..6]));
        self.publish(obj.object_ref(&()), None, type_, reason, note, action).await;
    }

    async fn publish(
        &self,
        reference: ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        note: &str,
        action: String,
    ) {
        let event = Event { type_, reason: reason.to_owned(), note: Some(note.to_owned()), action, secondary: related };
        match self.recorder.publish(&event, &reference).await {
            Err(error) if is_not_leader(&error) => debug!(reason, "event not recorded: not leading"),
            Err(error) => warn!(%error, reason, "could not record event"),
            Ok(()) => {}
        }
    }
}
