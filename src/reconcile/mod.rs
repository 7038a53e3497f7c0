//! The controllers and what they share.

pub mod apply;
pub mod bundle_status;
mod context;
mod error;
mod failures;
pub mod guard;
pub mod index;
mod invalid;
pub mod observed;
pub mod rbac;
pub mod rejected;
mod report;
pub mod tenant;
pub mod trim;
mod watches;

use std::sync::Arc;

use futures::{StreamExt, future};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use tracing::info;

pub use context::{Config, Context};
pub use error::{Error, Result};
use failures::{Failures, error_policy, guarded};
use invalid::Invalids;
use rbac::RbacView;
use watches::{Watches, tenant_of};

use crate::access::exposure::confirm::Confirmer;
use crate::access::usage::Usage;
use crate::api::{OwnedKind, SealedBundle};
use crate::keys::ring::KeyRing;
use crate::metrics::Metrics;
use crate::runtime::readiness::Readiness;

/// How long a reconcile request waits for more of its object's events (each one restarts the
/// wait). Short against a human's edit, long against one reconcile's echo.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(500);

/// The clients of the controllers: `main` for their requests (counted, fenced by leadership),
/// `reviews` for the SubjectAccessReviews that confirm who can read a Secret, which neither
/// count as the controllers' requests nor queue before them.
pub struct Clients {
    pub main: Client,
    pub reviews: Client,
}

/// Run the controllers until `shutdown` resolves, then let the reconciles in flight finish.
/// `usage`, when the audit sink runs, is what it counts: the controllers tell it which Secrets
/// are whose, and put each declared reader's last read into the tenant's status.
pub async fn run(
    clients: Clients,
    config: Config,
    metrics: Arc<Metrics>,
    keys: Arc<KeyRing>,
    readiness: Arc<Readiness>,
    usage: Option<Arc<Usage>>,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let client = clients.main;
    let (invalids, reports) = Invalids::new(metrics.clone());
    let view = Arc::new(RbacView::new(config.expected.clone(), Confirmer::new(clients.reviews)));
    let watches =
        Watches::new(&client, config.tenant_selector.as_deref(), &readiness, invalids, (view, metrics.clone()));
    let _gauges = metrics.watch(
        watches.tenants.clone(),
        watches.caches.bundles.clone(),
        config.bundle_selector.clone(),
        usage.clone(),
    );
    // Tenants whose status is behind what their readers read.
    let due = match &usage {
        Some(usage) => usage.clone().due_tenants().map(|tenant| ObjectRef::new(&tenant)).boxed(),
        None => futures::stream::pending().boxed(),
    };
    keys.follow_bundles(watches.caches.bundles.clone(), config.bundle_selector.clone());
    let users = watches.tenants.clone();
    let claims = &watches.claims;
    // A tenant's own writes come back as a burst of watch events (its namespaces, Secrets,
    // grants, its status) within a moment of each other: debounced, they cause one more
    // reconcile instead of one each.
    let per_controller = controller::Config::default().concurrency(config.concurrency).debounce(DEBOUNCE);
    let tenant_controller = Controller::for_stream(watches.tenant_events.applied_objects(), watches.tenants)
        .watches_stream(watches.namespace_events.touched_objects(), tenant_of(claims, OwnedKind::Namespace))
        .watches_stream(watches.secret_events.touched_objects(), tenant_of(claims, OwnedKind::Secret))
        .watches_stream(watches.role_events.touched_objects(), tenant_of(claims, OwnedKind::Role))
        .watches_stream(watches.binding_events.touched_objects(), tenant_of(claims, OwnedKind::RoleBinding))
        .watches_shared_stream(watches.bundle_changes, move |bundle: Arc<SealedBundle>| {
            let name = bundle.name_any();
            let users = users.state().into_iter().filter(|t| t.spec.referenced_bundles().contains(name.as_str()));
            users.map(|t| ObjectRef::from_obj(&*t)).collect::<Vec<_>>()
        })
        .with_config(per_controller.clone())
        .reconcile_all_on(keys.changes())
        .reconcile_on(watches.rbac_triggers.tenants)
        .reconcile_all_on(watches.rbac_triggers.all)
        .reconcile_on(due)
        .graceful_shutdown_on(shutdown.clone());
    let bundle_controller = Controller::for_shared_stream(watches.bundle_triggers, watches.caches.bundles.clone())
        .with_config(per_controller)
        .reconcile_all_on(keys.changes())
        .graceful_shutdown_on(shutdown);

    let ctx = Arc::new(Context::new(client, config, metrics, keys, watches.caches, usage));
    info!("starting the tenant and bundle controllers");
    let tenants = drive(tenant_controller, "tenant", tenant::reconcile, ctx.clone());
    let bundles = drive(bundle_controller, "bundle", bundle_status::reconcile, ctx.clone());
    // The shared watch and the reports of unreadable objects only serve the controllers: they
    // end with them.
    tokio::select! {
        _ = future::join(tenants, bundles) => {}
        () = watches.bundle_watch => {}
        () = watches.rbac_watch => {}
        () = report::unreadable(reports, ctx) => {}
    }
}

/// Run `controller` with `reconcile` (timed, counted, a panic caught) and the backoff policy
/// (failure counts for the objects of its cache).
async fn drive<K, F>(
    controller: Controller<K>,
    name: &'static str,
    reconcile: fn(Arc<K>, Arc<Context>) -> F,
    ctx: Arc<Context>,
) where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    F: Future<Output = Result<Action>> + Send + 'static,
{
    let failures = Arc::new(Failures::new(controller.store()));
    let on_error = failures.clone();
    controller
        .run(
            move |obj, ctx: Arc<Context>| {
                guarded(name, obj.clone(), ctx.clone(), failures.clone(), reconcile(obj, ctx))
            },
            move |obj, error, _ctx| error_policy(name, &*obj, error, &on_error),
            ctx,
        )
        .for_each(|_| future::ready(()))
        .await;
}
