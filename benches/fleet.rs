//! The Kubernetes side of `make bench` (hack/bench.sh), one binary with four jobs:
//!
//! * `floor`: the raw write floor. Writes exactly the namespaces, Secrets, Roles and
//!   RoleBindings the operator would write for a fleet of MLTenants, built by the operator's own
//!   pure builders (so the objects are byte-identical), with concurrent server-side apply and no
//!   reads while the clock runs.
//! * `wait`: a watch (not a poll) that records when a count of objects meeting a condition is
//!   first reached: all tenants Ready, all Secrets present, all Secrets carrying a new hash.
//! * `unrelated`: creates many Secrets the operator has nothing to do with, fast.
//! * `release`: makes a finished fleet invisible to the next run's label-selected caches.
//!
//! A bench target without the test harness: built optimised, only by `cargo bench`, never
//! shipped nor run by `cargo test`. Run with `cargo bench --bench fleet -- <job> ...`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use futures::{FutureExt as _, TryStreamExt as _, future};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use mltenant_operator::api::environments;
use mltenant_operator::api::labels::{self, FIELD_MANAGER};
use mltenant_operator::api::labels::{ACTIVE, SEALING_KEY};
use mltenant_operator::api::{MLTenant, SealedBundle};
use mltenant_operator::crypto::SealingKey;
use mltenant_operator::reconcile::apply::apply;
use mltenant_operator::reconcile::guard::Guarded;
use mltenant_operator::reconcile::tenant::{access, namespaces, secrets};
use mltenant_operator::reconcile::trim::Trim;
use mltenant_operator::unseal::{self, cache::DecryptCache};
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(name = "fleet", about = "The Kubernetes client of hack/bench.sh")]
struct Cli {
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    Floor(FloorArgs),
    Wait(WaitArgs),
    Unrelated(UnrelatedArgs),
    Release(ReleaseArgs),
}

/// Write what the operator would write for the MLTenants matching `--tenants`.
#[derive(clap::Args)]
struct FloorArgs {
    /// Label selector of the (already applied) MLTenants of the fleet.
    #[arg(long)]
    tenants: String,
    /// Directory of the fleet's manifests: its SealedBundles are read from there, not from the
    /// cluster (the operator must not see them).
    #[arg(long)]
    manifests: PathBuf,
    /// Namespace holding the operator's sealing keys (read to open the bundles before the clock runs).
    #[arg(long, default_value = "mltenant-system")]
    key_namespace: String,
    /// Kubeconfig of the identity that writes (the operator's: the same RBAC checks).
    #[arg(long)]
    writer_kubeconfig: PathBuf,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// Record when each target count is first reached; print one JSON line of Unix timestamps.
#[derive(clap::Args)]
struct WaitArgs {
    /// Label selector of MLTenants, all of which (`--tenants-ready`) must be Ready.
    #[arg(long, requires = "tenants_ready")]
    tenants: Option<String>,
    #[arg(long)]
    tenants_ready: Option<usize>,
    /// Label selector of the Secrets to count (metadata only is watched).
    #[arg(long, requires = "secrets_count")]
    secrets: Option<String>,
    #[arg(long)]
    secrets_count: Option<usize>,
    /// Field selector for the Secrets (e.g. metadata.name=ghcr).
    #[arg(long)]
    secret_fields: Option<String>,
    /// Only count Secrets in namespaces starting with this.
    #[arg(long)]
    namespace_prefix: Option<String>,
    /// Only count Secrets whose annotation KEY is set and differs from VALUE (KEY=VALUE).
    #[arg(long)]
    annotation_not: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// On timeout, print how far it got and exit 0 (a run too slow to finish in the budget).
    #[arg(long)]
    partial: bool,
    /// Created once the initial lists are in: start what is measured after that.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Files holding PIDs of processes that must stay alive (checked once the file exists).
    #[arg(long)]
    pid_file: Vec<PathBuf>,
}

/// Create `--count` Secrets spread over `--namespaces` namespaces named `<prefix>-<i>`.
#[derive(clap::Args)]
struct UnrelatedArgs {
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 50)]
    namespaces: usize,
    #[arg(long, default_value = "bench-unrelated")]
    prefix: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// Delete a fleet's Secrets, Roles and RoleBindings and strip our labels from its namespaces
/// (kept, empty), then remove its MLTenants and SealedBundles; or remove sealed-secrets' objects.
#[derive(clap::Args)]
struct ReleaseArgs {
    /// Label selector of the fleet's MLTenants.
    #[arg(long)]
    tenants: Option<String>,
    /// Label selector of the Secrets sealed-secrets wrote: they and every SealedSecret go.
    #[arg(long)]
    sealed_secrets: Option<String>,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Kubeconfig of the operator's identity: only it may drop its finalizer from a tenant (the
    /// chart's tenant-guard admission policy).
    #[arg(long)]
    operator_kubeconfig: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench` to every bench target; ignore it.
    let args = std::env::args().filter(|a| a != "--bench");
    match Cli::parse_from(args).job {
        Job::Floor(args) => floor(args).await,
        Job::Wait(args) => wait(args).await,
        Job::Unrelated(args) => unrelated(args).await,
        Job::Release(args) => release(args).await,
    }
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64()
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Every object the operator writes for a tenant, as it builds them.
#[derive(Default)]
struct Desired {
    namespaces: Vec<Namespace>,
    /// Per namespace (index into `namespaces`): what lives in it.
    secrets: Vec<Vec<Secret>>,
    roles: Vec<Vec<Role>>,
    bindings: Vec<Vec<RoleBinding>>,
}

fn read_bundles(dir: &Path) -> anyhow::Result<HashMap<String, SealedBundle>> {
    let mut bundles = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)?;
            if value.get("kind").and_then(|k| k.as_str()) == Some("SealedBundle") {
                let bundle: SealedBundle =
                    serde_yaml::from_value(value).with_context(|| format!("{}", path.display()))?;
                bundles.insert(bundle.name_any(), bundle);
            }
        }
    }
    Ok(bundles)
}
async fn sealing_keys(client: &Client, namespace: &str) -> anyhow::Result<Vec<SealingKey>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut keys = Vec::new();
    for secret in api.list(&ListParams::default().labels(&format!("{SEALING_KEY}={ACTIVE}"))).await? {
        let field = |name: &str| {
            secret.data.as_ref().and_then(|d| d.get(name)).map(|b| String::from_utf8_lossy(&b.0).into_owned())
        };
        if let (Some(cert), Some(key)) = (field("tls.crt"), field("tls.key")) {
            keys.push(SealingKey::from_pem(&cert, &zeroize::Zeroizing::new(key))?);
        }
    }
    keys.sort_by_key(|k| std::cmp::Reverse(k.certificate().not_before()));
    Ok(keys)
}

/// What the operator writes on a cold converge of `tenant`: the namespaces (`created`), then in
/// each the Secrets of its bundles and the reader grants. Bundles are opened here, before the
/// clock runs: RSA work is the other floor.
fn desired_for(
    tenant: &MLTenant,
    bundles: &HashMap<String, SealedBundle>,
    keys: &[SealingKey],
    cache: &DecryptCache,
    out: &mut Desired,
) -> anyhow::Result<()> {
    let planned = environments::plan(tenant).map_err(anyhow::Error::msg)?;
    for env in &planned {
        out.namespaces.push(namespaces::desired(tenant, env, false, None).0);
        let wanted = secrets::wanted(tenant, env);
        let mut here = Vec::new();
        for w in &wanted {
            let bundle =
                bundles.get(&w.bundle).with_context(|| format!("no SealedBundle {} in the manifests", w.bundle))?;
            let label = unseal::consumer_label(bundle, &tenant.name_any(), tenant.labels(), &w.environment)?;
            let opened = unseal::open(bundle, &label, unseal::Keys::active(keys), cache)?;
            here.push(secrets::desired(tenant, w, bundle, &opened, None));
        }
        // Every wanted Secret is written here, so every one is granted.
        let grants = access::desired(tenant, env, &wanted.iter().collect::<Vec<_>>());
        out.secrets.push(here);
        out.roles.push(grants.iter().map(|g| g.role.clone()).collect());
        out.bindings.push(grants.into_iter().map(|g| g.binding).collect());
    }
    Ok(())
}

async fn floor(args: FloorArgs) -> anyhow::Result<()> {
    let admin = Client::try_default().await?;
    let tenants = Api::<MLTenant>::all(admin.clone()).list(&ListParams::default().labels(&args.tenants)).await?;
    if tenants.items.is_empty() {
        bail!("no MLTenant matches {}", args.tenants);
    }
    let bundles = read_bundles(&args.manifests)?;
    let keys = sealing_keys(&admin, &args.key_namespace).await?;
    let cache = DecryptCache::default();
    let mut desired = Desired::default();
    for tenant in &tenants {
        desired_for(tenant, &bundles, &keys, &cache, &mut desired)?;
    }
    let writer = client_from(&args.writer_kubeconfig).await?;
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let counts = json!({
        "namespaces": desired.namespaces.len(),
        "secrets": desired.secrets.iter().map(Vec::len).sum::<usize>(),
        "roles": desired.roles.iter().map(Vec::len).sum::<usize>(),
        "rolebindings": desired.bindings.iter().map(Vec::len).sum::<usize>(),
    });

    // One task per namespace: the namespace first, then what lives in it, all at once. Every
    // request waits for one of `concurrency` permits.
    let start = Instant::now();
    let Desired { namespaces, secrets, roles, bindings } = desired;
    let tasks =
        namespaces.into_iter().zip(secrets).zip(roles).zip(bindings).map(|(((ns, secrets), roles), bindings)| {
            let client = writer.clone();
            let permits = permits.clone();
            async move {
                let name = ns.name_any();
                write(Api::<Guarded<Namespace>>::all(client.clone()), ns, &permits).await?;
                let secrets =
                    secrets.into_iter().map(|s| write(Api::namespaced(client.clone(), &name), s, &permits).boxed());
                // A RoleBinding is refused while its Role is missing (the API server's escalation
                // check resolves the Role), so each grant is its Role, then its binding.
                let grants = roles.into_iter().zip(bindings).map(|(role, binding)| {
                    let (roles_api, bindings_api) =
                        (Api::namespaced(client.clone(), &name), Api::namespaced(client.clone(), &name));
                    let permits = &permits;
                    async move {
                        write(roles_api, role, permits).await?;
                        write(bindings_api, binding, permits).await
                    }
                    .boxed()
                });
                future::try_join_all(secrets.chain(grants)).await?;
                anyhow::Ok(())
            }
        });
    for result in future::try_join_all(tasks.map(tokio::spawn)).await? {
        result?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let objects: u64 = counts.as_object().expect("an object").values().filter_map(serde_json::Value::as_u64).sum();
    println!(
        "{}",
        json!({
            "tenants": tenants.items.len(),
            "objects": objects,
            "counts": counts,
            "decryptions": cache.decryptions(),
            "concurrency": args.concurrency,
            "seconds": seconds,
            "writes_per_second": objects as f64 / seconds,
        })
    );
    Ok(())
}

/// Server-side apply `obj` as the operator does (`reconcile::apply::apply`), within a permit;
/// forced, as the operator applies what it owns (a create costs the server the same, and a
/// fleet's namespaces are kept from earlier runs).
async fn write<K>(api: Api<Guarded<K>>, obj: K, permits: &Semaphore) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Trim + Clone + serde::Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let _permit = permits.acquire().await?;
    apply(&api, &name, &obj, true).await?;
    Ok(())
}

async fn limited<T>(permits: &Semaphore, request: impl Future<Output = kube::Result<T>>) -> anyhow::Result<T> {
    let _permit = permits.acquire().await?;
    Ok(request.await?)
}

/// The names of the objects meeting a condition, kept current from a watch.
struct Tally {
    target: usize,
    met: HashSet<String>,
    reached_at: Option<f64>,
}

impl Tally {
    fn new(target: usize) -> Self {
        Self { target, met: HashSet::new(), reached_at: None }
    }

    fn record(&mut self, key: String, meets: bool) {
        if meets {
            self.met.insert(key);
        } else {
            self.met.remove(&key);
        }
        if self.reached_at.is_none() && self.met.len() >= self.target {
            self.reached_at = Some(now_unix());
        }
    }

    fn done(&self) -> bool {
        self.reached_at.is_some()
    }
}

/// Feed a watch of `api` into `tally` through `meets` until the stream ends or fails.
async fn follow<K>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    tally: Arc<std::sync::Mutex<Tally>>,
    listed: Arc<tokio::sync::Notify>,
    meets: impl Fn(&K) -> bool,
) -> anyhow::Result<()>
where
    K: Resource + Clone,
{
    let key = |o: &K| {
        format!("{}/{}", o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
    };
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.try_next().await? {
        let mut tally = tally.lock().expect("not poisoned");
        match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => tally.record(key(&o), meets(&o)),
            watcher::Event::Delete(o) => tally.record(key(&o), false),
            watcher::Event::Init => {}
            watcher::Event::InitDone => listed.notify_one(),
        }
    }
    Ok(())
}

fn ready(tenant: &MLTenant) -> bool {
    let Some(status) = &tenant.status else { return false };
    status.observed_generation == tenant.metadata.generation
        && status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn alive(pid_files: &[PathBuf]) -> anyhow::Result<()> {
    for file in pid_files {
        let Ok(pid) = std::fs::read_to_string(file) else { continue };
        let pid = pid.trim();
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("process {pid} (from {}) exited", file.display());
        }
    }
    Ok(())
}

async fn wait(args: WaitArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let mut targets: Vec<(&str, Arc<std::sync::Mutex<Tally>>)> = Vec::new();
    let mut watches = Vec::new();
    let mut lists = Vec::new();
    if let (Some(selector), Some(count)) = (&args.tenants, args.tenants_ready) {
        let tally = Arc::new(std::sync::Mutex::new(Tally::new(count)));
        let listed = Arc::new(tokio::sync::Notify::new());
        let stream = watcher(Api::<MLTenant>::all(client.clone()), watcher::Config::default().labels(selector));
        watches.push(follow(stream, tally.clone(), listed.clone(), ready).boxed());
        targets.push(("tenants_ready", tally));
        lists.push(listed);
    }
    if let (Some(selector), Some(count)) = (&args.secrets, args.secrets_count) {
        let tally = Arc::new(std::sync::Mutex::new(Tally::new(count)));
        let listed = Arc::new(tokio::sync::Notify::new());
        let mut config = watcher::Config::default().labels(selector);
        if let Some(fields) = &args.secret_fields {
            config = config.fields(fields);
        }
        let prefix = args.namespace_prefix.clone().unwrap_or_default();
        let annotation = args.annotation_not.as_ref().map(|a| {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            (k.to_owned(), v.to_owned())
        });
        let meets = move |s: &PartialObjectMeta<Secret>| {
            s.metadata.namespace.as_deref().unwrap_or_default().starts_with(&prefix)
                && annotation.as_ref().is_none_or(|(k, v)| s.annotations().get(k).is_some_and(|have| have != v))
        };
        let stream = watcher(Api::<PartialObjectMeta<Secret>>::all(client.clone()), config);
        watches.push(follow(stream, tally.clone(), listed.clone(), meets).boxed());
        targets.push(("secrets", tally));
        lists.push(listed);
    }
    if targets.is_empty() {
        bail!("nothing to wait for: give --tenants or --secrets");
    }
    let report = |timed_out: bool| {
        let mut out = serde_json::Map::new();
        for (name, tally) in &targets {
            let tally = tally.lock().expect("not poisoned");
            out.insert(format!("{name}_at"), json!(tally.reached_at));
            out.insert(name.to_string(), json!(tally.met.len()));
        }
        out.insert("timed_out".into(), json!(timed_out));
        out.insert("now".into(), json!(now_unix()));
        serde_json::Value::Object(out)
    };

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let watching = future::try_join_all(watches);
    let mut watching = std::pin::pin!(watching);
    let all_listed = future::join_all(lists.iter().map(|l| l.notified()));
    let mut all_listed = std::pin::pin!(all_listed);
    let mut listed = false;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_progress = Instant::now();
    loop {
        tokio::select! {
            result = &mut watching => {
                result?;
                bail!("the watch ended");
            }
            _ = &mut all_listed, if !listed => {
                listed = true;
                if let Some(file) = &args.ready_file {
                    std::fs::write(file, "listed\n")?;
                }
            }
            _ = tick.tick() => {
                if targets.iter().all(|(_, t)| t.lock().expect("not poisoned").done()) {
                    println!("{}", report(false));
                    return Ok(());
                }
                alive(&args.pid_file)?;
                if Instant::now() >= deadline {
                    if args.partial {
                        println!("{}", report(true));
                        return Ok(());
                    }
                    bail!("timed out after {}s: {}", args.timeout, report(true));
                }
                if last_progress.elapsed() >= Duration::from_secs(15) {
                    last_progress = Instant::now();
                    eprintln!("    waiting: {}", report(false));
                }
            }
        }
    }
}

async fn unrelated(args: UnrelatedArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let namespaces: Vec<String> = (0..args.namespaces.max(1)).map(|i| format!("{}-{i:03}", args.prefix)).collect();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for name in &namespaces {
        let ns = Namespace {
            metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
            ..Default::default()
        };
        ns_api.patch(name, &PatchParams::apply("bench"), &Patch::Apply(&ns)).await?;
    }
    let start = Instant::now();
    // Three values of the size of a typical application credential; not secret.
    let data: BTreeMap<String, ByteString> = ["username", "password", "url"]
        .iter()
        .map(|k| (k.to_string(), ByteString(format!("{k}-{}", "x".repeat(60)).into_bytes())))
        .collect();
    let tasks = (0..args.count).map(|i| {
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespaces[i % namespaces.len()]);
        let permits = permits.clone();
        let secret = Secret {
            metadata: kube::api::ObjectMeta { name: Some(format!("app-{i:06}")), ..Default::default() },
            data: Some(data.clone()),
            ..Default::default()
        };
        tokio::spawn(async move {
            match limited(&permits, api.create(&PostParams::default(), &secret)).await {
                Err(e)
                    if e.downcast_ref::<kube::Error>()
                        .is_some_and(|k| matches!(k, kube::Error::Api(s) if s.code == 409)) =>
                {
                    Ok(())
                }
                other => other.map(drop),
            }
        })
    });
    for result in future::join_all(tasks).await {
        result??;
    }
    println!(
        "{}",
        json!({"created": args.count, "namespaces": namespaces.len(), "seconds": start.elapsed().as_secs_f64()})
    );
    Ok(())
}

/// Delete every object of `api` named in `keys` (namespace, name); gone already is fine.
async fn delete_all<K>(client: &Client, keys: Vec<(String, String)>, permits: &Arc<Semaphore>) -> anyhow::Result<usize>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let count = keys.len();
    let tasks = keys.into_iter().map(|(ns, name)| {
        let api: Api<K> = Api::namespaced(client.clone(), &ns);
        let permits = permits.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire().await?;
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(anyhow::Error::from(e)),
            }
        })
    });
    for result in future::join_all(tasks).await {
        result??;
    }
    Ok(count)
}

fn keys_of<K: Resource>(list: impl IntoIterator<Item = K>, keep: impl Fn(&K) -> bool) -> Vec<(String, String)> {
    list.into_iter()
        .filter(|o| keep(o))
        .map(|o| (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default()))
        .collect()
}

async fn release(args: ReleaseArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let start = Instant::now();
    if let Some(selector) = &args.tenants {
        let tenants = Api::<MLTenant>::all(client.clone()).list(&ListParams::default().labels(selector)).await?;
        let names: BTreeSet<String> = tenants.iter().map(|t| t.name_any()).collect();
        let ours = |l: &BTreeMap<String, String>| l.get(labels::TENANT).is_some_and(|t| names.contains(t));
        let children = ListParams::default().labels(&labels::tenant_children_selector());
        let secrets = Api::<Secret>::all(client.clone()).list_metadata(&children).await?;
        let roles = Api::<Role>::all(client.clone()).list_metadata(&children).await?;
        let bindings = Api::<RoleBinding>::all(client.clone()).list_metadata(&children).await?;
        let mut deleted = delete_all::<Secret>(&client, keys_of(secrets, |o| ours(o.labels())), &permits).await?;
        deleted += delete_all::<Role>(&client, keys_of(roles, |o| ours(o.labels())), &permits).await?;
        deleted += delete_all::<RoleBinding>(&client, keys_of(bindings, |o| ours(o.labels())), &permits).await?;
        // Applying nothing as the operator's field manager drops every label, annotation and
        // ownerReference it owns: the namespace stays, unmanaged and out of the caches.
        let ns_api: Api<Namespace> = Api::all(client.clone());
        let namespaces = ns_api.list_metadata(&ListParams::default().labels(&labels::managed_selector())).await?;
        let stripped = keys_of(namespaces, |o| ours(o.labels()));
        let apply_as_us = PatchParams::apply(FIELD_MANAGER).force();
        future::try_join_all(stripped.iter().map(|(_, name)| {
            let empty = Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
            let (api, params, permits) = (ns_api.clone(), apply_as_us.clone(), permits.clone());
            async move { limited(&permits, async move { api.patch(name, &params, &empty).await }).await }
        }))
        .await?;
        let tenant_api: Api<MLTenant> = Api::all(client.clone());
        let as_operator: Api<MLTenant> = Api::all(client_from(&args.operator_kubeconfig).await?);
        let bundle_api: Api<SealedBundle> = Api::all(client.clone());
        let mut bundles = BTreeSet::new();
        for tenant in &tenants {
            bundles.extend(tenant.spec.referenced_bundles().into_iter().map(str::to_owned));
            let name = tenant.name_any();
            let unfinalized = json!({"apiVersion": MLTenant::api_version(&()), "kind": MLTenant::kind(&()), "metadata": {"name": name}});
            as_operator.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(unfinalized)).await?;
        }
        future::try_join_all(names.iter().map(|n| {
            let (api, permits) = (tenant_api.clone(), permits.clone());
            async move { limited(&permits, async move { api.delete(n, &DeleteParams::background()).await }).await }
        }))
        .await?;
        for name in &bundles {
            match bundle_api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        eprintln!(
            "    released {} tenants: {deleted} objects deleted, {} namespaces unlabelled, {} bundles deleted",
            names.len(),
            stripped.len(),
            bundles.len()
        );
    }
    if let Some(selector) = &args.sealed_secrets {
        let secrets = Api::<Secret>::all(client.clone()).list_metadata(&ListParams::default().labels(selector)).await?;
        let deleted = delete_all::<Secret>(&client, keys_of(secrets, |_| true), &permits).await?;
        // The Secrets go first, so the garbage collector has nothing left to do.
        let gvk = GroupVersionKind::gvk("bitnami.com", "v1alpha1", "SealedSecret");
        let resource = ApiResource::from_gvk(&gvk);
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let sealed = all.list_metadata(&ListParams::default()).await?;
        let keys = keys_of(sealed, |_| true);
        let count = keys.len();
        future::try_join_all(keys.into_iter().map(|(ns, name)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
            let permits = permits.clone();
            async move { limited(&permits, async move { api.delete(&name, &DeleteParams::background()).await }).await }
        }))
        .await?;
        eprintln!("    released sealed-secrets: {deleted} Secrets and {count} SealedSecrets deleted");
    }
    eprintln!("    release took {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}
