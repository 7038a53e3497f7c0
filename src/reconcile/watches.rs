//! The watches the controllers run on: one label-selected, trimmed cache per kind (indexed by
//! tenant), one shared cache of every SealedBundle, and a readiness flag per cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::BoxStream;
use futures::{FutureExt as _, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use super::index::{Cached, Child};
use super::trim::Trim;
use crate::api::labels;
use crate::api::{MLTenant, SealedBundle};
use crate::readiness::Readiness;

/// How many bundle events the shared cache holds for a slow subscriber before the watch waits.
const BUNDLE_EVENT_BUFFER: usize = 1024;

/// A watch's events, after they went into its cache.
pub type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// The caches every reconcile reads (see `Context`).
pub struct Caches {
    pub namespaces: Cached<Namespace>,
    pub secrets: Cached<Secret>,
    pub bundles: Store<SealedBundle>,
    pub roles: Cached<Role>,
    pub role_bindings: Cached<RoleBinding>,
    /// One flag per cache above, raised once it holds its initial list.
    pub synced: Vec<Arc<AtomicBool>>,
}

/// Every watch of the controllers: the caches, and the event streams that feed them and
/// trigger reconciles. Nothing is watched until the streams are polled.
pub struct Watches {
    pub caches: Caches,
    pub tenants: Store<MLTenant>,
    pub tenant_events: Events<MLTenant>,
    pub namespace_events: Events<Namespace>,
    pub secret_events: Events<Secret>,
    pub role_events: Events<Role>,
    pub binding_events: Events<RoleBinding>,
    /// Changed bundles, for the tenants using them and for the bundle controller.
    pub bundle_changes: reflector::ReflectHandle<SealedBundle>,
    pub bundle_triggers: reflector::ReflectHandle<SealedBundle>,
    /// Drives the shared bundle watch; it must be polled beside the controllers.
    pub bundle_watch: futures::future::BoxFuture<'static, ()>,
}

impl Watches {
    /// The watches of MLTenants matching `tenant_selector` and of everything they own.
    pub fn new(client: &Client, tenant_selector: Option<&str>, readiness: &Readiness) -> Self {
        let tenant_watch =
            tenant_selector.map_or_else(watcher::Config::default, |s| watcher::Config::default().labels(s));
        // The controller reads its tenants from a kube-runtime store.
        let (tenants, tenant_writer) = reflector::store();
        let tenant_events = reflector::reflector(
            tenant_writer,
            watcher(Api::<MLTenant>::all(client.clone()), tenant_watch).modify(Trim::trim),
        )
        .default_backoff()
        .boxed();
        let managed = watcher::Config::default().labels(&labels::managed_selector());
        let (namespaces, namespace_events, namespaces_synced) =
            cached(Api::<Namespace>::all(client.clone()), managed, readiness);
        let children = || watcher::Config::default().labels(&labels::tenant_children_selector());
        let (secrets, secret_events, secrets_synced) =
            cached(Api::<Secret>::all(client.clone()), children(), readiness);
        let (roles, role_events, roles_synced) = cached(Api::<Role>::all(client.clone()), children(), readiness);
        let (role_bindings, binding_events, bindings_synced) =
            cached(Api::<RoleBinding>::all(client.clone()), children(), readiness);

        // One cache of every SealedBundle, shared: the tenant controller distributes them and the
        // bundle controller reports the status of those this installation is responsible for.
        let bundles_synced = readiness.track();
        let (bundles, bundle_writer) = reflector::store_shared(BUNDLE_EVENT_BUFFER);
        let bundle_changes = bundle_writer.subscribe().expect("a shared store");
        let bundle_triggers = bundle_writer.subscribe().expect("a shared store");
        let flag = bundles_synced.clone();
        let bundle_watch = reflector::reflector(
            bundle_writer,
            watcher(Api::<SealedBundle>::all(client.clone()), watcher::Config::default()).modify(Trim::trim),
        )
        .default_backoff()
        .for_each(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                flag.store(true, Ordering::Release);
            }
            future::ready(())
        })
        .boxed();
        Watches {
            caches: Caches {
                namespaces,
                secrets,
                bundles,
                roles,
                role_bindings,
                synced: vec![namespaces_synced, secrets_synced, bundles_synced, roles_synced, bindings_synced],
            },
            tenants,
            tenant_events,
            namespace_events,
            secret_events,
            role_events,
            binding_events,
            bundle_changes,
            bundle_triggers,
            bundle_watch,
        }
    }
}

/// A watch of `api` kept in a cache indexed by tenant, and its readiness flag (tracked by
/// `readiness`), raised once the initial list is in.
fn cached<K: Child + Trim>(
    api: Api<K>,
    config: watcher::Config,
    readiness: &Readiness,
) -> (Cached<K>, Events<K>, Arc<AtomicBool>) {
    let synced = readiness.track();
    let flag = synced.clone();
    let cached = Cached::default();
    let mut observe = cached.observer();
    let events = watcher(api, config).modify(Trim::trim).default_backoff().inspect_ok(move |event| {
        observe(event);
        if matches!(event, watcher::Event::InitDone) {
            flag.store(true, Ordering::Release);
        }
    });
    (cached, events.boxed(), synced)
}

/// The tenant a managed child belongs to, from its label.
pub fn tenant_of<K: ResourceExt>(child: &K) -> Option<ObjectRef<MLTenant>> {
    child.labels().get(labels::TENANT).map(|t| ObjectRef::new(t))
}
