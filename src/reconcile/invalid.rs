//! Objects the operator cannot read (see `guard`): reported, never a reason to stop. Every
//! watch keeps going past them; this registry remembers them for `mltenant_invalid_objects`,
//! for the tenants that name an unreadable SealedBundle (their Secret keeps its last good
//! content, reason `InvalidObject`), and for the report on the object itself: a Warning Event
//! and a condition (`Ready` on an MLTenant, `Decryptable` on a SealedBundle) saying which field,
//! never its value. The report is written once per generation of the object.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::guard::Unreadable;
use crate::metrics::Metrics;

/// Reports waiting to be written; past this many, the oldest is written on the object's next
/// event instead (the registry keeps it anyway).
const PENDING_REPORTS: usize = 256;

/// The unreadable objects the watches met, by kind and `namespace/name`.
pub struct Invalids {
    objects: Mutex<BTreeMap<(&'static str, String), Seen>>,
    metrics: Arc<Metrics>,
    reports: mpsc::Sender<(&'static str, Unreadable)>,
}

struct Seen {
    unreadable: Unreadable,
    /// Still found by the relist under way (entries not found again are gone).
    relisted: bool,
}

/// Where an object is: `namespace/name`, or its name.
fn place(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    let name = meta.name.clone().unwrap_or_default();
    meta.namespace.as_ref().map_or(name.clone(), |ns| format!("{ns}/{name}"))
}

impl Invalids {
    /// The registry, and the reports for `report::unreadable` to write.
    pub fn new(metrics: Arc<Metrics>) -> (Arc<Self>, mpsc::Receiver<(&'static str, Unreadable)>) {
        let (reports, receiver) = mpsc::channel(PENDING_REPORTS);
        (Arc::new(Invalids { objects: Mutex::default(), metrics, reports }), receiver)
    }

    /// The watch of `kind` met `unreadable`: remember it and, when it is new or another
    /// generation, have it reported.
    pub fn unreadable(&self, kind: &'static str, unreadable: &Unreadable) {
        let key = (kind, place(&unreadable.metadata));
        let fresh = {
            let mut objects = self.lock();
            let previous = objects.insert(key, Seen { unreadable: unreadable.clone(), relisted: true });
            previous.is_none_or(|p| {
                (p.unreadable.metadata.uid.as_ref(), p.unreadable.metadata.generation)
                    != (unreadable.metadata.uid.as_ref(), unreadable.metadata.generation)
            })
        };
        self.count(kind);
        if fresh {
            tracing::warn!(kind, object = %place(&unreadable.metadata), field = %unreadable.field, "an object the operator cannot read is skipped");
            // A full queue only delays the report to the object's next event.
            let _ = self.reports.try_send((kind, unreadable.clone()));
        }
    }

    /// The object at `meta` is readable now, or gone.
    pub fn fine(&self, kind: &'static str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
        if self.lock().remove(&(kind, place(meta))).is_some() {
            self.count(kind);
        }
    }

    /// A relist of `kind` starts: entries it does not find again are dropped when it is done.
    pub fn relisting(&self, kind: &'static str) {
        self.lock().iter_mut().filter(|((k, _), _)| *k == kind).for_each(|(_, seen)| seen.relisted = false);
    }

    pub fn relisted(&self, kind: &'static str) {
        self.lock().retain(|(k, _), seen| *k != kind || seen.relisted);
        self.count(kind);
    }

    /// Why the object `name` of `kind` cannot be read, if it cannot.
    pub fn get(&self, kind: &'static str, name: &str) -> Option<Unreadable> {
        self.lock().get(&(kind, name.to_owned())).map(|seen| seen.unreadable.clone())
    }

    fn count(&self, kind: &'static str) {
        let count = self.lock().keys().filter(|(k, _)| *k == kind).count();
        self.metrics.invalid_objects(kind, count);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(&'static str, String), Seen>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
