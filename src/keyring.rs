//! The operator's sealing keys: `kubernetes.io/tls` Secrets labelled
//! `mltenant.io/sealing-key=active` in the operator's namespace. Watched (so every replica
//! reloads when a key is added or removed), the first one created on start, and a new one
//! every renew period. Old keys are kept: they still open what was sealed with them; the
//! newest seals.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::api::SealedBundle;
use crate::bundle::{self, cache::DecryptCache};
use crate::crypto::SealingKey;
use crate::labels;

pub const SEALING_KEY: &str = "mltenant.io/sealing-key";
pub const ACTIVE: &str = "active";

/// How often the renew check runs at most (more often for renew periods under 4 minutes).
const RENEW_CHECK: Duration = Duration::from_secs(60);

/// The loaded sealing keys, newest first, what they opened, and the pool RSA work runs on.
pub struct KeyRing {
    keys: RwLock<Arc<Vec<SealingKey>>>,
    opened: DecryptCache,
    changed: tokio::sync::watch::Sender<u64>,
    /// RSA decryptions run on blocking threads, at most one per core at a time, so the async
    /// runtime (health checks, watches, API calls) never waits behind them and a flood of
    /// requests cannot take more than the machine has.
    rsa: Semaphore,
}

impl Default for KeyRing {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            keys: RwLock::default(),
            opened: DecryptCache::default(),
            changed: tokio::sync::watch::Sender::new(0),
            rsa: Semaphore::new(cores),
        }
    }
}

impl KeyRing {
    /// Open every value of `bundle` under `label`; repeated calls for the same ciphertexts do no
    /// RSA work (and do not wait for the pool).
    pub async fn open(
        self: &Arc<Self>,
        bundle: &Arc<SealedBundle>,
        label: Vec<u8>,
    ) -> Result<bundle::Opened, bundle::Failure> {
        if bundle::cached(bundle, &label, &self.opened) {
            return bundle::open(bundle, &label, &self.keys(), &self.opened);
        }
        let (ring, bundle) = (self.clone(), bundle.clone());
        self.on_pool(move || bundle::open(&bundle, &label, &ring.keys(), &ring.opened)).await
    }

    /// Run `work` (RSA operations) on a blocking thread once a core is free. A panic in it is
    /// carried over to the caller, as if it had happened there.
    async fn on_pool<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let _core = self.rsa.acquire().await.expect("the pool semaphore is never closed");
        match tokio::task::spawn_blocking(work).await {
            Ok(value) => value,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// Sealed values decrypted by the controllers so far (a resync of converged tenants adds none).
    pub fn decryptions(&self) -> u64 {
        self.opened.decryptions()
    }

    /// Open `bundle` for the consumer its own claims name, bypassing the cache (what
    /// `/v1/verify` answers for bundles that may never be used).
    pub async fn verify(self: &Arc<Self>, bundle: SealedBundle) -> Result<bundle::Opened, bundle::Failure> {
        let ring = self.clone();
        self.on_pool(move || {
            bundle::open(&bundle, &bundle::declared_label(&bundle), &ring.keys(), &DecryptCache::with_capacity(0))
        })
        .await
    }

    /// `bundle` with every value re-sealed to the newest key (what `/v1/rotate` returns).
    pub async fn rotate(self: &Arc<Self>, bundle: SealedBundle) -> Result<SealedBundle, RotateError> {
        let newest = self.newest().ok_or(RotateError::NoKey)?;
        let label = bundle::declared_label(&bundle);
        let mut rotated = SealedBundle::new(&bundle.name_any(), bundle.spec.clone());
        let opened = self.verify(bundle).await?;
        for (key, plaintext) in &opened.data {
            let sealed = crate::crypto::seal(newest.certificate(), &label, plaintext)?;
            rotated.spec.encrypted_data.insert(key.clone(), crate::crypto::encode_base64(&sealed));
        }
        Ok(rotated)
    }

    /// Yields once every time the set of keys changes (a bundle that failed may open now).
    pub fn changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.changed.subscribe(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }

    /// Every usable key, newest first: all of them are tried when opening.
    pub fn keys(&self) -> Arc<Vec<SealingKey>> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The key new values are sealed with.
    pub fn newest(&self) -> Option<SealingKey> {
        self.keys().first().cloned()
    }

    /// Add a key this replica just stored, before the watch reports it.
    fn insert(&self, key: SealingKey) {
        let mut keys: Vec<SealingKey> =
            self.keys().iter().filter(|k| k.fingerprint() != key.fingerprint()).cloned().collect();
        keys.push(key);
        self.replace(keys);
    }

    /// Make `keys` the ring, newest first.
    fn replace(&self, mut keys: Vec<SealingKey>) {
        keys.sort_by_key(|k| std::cmp::Reverse(k.certificate().not_before()));
        let fingerprints: Vec<&str> = keys.iter().map(SealingKey::fingerprint).collect();
        let changed = {
            let current = self.keys();
            current.iter().map(SealingKey::fingerprint).ne(fingerprints.iter().copied())
        };
        let fingerprints: Vec<String> = fingerprints.into_iter().map(str::to_owned).collect();
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        if changed {
            // A removed key must stop opening what it opened before; what the remaining keys
            // opened stays cached, so adding a key costs no decryption.
            let fingerprints: Vec<&str> = fingerprints.iter().map(String::as_str).collect();
            self.opened.retain_keys(&fingerprints);
            self.changed.send_modify(|generation| *generation += 1);
        }
    }
}

/// Why a bundle could not be re-sealed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("no sealing key yet")]
    NoKey,
    #[error(transparent)]
    Open(#[from] bundle::Failure),
    #[error(transparent)]
    Seal(#[from] crate::crypto::SealError),
}

/// Where the keys live and how often a new one is made.
#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub renew_period: Duration,
}

/// Keep `ring` in step with the key Secrets until the watch ends. `synced` is raised once the
/// keys were loaded and at least one exists.
///
/// Only while `leading` is true does it create keys; every replica loads them.
pub async fn run(
    client: Client,
    config: Config,
    ring: Arc<KeyRing>,
    synced: Arc<AtomicBool>,
    mut leading: tokio::sync::watch::Receiver<bool>,
) {
    let api: Api<Secret> = Api::namespaced(client, &config.namespace);
    let (store, writer) = reflector::store();
    let selector = format!("{SEALING_KEY}={ACTIVE}");
    let mut events = reflector::reflector(writer, watcher(api.clone(), watcher::Config::default().labels(&selector)))
        .default_backoff()
        .boxed();
    let mut renew = tokio::time::interval(RENEW_CHECK.min(config.renew_period / 4));
    // A slow key generation must not be followed by a burst of catch-up checks.
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listed = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::InitDone)) => {
                    listed = true;
                    reload(&store, &ring);
                    if *leading.borrow() {
                        ensure_fresh_key(&api, &ring, &config).await;
                    }
                }
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) if listed => reload(&store, &ring),
                Some(Ok(_)) => {}
                Some(Err(error)) => warn!(%error, "watching sealing keys"),
                None => return,
            },
            _ = renew.tick(), if listed && *leading.borrow() => ensure_fresh_key(&api, &ring, &config).await,
            Ok(()) = leading.changed(), if listed => {
                if *leading.borrow_and_update() {
                    ensure_fresh_key(&api, &ring, &config).await;
                }
            }
        }
        if listed && !ring.keys().is_empty() {
            synced.store(true, Ordering::Release);
        }
    }
}

/// Rebuild the ring from the cached Secrets. A Secret that does not hold a valid key pair is
/// skipped with a warning naming it (never its content).
fn reload(store: &Store<Secret>, ring: &KeyRing) {
    let keys: Vec<SealingKey> = store
        .state()
        .iter()
        .filter_map(|secret| match parse(secret) {
            Ok(key) => Some(key),
            Err(error) => {
                warn!(secret = %secret.name_any(), %error, "ignoring invalid sealing key Secret");
                None
            }
        })
        .collect();
    ring.replace(keys);
    let keys = ring.keys();
    info!(keys = keys.len(), newest = keys.first().map_or("none", SealingKey::fingerprint), "sealing keys loaded");
}

fn parse(secret: &Secret) -> Result<SealingKey, String> {
    let field = |name: &str| -> Result<String, String> {
        let bytes = secret.data.as_ref().and_then(|d| d.get(name)).ok_or_else(|| format!("missing {name}"))?;
        String::from_utf8(bytes.0.clone()).map_err(|_| format!("{name} is not text"))
    };
    let cert = field("tls.crt")?;
    let key = zeroize::Zeroizing::new(field("tls.key")?);
    SealingKey::from_pem(&cert, &key).map_err(|e| e.to_string())
}

/// Create a key when there is none or the newest is older than the renew period.
///
/// The Secret is created (POST), not applied: its name is derived from the renew period's
/// time slot, so replicas starting together race for one name and exactly one wins, where an
/// apply would let the loser overwrite the winner's key with its own.
async fn ensure_fresh_key(api: &Api<Secret>, ring: &KeyRing, config: &Config) {
    let now = jiff::Timestamp::now();
    let period = config.renew_period.as_secs().max(1) as i64;
    if let Some(newest) = ring.newest()
        && newest.certificate().not_before().as_second() + period > now.as_second()
    {
        return;
    }
    let name = format!("sealing-key-{}", now.as_second() / period);
    // Valid for two periods: the newest key always has at least a period left when it seals.
    let validity = config.renew_period * 2;
    let key = match tokio::task::spawn_blocking(move || SealingKey::generate(validity)).await {
        Ok(Ok(key)) => key,
        Ok(Err(error)) => return warn!(%error, "could not generate a sealing key"),
        Err(error) => return warn!(%error, "sealing key generation panicked"),
    };
    let pem = match key.to_pem() {
        Ok(pem) => pem,
        Err(error) => return warn!(%error, "could not encode the sealing key"),
    };
    let mut key_labels = labels::managed_by();
    key_labels.insert(SEALING_KEY.to_owned(), ACTIVE.to_owned());
    let secret = Secret {
        metadata: ObjectMeta { name: Some(name.clone()), labels: Some(key_labels), ..Default::default() },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(pem.cert_pem.into_bytes())),
            ("tls.key".to_owned(), ByteString(pem.key_pem.as_bytes().to_vec())),
        ])),
        ..Default::default()
    };
    match api
        .create(&PostParams { field_manager: Some(labels::FIELD_MANAGER.to_owned()), ..Default::default() }, &secret)
        .await
    {
        Ok(_) => {
            info!(secret = %name, fingerprint = key.fingerprint(), "created a new sealing key");
            // Use it at once: the watch may deliver it only later, and until then the next
            // check would find no fresh key and make another one.
            ring.insert(key);
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            info!(secret = %name, "another replica created this sealing key")
        }
        Err(error) => warn!(secret = %name, %error, "could not store the new sealing key"),
    }
}
