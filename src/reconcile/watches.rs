//! The watches the controllers run on: one label-selected, trimmed cache per kind of child
//! (indexed by tenant), one shared cache of every SealedBundle, and a readiness flag per cache.
//!
//! Every watch reads through the guard (`guard`): an object that cannot be read is reported
//! (`invalid`) and skipped, the rest of the list goes on. The children caches keep only objects
//! a tenant of this installation claims (on its record, or named by its spec in one of its
//! namespaces: `api::environments::claims`), so what others label as ours costs nothing; for
//! that they start once the tenants' own cache holds its initial list.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::BoxStream;
use futures::{FutureExt as _, Stream, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};

use super::guard::{Guarded, guarded};
use super::index::{Cached, Child};
use super::invalid::Invalids;
use super::rbac::{RbacView, Sinks, Triggers};
use super::trim::Trim;
use crate::api::environments::claims;
use crate::api::labels;
use crate::api::{MLTenant, OwnedKind, SealedBundle};
use crate::metrics::Metrics;
use crate::runtime::readiness::Readiness;

/// How many bundle events the shared cache holds for a slow subscriber before the watch waits.
const BUNDLE_EVENT_BUFFER: usize = 1024;

/// Objects per page of a children watch's initial list. A page is held whole, as text and
/// decoded, before its objects are trimmed: Secrets of up to 1 MiB of values and 256 KiB of
/// annotations make kube's default of 500 a page of hundreds of MiB.
const CHILDREN_PAGE: u32 = 50;

/// A watch's events, after they went into its cache.
pub type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// The caches every reconcile reads (see `Context`).
pub struct Caches {
    /// The RBAC that decides who can read the distributed Secrets.
    pub rbac: Arc<RbacView>,
    pub namespaces: Cached<Namespace>,
    pub secrets: Cached<Secret>,
    pub bundles: Store<SealedBundle>,
    pub roles: Cached<Role>,
    pub role_bindings: Cached<RoleBinding>,
    /// The objects the watches could not read.
    pub invalids: Arc<Invalids>,
    /// One flag per cache above, raised once it holds its initial list.
    pub synced: Vec<Arc<AtomicBool>>,
}

/// Every watch of the controllers: the caches, and the event streams that feed them and
/// trigger reconciles. Nothing is watched until the streams are polled.
pub struct Watches {
    pub caches: Caches,
    pub tenants: Store<MLTenant>,
    pub tenant_events: Events<MLTenant>,
    /// Which tenant claims a child (for the events that trigger reconciles).
    pub claims: Claims,
    pub namespace_events: Events<Guarded<Namespace>>,
    pub secret_events: Events<Guarded<Secret>>,
    pub role_events: Events<Guarded<Role>>,
    pub binding_events: Events<Guarded<RoleBinding>>,
    /// Changed bundles, for the tenants using them and for the bundle controller.
    pub bundle_changes: reflector::ReflectHandle<SealedBundle>,
    pub bundle_triggers: reflector::ReflectHandle<SealedBundle>,
    /// Drives the shared bundle watch; it must be polled beside the controllers.
    pub bundle_watch: futures::future::BoxFuture<'static, ()>,
    /// Drives the RBAC watches, likewise; and the tenants their changes concern.
    pub rbac_watch: futures::future::BoxFuture<'static, ()>,
    pub rbac_triggers: Triggers,
}

impl Watches {
    /// The watches of MLTenants matching `tenant_selector` and of everything they own.
    pub fn new(
        client: &Client,
        tenant_selector: Option<&str>,
        readiness: &Readiness,
        invalids: Arc<Invalids>,
        rbac: (Arc<RbacView>, Arc<Metrics>),
    ) -> Self {
        let tenant_watch =
            tenant_selector.map_or_else(watcher::Config::default, |s| watcher::Config::default().labels(s));
        // The controller reads its tenants from a kube-runtime store.
        let (tenants, tenant_writer) = reflector::store();
        let (tenants_synced, synced_tenants) = tokio::sync::watch::channel(false);
        let tenant_events = reflector::reflector(
            tenant_writer,
            readable(guarded(Api::all(client.clone()), tenant_watch), tenants.clone(), invalids.clone()),
        )
        .default_backoff()
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                tenants_synced.send_replace(true);
            }
        })
        .boxed();

        let rbac_synced = [readiness.track(), readiness.track(), readiness.track(), readiness.track()];
        let (view, metrics) = rbac;
        let sinks = Sinks { view: view.clone(), invalids: invalids.clone(), metrics };
        let (rbac_watch, rbac_triggers) =
            super::rbac::watch(client, tenants.clone(), synced_tenants.clone(), sinks, rbac_synced.clone());

        let claimed = Claims { tenants: tenants.clone() };
        let start = Start { tenants_synced: synced_tenants, readiness };
        let managed = watcher::Config::default().labels(&labels::managed_selector()).page_size(CHILDREN_PAGE);
        let (namespaces, namespace_events, namespaces_synced) =
            cached(Api::all(client.clone()), managed, OwnedKind::Namespace, &claimed, &start, &invalids);
        let children =
            || watcher::Config::default().labels(&labels::tenant_children_selector()).page_size(CHILDREN_PAGE);
        let (secrets, secret_events, secrets_synced) =
            cached(Api::all(client.clone()), children(), OwnedKind::Secret, &claimed, &start, &invalids);
        let (roles, role_events, roles_synced) =
            cached(Api::all(client.clone()), children(), OwnedKind::Role, &claimed, &start, &invalids);
        let (role_bindings, binding_events, bindings_synced) =
            cached(Api::all(client.clone()), children(), OwnedKind::RoleBinding, &claimed, &start, &invalids);

        // One cache of every SealedBundle, shared: the tenant controller distributes them and the
        // bundle controller reports the status of those this installation is responsible for.
        let bundles_synced = readiness.track();
        let (bundles, bundle_writer) = reflector::store_shared(BUNDLE_EVENT_BUFFER);
        let bundle_changes = bundle_writer.subscribe().expect("a shared store");
        let bundle_triggers = bundle_writer.subscribe().expect("a shared store");
        let flag = bundles_synced.clone();
        let bundle_stream =
            readable(guarded(Api::all(client.clone()), watcher::Config::default()), bundles.clone(), invalids.clone());
        let bundle_watch = reflector::reflector(bundle_writer, bundle_stream)
            .default_backoff()
            .for_each(move |event| {
                if matches!(event, Ok(watcher::Event::InitDone)) {
                    flag.store(true, Ordering::Release);
                }
                future::ready(())
            })
            .boxed();
        let mut synced = vec![namespaces_synced, secrets_synced, bundles_synced, roles_synced, bindings_synced];
        synced.extend(rbac_synced);
        Watches {
            caches: Caches { rbac: view, namespaces, secrets, bundles, roles, role_bindings, invalids, synced },
            tenants,
            tenant_events,
            claims: claimed,
            namespace_events,
            secret_events,
            role_events,
            binding_events,
            bundle_changes,
            bundle_triggers,
            bundle_watch,
            rbac_watch,
            rbac_triggers,
        }
    }
}

/// The events of a guarded watch of one of the operator's own kinds, as events of `K` for its
/// store: an object that cannot be read is reported and left out (an earlier, readable version
/// of it taken out of the store), so the controllers never act on a copy the API server no
/// longer has.
fn readable<K>(
    events: impl Stream<Item = watcher::Result<watcher::Event<Guarded<K>>>> + Send + 'static,
    store: Store<K>,
    invalids: Arc<Invalids>,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Child,
{
    let kind: &'static str = kind_name::<K>();
    events.filter_map(move |event| {
        let earlier = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            store.get(&ObjectRef::new(meta.name.as_deref().unwrap_or_default())).map(|old| (*old).clone())
        };
        let event = event.map(|event| match event {
            watcher::Event::Init => {
                invalids.relisting(kind);
                Some(watcher::Event::Init)
            }
            watcher::Event::InitDone => {
                invalids.relisted(kind);
                Some(watcher::Event::InitDone)
            }
            watcher::Event::InitApply(Guarded(Ok(obj))) => {
                invalids.fine(kind, obj.meta());
                Some(watcher::Event::InitApply(obj))
            }
            watcher::Event::Apply(Guarded(Ok(obj))) => {
                invalids.fine(kind, obj.meta());
                Some(watcher::Event::Apply(obj))
            }
            watcher::Event::Delete(Guarded(Ok(obj))) => {
                invalids.fine(kind, obj.meta());
                Some(watcher::Event::Delete(obj))
            }
            watcher::Event::InitApply(Guarded(Err(unreadable))) => {
                invalids.unreadable(kind, &unreadable);
                None
            }
            watcher::Event::Apply(Guarded(Err(unreadable))) => {
                invalids.unreadable(kind, &unreadable);
                earlier(&unreadable.metadata).map(watcher::Event::Delete)
            }
            watcher::Event::Delete(Guarded(Err(unreadable))) => {
                invalids.fine(kind, &unreadable.metadata);
                earlier(&unreadable.metadata).map(watcher::Event::Delete)
            }
        });
        future::ready(event.transpose())
    })
}

/// `K`'s kind as a `'static` name, for metric labels and logs (the operator's two kinds and
/// the four children).
fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "MLTenant" => "MLTenant",
        "SealedBundle" => "SealedBundle",
        "Namespace" => "Namespace",
        "Secret" => "Secret",
        "Role" => "Role",
        "RoleBinding" => "RoleBinding",
        _ => "Object",
    }
}

/// Whether a tenant of this installation claims an object (see the module docs).
#[derive(Clone)]
pub struct Claims {
    tenants: Store<MLTenant>,
}

impl Claims {
    /// The tenant that claims `obj`, of kind `kind`, if one does: the one its label names, if
    /// that tenant has it on record or wants it.
    pub fn owner<K: Resource>(&self, kind: OwnedKind, obj: &K) -> Option<ObjectRef<MLTenant>> {
        let tenant = self.tenants.get(&ObjectRef::new(obj.meta().labels.as_ref()?.get(labels::TENANT)?))?;
        let namespace = obj.meta().namespace.as_deref().unwrap_or_default();
        let name = obj.meta().name.as_deref().unwrap_or_default();
        claims(&tenant, kind, namespace, name).then(|| ObjectRef::from_obj(&*tenant))
    }
}

/// When the children watches may start, and what tracks their readiness.
struct Start<'a> {
    tenants_synced: tokio::sync::watch::Receiver<bool>,
    readiness: &'a Readiness,
}

/// A guarded watch of `api` kept in a cache indexed by tenant (only what a tenant claims), and
/// its readiness flag, raised once the initial list is in. The watch starts once the tenants'
/// cache holds its initial list, which the claims are judged by.
fn cached<K: Child + Trim>(
    api: Api<Guarded<K>>,
    config: watcher::Config,
    kind: OwnedKind,
    claimed: &Claims,
    start: &Start<'_>,
    invalids: &Arc<Invalids>,
) -> (Cached<K>, Events<Guarded<K>>, Arc<AtomicBool>) {
    let synced = start.readiness.track();
    let flag = synced.clone();
    let cached = Cached::default();
    let claims = claimed.clone();
    let mut observe = cached.observer(move |obj: &K| claims.owner(kind, obj).is_some());
    let mut tenants_synced = start.tenants_synced.clone();
    let after_tenants = async move {
        // Closed only when the watches are dropped, then nothing is polled any more.
        let _ = tenants_synced.wait_for(|synced| *synced).await;
    };
    let invalids = invalids.clone();
    let kind_name = kind_name::<K>();
    let events = after_tenants
        .into_stream()
        .flat_map(move |()| guarded(api.clone(), config.clone()))
        .default_backoff()
        .inspect_ok(move |event| {
            report_unreadable(&invalids, kind_name, event);
            observe(event);
            if matches!(event, watcher::Event::InitDone) {
                flag.store(true, Ordering::Release);
            }
        });
    (cached, events.boxed(), synced)
}

/// Count and log a child the watch could not read (its tenant's reconcile meets it too).
fn report_unreadable<K: Resource>(invalids: &Invalids, kind: &'static str, event: &watcher::Event<Guarded<K>>) {
    match event {
        watcher::Event::Init => invalids.relisting(kind),
        watcher::Event::InitDone => invalids.relisted(kind),
        watcher::Event::Apply(Guarded(Err(unreadable))) | watcher::Event::InitApply(Guarded(Err(unreadable))) => {
            invalids.unreadable(kind, unreadable);
        }
        watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) | watcher::Event::Delete(obj) => {
            invalids.fine(kind, obj.meta());
        }
    }
}

/// The tenant a managed child's event concerns: the one that claims it, or, for a child that
/// cannot be read, the one its label names (its reconcile reports what it cannot do).
pub fn tenant_of<K: Resource>(
    claims: &Claims,
    kind: OwnedKind,
) -> impl Fn(Guarded<K>) -> Option<ObjectRef<MLTenant>> + Send + Sync + 'static {
    let claims = claims.clone();
    move |child| match &child.0 {
        Ok(obj) => claims.owner(kind, obj),
        Err(unreadable) => {
            let tenant = unreadable.metadata.labels.as_ref()?.get(labels::TENANT)?;
            claims.tenants.get(&ObjectRef::new(tenant)).map(|t| ObjectRef::from_obj(&*t))
        }
    }
}
