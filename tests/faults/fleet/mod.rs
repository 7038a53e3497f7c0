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

mod check;

pub use check::Findings;

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt as _;
use kube::api::PostParams;
use kube::{Api, Client};
use mltenant_operator::api::{BundleScope, DeletionPolicy, MLTenant, SealedBundle, SecretReader, SecretSpec};
use mltenant_operator::crypto::Certificate;
use mltenant_operator::unseal as sealing;

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
        let mut secrets = vec![SecretSpec::new(PLATFORM, platform_bundle(name))];
        if m.shared {
            secrets.push(SecretSpec::new(SHARED, &self.shared_bundle));
        }
        t.spec.secrets = Some(secrets);
        t.spec.secret_readers = m.reader.then(|| vec![SecretReader::new(READER.0, READER.1)]);
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
}
