//! Judging the cluster against the fleet model: a snapshot of what the invariants look at,
//! the findings (pending, unexpected, corrupt), and waiting for convergence.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PartialObjectMeta};
use kube::{Api, ResourceExt};
use mltenant_operator::api::MLTenant;
use mltenant_operator::api::labels;

use super::{Fleet, KEYS, PLATFORM, READER_ROLE, SHARED, namespace, platform_bundle, values};
use crate::harness::{TEST_LABEL, is_ready};

/// What a snapshot of the cluster shows against the model.
#[derive(Debug, Default)]
pub struct Findings {
    /// Not converged yet: a tenant not Ready, a missing or stale object.
    pub pending: Vec<String>,
    /// Objects that must not exist: duplicates, leftovers of removed environments or deleted
    /// tenants, Secrets or Roles outside the tenant's managed namespaces, and any Secret, Role
    /// or RoleBinding the operator wrote that is not labelled as a tenant's (its sealing keys
    /// aside).
    pub unexpected: Vec<String>,
    /// Never acceptable, not even for a moment: a Secret whose content is not what its source
    /// hash says, or a source hash no bundle version ever had.
    pub corrupt: Vec<String>,
}

impl Findings {
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty() && self.unexpected.is_empty() && self.corrupt.is_empty()
    }

    /// A short description (the first few of each kind).
    pub fn summary(&self) -> String {
        let first = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
        format!(
            "{} pending [{}], {} unexpected [{}], {} corrupt [{}]",
            self.pending.len(),
            first(&self.pending),
            self.unexpected.len(),
            first(&self.unexpected),
            self.corrupt.len(),
            first(&self.corrupt)
        )
    }
}

/// The cluster as the invariants see it.
pub struct Snapshot {
    tenants: BTreeMap<String, MLTenant>,
    namespaces: Vec<Namespace>,
    secrets: Vec<Secret>,
    roles: Vec<Role>,
    bindings: Vec<RoleBinding>,
    /// Secrets, Roles and RoleBindings the operator's field manager wrote that the lists above,
    /// which select by label, do not hold (`Kind namespace/name`).
    unlabelled: Vec<String>,
}

/// `call`'s answer, or what went wrong as the snapshot's error instead of the test's (the API
/// server may be down).
async fn answered<T>(what: &str, call: impl Future<Output = kube::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(30), call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(format!("{what}: {error}")),
        Err(_) => Err(format!("{what}: no answer in 30s")),
    }
}

/// The `K`s `selector` selects.
async fn list<K>(api: Api<K>, selector: &str) -> Result<Vec<K>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let lp = ListParams::default().labels(selector);
    Ok(answered(&format!("list {}", std::any::type_name::<K>()), api.list(&lp)).await?.items)
}

/// The `K`s outside the tenant-children selector (not labelled managed-by, or without a
/// tenant label) that the operator's field manager wrote, its sealing keys aside, as
/// `Kind namespace/name`. Their metadata only, under two selectors that together are the
/// selector's complement: few objects in a cluster the fleet runs on (system Roles, mostly).
async fn unlabelled<K>(api: Api<K>) -> Result<Vec<String>, String>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut found = Vec::new();
    let not_ours = format!("{}!={}", labels::MANAGED_BY_KEY, labels::MANAGED_BY);
    let no_tenant = format!("{}={},!{}", labels::MANAGED_BY_KEY, labels::MANAGED_BY, labels::TENANT);
    for selector in [not_ours, no_tenant] {
        let lp = ListParams::default().labels(&selector);
        let listed = answered(&format!("list {} metadata", K::kind(&())), api.list_metadata(&lp)).await?.items;
        let written = |o: &PartialObjectMeta<K>| {
            o.managed_fields().iter().any(|f| f.manager.as_deref() == Some(labels::FIELD_MANAGER))
                && !o.labels().contains_key(labels::SEALING_KEY)
        };
        let named = |o: PartialObjectMeta<K>| {
            format!("{} {}/{}", K::kind(&()), o.namespace().unwrap_or_default(), o.name_any())
        };
        found.extend(listed.into_iter().filter(written).map(named));
    }
    Ok(found)
}

impl Fleet {
    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        let c = &self.client;
        let children = labels::tenant_children_selector();
        let tenants = list(Api::<MLTenant>::all(c.clone()), &format!("{TEST_LABEL}={}", self.run_id)).await?;
        Ok(Snapshot {
            tenants: tenants.into_iter().map(|t| (t.name_any(), t)).collect(),
            // All of them: released namespaces have no label left to select them by.
            namespaces: list(Api::<Namespace>::all(c.clone()), "").await?,
            secrets: list(Api::<Secret>::all(c.clone()), &children).await?,
            roles: list(Api::<Role>::all(c.clone()), &children).await?,
            bindings: list(Api::<RoleBinding>::all(c.clone()), &children).await?,
            unlabelled: [
                unlabelled(Api::<Secret>::all(c.clone())).await?,
                unlabelled(Api::<Role>::all(c.clone())).await?,
                unlabelled(Api::<RoleBinding>::all(c.clone())).await?,
            ]
            .concat(),
        })
    }

    /// How many members are Ready (for their current generation).
    pub async fn ready(&self) -> Result<usize, String> {
        let tenants = list(Api::<MLTenant>::all(self.client.clone()), &format!("{TEST_LABEL}={}", self.run_id)).await?;
        Ok(tenants.iter().filter(|t| self.members.contains_key(&t.name_any()) && is_ready(t)).count())
    }

    /// How many Secrets are labelled for members.
    pub async fn secrets_written(&self) -> Result<usize, String> {
        let secrets = list(Api::<Secret>::all(self.client.clone()), &labels::tenant_children_selector()).await?;
        Ok(secrets
            .iter()
            .filter(|s| s.labels().get(labels::TENANT).is_some_and(|t| self.members.contains_key(t)))
            .count())
    }

    fn ours(&self, tenant: &str) -> bool {
        tenant.starts_with(&format!("{}-", self.prefix))
    }

    /// Judge `snap` against the model.
    pub fn check(&self, snap: &Snapshot) -> Findings {
        let mut f = Findings::default();
        let namespaces: BTreeMap<String, &Namespace> = snap.namespaces.iter().map(|ns| (ns.name_any(), ns)).collect();
        // (namespace, Secret) -> (its tenant, bundle, current version); namespace -> (tenant, Secrets granted).
        let mut wanted_secrets: BTreeMap<(String, String), (String, String, u32)> = BTreeMap::new();
        let mut wanted_grants: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
        for (name, m) in &self.members {
            match snap.tenants.get(name) {
                None => f.pending.push(format!("MLTenant {name} does not exist")),
                Some(t) if !is_ready(t) => f.pending.push(format!("MLTenant {name} is not Ready")),
                Some(_) => {}
            }
            for env in &m.environments {
                let ns = namespace(name, env);
                match namespaces.get(&ns) {
                    Some(n)
                        if n.labels().get(labels::TENANT) == Some(name) && n.metadata.deletion_timestamp.is_none() => {}
                    _ => f.pending.push(format!("namespace {ns} is not (yet) managed for {name}")),
                }
                wanted_secrets.insert((ns.clone(), PLATFORM.into()), (name.clone(), platform_bundle(name), m.version));
                if m.shared {
                    wanted_secrets.insert(
                        (ns.clone(), SHARED.into()),
                        (name.clone(), self.shared_bundle.clone(), self.shared_version),
                    );
                }
                if m.reader {
                    let names = if m.shared { [PLATFORM, SHARED].as_slice() } else { [PLATFORM].as_slice() };
                    wanted_grants.insert(ns, (name.clone(), names.iter().map(|s| (*s).to_owned()).collect()));
                }
            }
        }
        for what in &snap.unlabelled {
            f.unexpected.push(format!("{what} was written by the operator but is not labelled as a tenant's"));
        }
        self.judge_namespaces(snap, &namespaces, &mut f);
        self.judge_secrets(snap, &namespaces, &wanted_secrets, &mut f);
        self.judge_grants(snap, &namespaces, &wanted_grants, &mut f);
        f
    }

    /// Namespaces: one per wanted environment, nothing left labelled for others, removed
    /// environments' and deleted tenants' namespaces let go.
    fn judge_namespaces(&self, snap: &Snapshot, namespaces: &BTreeMap<String, &Namespace>, f: &mut Findings) {
        for ns in &snap.namespaces {
            let Some(holder) = ns.labels().get(labels::TENANT).filter(|t| self.ours(t)) else { continue };
            let env = ns.labels().get(labels::ENVIRONMENT).cloned().unwrap_or_default();
            let wanted = self
                .members
                .get(holder)
                .is_some_and(|m| m.environments.contains(&env) && namespace(holder, &env) == ns.name_any());
            if !wanted && ns.metadata.deletion_timestamp.is_none() {
                f.unexpected.push(format!("namespace {} is still managed for {holder}/{env}", ns.name_any()));
            }
        }
        // A removed environment's namespace is released or, under Delete, deleted.
        for (name, m) in &self.members {
            for ns in m.retired.iter().filter_map(|env| namespaces.get(&namespace(name, env))) {
                if m.delete_policy && ns.metadata.deletion_timestamp.is_none() {
                    f.unexpected.push(format!("namespace {} of a removed environment was not deleted", ns.name_any()));
                }
            }
        }
        // A deleted tenant is gone, and its namespaces released (no label, no tenant-uid
        // annotation) or, under Delete, deleted.
        for (name, m) in &self.gone {
            if snap.tenants.contains_key(name) {
                f.unexpected.push(format!("MLTenant {name} still exists after its deletion"));
            }
            for ns in m.environments.iter().filter_map(|env| namespaces.get(&namespace(name, env))) {
                let held =
                    ns.labels().contains_key(labels::TENANT) || ns.annotations().contains_key(labels::TENANT_UID);
                let terminating = ns.metadata.deletion_timestamp.is_some();
                if (m.delete_policy && !terminating) || (!m.delete_policy && held) {
                    f.unexpected.push(format!("namespace {} of deleted tenant {name} was not let go", ns.name_any()));
                }
            }
        }
    }

    /// Secrets: exactly the wanted ones, owned by their MLTenant, inside its managed
    /// namespaces, each holding what its source hash says.
    fn judge_secrets(
        &self,
        snap: &Snapshot,
        namespaces: &BTreeMap<String, &Namespace>,
        wanted_secrets: &BTreeMap<(String, String), (String, String, u32)>,
        f: &mut Findings,
    ) {
        let mut seen = BTreeSet::new();
        for s in &snap.secrets {
            let Some(holder) = s.labels().get(labels::TENANT).filter(|t| self.ours(t)) else { continue };
            let key = (s.namespace().unwrap_or_default(), s.name_any());
            let what = format!("Secret {}/{}", key.0, key.1);
            self.judge_content(s, &what, f);
            if !managed_for(namespaces, &key.0, holder) {
                f.unexpected.push(format!("{what} of {holder} is outside {holder}'s managed namespaces"));
            }
            match wanted_secrets.get(&key) {
                Some((tenant, bundle, version)) if tenant == holder => {
                    seen.insert(key.clone());
                    let current =
                        self.versions.get(bundle).and_then(|v| v.iter().find(|(_, n)| *n == version)).map(|(h, _)| h);
                    if s.annotations().get(labels::SOURCE_HASH) != current {
                        f.pending.push(format!("{what} does not hold the current version of {bundle} yet"));
                    }
                    let uid = snap.tenants.get(holder).and_then(|t| t.uid());
                    if s.owner_references().iter().map(|o| Some(&o.uid)).ne([uid.as_ref()]) {
                        f.unexpected.push(format!("{what} is not owned by exactly its MLTenant"));
                    }
                }
                _ => f.unexpected.push(format!("{what} is labelled for {holder} but not wanted there")),
            }
        }
        for key in wanted_secrets.keys().filter(|k| !seen.contains(*k)) {
            f.pending.push(format!("Secret {}/{} is missing", key.0, key.1));
        }
    }

    /// A Secret's content against the version its source hash names.
    fn judge_content(&self, s: &Secret, what: &str, f: &mut Findings) {
        let bundle = s.annotations().get(labels::BUNDLE).cloned().unwrap_or_default();
        let hash = s.annotations().get(labels::SOURCE_HASH).cloned().unwrap_or_default();
        let Some(version) = self.versions.get(&bundle).and_then(|v| v.get(&hash)) else {
            return f.corrupt.push(format!("{what} claims {bundle} at {hash}, which no version of it ever had"));
        };
        let keys: Vec<&str> = if bundle == self.shared_bundle { vec!["token"] } else { KEYS.to_vec() };
        let want = values(&bundle, *version, &keys);
        let have: BTreeMap<String, Vec<u8>> = s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
        if have != want {
            // Key names only: the values are credentials, even fake ones.
            let names: Vec<&String> = have.keys().collect();
            if self.tampered.contains_key(what) {
                f.pending.push(format!("{what} was edited by hand and is not reverted yet"));
            } else {
                f.corrupt.push(format!("{what} does not hold version {version} of {bundle} (keys {names:?})"));
            }
        }
    }

    /// Reader grants: a Role naming exactly the wanted Secrets and its RoleBinding per
    /// environment of a tenant with a reader, nothing elsewhere.
    fn judge_grants(
        &self,
        snap: &Snapshot,
        namespaces: &BTreeMap<String, &Namespace>,
        wanted: &BTreeMap<String, (String, BTreeSet<String>)>,
        f: &mut Findings,
    ) {
        let roles = snap.roles.iter().map(|r| {
            (r.namespace().unwrap_or_default(), r.name_any(), r.labels().get(labels::TENANT).cloned(), role_names(r))
        });
        let bindings = snap
            .bindings
            .iter()
            .map(|b| (b.namespace().unwrap_or_default(), b.name_any(), b.labels().get(labels::TENANT).cloned(), None));
        let mut seen = BTreeSet::new();
        for (ns, name, holder, names) in roles.chain(bindings) {
            let Some(holder) = holder.filter(|t| self.ours(t)) else { continue };
            let kind = if names.is_some() { "Role" } else { "RoleBinding" };
            let what = format!("{kind} {ns}/{name}");
            if !managed_for(namespaces, &ns, &holder) {
                f.unexpected.push(format!("{what} of {holder} is outside {holder}'s managed namespaces"));
            }
            match wanted.get(&ns) {
                Some((tenant, secrets)) if *tenant == holder && name == READER_ROLE => {
                    seen.insert((ns.clone(), kind));
                    if names.is_some_and(|n| &n != secrets) {
                        f.pending.push(format!("{what} does not name exactly {secrets:?} yet"));
                    }
                }
                _ => f.unexpected.push(format!("{what} is labelled for {holder} but not wanted there")),
            }
        }
        for ns in wanted.keys() {
            for kind in ["Role", "RoleBinding"] {
                if !seen.contains(&(ns.clone(), kind)) {
                    f.pending.push(format!("{kind} {ns}/{READER_ROLE} is missing"));
                }
            }
        }
    }

    /// Wait until a snapshot is clean, failing the test after `timeout` with what is still
    /// off (or at once on a corrupt Secret); the time it took.
    pub async fn wait_converged(&self, timeout: Duration) -> Duration {
        self.converged_within(timeout).await.unwrap_or_else(|error| panic!("{error}"))
    }

    /// How long until a snapshot was clean; what was off when not within `timeout`, or as
    /// soon as a Secret is corrupt.
    pub async fn converged_within(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            match self.snapshot().await {
                Ok(snap) => {
                    let findings = self.check(&snap);
                    if findings.is_clean() {
                        return Ok(start.elapsed());
                    }
                    if !findings.corrupt.is_empty() {
                        return Err(format!("corrupt Secrets: {}", findings.summary()));
                    }
                    last = findings.summary();
                }
                Err(error) => last = error,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!("the fleet did not converge within {timeout:?}; last seen: {last}"))
    }
}

fn managed_for(namespaces: &BTreeMap<String, &Namespace>, ns: &str, tenant: &str) -> bool {
    namespaces.get(ns).is_some_and(|n| n.labels().get(labels::TENANT).map(String::as_str) == Some(tenant))
}

fn role_names(role: &Role) -> Option<BTreeSet<String>> {
    let rules = role.rules.iter().flatten();
    Some(rules.flat_map(|r| r.resource_names.iter().flatten().cloned()).collect())
}
