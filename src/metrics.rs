//! Prometheus metrics. Gauges about tenants, Secrets, bundles and keys are computed at scrape
//! time from the caches of the current leadership term, so nothing that is gone (or that this
//! replica no longer leads) leaves a stale series; the failure counter is pruned the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt as _};
use kube::runtime::reflector::Store;
use prometheus::core::Collector;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::access::exposure::identity::Kind;
use crate::access::usage::Usage;
use crate::api::conditions::{DECRYPTABLE, TRUE};
use crate::api::{MLTenant, SealedBundle};
use crate::keys::ring::KeyRing;

pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    reconcile_duration: HistogramVec,
    kube_requests: IntCounterVec,
    fenced_writes: IntCounterVec,
    decryption_failures: IntCounterVec,
    rejected_writes: IntCounterVec,
    invalid_objects: prometheus::IntGaugeVec,
    leader: IntGauge,
    key_renew_period: IntGauge,
    http_connections: IntGauge,
    http_connections_closed: IntCounterVec,
    access_reviews: IntCounterVec,
    rbac_objects: prometheus::IntGaugeVec,
    audit_connections: IntGauge,
    audit_connections_closed: IntCounterVec,
    audit_events: IntCounterVec,
    audit_batches: IntCounterVec,
    state: StateGauges,
    sources: Arc<RwLock<Option<Sources>>>,
}

impl Metrics {
    /// The metrics of a process holding `keys` (every replica loads the sealing keys, so their
    /// expiry and the decryption count are exported whether or not it leads).
    pub fn new(keys: Arc<KeyRing>) -> Self {
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
                "Requests the controllers and key ring sent to the Kubernetes API, by HTTP method (non-GET ones are writes; leader-Lease renewals are not counted).",
            ),
            &["method"],
        )
        .expect("valid metric");
        let fenced_writes = IntCounterVec::new(
            Opts::new(
                "mltenant_fenced_writes_total",
                "Writes the leadership fence stopped: refused before sending (this replica did not hold the leader Lease) or abandoned unanswered when its term lapsed.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let decryption_failures = IntCounterVec::new(
            Opts::new(
                "mltenant_decryption_failures_total",
                "Failed attempts to produce a tenant's Secret from a SealedBundle, by closed-set reason.",
            ),
            &["tenant", "bundle", "reason"],
        )
        .expect("valid metric");
        let rejected_writes = IntCounterVec::new(
            Opts::new(
                "mltenant_rejected_writes_total",
                "Requests about a tenant's namespaces, Secrets, Roles and RoleBindings the API server refused, by kind and closed-set reason.",
            ),
            &["tenant", "kind", "reason"],
        )
        .expect("valid metric");
        let invalid_objects = prometheus::IntGaugeVec::new(
            Opts::new(
                "mltenant_invalid_objects",
                "Objects the watches could not read (skipped and reported on the object), by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let leader = IntGauge::new("mltenant_leader", "1 while this replica holds the leader Lease and reconciles.")
            .expect("valid metric");
        // The sealing-key alert's threshold depends on it (keys live two renew periods).
        let key_renew_period = IntGauge::new(
            "mltenant_sealing_key_renew_period_seconds",
            "How often this operator creates a new sealing key (--key-renew-period).",
        )
        .expect("valid metric");
        let http_connections =
            IntGauge::new("mltenant_http_connections", "Connections the HTTP server holds open now.")
                .expect("valid metric");
        let http_connections_closed = IntCounterVec::new(
            Opts::new(
                "mltenant_http_connections_closed_total",
                "Connections the HTTP server closed itself, by closed-set reason: peer_limit (over the per-address limit), evicted_idle and evicted_busy (closed to make room at the total limit), full (no room made in time), header_timeout (no request head in time).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let access_reviews = IntCounterVec::new(
            Opts::new(
                "mltenant_access_reviews_total",
                "SubjectAccessReviews sent to confirm who can read a distributed Secret, by result (allowed, denied, error); answers are reused while RBAC is unchanged.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let rbac_objects = prometheus::IntGaugeVec::new(
            Opts::new(
                "mltenant_rbac_objects",
                "RBAC objects held (compactly) to assess who can read the distributed Secrets, by kind: every ClusterRole and ClusterRoleBinding, the Roles and RoleBindings of tenant and reader namespaces.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let audit_connections =
            IntGauge::new("mltenant_audit_connections", "Connections the audit sink holds open now.")
                .expect("valid metric");
        let audit_connections_closed = IntCounterVec::new(
            Opts::new(
                "mltenant_audit_connections_closed_total",
                "Connections the audit sink closed itself, by reason (those of mltenant_http_connections_closed_total, and tls_handshake: none in time, or one that failed).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let audit_events = IntCounterVec::new(
            Opts::new(
                "mltenant_audit_events_total",
                "Audit events the sink received, by outcome: read (a read of distributed Secrets, counted), denied (a refused request about Secrets in a managed namespace, counted), unmanaged (about Secrets the operator did not distribute), ignored (another resource, verb or stage), dropped (past the events one batch may hold).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let audit_batches = IntCounterVec::new(
            Opts::new(
                "mltenant_audit_batches_total",
                "Posts to the audit sink, by outcome: accepted, unauthenticated (not the API server's identity: nothing read), too_large, busy (too many bodies being read: retried by the API server), slow (the body did not arrive in time), malformed (not an audit.k8s.io/v1 EventList).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let sources = Arc::new(RwLock::new(None));
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(kube_requests.clone()),
            Box::new(fenced_writes.clone()),
            Box::new(decryption_failures.clone()),
            Box::new(rejected_writes.clone()),
            Box::new(invalid_objects.clone()),
            Box::new(leader.clone()),
            Box::new(key_renew_period.clone()),
            Box::new(http_connections.clone()),
            Box::new(http_connections_closed.clone()),
            Box::new(access_reviews.clone()),
            Box::new(rbac_objects.clone()),
            Box::new(audit_connections.clone()),
            Box::new(audit_connections_closed.clone()),
            Box::new(audit_events.clone()),
            Box::new(audit_batches.clone()),
            // The standard process_* series (resident memory, CPU, open file descriptors,
            // threads): what SREs alert on, and what the chart's memory limit is compared with.
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self {
            registry,
            reconciles,
            reconcile_duration,
            kube_requests,
            fenced_writes,
            decryption_failures,
            rejected_writes,
            invalid_objects,
            leader,
            key_renew_period,
            http_connections,
            http_connections_closed,
            access_reviews,
            rbac_objects,
            audit_connections,
            audit_connections_closed,
            audit_events,
            audit_batches,
            state: StateGauges { sources: sources.clone(), keys, exposures: Arc::default() },
            sources,
        }
    }

    /// Keep `mltenant_leader` in step with this replica's leadership.
    pub fn follow_leadership(&self, mut leading: tokio::sync::watch::Receiver<bool>) {
        let gauge = self.leader.clone();
        tokio::spawn(async move {
            loop {
                gauge.set(i64::from(*leading.borrow_and_update()));
                if leading.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    pub fn key_renew_period(&self, period: std::time::Duration) {
        self.key_renew_period.set(i64::try_from(period.as_secs()).unwrap_or(i64::MAX));
    }

    /// Let the scrape-time gauges read this leadership term's caches until the returned guard
    /// is dropped (the controllers stopped): a replica that does not lead exports no tenant or
    /// bundle series at all. Bundle gauges cover the bundles `reports_on` selects.
    #[must_use = "the gauges follow the caches only while the guard lives"]
    pub fn watch(
        &self,
        tenants: Store<MLTenant>,
        bundles: Store<SealedBundle>,
        reports_on: Selector,
        usage: Option<Arc<Usage>>,
    ) -> Watching {
        *write(&self.sources) = Some(Sources { tenants, bundles, reports_on, usage });
        Watching {
            sources: self.sources.clone(),
            failures: [self.decryption_failures.clone(), self.rejected_writes.clone()],
            invalid: self.invalid_objects.clone(),
            exposures: self.state.exposures.clone(),
            rbac_objects: self.rbac_objects.clone(),
        }
    }

    /// What the last assessment of `tenant` found, per Secret (`mltenant_secret_unexpected_readers`,
    /// `mltenant_secret_indirect_readers`).
    pub fn exposure(&self, tenant: &str, secrets: Vec<SecretExposure>) {
        lock(&self.state.exposures).insert(tenant.to_owned(), secrets);
    }

    /// `tenant` is gone: its exposure series go.
    pub fn forget_exposure(&self, tenant: &str) {
        lock(&self.state.exposures).remove(tenant);
    }

    /// Count a SubjectAccessReview by its result (`exposure::confirm`'s closed set).
    pub fn access_review(&self, result: &str) {
        self.access_reviews.with_label_values(&[result]).inc();
    }

    /// Count `count` audit events with `outcome` (a closed set; 0 makes the series exist).
    pub fn audit_events(&self, outcome: &str, count: u64) {
        self.audit_events.with_label_values(&[outcome]).inc_by(count);
    }

    /// Count one post to the audit sink with `outcome` (a closed set; 0 makes the series exist).
    pub fn audit_batches(&self, outcome: &str, count: u64) {
        self.audit_batches.with_label_values(&[outcome]).inc_by(count);
    }

    /// How many RBAC objects of `kind` are held.
    pub fn rbac_objects(&self, kind: &str, count: usize) {
        self.rbac_objects.with_label_values(&[kind]).set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn rejected_write(&self, tenant: &str, kind: &str, reason: &str) {
        self.rejected_writes.with_label_values(&[tenant, kind, reason]).inc();
    }

    /// How many objects of `kind` the watches cannot read now.
    pub fn invalid_objects(&self, kind: &str, count: usize) {
        self.invalid_objects.with_label_values(&[kind]).set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn decryption_failed(&self, tenant: &str, bundle: &str, reason: &str) {
        self.decryption_failures.with_label_values(&[tenant, bundle, reason]).inc();
    }

    /// Time `reconcile`.
    pub async fn time_reconcile<T>(&self, controller: &str, reconcile: impl Future<Output = T>) -> T {
        let timer = self.reconcile_duration.with_label_values(&[controller]).start_timer();
        let result = reconcile.await;
        timer.observe_duration();
        result
    }

    /// Count a reconcile; `result` is `success` or the error's metric label (a closed set).
    pub fn reconciled(&self, controller: &str, result: &str) {
        self.reconciles.with_label_values(&[controller, result]).inc();
    }

    /// Count one request to the Kubernetes API.
    pub fn kube_request(&self, method: &http::Method) {
        self.kube_requests.with_label_values(&[method.as_str()]).inc();
    }

    /// Count a write the leadership fence stopped; `outcome` is `refused` or `abandoned`.
    pub fn fenced_write(&self, outcome: &str) {
        self.fenced_writes.with_label_values(&[outcome]).inc();
    }

    /// Where the HTTP server counts its connections.
    pub fn http_counters(&self) -> Counters {
        Counters { open: self.http_connections.clone(), closed: self.http_connections_closed.clone() }
    }

    /// Where the audit sink counts its connections.
    pub fn audit_counters(&self) -> Counters {
        Counters { open: self.audit_connections.clone(), closed: self.audit_connections_closed.clone() }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.prune_failures();
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        let mut text = String::from_utf8(out).expect("the text format is UTF-8");
        self.state.write(&mut text);
        text
    }
}

impl Metrics {
    /// Drop failure series whose tenant is gone or no longer references the bundle, so that
    /// label values only ever name objects that exist: a spec edited through a thousand bundle
    /// names leaves the series of the names it has now.
    fn prune_failures(&self) {
        let sources = read(&self.sources);
        let Some(src) = sources.as_ref() else {
            self.decryption_failures.reset();
            self.rejected_writes.reset();
            return;
        };
        let tenants = src.tenants.state();
        let exists = |tenant: &str| tenants.iter().find(|t| t.name_any() == tenant);
        self.remove_failures(
            |tenant, bundle| exists(tenant).is_none_or(|t| !t.spec.referenced_bundles().contains(bundle)),
            |tenant| exists(tenant).is_none(),
        );
    }

    /// The same for one tenant as it reconciles (`Some`: the bundles it references now) or goes
    /// (`None`), so that the series stay bounded by what exists even when nobody scrapes.
    pub fn forget_failures(&self, tenant: &str, referenced: Option<&BTreeSet<&str>>) {
        self.remove_failures(
            |t, bundle| t == tenant && referenced.is_none_or(|r| !r.contains(bundle)),
            |t| t == tenant && referenced.is_none(),
        );
    }

    fn remove_failures(&self, decryption: impl Fn(&str, &str) -> bool, rejected: impl Fn(&str) -> bool) {
        for series in label_values(&self.decryption_failures, &["tenant", "bundle", "reason"]) {
            if decryption(&series[0], &series[1]) {
                let _ = self.decryption_failures.remove_label_values(&series);
            }
        }
        for series in label_values(&self.rejected_writes, &["tenant", "kind", "reason"]) {
            if rejected(&series[0]) {
                let _ = self.rejected_writes.remove_label_values(&series);
            }
        }
    }
}

/// The label values (in the order of `names`) of every series `counters` holds.
fn label_values(counters: &IntCounterVec, names: &[&str]) -> Vec<Vec<String>> {
    let families = counters.collect();
    let metrics = families.iter().flat_map(|f| f.get_metric());
    metrics
        .map(|m| {
            let value = |name: &&str| m.get_label().iter().find(|l| l.name() == *name).map_or("", |l| l.value());
            names.iter().map(|n| value(n).to_owned()).collect()
        })
        .collect()
}

/// Keeps the scrape-time gauges on one term's caches; dropping it (the controllers stopped)
/// empties them and the failure counter.
pub struct Watching {
    sources: Arc<RwLock<Option<Sources>>>,
    failures: [IntCounterVec; 2],
    invalid: prometheus::IntGaugeVec,
    exposures: Arc<Mutex<Exposures>>,
    rbac_objects: prometheus::IntGaugeVec,
}

impl Drop for Watching {
    fn drop(&mut self) {
        *write(&self.sources) = None;
        self.failures.iter().for_each(IntCounterVec::reset);
        self.invalid.reset();
        lock(&self.exposures).clear();
        self.rbac_objects.reset();
    }
}

/// Where a server counts its connections: open now, and closed by reason (a closed set).
#[derive(Clone)]
pub struct Counters {
    open: IntGauge,
    closed: IntCounterVec,
}

impl Counters {
    pub fn opened(&self, count: usize) {
        self.open.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Count `count` connections closed for `reason` (0 makes the series exist).
    pub fn closed_by(&self, reason: &str, count: u64) {
        self.closed.with_label_values(&[reason]).inc_by(count);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Who can read one distributed Secret, as counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretExposure {
    pub environment: String,
    pub secret: String,
    pub unexpected: usize,
    pub indirect: usize,
}

/// The last assessment of each tenant.
type Exposures = BTreeMap<String, Vec<SecretExposure>>;

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the scrape-time gauges are computed from.
struct Sources {
    tenants: Store<MLTenant>,
    bundles: Store<SealedBundle>,
    reports_on: Selector,
    /// What the audit sink counted, when it runs.
    usage: Option<Arc<Usage>>,
}

/// Gauges computed at scrape time from the caches: a tenant, environment, Secret, bundle or
/// key that is gone has no series.
struct StateGauges {
    sources: Arc<RwLock<Option<Sources>>>,
    keys: Arc<KeyRing>,
    exposures: Arc<Mutex<Exposures>>,
}

/// A scrape-time gauge: name, help, and label names in the (sorted) order the text lists them.
struct Gauge {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const CONDITIONS: Gauge = Gauge {
    name: "mltenant_tenant_condition",
    help: "Current status of each tenant condition (1 for the status it has).",
    labels: &["condition", "status", "tenant"],
};
const CREDENTIAL_EXPIRY: Gauge = Gauge {
    name: "mltenant_credential_expiration_timestamp_seconds",
    help: "When each distributed Secret's credentials expire (Unix time), from its SealedBundle's expiresAt.",
    labels: &["bundle", "environment", "namespace", "secret", "tenant"],
};
const DECRYPTABLE_BUNDLES: Gauge = Gauge {
    name: "mltenant_bundle_decryptable",
    help: "1 when the SealedBundle opens for the consumer its scope names, else 0.",
    labels: &["bundle"],
};
const BUNDLES_BY_KEY: Gauge = Gauge {
    name: "mltenant_bundles_by_sealing_key",
    help: "SealedBundles by the sealing key that opens them.",
    labels: &["fingerprint"],
};
const KEY_EXPIRY: Gauge = Gauge {
    name: "mltenant_sealing_key_expiration_timestamp_seconds",
    help: "notAfter of each sealing key's certificate (Unix time).",
    labels: &["fingerprint"],
};
const UNEXPECTED_READERS: Gauge = Gauge {
    name: "mltenant_secret_unexpected_readers",
    help: "Subjects that RBAC lets read the distributed Secret (get, list or watch), confirmed by a SubjectAccessReview, that are neither its declared readers nor expected platform identities; the condition AccessIsolated names them.",
    labels: &["environment", "secret", "tenant"],
};
const INDIRECT_READERS: Gauge = Gauge {
    name: "mltenant_secret_indirect_readers",
    help: "Subjects, neither declared readers nor expected platform identities, that can obtain the distributed Secret without reading it (create pods or workloads in its namespace, exec, impersonate, bind or escalate roles, tokens of a reader), confirmed by a SubjectAccessReview.",
    labels: &["environment", "secret", "tenant"],
};
const RETIRED_KEYS: Gauge = Gauge {
    name: "mltenant_sealing_key_retired",
    help: "1 for each retired sealing key (it opens nothing; mltenant keys unretire brings it back).",
    labels: &["fingerprint"],
};
const RSA_OPERATIONS: &str = "mltenant_rsa_operations_total";
const RSA_OPERATIONS_HELP: &str =
    "RSA private-key operations (OAEP decryptions) this process did: one per kubeseal value, one per v2 sealing run.";
const DECRYPTIONS: &str = "mltenant_decryptions_total";
const DECRYPTIONS_HELP: &str =
    "Sealed values the controllers decrypted (cache misses); a resync of converged tenants adds none.";

/// A gauge's series: label values (in its labels' order), borrowed from the caches, and value.
/// A series set twice keeps the last value.
type Series<'a> = BTreeMap<Vec<&'a str>, f64>;

impl StateGauges {
    /// Append the gauges and the decryption counter, in the text format, to `out`. Written
    /// from the caches directly: building the client library's metric families first (a copy
    /// of every label value, twice) made a scrape allocate in proportion to the fleet, twice.
    fn write(&self, out: &mut String) {
        let sources = read(&self.sources);
        let tenants = sources.as_ref().map(|s| s.tenants.state()).unwrap_or_default();
        let usage = sources.as_ref().and_then(|s| s.usage.clone());
        let bundles = sources.as_ref().map_or_else(Vec::new, |s| {
            s.bundles.state().into_iter().filter(|b| s.reports_on.matches(b.labels())).collect()
        });
        drop(sources);
        let keys = self.keys.keys();
        let mut exposures = lock(&self.exposures);
        // A tenant deleted while this replica did not lead was never forgotten: its last
        // assessment goes now.
        let names: BTreeSet<&str> = tenants.iter().filter_map(|t| t.metadata.name.as_deref()).collect();
        exposures.retain(|tenant, _| names.contains(tenant.as_str()));
        let retired_keys = self.keys.retired();
        let [
            mut conditions,
            mut expiry,
            mut decryptable,
            mut by_key,
            mut key_expiry,
            mut retired,
            mut unexpected,
            mut indirect,
        ]: [Series; 8] = Default::default();
        for tenant in &tenants {
            let (Some(name), Some(status)) = (tenant.metadata.name.as_deref(), &tenant.status) else { continue };
            for c in &status.conditions {
                conditions.insert(vec![&c.type_, &c.status, name], 1.0);
            }
            for env in &status.environments {
                for (secret, at) in env.secrets.iter().filter_map(|s| Some((s, s.expires_at.as_ref()?))) {
                    let labels = vec![&*secret.bundle, &env.name, &env.namespace, &secret.name, name];
                    expiry.insert(labels, at.0.as_second() as f64);
                }
            }
            // Only tenants that exist: one deleted while its series were kept has none.
            for secret in exposures.get(name).into_iter().flatten() {
                let labels = vec![secret.environment.as_str(), secret.secret.as_str(), name];
                unexpected.insert(labels.clone(), secret.unexpected as f64);
                indirect.insert(labels, secret.indirect as f64);
            }
        }
        for bundle in &bundles {
            let (Some(name), Some(status)) = (bundle.metadata.name.as_deref(), &bundle.status) else { continue };
            let ok = status.conditions.iter().any(|c| c.type_ == DECRYPTABLE && c.status == TRUE);
            decryptable.insert(vec![name], if ok { 1.0 } else { 0.0 });
            // Every key the bundle needs (a status written before `keyFingerprints`: its one key).
            let needs: Vec<&String> = match &status.key_fingerprints {
                Some(needs) => needs.iter().collect(),
                None => status.key_fingerprint.iter().collect(),
            };
            for fingerprint in needs {
                *by_key.entry(vec![fingerprint]).or_default() += 1.0;
            }
        }
        for key in keys.iter() {
            key_expiry.insert(vec![key.fingerprint()], key.not_after().as_second() as f64);
        }
        for key in retired_keys.iter() {
            retired.insert(vec![key.fingerprint()], 1.0);
        }
        for (gauge, series) in [
            (&CONDITIONS, conditions),
            (&CREDENTIAL_EXPIRY, expiry),
            (&DECRYPTABLE_BUNDLES, decryptable),
            (&BUNDLES_BY_KEY, by_key),
            (&KEY_EXPIRY, key_expiry),
            (&UNEXPECTED_READERS, unexpected),
            (&INDIRECT_READERS, indirect),
            (&RETIRED_KEYS, retired),
        ] {
            family(out, gauge.name, gauge.help, "gauge");
            for (values, value) in series {
                sample(out, gauge.name, gauge.labels, &values, value);
            }
        }
        family(out, RSA_OPERATIONS, RSA_OPERATIONS_HELP, "counter");
        sample(out, RSA_OPERATIONS, &[], &[], crate::crypto::rsa_decryptions() as f64);
        family(out, DECRYPTIONS, DECRYPTIONS_HELP, "counter");
        sample(out, DECRYPTIONS, &[], &[], self.keys.decryptions() as f64);
        if let Some(usage) = usage {
            write_usage(out, &usage, &names);
        }
    }
}

const READS: Gauge = Gauge {
    name: "mltenant_secret_reads_total",
    help: "Reads (get, and list or watch of its namespace or of the cluster) of a distributed Secret by each of its declared readers with its own credentials, from the API server's audit events.",
    labels: &["environment", "reader", "secret", "tenant"],
};
const READS_BY_OTHERS: Gauge = Gauge {
    name: "mltenant_secret_reads_by_others_total",
    help: "Reads of a distributed Secret by anyone but its declared readers, by kind of reader (admin, controller, serviceaccount, user), from the API server's audit events.",
    labels: &["environment", "kind", "secret", "tenant"],
};
const READS_IMPERSONATED: Gauge = Gauge {
    name: "mltenant_secret_reads_impersonated_total",
    help: "Reads of a distributed Secret made through impersonation, by kind of the impersonating user (the read itself counts as the impersonated identity's).",
    labels: &["environment", "kind", "secret", "tenant"],
};
const ACCESS_DENIED: Gauge = Gauge {
    name: "mltenant_secret_access_denied_total",
    help: "Requests about Secrets in a tenant's environment namespace that the API server refused (403), by kind of requester.",
    labels: &["environment", "kind", "tenant"],
};
const LAST_READ: Gauge = Gauge {
    name: "mltenant_secret_last_read_timestamp_seconds",
    help: "When each declared reader last read the distributed Secret with its own credentials (Unix time); no series if it has not read since reads were recorded.",
    labels: &["environment", "reader", "secret", "tenant"],
};
const RECORDED_SINCE: Gauge = Gauge {
    name: "mltenant_secret_reads_recorded_since_timestamp_seconds",
    help: "Since when the reads of each declared reader of a distributed Secret are recorded (Unix time).",
    labels: &["environment", "reader", "secret", "tenant"],
};

/// The usage series of tenants in `tenants` (only they may name a label value).
fn write_usage(out: &mut String, usage: &Usage, tenants: &BTreeSet<&str>) {
    let series = usage.series();
    let exists = |(tenant, ..): &(String, String, String)| tenants.contains(tenant.as_str());
    let mut counters: [(Gauge, Series); 4] = [
        (READS, Series::new()),
        (READS_BY_OTHERS, Series::new()),
        (READS_IMPERSONATED, Series::new()),
        (ACCESS_DENIED, Series::new()),
    ];
    for ((key, reader), value) in series.reads.iter().filter(|((k, _), _)| exists(k)) {
        counters[0].1.insert(vec![&key.1, reader, &key.2, &key.0], *value as f64);
    }
    for (i, map) in [(1, &series.others), (2, &series.impersonated)] {
        for ((key, kind), value) in map.iter().filter(|((k, _), _)| exists(k)) {
            counters[i].1.insert(vec![&key.1, kind.label(), &key.2, &key.0], *value as f64);
        }
    }
    for (((tenant, environment), kind), value) in &series.denied {
        if tenants.contains(tenant.as_str()) {
            counters[3].1.insert(vec![environment, Kind::label(*kind), tenant], *value as f64);
        }
    }
    for (gauge, values) in counters {
        family(out, gauge.name, gauge.help, "counter");
        for (labels, value) in values {
            sample(out, gauge.name, gauge.labels, &labels, value);
        }
    }
    for (gauge, times) in [(LAST_READ, &series.last_read), (RECORDED_SINCE, &series.since)] {
        family(out, gauge.name, gauge.help, "gauge");
        for ((key, reader), at) in times.iter().filter(|((k, _), _)| exists(k)) {
            sample(out, gauge.name, gauge.labels, &[&key.1, reader, &key.2, &key.0], *at as f64);
        }
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
fn family(out: &mut String, name: &str, help: &str, type_: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {type_}");
}

/// One sample line; label values escaped as the text format requires.
fn sample(out: &mut String, name: &str, labels: &[&str], values: &[&str], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().zip(values).enumerate() {
            let _ = write!(out, "{}{label}=\"", if i > 0 { "," } else { "" });
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    // Writing to a String cannot fail. Whole numbers print without a fraction (`1`, not `1.0`).
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::api::{
        BundleScope, EnvironmentStatus, MLTenantSpec, MLTenantStatus, SealedBundleSpec, SealedBundleStatus,
        SecretStatus,
    };

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            message: String::new(),
            observed_generation: None,
            reason: "Test".into(),
        }
    }

    fn bundle(name: &str, fingerprint: &str, decryptable: &str) -> SealedBundle {
        let mut bundle = SealedBundle::new(name, SealedBundleSpec::new(BundleScope::Cluster, BTreeMap::new()));
        bundle.status = Some(SealedBundleStatus {
            conditions: vec![condition(DECRYPTABLE, decryptable)],
            key_fingerprint: Some(fingerprint.into()),
            ..Default::default()
        });
        bundle
    }

    #[test]
    fn state_gauges_are_read_from_the_caches_at_scrape_time() {
        let metrics = Metrics::new(Arc::new(KeyRing::default()));
        let (tenants, mut tenant_writer) = reflector::store::<MLTenant>();
        let (bundles, mut bundle_writer) = reflector::store::<SealedBundle>();
        let mut tenant = MLTenant::new("fin", MLTenantSpec::with_environments(&["dev"]));
        let expires = "2027-03-01T00:00:00Z".parse().unwrap();
        tenant.status = Some(MLTenantStatus {
            conditions: vec![condition("Ready", "True")],
            environments: vec![EnvironmentStatus {
                name: "dev".into(),
                namespace: "fin-dev".into(),
                secrets: vec![
                    SecretStatus {
                        name: "ghcr".into(),
                        bundle: "ghcr-fin".into(),
                        expires_at: Some(Time(expires)),
                        ..Default::default()
                    },
                    SecretStatus { name: "ml-platform".into(), bundle: "fin".into(), ..Default::default() },
                ],
                ..Default::default()
            }],
            ..Default::default()
        });
        tenant_writer.apply_watcher_event(&Event::Apply(tenant));
        for b in [bundle("a", "SHA256:k1", "True"), bundle("b", "SHA256:k1", "False")] {
            bundle_writer.apply_watcher_event(&Event::Apply(b));
        }
        let watching = metrics.watch(tenants, bundles, Selector::default(), None);
        let text = metrics.render();
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "mltenant_tenant_condition{condition=\"Ready\",status=\"True\",tenant=\"fin\"} 1".to_string(),
            format!(
                "mltenant_credential_expiration_timestamp_seconds{{bundle=\"ghcr-fin\",environment=\"dev\",\
                 namespace=\"fin-dev\",secret=\"ghcr\",tenant=\"fin\"}} {}",
                expires.as_second()
            ),
            "mltenant_bundle_decryptable{bundle=\"a\"} 1".into(),
            "mltenant_bundle_decryptable{bundle=\"b\"} 0".into(),
            "mltenant_bundles_by_sealing_key{fingerprint=\"SHA256:k1\"} 2".into(),
            "# TYPE mltenant_tenant_condition gauge".into(),
        ] {
            assert!(lines.contains(&want.as_str()), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("secret=\"ml-platform\""), "a Secret without expiry has no expiry series:\n{text}");
        drop(watching);
        assert!(!metrics.render().contains("tenant=\"fin\""), "no series once the term's caches are gone");
    }

    #[test]
    fn a_tenants_failure_series_go_with_the_bundles_it_names_and_with_it() {
        let metrics = Metrics::new(Arc::new(KeyRing::default()));
        metrics.decryption_failed("fin", "a", "BundleNotFound");
        metrics.decryption_failed("fin", "b", "Tampered");
        metrics.decryption_failed("other", "a", "BundleNotFound");
        metrics.rejected_write("fin", "Secret", "Forbidden");
        let failing = |m: &Metrics| label_values(&m.decryption_failures, &["tenant", "bundle"]);
        metrics.forget_failures("fin", Some(&BTreeSet::from(["b"])));
        assert_eq!(failing(&metrics), [["fin", "b"], ["other", "a"]]);
        assert_eq!(label_values(&metrics.rejected_writes, &["tenant"]).len(), 1, "the tenant is still there");
        metrics.forget_failures("fin", None);
        assert_eq!(failing(&metrics), [["other", "a"]]);
        assert!(label_values(&metrics.rejected_writes, &["tenant"]).is_empty());
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &["a", "b"], &["x\\y\"z", "two\nlines"], 1.5);
        assert_eq!(out, "m{a=\"x\\\\y\\\"z\",b=\"two\\nlines\"} 1.5\n");
    }
}
