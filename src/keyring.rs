//! The key ring: the loaded sealing keys (newest first; the newest seals, every one opens what
//! was sealed with it), the cache of what they opened, and the pool RSA work runs on. Which
//! keys it holds is kept in step with the key Secrets by `sealing_keys`.

use std::sync::{Arc, RwLock};

use kube::ResourceExt as _;
use tokio::sync::Semaphore;

use crate::api::SealedBundle;
use crate::crypto::SealingKey;
use crate::striped::Striped;
use crate::unseal::{self, cache::DecryptCache};

/// The loaded sealing keys, newest first, what they opened, and the pool RSA work runs on.
pub struct KeyRing {
    keys: RwLock<Arc<Vec<SealingKey>>>,
    opened: DecryptCache,
    changed: tokio::sync::watch::Sender<u64>,
    /// RSA decryptions run on blocking threads, at most one per core at a time, so the async
    /// runtime (health checks, watches, API calls) never waits behind them and a flood of
    /// requests cannot take more than the machine has.
    rsa: Semaphore,
    /// Openings of the same bundle for the same consumer go one at a time, so tenants
    /// converging together decrypt a shared bundle once (the others find it in the cache).
    opening: Striped,
}

/// Locks for openings in progress; the pool runs one per core, so a few dozen is plenty.
const OPENING_STRIPES: usize = 64;

impl Default for KeyRing {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            keys: RwLock::default(),
            opened: DecryptCache::default(),
            changed: tokio::sync::watch::Sender::new(0),
            rsa: Semaphore::new(cores),
            opening: Striped::new(OPENING_STRIPES),
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
    ) -> Result<unseal::Opened, unseal::Failure> {
        if !unseal::cached(bundle, &label, &self.opened) {
            let _opening = self.opening.lock((bundle.metadata.uid.as_deref(), &label)).await;
            // Whoever held the lock before may have opened it meanwhile.
            if !unseal::cached(bundle, &label, &self.opened) {
                let (ring, bundle) = (self.clone(), bundle.clone());
                return self.on_pool(move || unseal::open(&bundle, &label, &ring.keys(), &ring.opened)).await;
            }
        }
        unseal::open(bundle, &label, &self.keys(), &self.opened)
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
    pub async fn verify(self: &Arc<Self>, bundle: SealedBundle) -> Result<unseal::Opened, unseal::Failure> {
        let ring = self.clone();
        self.on_pool(move || {
            unseal::open(&bundle, &unseal::declared_label(&bundle), &ring.keys(), &DecryptCache::with_capacity(0))
        })
        .await
    }

    /// `bundle` with every value re-sealed to the newest key (what `/v1/rotate` returns).
    pub async fn rotate(self: &Arc<Self>, bundle: SealedBundle) -> Result<SealedBundle, RotateError> {
        let newest = self.newest().ok_or(RotateError::NoKey)?;
        let label = unseal::declared_label(&bundle);
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
    pub(crate) fn insert(&self, key: SealingKey) {
        let mut keys: Vec<SealingKey> =
            self.keys().iter().filter(|k| k.fingerprint() != key.fingerprint()).cloned().collect();
        keys.push(key);
        self.replace(keys);
    }

    /// Make `keys` the ring, newest first.
    pub(crate) fn replace(&self, mut keys: Vec<SealingKey>) {
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
    Open(#[from] unseal::Failure),
    #[error(transparent)]
    Seal(#[from] crate::crypto::SealError),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::{BundleScope, SealedBundleSpec};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn tenants_opening_one_bundle_together_decrypt_it_once() {
        let key = SealingKey::generate(Duration::from_secs(3600)).expect("RSA-4096 key generation");
        let label = crate::crypto::label(BundleScope::Cluster, "", "");
        let values = (0..3)
            .map(|i| {
                let sealed = crate::crypto::seal(key.certificate(), &label, format!("value-{i}").as_bytes()).unwrap();
                (format!("K{i}"), crate::crypto::encode_base64(&sealed))
            })
            .collect();
        let mut bundle = SealedBundle::new("shared", SealedBundleSpec::new(BundleScope::Cluster, values));
        bundle.metadata.uid = Some("uid-1".into());
        let (ring, bundle) = (Arc::new(KeyRing::default()), Arc::new(bundle));
        ring.replace(vec![key]);

        let opened = futures::future::join_all((0..8).map(|_| ring.open(&bundle, label.clone()))).await;
        assert!(opened.iter().all(|o| o.as_ref().is_ok_and(|o| o.data.len() == 3)), "every opening succeeds");
        assert_eq!(ring.decryptions(), 3, "each of the 3 values decrypted once, not once per tenant");
    }
}
