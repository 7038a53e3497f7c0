//! Prometheus metrics (DESIGN section 5). Per-tenant series are computed at scrape time from
//! the controller's cache, so a deleted tenant leaves no stale series behind.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::api::MLTenant;
use crate::reconcile::Error;

pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    reconcile_duration: HistogramVec,
    kube_requests: IntCounterVec,
    tenants: Arc<OnceLock<Store<MLTenant>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("mltenant_reconcile_total", "Reconciles by controller and result (success or an error class)."),
            &["controller", "result"],
        )
        .expect("valid metric");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("mltenant_reconcile_duration_seconds", "Duration of one reconcile.")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )
        .expect("valid metric");
        let kube_requests = IntCounterVec::new(
            Opts::new(
                "mltenant_kube_requests_total",
                "Requests the operator sent to the Kubernetes API, by HTTP method (non-GET ones are writes).",
            ),
            &["method"],
        )
        .expect("valid metric");
        let tenants = Arc::new(OnceLock::new());
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(kube_requests.clone()),
            Box::new(TenantConditions { tenants: tenants.clone(), desc: TenantConditions::gauge().desc()[0].clone() }),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self { registry, reconciles, reconcile_duration, kube_requests, tenants }
    }

    /// Let the tenant-condition gauge read tenants from the controller's cache.
    pub fn watch_tenants(&self, store: Store<MLTenant>) {
        let _ = self.tenants.set(store);
    }

    /// Time `reconcile` and count its outcome.
    pub async fn time_reconcile<T>(
        &self,
        controller: &str,
        reconcile: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let timer = self.reconcile_duration.with_label_values(&[controller]).start_timer();
        let result = reconcile.await;
        timer.observe_duration();
        if result.is_ok() {
            self.reconciles.with_label_values(&[controller, "success"]).inc();
        }
        result
    }

    pub fn reconcile_failed(&self, controller: &str, error: &Error) {
        self.reconciles.with_label_values(&[controller, error.metric_label()]).inc();
    }

    /// Count one request to the Kubernetes API.
    pub fn kube_request(&self, method: &http::Method) {
        self.kube_requests.with_label_values(&[method.as_str()]).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// `mltenant_tenant_condition{tenant,condition,status}`: 1 for each condition's current status.
struct TenantConditions {
    tenants: Arc<OnceLock<Store<MLTenant>>>,
    desc: Desc,
}

impl TenantConditions {
    fn gauge() -> IntGaugeVec {
        IntGaugeVec::new(
            Opts::new(
                "mltenant_tenant_condition",
                "Current status of each tenant condition (1 for the status it has).",
            ),
            &["tenant", "condition", "status"],
        )
        .expect("valid metric")
    }
}

impl Collector for TenantConditions {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let gauge = Self::gauge();
        for tenant in self.tenants.get().map(Store::state).unwrap_or_default() {
            let name = tenant.name_any();
            for condition in tenant.status.iter().flat_map(|s| &s.conditions) {
                gauge.with_label_values(&[name.as_str(), &condition.type_, &condition.status]).set(1);
            }
        }
        gauge.collect()
    }
}
