//! The RBAC watches exposure is assessed on (see `access::exposure`): every ClusterRole and
//! ClusterRoleBinding, and the Roles and RoleBindings of the namespaces that matter (the
//! environment namespaces of this installation's tenants and their readers' namespaces). Each
//! object goes through the guard and is reduced to its compact form as it arrives (rules to
//! capabilities, bindings to a bounded list of subjects): nothing else of it is kept.
//!
//! The namespaced watches are cluster-wide (one watch each, however many namespaces) and keep
//! only objects of namespaces that matter, so Roles anyone creates in a namespace of theirs cost
//! nothing. A namespace that comes to matter while they run is known once a list included it:
//! the watches list again for it (at most every [`RELIST_GAP`]), unless the operator created
//! the namespace after it came to matter, when nothing was in it before and everything since
//! arrives as an event. Changes reconcile the tenants they concern, coalesced over
//! [`FLUSH_EVERY`]: a namespace's its tenants, a cluster-wide one every tenant.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::time::Instant;

use super::guard::{Guarded, guarded};
use super::invalid::Invalids;
use super::trim::Trim;
use crate::access::exposure::confirm::Confirmer;
use crate::access::exposure::identity::Expected;
use crate::access::exposure::rbac::{self, Binding, Effective, Namespaced, Rbac};
use crate::access::exposure::rules::Grants;
use crate::api::MLTenant;
use crate::api::environments::namespace_name;
use crate::metrics::Metrics;

/// The least time between two lists of the namespaced watches started for namespaces new to
/// them: a fleet created while the operator runs costs one list per gap, not one per tenant.
const RELIST_GAP: Duration = Duration::from_secs(5);
/// How long changes are gathered before the tenants they concern are reconciled.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Objects per page of a list. A page is held whole, as text, before its objects are reduced:
/// anyone who may create Roles in a namespace may make each one as large as the API server
/// takes (1.5 MiB), so namespaced pages stay small.
const NAMESPACED_PAGE: u32 = 25;
const CLUSTER_PAGE: u32 = 100;

/// What the tenant controller assesses exposure with: the RBAC set, the namespaces it covers,
/// the expected identities and the reviews that confirm findings.
pub struct RbacView {
    rbac: RwLock<Rbac>,
    /// Bumped on every change of the set: reviews and the effective grants are reused while
    /// it stays.
    version: AtomicU64,
    effective: Mutex<Option<(u64, Arc<Effective>)>>,
    relevance: Mutex<Relevance>,
    relists: tokio::sync::watch::Sender<u64>,
    changes: Mutex<Changes>,
    pub expected: Expected,
    pub confirmer: Confirmer,
}

#[derive(Default)]
struct Relevance {
    /// The namespaces whose Roles and RoleBindings are kept.
    wanted: HashSet<String>,
    /// The namespaces the last complete list of Roles, of RoleBindings, included.
    listed: [Arc<HashSet<String>>; 2],
    /// Namespaces the operator created after they came to matter: known without a list.
    created: HashSet<String>,
}

#[derive(Default)]
struct Changes {
    cluster: bool,
    namespaces: HashSet<String>,
}

impl RbacView {
    pub fn new(expected: Expected, confirmer: Confirmer) -> Self {
        RbacView {
            rbac: RwLock::default(),
            version: AtomicU64::new(0),
            effective: Mutex::default(),
            relevance: Mutex::default(),
            relists: tokio::sync::watch::Sender::new(0),
            changes: Mutex::default(),
            expected,
            confirmer,
        }
    }

    /// `namespaces` matter from now on: ones new to the watches are listed for (soon). Call
    /// before creating a namespace, so that [`RbacView::created`] may count it as known.
    pub fn need<'a>(&self, namespaces: impl IntoIterator<Item = &'a str>) {
        let mut relevance = lock(&self.relevance);
        let mut grew = false;
        for namespace in namespaces {
            grew |= relevance.wanted.insert(namespace.to_owned());
        }
        drop(relevance);
        if grew {
            self.relists.send_modify(|n| *n += 1);
        }
    }

    /// The operator created `namespace` after it came to matter: every RBAC object in it is
    /// one the watches saw arrive.
    pub fn created(&self, namespace: &str) {
        let mut relevance = lock(&self.relevance);
        if relevance.wanted.contains(namespace) {
            relevance.created.insert(namespace.to_owned());
        }
    }

    /// The first of `namespaces` whose Roles and RoleBindings are not known yet.
    pub fn unknown<'a>(&self, namespaces: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        let relevance = lock(&self.relevance);
        namespaces
            .into_iter()
            .find(|ns| !relevance.created.contains(*ns) && !relevance.listed.iter().all(|listed| listed.contains(*ns)))
    }

    /// Run `assess` on the RBAC set as it is now, its effective grants and its version.
    pub fn with<T>(&self, assess: impl FnOnce(&Rbac, &Effective, u64) -> T) -> T {
        let rbac = read(&self.rbac);
        let version = self.version.load(Ordering::Acquire);
        let effective = {
            let mut cached = lock(&self.effective);
            match cached.as_ref() {
                Some((at, effective)) if *at == version => effective.clone(),
                _ => {
                    let effective = rbac.effective();
                    *cached = Some((version, effective.clone()));
                    effective
                }
            }
        };
        assess(&rbac, &effective, version)
    }

    /// A change of the set: in `namespace`, or cluster-wide (`None`).
    fn changed(&self, namespace: Option<&str>) {
        self.version.fetch_add(1, Ordering::AcqRel);
        let mut changes = lock(&self.changes);
        match namespace {
            Some(ns) => {
                changes.namespaces.insert(ns.to_owned());
            }
            None => changes.cluster = true,
        }
    }

    fn wants(&self, namespace: &str) -> bool {
        lock(&self.relevance).wanted.contains(namespace)
    }

    /// A namespaced list starts: the namespaces that matter are those of the tenants now (and
    /// what was needed since), which is what the list keeps.
    fn start_listing(&self, tenants: &Store<MLTenant>) -> Arc<HashSet<String>> {
        let mut relevance = lock(&self.relevance);
        let mut wanted: HashSet<String> = tenants.state().iter().flat_map(|t| namespaces_of(t)).collect();
        wanted.extend(relevance.created.iter().cloned());
        relevance.wanted = wanted;
        Arc::new(relevance.wanted.clone())
    }

    fn listed(&self, side: usize, namespaces: Arc<HashSet<String>>) {
        let mut relevance = lock(&self.relevance);
        relevance.listed[side] = namespaces;
        let listed = relevance.listed.clone();
        relevance.created.retain(|ns| !listed.iter().all(|l| l.contains(ns)));
    }
}

/// The namespaces whose RBAC decides who can read `tenant`'s Secrets: its environments' and
/// its readers'.
pub fn namespaces_of(tenant: &MLTenant) -> impl Iterator<Item = String> + '_ {
    let name = tenant.name_any();
    let environments = tenant.spec.environments.iter().map(move |e| namespace_name(&name, e));
    let readers = tenant.spec.secret_readers.iter().flatten().map(|r| r.service_account.namespace.clone());
    environments.chain(readers)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A Role, ClusterRole or binding as this watch reads it. The children watches read the
/// operator's own Roles and RoleBindings as `Role` and `RoleBinding`, reduced differently.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Granting<K>(pub K);

impl<K: Resource> Resource for Granting<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        self.0.meta()
    }

    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        self.0.meta_mut()
    }
}

/// Before decoding: of the metadata only what identifies the object (and a ClusterRole's
/// labels, which aggregation selects by) is read.
impl<K: Kept> Trim for Granting<K> {
    fn prune(value: &mut serde_json::Value) {
        if let Some(meta) = value.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
            meta.retain(|key, _| {
                ["name", "namespace", "uid", "resourceVersion"].contains(&key.as_str())
                    || (key == "labels" && K::LABELS)
            });
        }
    }

    fn trim(&mut self) {}
}

/// A kind this watch keeps, and where in the RBAC set.
pub trait Kept:
    Clone
    + std::fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
    + Resource<DynamicType = ()>
    + Send
    + Sync
    + 'static
{
    /// Its kind, for `mltenant_invalid_objects{kind}`.
    const KIND: &'static str;
    /// Whether its labels are read.
    const LABELS: bool = false;
    /// Put it (or, `None`, remove the object `name` of `namespace`) into `rbac`; whether that
    /// changed anything.
    fn put(rbac: &mut Rbac, namespace: Option<&str>, name: &str, obj: Option<&Self>) -> bool;
    /// Replace this kind's objects in `live` with those a complete list put into `listed`.
    fn replace(live: &mut Rbac, listed: Rbac);
}

impl Kept for ClusterRole {
    const KIND: &'static str = "ClusterRole";
    const LABELS: bool = true;

    fn put(rbac: &mut Rbac, _: Option<&str>, name: &str, obj: Option<&Self>) -> bool {
        match obj.map(rbac::ClusterRole::new) {
            Some(role) if rbac.cluster_roles.get(name) == Some(&role) => false,
            Some(role) => {
                rbac.cluster_roles.insert(name.to_owned(), role);
                true
            }
            None => rbac.cluster_roles.remove(name).is_some(),
        }
    }

    fn replace(live: &mut Rbac, listed: Rbac) {
        live.cluster_roles = listed.cluster_roles;
    }
}

impl Kept for ClusterRoleBinding {
    const KIND: &'static str = "ClusterRoleBinding";
    fn put(rbac: &mut Rbac, _: Option<&str>, name: &str, obj: Option<&Self>) -> bool {
        match obj.and_then(|b| Binding::new(&b.role_ref, b.subjects.as_ref(), None)) {
            Some(binding) if rbac.cluster_bindings.get(name) == Some(&binding) => false,
            Some(binding) => {
                rbac.cluster_bindings.insert(name.to_owned(), binding);
                true
            }
            None => rbac.cluster_bindings.remove(name).is_some(),
        }
    }

    fn replace(live: &mut Rbac, listed: Rbac) {
        live.cluster_bindings = listed.cluster_bindings;
    }
}

impl Kept for Role {
    const KIND: &'static str = "Role";
    fn put(rbac: &mut Rbac, namespace: Option<&str>, name: &str, obj: Option<&Self>) -> bool {
        let grants = obj.map(|r| Grants::from_rules(r.rules.as_deref().unwrap_or_default()));
        let namespace = namespace.unwrap_or_default();
        if grants.is_none() && !rbac.namespaces.contains_key(namespace) {
            return false;
        }
        rbac.namespaces.entry(namespace.to_owned()).or_default().set_role(name, grants)
    }

    fn replace(live: &mut Rbac, listed: Rbac) {
        replace_namespaced(live, listed, |ns| &mut ns.roles);
    }
}

impl Kept for RoleBinding {
    const KIND: &'static str = "RoleBinding";
    fn put(rbac: &mut Rbac, namespace: Option<&str>, name: &str, obj: Option<&Self>) -> bool {
        let binding = obj.and_then(|b| Binding::new(&b.role_ref, b.subjects.as_ref(), namespace));
        let namespace = namespace.unwrap_or_default();
        if binding.is_none() && !rbac.namespaces.contains_key(namespace) {
            return false;
        }
        rbac.namespaces.entry(namespace.to_owned()).or_default().set_binding(name, binding)
    }

    fn replace(live: &mut Rbac, listed: Rbac) {
        replace_namespaced(live, listed, |ns| &mut ns.bindings);
    }
}

/// Move one kind of namespaced objects (the part `pick` gives) from `listed` into `live`,
/// namespace by namespace; namespaces left with nothing go.
fn replace_namespaced<T>(live: &mut Rbac, mut listed: Rbac, pick: impl Fn(&mut Namespaced) -> &mut rbac::Objects<T>) {
    for (name, ns) in &mut live.namespaces {
        *pick(ns) =
            listed.namespaces.remove(name).map(|mut fresh| std::mem::take(pick(&mut fresh))).unwrap_or_default();
    }
    for (name, mut fresh) in listed.namespaces {
        let mut ns = Namespaced::default();
        *pick(&mut ns) = std::mem::take(pick(&mut fresh));
        live.namespaces.insert(name, ns);
    }
    live.namespaces.retain(|_, ns| !ns.roles.is_empty() || !ns.bindings.is_empty() || ns.over_limit());
}

/// What the tenant controller is triggered by: tenants a namespaced change concerns, and
/// (`all`) a cluster-wide change or a completed list.
pub struct Triggers {
    pub tenants: BoxStream<'static, ObjectRef<MLTenant>>,
    pub all: BoxStream<'static, ()>,
}

/// Where the watches report to.
pub struct Sinks {
    pub view: Arc<RbacView>,
    pub invalids: Arc<Invalids>,
    pub metrics: Arc<Metrics>,
}

/// The four RBAC watches, feeding `sinks.view`, with their readiness flags; and the triggers.
/// The namespaced ones start once the tenants' cache holds its initial list.
pub fn watch(
    client: &Client,
    tenants: Store<MLTenant>,
    tenants_synced: tokio::sync::watch::Receiver<bool>,
    sinks: Sinks,
    synced: [Arc<AtomicBool>; 4],
) -> (futures::future::BoxFuture<'static, ()>, Triggers) {
    let sinks = Arc::new(sinks);
    let [roles_synced, bindings_synced, cluster_roles_synced, cluster_bindings_synced] = synced;
    let cluster_roles = watch_cluster::<ClusterRole>(Api::all(client.clone()), sinks.clone(), cluster_roles_synced);
    let cluster_bindings =
        watch_cluster::<ClusterRoleBinding>(Api::all(client.clone()), sinks.clone(), cluster_bindings_synced);
    let after_tenants = |mut synced: tokio::sync::watch::Receiver<bool>| async move {
        let _ = synced.wait_for(|s| *s).await;
    };
    let roles = {
        let (api, sinks, tenants) = (Api::all(client.clone()), sinks.clone(), tenants.clone());
        after_tenants(tenants_synced.clone())
            .then(move |()| watch_namespaced::<Role>(api, 0, sinks, tenants, roles_synced))
    };
    let bindings = {
        let (api, sinks, tenants) = (Api::all(client.clone()), sinks.clone(), tenants.clone());
        after_tenants(tenants_synced)
            .then(move |()| watch_namespaced::<RoleBinding>(api, 1, sinks, tenants, bindings_synced))
    };
    let (tenant_tx, tenant_rx) = mpsc::unbounded();
    let (all_tx, all_rx) = mpsc::unbounded();
    let flushing = flush(sinks, tenants, tenant_tx, all_tx);
    let driven = async move {
        tokio::join!(cluster_roles, cluster_bindings, roles, bindings, flushing);
    };
    (driven.boxed(), Triggers { tenants: tenant_rx.boxed(), all: all_rx.boxed() })
}

/// A ClusterRole or ClusterRoleBinding watch: every object is kept (only cluster admins
/// create them), compact.
async fn watch_cluster<K: Kept>(api: Api<Guarded<Granting<K>>>, sinks: Arc<Sinks>, synced: Arc<AtomicBool>) {
    let config = watcher::Config::default().page_size(CLUSTER_PAGE);
    let mut events = guarded(api, config).default_backoff().boxed();
    let mut listing: Option<Rbac> = None;
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        let view = &sinks.view;
        match event {
            watcher::Event::Init => listing = Some(Rbac::default()),
            watcher::Event::InitApply(Guarded(Ok(obj))) => {
                if let Some(listing) = listing.as_mut() {
                    K::put(listing, None, &obj.name_any(), Some(&obj.0));
                }
            }
            watcher::Event::InitDone => {
                if let Some(listed) = listing.take() {
                    K::replace(&mut write(&view.rbac), listed);
                    view.changed(None);
                }
                synced.store(true, Ordering::Release);
            }
            watcher::Event::Apply(Guarded(Ok(obj))) => {
                if K::put(&mut write(&view.rbac), None, &obj.name_any(), Some(&obj.0)) {
                    view.changed(None);
                }
            }
            watcher::Event::Delete(obj) => {
                if K::put(&mut write(&view.rbac), None, &obj.name_any(), None) {
                    view.changed(None);
                }
            }
            watcher::Event::Apply(Guarded(Err(unreadable))) | watcher::Event::InitApply(Guarded(Err(unreadable))) => {
                // Kubernetes validates every field of RBAC objects, so none is expected: counted,
                // logged, left out.
                sinks.invalids.unreadable(K::KIND, &unreadable);
                let name = unreadable.metadata.name.clone().unwrap_or_default();
                if K::put(&mut write(&view.rbac), None, &name, None) {
                    view.changed(None);
                }
            }
        }
    }
}

/// A Role or RoleBinding watch (`side` 0 and 1), keeping the namespaces that matter; listed
/// again when more come to matter (at most every [`RELIST_GAP`]).
async fn watch_namespaced<K: Kept>(
    api: Api<Guarded<Granting<K>>>,
    side: usize,
    sinks: Arc<Sinks>,
    tenants: Store<MLTenant>,
    synced: Arc<AtomicBool>,
) {
    let view = sinks.view.clone();
    let mut relists = view.relists.subscribe();
    loop {
        let started = Instant::now();
        relists.mark_unchanged();
        let listing_for = view.start_listing(&tenants);
        let config = watcher::Config::default().page_size(NAMESPACED_PAGE);
        let mut events = guarded(api.clone(), config).default_backoff().boxed();
        let mut listing: Option<Rbac> = None;
        let mut restart_at: Option<Instant> = None;
        loop {
            let restart = async {
                match restart_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.next() => {
                    let Some(event) = event else { return };
                    let Ok(event) = event else { continue };
                    let over = on_namespaced(&sinks, event, &mut listing, side, &listing_for, &synced);
                    // A namespace over the limit is listed again once it may have fewer objects.
                    if over && restart_at.is_none() {
                        restart_at = Some((started + RELIST_GAP).max(Instant::now()));
                    }
                }
                changed = relists.changed(), if restart_at.is_none() => {
                    if changed.is_err() {
                        return;
                    }
                    restart_at = Some((started + RELIST_GAP).max(Instant::now()));
                }
                () = restart => break,
            }
        }
    }
}

/// Apply one event of a namespaced watch; whether it removed an object from a namespace over
/// the limit (which a new list may then find within it).
fn on_namespaced<K: Kept>(
    sinks: &Sinks,
    event: watcher::Event<Guarded<Granting<K>>>,
    listing: &mut Option<Rbac>,
    side: usize,
    listing_for: &Arc<HashSet<String>>,
    synced: &AtomicBool,
) -> bool {
    let view = &sinks.view;
    let place = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
    };
    match event {
        watcher::Event::Init => *listing = Some(Rbac::default()),
        watcher::Event::InitApply(Guarded(Ok(obj))) => {
            let (namespace, name) = place(obj.meta());
            if let Some(listing) = listing.as_mut()
                && (listing_for.contains(&namespace) || view.wants(&namespace))
            {
                K::put(listing, Some(&namespace), &name, Some(&obj.0));
            }
        }
        watcher::Event::InitDone => {
            if let Some(listed) = listing.take() {
                K::replace(&mut write(&view.rbac), listed);
                view.listed(side, listing_for.clone());
                view.changed(None);
            }
            synced.store(true, Ordering::Release);
        }
        watcher::Event::Apply(Guarded(Ok(obj))) => {
            let (namespace, name) = place(obj.meta());
            if view.wants(&namespace) && K::put(&mut write(&view.rbac), Some(&namespace), &name, Some(&obj.0)) {
                view.changed(Some(&namespace));
            }
        }
        watcher::Event::Delete(obj) => {
            let (namespace, name) = place(obj.meta());
            let mut rbac = write(&view.rbac);
            let over = rbac.namespaces.get(&namespace).is_some_and(Namespaced::over_limit);
            if K::put(&mut rbac, Some(&namespace), &name, None) {
                drop(rbac);
                view.changed(Some(&namespace));
            }
            return over;
        }
        watcher::Event::Apply(Guarded(Err(unreadable))) | watcher::Event::InitApply(Guarded(Err(unreadable))) => {
            let (namespace, name) = place(&unreadable.metadata);
            if view.wants(&namespace) {
                sinks.invalids.unreadable(K::KIND, &unreadable);
                if K::put(&mut write(&view.rbac), Some(&namespace), &name, None) {
                    view.changed(Some(&namespace));
                }
            }
        }
    }
    false
}

/// Every [`FLUSH_EVERY`], the changes gathered become triggers; and the count of objects kept
/// goes to `mltenant_rbac_objects`.
async fn flush(
    sinks: Arc<Sinks>,
    tenants: Store<MLTenant>,
    tenant_tx: mpsc::UnboundedSender<ObjectRef<MLTenant>>,
    all_tx: mpsc::UnboundedSender<()>,
) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let changes = std::mem::take(&mut *lock(&sinks.view.changes));
        if changes.cluster {
            if all_tx.unbounded_send(()).is_err() {
                return;
            }
        } else if !changes.namespaces.is_empty() {
            for tenant in tenants.state() {
                if namespaces_of(&tenant).any(|ns| changes.namespaces.contains(&ns))
                    && tenant_tx.unbounded_send(ObjectRef::from_obj(&*tenant)).is_err()
                {
                    return;
                }
            }
        }
        for (kind, count) in read(&sinks.view.rbac).counts() {
            sinks.metrics.rbac_objects(kind, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};

    use super::*;

    fn role(namespace: &str, name: &str) -> Role {
        let mut role = Role::default();
        role.metadata.namespace = Some(namespace.into());
        role.metadata.name = Some(name.into());
        role.rules = Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]);
        role
    }

    #[test]
    fn a_complete_list_replaces_one_kind_and_keeps_the_other() {
        let mut live = Rbac::default();
        assert!(Role::put(&mut live, Some("a"), "old", Some(&role("a", "old"))));
        let binding = RoleBinding {
            role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: "r".into() },
            subjects: Some(vec![Subject { kind: "User".into(), name: "u".into(), ..Default::default() }]),
            ..Default::default()
        };
        assert!(RoleBinding::put(&mut live, Some("a"), "b", Some(&binding)));
        let mut listed = Rbac::default();
        Role::put(&mut listed, Some("b"), "new", Some(&role("b", "new")));
        Role::replace(&mut live, listed);
        assert!(live.namespaces["a"].roles.is_empty(), "a Role no list found is gone");
        assert_eq!(live.namespaces["a"].bindings.len(), 1, "RoleBindings are the other list's");
        assert!(live.namespaces["b"].roles.by_name.contains_key("new"));
        assert!(!Role::put(&mut live, Some("b"), "new", Some(&role("b", "new"))), "the same again is no change");
        assert!(!Role::put(&mut live, Some("c"), "gone", None), "deleting what was never kept is no change");
        assert!(!live.namespaces.contains_key("c"));
    }

    #[test]
    fn only_metadata_that_identifies_is_read() {
        let mut value = serde_json::json!({"metadata": {"name": "r", "namespace": "a", "labels": {"x": "y"},
            "annotations": {"big": "x".repeat(1000)}, "managedFields": [{}]}, "rules": []});
        <Granting<Role> as Trim>::prune(&mut value);
        assert_eq!(value["metadata"], serde_json::json!({"name": "r", "namespace": "a"}));
        let mut value = serde_json::json!({"metadata": {"name": "c", "labels": {"x": "y"}, "annotations": {"a": "b"}}});
        <Granting<ClusterRole> as Trim>::prune(&mut value);
        assert_eq!(value["metadata"], serde_json::json!({"name": "c", "labels": {"x": "y"}}));
    }
}
