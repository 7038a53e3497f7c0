//! A fleet of tenants, and the invariants that must hold for it whatever the control plane or
//! the operator went through (the fault suite) or while it is churned (the soak).
//!
//! The model knows what every tenant should have: a namespace per environment, an
//! `ml-platform` Secret in each from the tenant's own bundle, a `ghcr` Secret from one shared
//! bundle for those that use it, and a reader Role and RoleBinding per environment for those
//! with a reader. Every version of a bundle's values is remembered by its source hash, so a
//! Secret is judged by the version it says it holds: content that does not match its own
//! `mltenant.io/source-hash` is never acceptable (a half-written or mixed Secret), an older
//! version only means not converged yet.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use mltenant_operator::api::{
    BundleScope, DeletionPolicy, EnvironmentSpec, MLTenant, SealedBundle, SecretReader, SecretSpec, ServiceAccountRef,
};
use mltenant_operator::crypto::Certificate;
use mltenant_operator::{bundle as sealing, labels};

use crate::harness::{TEST_LABEL, bundle, edit, sealed, tenant};

/// The keys of every tenant's own bundle.
pub const KEYS: [&str; 3] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_URI"];
pub const PLATFORM: &str = "ml-platform";
pub const SHARED: &str = "ghcr";
/// The reader tenants with `reader` grant access to (the Role's name follows from it).
pub const READER: (&str, &str) = ("argowf", "argo-workflow");
pub const READER_ROLE: &str = "mltenant-reader-argowf-argo-workflow";

/// What one tenant should have.
#[derive(Clone, Debug)]
pub struct Member {
    pub environments: Vec<String>,
    pub delete_policy: bool,
    pub shared: bool,
    pub reader: bool,
    /// The current version of its own bundle's values.
    pub version: u32,
    /// Environments removed from the spec (never added again: a released namespace would be
    /// someone else's to the operator).
    pub retired: Vec<String>,
}

impl Member {
    pub fn new(environments: &[&str]) -> Self {
        let environments = environments.iter().map(|e| (*e).to_owned()).collect();
        Member { environments, delete_policy: false, shared: false, reader: false, version: 1, retired: Vec::new() }
    }
}

/// The namespace of `env` of tenant `name` (the operator's naming rule).
pub fn namespace(name: &str, env: &str) -> String {
    if env == "production" { name.to_owned() } else { format!("{name}-{env}") }
}

/// The values of `bundle` at `version`: distinct per bundle and version, so a Secret holding
/// another tenant's or another version's values is told apart.
pub fn values(bundle: &str, version: u32, keys: &[&str]) -> BTreeMap<String, Vec<u8>> {
    keys.iter().map(|k| ((*k).to_owned(), format!("{bundle}:{k}:v{version}").into_bytes())).collect()
}

fn platform_bundle(tenant: &str) -> String {
    format!("{tenant}-platform")
}

pub struct Fleet {
    pub client: Client,
    pub run_id: String,
    /// Tenants are named `<prefix>-<n>`: what carries this prefix and is not a member is an orphan.
    pub prefix: String,
    /// The certificate new values are sealed to.
    pub cert: Certificate,
    pub members: BTreeMap<String, Member>,
    /// Deleted tenants, as they were when deleted.
    pub gone: BTreeMap<String, Member>,
    shared_bundle: String,
    shared_version: u32,
    /// Per bundle: source hash -> version, for every version ever written.
    versions: BTreeMap<String, BTreeMap<String, u32>>,
    /// Secrets (`Secret ns/name`) someone edited by hand, and when: until the operator reverts
    /// the edit their content is not what their source hash says, and that is not its doing.
    pub tampered: BTreeMap<String, Instant>,
    next: usize,
}

/// What a snapshot of the cluster shows against the model.
#[derive(Debug, Default)]
pub struct Findings {
    /// Not converged yet: a tenant not Ready, a missing or stale object.
    pub pending: Vec<String>,
    /// Objects that must not exist: duplicates, leftovers of removed environments or deleted
    /// tenants, Secrets or Roles outside the tenant's managed namespaces.
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
}

/// A list call that fails the snapshot instead of the test (the API server may be down).
async fn list<K>(api: Api<K>, selector: &str) -> Result<Vec<K>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let lp = ListParams::default().labels(selector);
    match tokio::time::timeout(Duration::from_secs(30), api.list(&lp)).await {
        Ok(Ok(list)) => Ok(list.items),
        Ok(Err(error)) => Err(format!("list {}: {error}", std::any::type_name::<K>())),
        Err(_) => Err(format!("list {}: no answer in 30s", std::any::type_name::<K>())),
    }
}

impl Fleet {
    /// An empty fleet whose tenants `run_id`'s operator handles, sealed to `cert`. Creates
    /// the shared (Cluster-scope) bundle.
    pub async fn new(client: &Client, run_id: &str, cert: Certificate) -> Self {
        let prefix = crate::harness::unique("fl");
        let mut fleet = Fleet {
            client: client.clone(),
            run_id: run_id.to_owned(),
            shared_bundle: format!("{prefix}-shared"),
            prefix,
            cert,
            members: BTreeMap::new(),
            gone: BTreeMap::new(),
            shared_version: 1,
            versions: BTreeMap::new(),
            tampered: BTreeMap::new(),
            next: 0,
        };
        let shared = fleet.sealed_bundle(&fleet.shared_bundle.clone(), BundleScope::Cluster, None, 1, &["token"]);
        Api::<SealedBundle>::all(client.clone())
            .create(&PostParams::default(), &shared)
            .await
            .expect("create the shared bundle");
        fleet
    }

    /// Seal `version` of `name`'s values and remember its source hash.
    fn sealed_bundle(
        &mut self,
        name: &str,
        scope: BundleScope,
        tenant: Option<&str>,
        version: u32,
        keys: &[&str],
    ) -> SealedBundle {
        let plain = values(name, version, keys);
        let refs: Vec<(&str, &[u8])> = plain.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let data = sealed(&self.cert, scope, tenant.unwrap_or(""), "", &refs);
        let mut b = bundle(name, scope, tenant, None, data);
        // This run's operators report on it (bundle status is part of the load).
        b.metadata.labels = Some([(TEST_LABEL.to_owned(), self.run_id.clone())].into());
        self.versions.entry(name.to_owned()).or_default().insert(sealing::source_hash(&b), version);
        b
    }

    /// The MLTenant manifest of member `name`.
    pub fn manifest(&self, name: &str) -> MLTenant {
        let m = &self.members[name];
        let envs: Vec<&str> = m.environments.iter().map(String::as_str).collect();
        let mut t = tenant(name, &self.run_id, &envs);
        t.spec.environments =
            envs.iter().map(|e| EnvironmentSpec { name: (*e).into(), namespace: None, labels: None }).collect();
        let spec = |secret: &str, bundle: String| SecretSpec {
            name: secret.into(),
            bundle,
            environment_bundles: None,
            environments: None,
        };
        let mut secrets = vec![spec(PLATFORM, platform_bundle(name))];
        if m.shared {
            secrets.push(spec(SHARED, self.shared_bundle.clone()));
        }
        t.spec.secrets = Some(secrets);
        t.spec.secret_readers = m.reader.then(|| {
            vec![SecretReader {
                service_account: ServiceAccountRef { namespace: READER.0.into(), name: READER.1.into() },
                secrets: None,
            }]
        });
        t.spec.deletion_policy = m.delete_policy.then_some(DeletionPolicy::Delete);
        t
    }

    /// A new member's name.
    pub fn next_name(&mut self) -> String {
        self.next += 1;
        format!("{}-{}", self.prefix, self.next)
    }

    /// Create `count` members like `template`, with their bundles, `parallel` at a time.
    pub async fn create_many(&mut self, count: usize, template: &Member, parallel: usize) -> Vec<String> {
        self.create_all(vec![template.clone(); count], parallel).await
    }

    /// Create `members`, with their bundles, `parallel` at a time; their names.
    pub async fn create_all(&mut self, members: Vec<Member>, parallel: usize) -> Vec<String> {
        let mut objects = Vec::new();
        for member in members {
            let name = self.next_name();
            let version = member.version;
            self.members.insert(name.clone(), member);
            let b = self.sealed_bundle(&platform_bundle(&name), BundleScope::Tenant, Some(&name), version, &KEYS);
            objects.push((name.clone(), b, self.manifest(&name)));
        }
        let client = self.client.clone();
        futures::stream::iter(objects.iter())
            .for_each_concurrent(parallel, |(name, b, t)| {
                let client = client.clone();
                async move {
                    let pp = PostParams::default();
                    Api::<SealedBundle>::all(client.clone())
                        .create(&pp, b)
                        .await
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    Api::<MLTenant>::all(client).create(&pp, t).await.unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            })
            .await;
        objects.into_iter().map(|(name, _, _)| name).collect()
    }

    /// Create one member.
    pub async fn create(&mut self, member: Member) -> String {
        self.create_many(1, &member, 1).await.remove(0)
    }

    /// Replace member `name`'s spec with what the model says now (after changing it).
    pub async fn update(&self, name: &str) {
        let spec = self.manifest(name).spec;
        edit(&Api::<MLTenant>::all(self.client.clone()), name, |t: &mut MLTenant| t.spec = spec.clone()).await;
    }

    /// Re-seal member `name`'s bundle with new values (a new version).
    pub async fn reseal(&mut self, name: &str) {
        let version = {
            let m = self.members.get_mut(name).expect("a member");
            m.version += 1;
            m.version
        };
        let b = self.sealed_bundle(&platform_bundle(name), BundleScope::Tenant, Some(name), version, &KEYS);
        let data = b.spec.encrypted_data;
        let api = Api::<SealedBundle>::all(self.client.clone());
        edit(&api, &platform_bundle(name), |b: &mut SealedBundle| b.spec.encrypted_data = data.clone()).await;
    }

    /// Re-seal the shared bundle (every member using it gets new values).
    pub async fn reseal_shared(&mut self) {
        self.shared_version += 1;
        let name = self.shared_bundle.clone();
        let b = self.sealed_bundle(&name, BundleScope::Cluster, None, self.shared_version, &["token"]);
        let data = b.spec.encrypted_data;
        let api = Api::<SealedBundle>::all(self.client.clone());
        edit(&api, &name, |b: &mut SealedBundle| b.spec.encrypted_data = data.clone()).await;
    }

    /// Delete member `name` (its bundle stays: the Secrets must go by the tenant's cleanup).
    pub async fn delete(&mut self, name: &str) {
        let member = self.members.remove(name).expect("a member");
        self.gone.insert(name.to_owned(), member);
        crate::harness::delete_tenant(&self.client, name).await;
    }

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
        })
    }

    /// How many members are Ready (for their current generation).
    pub async fn ready(&self) -> Result<usize, String> {
        let tenants = list(Api::<MLTenant>::all(self.client.clone()), &format!("{TEST_LABEL}={}", self.run_id)).await?;
        Ok(tenants.iter().filter(|t| self.members.contains_key(&t.name_any()) && ready(t)).count())
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
                Some(t) if !ready(t) => f.pending.push(format!("MLTenant {name} is not Ready")),
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

fn ready(t: &MLTenant) -> bool {
    let Some(status) = &t.status else { return false };
    status.observed_generation == t.metadata.generation
        && status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn managed_for(namespaces: &BTreeMap<String, &Namespace>, ns: &str, tenant: &str) -> bool {
    namespaces.get(ns).is_some_and(|n| n.labels().get(labels::TENANT).map(String::as_str) == Some(tenant))
}

fn role_names(role: &Role) -> Option<BTreeSet<String>> {
    let rules = role.rules.iter().flatten();
    Some(rules.flat_map(|r| r.resource_names.iter().flatten().cloned()).collect())
}
