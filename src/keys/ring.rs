//! The key ring: the loaded sealing keys (newest first; the newest seals, every one opens what
//! was sealed with it), the cache of what they opened, and the pool RSA work runs on. Which
//! keys it holds is kept in step with the key Secrets by `lifecycle`.

use std::sync::{Arc, RwLock};

use base64::Engine as _;
use kube::ResourceExt as _;
use tokio::sync::Semaphore;

use crate::api::SealedBundle;
use crate::crypto::SealingKey;
use crate::striped::Striped;
use crate::unseal::{self, cache::DecryptCache};

/// The loaded sealing keys, newest first, what they opened, and the pool RSA work runs on.
pub struct KeyRing {
    /// The active keys (newest first), the retired ones (`mltenant keys retire`: they open
    /// nothing; a failure names the one a value needs) and the generation of this set, changed
    /// together.
    loaded: RwLock<Loaded>,
    opened: DecryptCache,
    changed: tokio::sync::watch::Sender<u64>,
    /// RSA decryptions run on blocking threads, at most one per core at a time, so the async
    /// runtime (health checks, watches, API calls) never waits behind them and a flood of
    /// requests cannot take more than the machine has.
    rsa: Semaphore,
    /// Openings of the same bundle for the same consumer go one at a time, so tenants
    /// converging together decrypt a shared bundle once (the others find it in the cache).
    opening: Striped,
    /// Every SealedBundle in the cluster (the controllers' shared cache, while leading): what
    /// decides whether a key may be deleted.
    bundles: RwLock<Option<(kube::runtime::reflector::Store<SealedBundle>, kube::core::Selector)>>,
}

/// One set of keys: what every opening reads at once.
#[derive(Clone, Default)]
struct Loaded {
    active: Arc<Vec<SealingKey>>,
    retired: Arc<Vec<SealingKey>>,
    generation: u64,
}

/// Locks for openings in progress; the pool runs one per core, so a few dozen is plenty.
const OPENING_STRIPES: usize = 64;

impl Default for KeyRing {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            loaded: RwLock::default(),
            opened: DecryptCache::default(),
            changed: tokio::sync::watch::Sender::new(0),
            rsa: Semaphore::new(cores),
            opening: Striped::new(OPENING_STRIPES),
            bundles: RwLock::default(),
        }
    }
}

impl KeyRing {
    /// Open every value of `cached` (a bundle of the shared cache, which keeps digests of its
    /// values, not their ciphertexts) under `label`. What was opened before comes from the cache
    /// without RSA work or waiting for the pool; otherwise `fetch` reads the bundle with its
    /// ciphertexts (`None`: it is gone). A fetched bundle whose values are not those of `cached`
    /// changed meanwhile: that is a conflict (409), retried once the cache has the new one.
    pub async fn open<F>(
        self: &Arc<Self>,
        cached: &SealedBundle,
        label: Vec<u8>,
        fetch: F,
    ) -> kube::Result<Result<unseal::Opened, unseal::Failure>>
    where
        F: Future<Output = kube::Result<Option<SealedBundle>>>,
    {
        Ok(self.opening(cached, label, fetch, false).await?.opened)
    }

    /// [`KeyRing::open`] past a value that fails too, to learn every key the bundle needs
    /// (`unseal::opening`): what a bundle's status reports.
    pub async fn open_all<F>(
        self: &Arc<Self>,
        cached: &SealedBundle,
        label: Vec<u8>,
        fetch: F,
    ) -> kube::Result<unseal::Opening>
    where
        F: Future<Output = kube::Result<Option<SealedBundle>>>,
    {
        self.opening(cached, label, fetch, true).await
    }

    async fn opening<F>(
        self: &Arc<Self>,
        cached: &SealedBundle,
        label: Vec<u8>,
        fetch: F,
        complete: bool,
    ) -> kube::Result<unseal::Opening>
    where
        F: Future<Output = kube::Result<Option<SealedBundle>>>,
    {
        let known = || unseal::opening_cached(cached, &label, &self.keys(), &self.opened, complete);
        if let Some(opening) = known() {
            return Ok(opening);
        }
        let _opening = self.opening.lock((cached.metadata.uid.as_deref(), &label)).await;
        // Whoever held the lock before may have opened it meanwhile.
        if let Some(opening) = known() {
            return Ok(opening);
        }
        let Some(sealed) = fetch.await? else {
            let opened = Err(unseal::Failure::NotFound { bundle: cached.name_any() });
            return Ok(unseal::Opening { opened, needs: Vec::new() });
        };
        if !unseal::same_values(cached, &sealed) {
            return Err(changed(&cached.name_any()));
        }
        let ring = self.clone();
        Ok(self
            .on_pool(move || {
                let loaded = ring.loaded();
                unseal::opening(&sealed, &label, loaded.keys(), &ring.opened, complete)
            })
            .await)
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
            let loaded = ring.loaded();
            unseal::open(&bundle, &unseal::declared_label(&bundle), loaded.keys(), &DecryptCache::with_capacity(0))
        })
        .await
    }

    /// `bundle` with every value re-sealed to the newest key (what `/v1/rotate` returns), each
    /// in its own format unless `format` converts them. The scope comes from one place: the
    /// label is computed once from the bundle's claims (which the caller was authorised for),
    /// and both the opening and the sealing use it; the spec is returned as it came, only
    /// `encryptedData`'s values replaced.
    pub async fn rotate(
        self: &Arc<Self>,
        bundle: SealedBundle,
        format: Option<crate::crypto::Format>,
    ) -> Result<SealedBundle, RotateError> {
        let newest = self.newest().ok_or(RotateError::NoKey)?;
        let ring = self.clone();
        self.on_pool(move || {
            let label = unseal::declared_label(&bundle);
            let loaded = ring.loaded();
            let values = unseal::reseal(&bundle, &label, loaded.keys(), &newest, format)?;
            let mut rotated = SealedBundle::new(&bundle.name_any(), bundle.spec);
            rotated.spec.encrypted_data = values;
            Ok(rotated)
        })
        .await
    }

    /// The proof (`mltenant.io/opened-with`) that the Secret `namespace/name` was written with
    /// values of digest `data`, opened under `label` from the bundle ciphertexts of
    /// `source_hash` by the keys `opened_by` (fingerprints): `v1.<key ids>.<MAC>`, the MAC by
    /// the first of them (see `SealingKey::prove`). None when one of them is not active here.
    pub fn prove(&self, opened_by: &[Arc<str>], subject: &Proven<'_>) -> Option<String> {
        let keys = self.keys();
        let mut signers = Vec::new();
        for fingerprint in opened_by {
            signers.push(keys.iter().find(|k| k.fingerprint() == &**fingerprint)?);
        }
        let ids: Vec<String> = signers.iter().map(|k| crate::crypto::key_id_hex(&k.certificate().key_id())).collect();
        let ids = ids.join("+");
        let mac = signers.first()?.prove(&subject.parts(&ids));
        Some(format!("v1.{ids}.{}", BASE64_URL.encode(mac)))
    }

    /// Whether `proof` (an `mltenant.io/opened-with` value) is this ring's proof for `subject`,
    /// by keys that are all active now (a retired or removed key proves nothing).
    pub fn proven(&self, proof: &str, subject: &Proven<'_>) -> bool {
        let mut parts = proof.splitn(3, '.');
        let (Some("v1"), Some(ids), Some(mac)) = (parts.next(), parts.next(), parts.next()) else { return false };
        let Ok(mac) = BASE64_URL.decode(mac) else { return false };
        let keys = self.keys();
        let mut signer = None;
        for id in ids.split('+') {
            let Some(key) = keys.iter().find(|k| crate::crypto::key_id_hex(&k.certificate().key_id()) == id) else {
                return false;
            };
            signer.get_or_insert(key);
        }
        signer.is_some_and(|key| key.verify_proof(&subject.parts(ids), &mac))
    }

    /// Follow `bundles` (every SealedBundle) to tell which keys they need; this installation
    /// reports on those `reported` selects.
    pub fn follow_bundles(
        &self,
        bundles: kube::runtime::reflector::Store<SealedBundle>,
        reported: kube::core::Selector,
    ) {
        *self.bundles.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((bundles, reported));
    }

    /// The SealedBundles that still need the key `fingerprint` (see `unseal::needs_key`: what
    /// their status found out, or while it has not, the key ids their v2 values name). None
    /// while the bundles are not known (not leading yet): then every key is needed.
    pub fn needed_by(&self, fingerprint: &str, key_id: &str) -> Option<Vec<String>> {
        use kube::core::SelectorExt as _;
        let (store, reported) = self.bundles.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()?;
        let mut names: Vec<String> = store
            .state()
            .iter()
            .filter(|b| unseal::needs_key(b, fingerprint, key_id, reported.matches(b.labels())))
            .map(|b| b.name_any())
            .collect();
        names.sort();
        Some(names)
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
        self.loaded().active
    }

    /// The retired keys: they open nothing.
    pub fn retired(&self) -> Arc<Vec<SealingKey>> {
        self.loaded().retired
    }

    fn loaded(&self) -> Loaded {
        self.loaded.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
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
        let retired = self.retired().to_vec();
        self.replace(keys, retired);
    }

    /// Make `keys` the ring's active keys, newest first, and `retired` its retired ones.
    pub fn replace(&self, mut keys: Vec<SealingKey>, mut retired: Vec<SealingKey>) {
        keys.sort_by_key(|k| std::cmp::Reverse(k.certificate().not_before()));
        retired.sort_by_key(|k| std::cmp::Reverse(k.certificate().not_before()));
        let fingerprints: Vec<String> = keys.iter().map(|k| k.fingerprint().to_owned()).collect();
        let generation = {
            let mut loaded = self.loaded.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = loaded.active.iter().map(SealingKey::fingerprint).ne(fingerprints.iter().map(String::as_str))
                || loaded.retired.iter().map(SealingKey::fingerprint).ne(retired.iter().map(SealingKey::fingerprint));
            if !changed {
                return;
            }
            let generation = loaded.generation + 1;
            *loaded = Loaded { active: Arc::new(keys), retired: Arc::new(retired), generation };
            generation
        };
        // A removed or retired key must stop opening what it opened before (and an opening
        // that started with it keeps nothing: see `DecryptCache`); what the remaining keys
        // opened stays cached, so adding a key costs no decryption.
        let fingerprints: Vec<&str> = fingerprints.iter().map(String::as_str).collect();
        self.opened.retain_keys(&fingerprints, generation);
        self.changed.send_modify(|g| *g += 1);
    }
}

impl Loaded {
    fn keys(&self) -> unseal::Keys<'_> {
        unseal::Keys { active: &self.active, retired: &self.retired, generation: self.generation }
    }
}

const BASE64_URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a proof on a distributed Secret covers (see [`KeyRing::prove`]).
#[derive(Clone, Copy)]
pub struct Proven<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub label: &'a [u8],
    pub source_hash: &'a str,
    /// `trim::secret_data_digest` of the values written.
    pub data: &'a [u8; 32],
}

impl Proven<'_> {
    fn parts<'p>(&'p self, ids: &'p str) -> [&'p [u8]; 7] {
        [
            b"mltenant.io/opened-with v1",
            self.namespace.as_bytes(),
            self.name.as_bytes(),
            self.label,
            self.source_hash.as_bytes(),
            ids.as_bytes(),
            self.data,
        ]
    }
}

/// The conflict of a bundle that changed between the cache and a read of it.
fn changed(bundle: &str) -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure(&format!("SealedBundle {bundle} changed while it was opened"), "Conflict")
            .with_code(409)
            .boxed(),
    )
}

/// Why a bundle could not be re-sealed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("no sealing key yet")]
    NoKey,
    #[error(transparent)]
    Reseal(#[from] unseal::ResealError),
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::api::{BundleScope, SealedBundleSpec};

    /// A Cluster-scope bundle of three values sealed to `key`, with the ciphertexts, and as the
    /// shared cache keeps it.
    fn shared(key: &SealingKey, label: &[u8]) -> (SealedBundle, SealedBundle) {
        let values = (0..3)
            .map(|i| {
                let sealed = crate::crypto::seal(key.certificate(), label, format!("value-{i}").as_bytes()).unwrap();
                (format!("K{i}"), crate::crypto::encode_base64(&sealed))
            })
            .collect();
        let mut sealed = SealedBundle::new("shared", SealedBundleSpec::new(BundleScope::Cluster, values));
        sealed.metadata.uid = Some("uid-1".into());
        let mut cached = sealed.clone();
        unseal::keep_digests(&mut cached);
        (sealed, cached)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn tenants_opening_one_bundle_together_decrypt_it_once() {
        let key = SealingKey::generate(Duration::from_secs(3600)).expect("RSA-4096 key generation");
        let label = crate::crypto::label(BundleScope::Cluster, "", "");
        let (sealed, cached) = shared(&key, &label);
        assert!(cached.spec.encrypted_data.values().all(|v| v.len() < 60), "the cache keeps digests");
        let ring = Arc::new(KeyRing::default());
        ring.replace(vec![key], Vec::new());

        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::Relaxed);
            Ok(Some(sealed.clone()))
        };
        let opened = futures::future::join_all((0..8).map(|_| ring.open(&cached, label.clone(), read()))).await;
        assert!(opened.iter().all(|o| matches!(o, Ok(Ok(o)) if o.data.len() == 3)), "every opening succeeds");
        assert_eq!(ring.decryptions(), 3, "each of the 3 values decrypted once, not once per tenant");
        assert_eq!(reads.load(Ordering::Relaxed), 1, "the ciphertexts read once");
        assert_eq!(ring.open(&cached, label, read()).await.unwrap().unwrap().data["K2"].as_slice(), b"value-2");
        assert_eq!(reads.load(Ordering::Relaxed), 1, "what was opened needs no ciphertext");
    }

    /// A proof checks only for the very Secret, label, ciphertexts and values it was made for,
    /// and only while its key is active.
    #[test]
    fn a_proof_holds_for_its_subject_and_active_keys_only() {
        let key = SealingKey::generate(Duration::from_secs(3600)).expect("RSA-4096 key generation");
        let other = SealingKey::generate(Duration::from_secs(3600)).expect("RSA-4096 key generation");
        let ring = KeyRing::default();
        ring.replace(vec![key.clone(), other.clone()], Vec::new());
        let data = [7u8; 32];
        let subject = Proven { namespace: "ns", name: "s", label: b"t", source_hash: "sha256:a", data: &data };
        let by: Vec<Arc<str>> = vec![key.fingerprint().into()];
        let proof = ring.prove(&by, &subject).expect("a proof");
        assert!(proof.starts_with(&format!("v1.{}.", crate::crypto::key_id_hex(&key.certificate().key_id()))));
        assert!(ring.proven(&proof, &subject));
        let other_data = [8u8; 32];
        for (what, changed) in [
            ("namespace", Proven { namespace: "ns2", ..subject }),
            ("name", Proven { name: "s2", ..subject }),
            ("label", Proven { label: b"u", ..subject }),
            ("ciphertexts", Proven { source_hash: "sha256:b", ..subject }),
            ("values", Proven { data: &other_data, ..subject }),
        ] {
            assert!(!ring.proven(&proof, &changed), "{what}");
        }
        // Another key's id on the same MAC, a forged MAC, garbage: nothing.
        let other_id = crate::crypto::key_id_hex(&other.certificate().key_id());
        let mac = proof.rsplit('.').next().unwrap();
        assert!(!ring.proven(&format!("v1.{other_id}.{mac}"), &subject));
        assert!(!ring.proven(&format!("v1.{}.AAAA", crate::crypto::key_id_hex(&key.certificate().key_id())), &subject));
        assert!(!ring.proven("v2.x.y", &subject) && !ring.proven("", &subject));
        // Retired, or removed: the proof proves nothing.
        ring.replace(vec![other.clone()], vec![key.clone()]);
        assert!(!ring.proven(&proof, &subject));
        assert_eq!(ring.prove(&by, &subject), None);
        ring.replace(vec![key.clone(), other], Vec::new());
        assert!(ring.proven(&proof, &subject), "un-retired: it holds again");
    }

    #[tokio::test]
    async fn a_bundle_read_again_must_hold_the_values_cached() {
        let key = SealingKey::generate(Duration::from_secs(3600)).expect("RSA-4096 key generation");
        let label = crate::crypto::label(BundleScope::Cluster, "", "");
        let (mut sealed, cached) = shared(&key, &label);
        let ring = Arc::new(KeyRing::default());
        ring.replace(vec![key], Vec::new());

        let gone = ring.open(&cached, label.clone(), async { Ok(None) }).await.unwrap();
        assert_eq!(gone.unwrap_err().reason(), "BundleNotFound");
        sealed.spec.encrypted_data.insert("K0".into(), sealed.spec.encrypted_data["K1"].clone());
        let changed = ring.open(&cached, label, async { Ok(Some(sealed)) }).await.unwrap_err();
        assert!(matches!(&changed, kube::Error::Api(s) if s.code == 409), "{changed}");
        assert_eq!(ring.decryptions(), 0, "nothing decrypted from a bundle that is not the cached one");
    }
}
