//! Who did read: the reads of distributed Secrets and the refused requests the API server's
//! audit events report (the audit sink, `server::audit`), counted per Secret by declared reader or by kind of reader,
//! and per environment by kind for refusals, with the last time each declared reader read each
//! Secret (for the tenant's status, `lastReadAt`).
//!
//! What is counted is bounded by what exists: the tenant controller publishes, per managed
//! namespace, its tenant, environment, Secrets and their declared readers, and an event about
//! anything else is not kept. A cluster-wide `list` or `watch` of Secrets reads every Secret:
//! it is one count for all of them (added to each Secret's series when they are written), not
//! one per Secret, so a flood of them costs the same as any other event.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::access::exposure::identity::Kind;

/// Four counters, one per [`Kind`].
type ByKind = [AtomicU64; 4];

fn load(counters: &ByKind) -> [u64; 4] {
    counters.each_ref().map(|c| c.load(Ordering::Relaxed))
}

/// What happened in one audit event about Secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `get` of one Secret (`name`), or `list`/`watch` of all of a namespace (or of the cluster).
    Read,
    /// Refused (403), whatever the verb.
    Denied,
}

/// Who sent a request: the identity it acted as, its kind, and, when it impersonated that
/// identity, the kind of the one who did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actor<'a> {
    pub user: &'a str,
    pub kind: Kind,
    pub impersonator: Option<Kind>,
}

/// One access to Secrets: in `namespace` (none: cluster-wide), of `name` (none: all of them).
#[derive(Clone, Copy, Debug)]
pub struct Access<'a> {
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub outcome: Outcome,
    pub actor: Actor<'a>,
    /// When the API server handled it (Unix seconds).
    pub at: i64,
}

/// A declared reader of one Secret: its reads, and when it last read it.
#[derive(Debug)]
pub struct ReaderUse {
    /// `namespace/name` of the ServiceAccount.
    pub account: String,
    reads: AtomicU64,
    /// The cluster-wide reads of this account when this entry was made.
    base: u64,
    /// Unix seconds of the last read it made with its own credentials; 0 never.
    last: AtomicI64,
    /// The last read as the tenant's status has it.
    recorded: AtomicI64,
    /// Since when its reads are recorded (Unix seconds).
    pub since: i64,
}

/// One distributed Secret.
#[derive(Debug)]
pub struct SecretUse {
    pub name: String,
    others: ByKind,
    others_base: [u64; 4],
    impersonated: ByKind,
    impersonated_base: [u64; 4],
    pub readers: Vec<Arc<ReaderUse>>,
}

/// One managed namespace: its tenant and environment, its Secrets (sorted by name), and the
/// requests about Secrets there that were refused.
#[derive(Debug)]
pub struct Place {
    pub tenant: String,
    pub environment: String,
    pub secrets: Vec<Arc<SecretUse>>,
    denied: ByKind,
    denied_base: [u64; 4],
}

/// What the tenant controller publishes for one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub namespace: String,
    pub environment: String,
    /// Each Secret of ours there and its declared readers: `(account, last read, since)` as the
    /// tenant's status has them (Unix seconds), the first time a replica publishes them.
    pub secrets: Vec<(String, Vec<Recorded>)>,
}

/// A declared reader as the tenant's status records it: `(account, last read, since)`.
pub type Recorded = (String, Option<i64>, Option<i64>);

/// Cluster-wide lists and watches, and refusals without a namespace.
#[derive(Debug, Default)]
struct Cluster {
    others: ByKind,
    impersonated: ByKind,
    denied: ByKind,
    /// Declared readers' own cluster-wide reads: (count, last).
    readers: RwLock<HashMap<String, Arc<(AtomicU64, AtomicI64)>>>,
}

pub struct Usage {
    places: RwLock<HashMap<String, Arc<Place>>>,
    cluster: Cluster,
    /// How stale the status's `lastReadAt` may be (a reader reading all the time makes one
    /// status write per period).
    record_period: i64,
    /// Tenants whose status should take newer reads.
    due: Mutex<BTreeSet<String>>,
    wake: tokio::sync::Notify,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Usage {
    pub fn new(record_period: Duration) -> Self {
        Usage {
            places: RwLock::default(),
            cluster: Cluster::default(),
            record_period: i64::try_from(record_period.as_secs()).unwrap_or(i64::MAX),
            due: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// `tenant`'s managed namespaces now: counters of Secrets and readers that stay are kept,
    /// new ones start from zero, what is gone goes. `now` is when new readers start being
    /// recorded (unless the status says since when).
    pub fn publish(&self, tenant: &str, published: Vec<Published>, now: i64) {
        let mut places = write(&self.places);
        let wanted: BTreeSet<&str> = published.iter().map(|p| p.namespace.as_str()).collect();
        places.retain(|ns, place| place.tenant != tenant || wanted.contains(ns.as_str()));
        let cluster_others = load(&self.cluster.others);
        let cluster_impersonated = load(&self.cluster.impersonated);
        for p in published {
            let old = places.get(&p.namespace).filter(|old| old.tenant == tenant).cloned();
            let old_secret = |name: &str| old.as_ref().and_then(|o| o.secrets.iter().find(|s| s.name == name)).cloned();
            let mut secrets = Vec::with_capacity(p.secrets.len());
            for (name, readers) in p.secrets {
                let previous = old_secret(&name);
                let same_readers = previous.as_ref().is_some_and(|s| {
                    s.readers.iter().map(|r| r.account.as_str()).eq(readers.iter().map(|(a, ..)| a.as_str()))
                });
                if let (Some(previous), true) = (previous.clone(), same_readers) {
                    secrets.push(previous);
                    continue;
                }
                let reader_use = |(account, last, since): (String, Option<i64>, Option<i64>)| {
                    if let Some(kept) = previous.as_ref().and_then(|s| s.readers.iter().find(|r| r.account == account))
                    {
                        return kept.clone();
                    }
                    let cluster = self.cluster_reader(&account);
                    let last = last.unwrap_or(0);
                    Arc::new(ReaderUse {
                        base: cluster.0.load(Ordering::Relaxed),
                        reads: AtomicU64::new(0),
                        last: AtomicI64::new(last),
                        recorded: AtomicI64::new(last),
                        since: since.unwrap_or(now),
                        account,
                    })
                };
                let (others, impersonated) = previous.as_ref().map_or(([0; 4], [0; 4]), |s| {
                    let (o, i) = (load(&s.others), load(&s.impersonated));
                    // Carried over, so that the series continue instead of resetting.
                    (
                        std::array::from_fn(|k| o[k] + cluster_others[k].wrapping_sub(s.others_base[k])),
                        std::array::from_fn(|k| i[k] + cluster_impersonated[k].wrapping_sub(s.impersonated_base[k])),
                    )
                });
                secrets.push(Arc::new(SecretUse {
                    others: others.map(AtomicU64::new),
                    others_base: cluster_others,
                    impersonated: impersonated.map(AtomicU64::new),
                    impersonated_base: cluster_impersonated,
                    readers: readers.into_iter().map(reader_use).collect(),
                    name,
                }));
            }
            secrets.sort_by(|a, b| a.name.cmp(&b.name));
            let (denied, denied_base) =
                old.as_ref().map_or_else(|| ([0; 4], load(&self.cluster.denied)), |o| (load(&o.denied), o.denied_base));
            places.insert(
                p.namespace,
                Arc::new(Place {
                    tenant: tenant.to_owned(),
                    environment: p.environment,
                    secrets,
                    denied: denied.map(AtomicU64::new),
                    denied_base,
                }),
            );
        }
        drop(places);
        self.forget_unused_accounts();
    }

    /// `tenant` is gone.
    pub fn forget(&self, tenant: &str) {
        write(&self.places).retain(|_, place| place.tenant != tenant);
        self.forget_unused_accounts();
    }

    /// The cluster-wide counters of a declared reader, made on first use.
    fn cluster_reader(&self, account: &str) -> Arc<(AtomicU64, AtomicI64)> {
        if let Some(found) = read(&self.cluster.readers).get(account) {
            return found.clone();
        }
        write(&self.cluster.readers).entry(account.to_owned()).or_default().clone()
    }

    /// Cluster-wide counters are kept only for accounts some Secret declares.
    fn forget_unused_accounts(&self) {
        let places = read(&self.places);
        let declared: BTreeSet<&str> =
            places.values().flat_map(|p| &p.secrets).flat_map(|s| &s.readers).map(|r| r.account.as_str()).collect();
        write(&self.cluster.readers).retain(|account, _| declared.contains(account.as_str()));
    }

    /// Count one access; whether it concerned a managed namespace (or all of them).
    pub fn record(&self, access: &Access) -> bool {
        let kind = access.actor.kind.index();
        // Only an account's own credentials count as its reads: an impersonated read shows who
        // could act as it, not that its grant is used.
        let own_account = access.actor.impersonator.is_none().then(|| account_of(access.actor.user)).flatten();
        let Some(namespace) = access.namespace else {
            match access.outcome {
                Outcome::Denied => bump(&self.cluster.denied[kind]),
                Outcome::Read => {
                    let declared = own_account.as_ref().and_then(|a| read(&self.cluster.readers).get(a).cloned());
                    match declared {
                        Some(counts) => {
                            bump(&counts.0);
                            counts.1.fetch_max(access.at, Ordering::Relaxed);
                            self.wake_readers_of(own_account.as_deref().unwrap_or_default(), access.at);
                        }
                        None => bump(&self.cluster.others[kind]),
                    }
                    if let Some(impersonator) = access.actor.impersonator {
                        bump(&self.cluster.impersonated[impersonator.index()]);
                    }
                }
            }
            return true;
        };
        let Some(place) = read(&self.places).get(namespace).cloned() else { return false };
        if access.outcome == Outcome::Denied {
            bump(&place.denied[kind]);
            return true;
        }
        let secrets: &[Arc<SecretUse>] = match access.name {
            Some(name) => match place.secrets.binary_search_by(|s| s.name.as_str().cmp(name)) {
                Ok(i) => std::slice::from_ref(&place.secrets[i]),
                Err(_) => return false,
            },
            None => &place.secrets,
        };
        for secret in secrets {
            let reader = own_account.as_ref().and_then(|a| secret.readers.iter().find(|r| &r.account == a));
            match reader {
                Some(reader) => {
                    bump(&reader.reads);
                    reader.last.fetch_max(access.at, Ordering::Relaxed);
                    if access.at - reader.recorded.load(Ordering::Relaxed) >= self.record_period {
                        self.due(&place.tenant);
                    }
                }
                None => bump(&secret.others[kind]),
            }
            if let Some(impersonator) = access.actor.impersonator {
                bump(&secret.impersonated[impersonator.index()]);
            }
        }
        true
    }

    /// A declared reader read cluster-wide: the tenants whose status is behind are due.
    fn wake_readers_of(&self, account: &str, at: i64) {
        let tenants: BTreeSet<String> = read(&self.places)
            .values()
            .filter(|p| {
                let readers = p.secrets.iter().flat_map(|s| &s.readers);
                readers
                    .filter(|r| r.account == account)
                    .any(|r| at - r.recorded.load(Ordering::Relaxed) >= self.record_period)
            })
            .map(|p| p.tenant.clone())
            .collect();
        tenants.iter().for_each(|t| self.due(t));
    }

    fn due(&self, tenant: &str) {
        let mut due = self.due.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if due.insert(tenant.to_owned()) {
            self.wake.notify_one();
        }
    }

    /// The tenants whose status should take newer reads, as they become due.
    pub fn due_tenants(self: Arc<Self>) -> impl futures::Stream<Item = String> + Send + 'static {
        futures::stream::unfold(self, |usage| async move {
            loop {
                let next = usage.due.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_first();
                match next {
                    Some(tenant) => return Some((tenant, usage)),
                    None => usage.wake.notified().await,
                }
            }
        })
    }

    /// The declared readers of Secret `secret` in `namespace` for the tenant's status:
    /// `(account, last read, since)`, and marked as recorded there.
    pub fn readers(&self, namespace: &str, secret: &str) -> Vec<(String, Option<i64>, i64)> {
        let Some(place) = read(&self.places).get(namespace).cloned() else { return Vec::new() };
        let Some(secret) = place.secrets.iter().find(|s| s.name == secret) else { return Vec::new() };
        secret
            .readers
            .iter()
            .map(|r| {
                let last = self.last_read(r);
                r.recorded.store(last, Ordering::Relaxed);
                (r.account.clone(), (last > 0).then_some(last), r.since)
            })
            .collect()
    }

    /// A reader's last read, its cluster-wide ones included.
    fn last_read(&self, reader: &ReaderUse) -> i64 {
        let cluster = read(&self.cluster.readers).get(&reader.account).map_or(0, |c| c.1.load(Ordering::Relaxed));
        reader.last.load(Ordering::Relaxed).max(cluster)
    }

    /// Every series of the usage metrics, for the scrape: see [`Series`].
    pub fn series(&self) -> Series {
        let places = read(&self.places);
        let cluster_readers = read(&self.cluster.readers);
        let [others_now, impersonated_now, denied_now] =
            [&self.cluster.others, &self.cluster.impersonated, &self.cluster.denied].map(load);
        let mut series = Series::default();
        for place in places.values() {
            let at = (place.tenant.clone(), place.environment.clone());
            let denied = load(&place.denied);
            for kind in Kind::ALL {
                let k = kind.index();
                let value = denied[k] + denied_now[k].wrapping_sub(place.denied_base[k]);
                series.denied.insert((at.clone(), kind), value);
            }
            for secret in &place.secrets {
                let key = (at.0.clone(), at.1.clone(), secret.name.clone());
                let (others, impersonated) = (load(&secret.others), load(&secret.impersonated));
                for kind in Kind::ALL {
                    let k = kind.index();
                    let value = others[k] + others_now[k].wrapping_sub(secret.others_base[k]);
                    if value > 0 {
                        series.others.insert((key.clone(), kind), value);
                    }
                    let value = impersonated[k] + impersonated_now[k].wrapping_sub(secret.impersonated_base[k]);
                    if value > 0 {
                        series.impersonated.insert((key.clone(), kind), value);
                    }
                }
                for reader in &secret.readers {
                    let cluster = cluster_readers.get(&reader.account);
                    let cluster_reads = cluster.map_or(0, |c| c.0.load(Ordering::Relaxed)).wrapping_sub(reader.base);
                    let last =
                        reader.last.load(Ordering::Relaxed).max(cluster.map_or(0, |c| c.1.load(Ordering::Relaxed)));
                    let reader_key = (key.clone(), reader.account.clone());
                    series.reads.insert(reader_key.clone(), reader.reads.load(Ordering::Relaxed) + cluster_reads);
                    series.since.insert(reader_key.clone(), reader.since);
                    if last > 0 {
                        series.last_read.insert(reader_key, last);
                    }
                }
            }
        }
        series
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// `namespace/name` of a ServiceAccount's user name, none for anyone else.
fn account_of(user: &str) -> Option<String> {
    match crate::access::exposure::identity::Subject::user(user) {
        crate::access::exposure::identity::Subject::ServiceAccount { namespace, name } => {
            Some(format!("{namespace}/{name}"))
        }
        _ => None,
    }
}

/// (tenant, environment, secret).
pub type SecretKey = (String, String, String);

/// The usage series at one scrape, keyed by their label values.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Series {
    /// Reads by each declared reader (every declared reader of every Secret, zero included).
    pub reads: BTreeMap<(SecretKey, String), u64>,
    /// Reads by anyone else, by kind (only those with reads).
    pub others: BTreeMap<(SecretKey, Kind), u64>,
    /// Reads made through impersonation, by the impersonator's kind (only those with some).
    pub impersonated: BTreeMap<(SecretKey, Kind), u64>,
    /// Refusals per (tenant, environment), by kind (zero included).
    pub denied: BTreeMap<((String, String), Kind), u64>,
    /// Each declared reader's last read (only those that read) and since when reads are
    /// recorded.
    pub last_read: BTreeMap<(SecretKey, String), i64>,
    pub since: BTreeMap<(SecretKey, String), i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARGO: &str = "system:serviceaccount:argowf:argo-workflow";

    fn usage() -> Usage {
        let usage = Usage::new(Duration::from_secs(60));
        let readers = |secret: &str| (secret.to_owned(), vec![("argowf/argo-workflow".to_owned(), None, None)]);
        let place = |ns: &str, env: &str| Published {
            namespace: ns.into(),
            environment: env.into(),
            secrets: vec![readers("ml-platform"), ("ghcr".into(), vec![])],
        };
        usage.publish("fin", vec![place("fin-dev", "dev"), place("fin", "production")], 100);
        usage
    }

    fn access<'a>(namespace: Option<&'a str>, name: Option<&'a str>, outcome: Outcome, actor: Actor<'a>) -> Access<'a> {
        Access { namespace, name, outcome, actor, at: 1_000 }
    }

    fn actor(user: &str, kind: Kind) -> Actor<'_> {
        Actor { user, kind, impersonator: None }
    }

    fn key(env: &str, secret: &str) -> SecretKey {
        ("fin".into(), env.into(), secret.into())
    }

    #[test]
    fn reads_are_counted_by_declared_reader_or_by_kind() {
        let u = usage();
        let argo = actor(ARGO, Kind::ServiceAccount);
        assert!(u.record(&access(Some("fin-dev"), Some("ml-platform"), Outcome::Read, argo)));
        assert!(u.record(&access(Some("fin-dev"), Some("ml-platform"), Outcome::Read, argo)));
        assert!(u.record(&access(Some("fin-dev"), Some("ghcr"), Outcome::Read, argo)), "not declared for ghcr");
        assert!(
            u.record(&access(Some("fin-dev"), None, Outcome::Read, actor("admin", Kind::Admin))),
            "a list reads both"
        );
        assert!(!u.record(&access(Some("fin-dev"), Some("user-secret"), Outcome::Read, argo)), "not a Secret of ours");
        assert!(!u.record(&access(Some("elsewhere"), None, Outcome::Read, argo)), "not a managed namespace");
        assert!(u.record(&access(Some("fin-dev"), Some("ml-platform"), Outcome::Denied, actor("eve", Kind::User))));
        let s = u.series();
        assert_eq!(s.reads[&(key("dev", "ml-platform"), "argowf/argo-workflow".into())], 2);
        assert_eq!(s.reads[&(key("production", "ml-platform"), "argowf/argo-workflow".into())], 0);
        assert_eq!(s.others[&(key("dev", "ghcr"), Kind::ServiceAccount)], 1);
        assert_eq!(s.others[&(key("dev", "ghcr"), Kind::Admin)], 1);
        assert_eq!(s.others[&(key("dev", "ml-platform"), Kind::Admin)], 1);
        assert_eq!(s.others.len(), 3, "only series with reads: {:?}", s.others);
        assert_eq!(s.denied[&(("fin".into(), "dev".into()), Kind::User)], 1);
        assert_eq!(s.denied[&(("fin".into(), "production".into()), Kind::User)], 0);
        assert_eq!(s.last_read[&(key("dev", "ml-platform"), "argowf/argo-workflow".into())], 1_000);
        assert!(!s.last_read.contains_key(&(key("production", "ml-platform"), "argowf/argo-workflow".into())));
        assert_eq!(s.since[&(key("production", "ml-platform"), "argowf/argo-workflow".into())], 100);
    }

    #[test]
    fn a_cluster_wide_list_is_one_count_for_every_secret() {
        let u = usage();
        let kcm = actor("system:kube-controller-manager", Kind::Controller);
        for _ in 0..3 {
            assert!(u.record(&access(None, None, Outcome::Read, kcm)));
        }
        let s = u.series();
        for (env, secret) in [("dev", "ml-platform"), ("dev", "ghcr"), ("production", "ghcr")] {
            assert_eq!(s.others[&(key(env, secret), Kind::Controller)], 3, "{env}/{secret}");
        }
        // A Secret published later starts from zero, and counts what comes after.
        u.publish(
            "fin",
            vec![Published {
                namespace: "fin-qa".into(),
                environment: "qa".into(),
                secrets: vec![("new".into(), vec![])],
            }],
            200,
        );
        assert!(!u.series().others.contains_key(&(key("qa", "new"), Kind::Controller)));
        u.record(&access(None, None, Outcome::Read, kcm));
        assert_eq!(u.series().others[&(key("qa", "new"), Kind::Controller)], 1);
        assert!(!u.series().reads.keys().any(|((_, env, _), _)| env == "dev"), "fin-dev is no longer published");
    }

    #[test]
    fn an_impersonated_read_is_the_impersonators_too_and_never_a_readers_use() {
        let u = usage();
        let as_argo = Actor { user: ARGO, kind: Kind::ServiceAccount, impersonator: Some(Kind::Admin) };
        u.record(&access(Some("fin-dev"), Some("ml-platform"), Outcome::Read, as_argo));
        let s = u.series();
        assert_eq!(s.reads[&(key("dev", "ml-platform"), "argowf/argo-workflow".into())], 0);
        assert_eq!(s.others[&(key("dev", "ml-platform"), Kind::ServiceAccount)], 1);
        assert_eq!(s.impersonated[&(key("dev", "ml-platform"), Kind::Admin)], 1);
        assert!(s.last_read.is_empty());
    }

    #[test]
    fn counters_survive_a_republish_and_reads_make_the_tenant_due_once_per_period() {
        let u = Arc::new(usage());
        let argo = actor(ARGO, Kind::ServiceAccount);
        u.record(&access(Some("fin-dev"), Some("ml-platform"), Outcome::Read, argo));
        assert_eq!(u.due.lock().unwrap().iter().collect::<Vec<_>>(), ["fin"]);
        u.due.lock().unwrap().clear();
        assert_eq!(u.readers("fin-dev", "ml-platform"), [("argowf/argo-workflow".to_owned(), Some(1_000), 100)]);
        let later = |at| Access { at, ..access(Some("fin-dev"), Some("ml-platform"), Outcome::Read, argo) };
        u.record(&later(1_030));
        assert!(u.due.lock().unwrap().is_empty(), "within the period of what the status has");
        u.record(&later(1_060));
        assert_eq!(u.due.lock().unwrap().len(), 1);
        let readers = |secret: &str| (secret.to_owned(), vec![("argowf/argo-workflow".to_owned(), None, None)]);
        u.publish(
            "fin",
            vec![Published {
                namespace: "fin-dev".into(),
                environment: "dev".into(),
                secrets: vec![readers("ml-platform")],
            }],
            5_000,
        );
        let s = u.series();
        assert_eq!(s.reads[&(key("dev", "ml-platform"), "argowf/argo-workflow".into())], 3);
        assert_eq!(s.since[&(key("dev", "ml-platform"), "argowf/argo-workflow".into())], 100);
        u.forget("fin");
        assert_eq!(u.series(), Series::default());
    }
}
