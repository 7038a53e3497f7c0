//! The controllers and what they share.

pub mod apply;
pub mod conditions;
pub mod tenant;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::api::MLTenant;
use crate::labels;
use crate::metrics::Metrics;

/// Errors of one reconcile. Each maps to a metric label; none carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_api",
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
    /// Name reported on Events (the pod name in a cluster).
    pub instance: Option<String>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Namespaces labelled as managed by this operator (a label-selected watch).
    pub namespaces: Store<Namespace>,
    /// Serialises "nobody holds this namespace, take it" decisions across tenants.
    pub namespace_claims: Mutex<()>,
}

impl Context {
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

fn error_policy(tenant: Arc<MLTenant>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(tenant = %tenant.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_failed("tenant", error);
    Action::requeue(Duration::from_secs(5))
}

/// Run the controllers until a shutdown signal. `ready` is set once every cache has synced.
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>, ready: Arc<std::sync::atomic::AtomicBool>) {
    let tenants: Api<MLTenant> = Api::all(client.clone());
    let mut tenant_watch = watcher::Config::default();
    if let Some(selector) = &config.tenant_selector {
        tenant_watch = tenant_watch.labels(selector);
    }

    let (namespaces, namespace_writer) = reflector::store();
    let namespace_events = reflector::reflector(
        namespace_writer,
        watcher(Api::<Namespace>::all(client.clone()), watcher::Config::default().labels(&labels::managed_selector())),
    )
    .default_backoff()
    .touched_objects();

    let controller = Controller::new(tenants, tenant_watch)
        .watches_stream(namespace_events, |ns: Namespace| {
            ns.labels().get(labels::TENANT).map(|t| ObjectRef::<MLTenant>::new(t))
        })
        .shutdown_on_signal();

    metrics.watch_tenants(controller.store());
    let caches = (controller.store(), namespaces.clone());
    tokio::spawn(async move {
        if caches.0.wait_until_ready().await.is_ok() && caches.1.wait_until_ready().await.is_ok() {
            ready.store(true, std::sync::atomic::Ordering::Release);
            info!("caches synced, ready");
        }
    });

    let reporter = Reporter { controller: labels::MANAGED_BY.to_owned(), instance: config.instance.clone() };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        config,
        metrics: metrics.clone(),
        namespaces,
        namespace_claims: Mutex::new(()),
    });
    controller
        .run(
            |tenant, ctx: Arc<Context>| async move {
                let metrics = ctx.metrics.clone();
                metrics.time_reconcile("tenant", tenant::reconcile(tenant, ctx)).await
            },
            error_policy,
            ctx,
        )
        .for_each(|_| future::ready(()))
        .await;
}
