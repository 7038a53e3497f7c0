//! Decrypted values, keyed by what determines them: the ciphertext's digest and the OAEP label.
//! A resync of converged tenants then does no RSA decryption at all. Bounded in bytes, not
//! entries (values range from a few bytes to a mebibyte): the oldest entries go first. When the
//! sealing keys change, only what a removed key opened is dropped, so adding a key (rotation)
//! causes no decryption storm while a removed key stops opening at once.
//!
//! Values that did not open are kept too, with why (a bounded number of them), until the set of
//! keys changes: a failure depends on the ciphertext, the label and the keys alone, so a bundle
//! of 128 values that open nothing costs its RSA work once per key set, not once per reconcile
//! of every tenant that uses it. Each set of keys has a generation ([`crate::unseal::Keys`]): only
//! what was opened or refused with the current one is kept, so an opening that started before a
//! key was retired or removed never leaves behind what that key opened.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use super::Digest;
use crate::crypto::Refused;

/// Bytes of plaintext (plus bookkeeping) kept at most. A nine-value bundle of typical
/// credentials takes about 1.5 KiB, so this holds thousands of tenants' values.
pub const CAPACITY_BYTES: usize = 16 * 1024 * 1024;

/// What an entry costs beyond its plaintext: the key, the pointer to the shared fingerprint
/// and the maps' own overhead, roughly.
const ENTRY_OVERHEAD: usize = 160;

/// Failures kept at most: every value of a 1,000-tenant fleet of nine-value bundles whose key
/// was retired (9,000), with room to spare. Each takes at most about 400 bytes (its key twice,
/// a reason, at most 16 key ids, a retired key's fingerprint): 6.5 MiB at most.
pub const FAILURES_KEPT: usize = 16 * 1024;
const _: () = assert!(FAILURES_KEPT >= 9 * 1000, "every value of a 1,000-tenant fleet of nine-value bundles");

/// An entry's key: SHA-256 of the ciphertext's digest followed by the label (the digest has a
/// fixed length, so no two pairs give the same bytes). Thirty-two bytes kept twice (map and
/// eviction order) instead of the label's own allocation twice, whatever the label's length.
type Key = Digest;

/// A value that opened, with the fingerprint of the key that opened it.
#[derive(Clone)]
pub struct Plain {
    pub bytes: Zeroizing<Vec<u8>>,
    pub fingerprint: Arc<str>,
}

pub struct DecryptCache {
    inner: Mutex<Inner>,
    capacity: usize,
    /// Values actually decrypted (cache misses): RSA work done.
    decryptions: AtomicU64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Plain>,
    order: VecDeque<Key>,
    bytes: usize,
    /// One copy of each key's fingerprint, which the entries it opened share (there are few
    /// keys and thousands of entries).
    fingerprints: Vec<Arc<str>>,
    /// The generation of the key set the entries and failures were made with.
    generation: u64,
    /// Values that did not open with this generation's keys, oldest first out.
    failures: HashMap<Key, Refused>,
    failure_order: VecDeque<Key>,
}

impl Inner {
    fn shared(&mut self, fingerprint: &Arc<str>) -> Arc<str> {
        if let Some(known) = self.fingerprints.iter().find(|f| ***f == **fingerprint) {
            return known.clone();
        }
        self.fingerprints.push(fingerprint.clone());
        fingerprint.clone()
    }
}

impl Default for DecryptCache {
    fn default() -> Self {
        Self::with_capacity(CAPACITY_BYTES)
    }
}

fn key(ciphertext: &Digest, label: &[u8]) -> Key {
    crate::text::sha256(&[ciphertext, label])
}

fn cost(plain: &Plain) -> usize {
    plain.bytes.len() + ENTRY_OVERHEAD
}

impl DecryptCache {
    pub fn with_capacity(bytes: usize) -> Self {
        Self { inner: Mutex::default(), capacity: bytes, decryptions: AtomicU64::new(0) }
    }

    /// The cached plaintext of the ciphertext of digest `ciphertext` under `label`, or why it
    /// did not open, or `open()`'s result, kept when `generation` (of the keys `open` uses) is
    /// the cache's.
    pub fn get_or_open(
        &self,
        ciphertext: &Digest,
        label: &[u8],
        generation: u64,
        open: impl FnOnce() -> Result<Plain, Refused>,
    ) -> Result<Plain, Refused> {
        let key = key(ciphertext, label);
        if let Some(known) = self.lookup(&key) {
            return known;
        }
        self.decryptions.fetch_add(1, Ordering::Relaxed);
        let mut opened = open();
        let mut inner = self.lock();
        if inner.generation != generation {
            // Opened with keys that are not the current ones: used once, never kept.
            return opened;
        }
        match &mut opened {
            Ok(plain) => {
                let size = cost(plain);
                if size > self.capacity {
                    return opened;
                }
                plain.fingerprint = inner.shared(&plain.fingerprint);
                if inner.entries.insert(key, plain.clone()).is_none() {
                    inner.order.push_back(key);
                    inner.bytes += size;
                    while inner.bytes > self.capacity {
                        let Some(oldest) = inner.order.pop_front() else { break };
                        if let Some(gone) = inner.entries.remove(&oldest) {
                            inner.bytes -= cost(&gone);
                        }
                    }
                }
            }
            Err(refused) if self.capacity > 0 => {
                if inner.failures.insert(key, refused.clone()).is_none() {
                    inner.failure_order.push_back(key);
                    while inner.failures.len() > FAILURES_KEPT {
                        let Some(oldest) = inner.failure_order.pop_front() else { break };
                        inner.failures.remove(&oldest);
                    }
                }
            }
            Err(_) => {}
        }
        opened
    }

    /// What is known of the ciphertext of digest `ciphertext` under `label`: its plaintext, or
    /// why it does not open with the current keys; None when it has to be opened.
    pub fn get(&self, ciphertext: &Digest, label: &[u8]) -> Option<Result<Plain, Refused>> {
        self.lookup(&key(ciphertext, label))
    }

    fn lookup(&self, key: &Key) -> Option<Result<Plain, Refused>> {
        let inner = self.lock();
        if let Some(hit) = inner.entries.get(key) {
            return Some(Ok(hit.clone()));
        }
        inner.failures.get(key).map(|refused| Err(refused.clone()))
    }

    /// The keys changed (generation `generation`): drop what was opened by a key not in
    /// `fingerprints` (a removed or retired key must stop opening) and every failure (a new key
    /// may open it, an un-retired one will).
    pub fn retain_keys(&self, fingerprints: &[&str], generation: u64) {
        let mut inner = self.lock();
        let Inner { entries, order, bytes, fingerprints: shared, generation: current, failures, failure_order } =
            &mut *inner;
        entries.retain(|_, plain| {
            let keep = fingerprints.contains(&&*plain.fingerprint);
            if !keep {
                *bytes -= cost(plain);
            }
            keep
        });
        order.retain(|key| entries.contains_key(key));
        shared.retain(|f| fingerprints.contains(&&**f));
        failures.clear();
        failure_order.clear();
        *current = generation;
    }

    /// Failures kept.
    pub fn failures(&self) -> usize {
        self.lock().failures.len()
    }

    /// How many values were decrypted (not served from the cache) so far.
    pub fn decryptions(&self) -> u64 {
        self.decryptions.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes accounted to the entries held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent (every update is one call).
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unseal::ciphertext_digest;

    fn plain(b: &[u8]) -> Result<Plain, Refused> {
        Ok(Plain { bytes: Zeroizing::new(b.to_vec()), fingerprint: "fp".into() })
    }

    #[test]
    fn opens_once_per_ciphertext_and_label() {
        let cache = DecryptCache::default();
        let mut opened = 0;
        for _ in 0..3 {
            cache
                .get_or_open(&ciphertext_digest("c"), b"t", 0, || {
                    opened += 1;
                    plain(b"v")
                })
                .unwrap();
        }
        assert_eq!(opened, 1);
        assert_eq!(cache.decryptions(), 1);
        cache.get_or_open(&ciphertext_digest("c"), b"other", 0, || plain(b"v")).unwrap();
        assert_eq!(cache.len(), 2, "the label is part of the key");
    }

    fn refused() -> Result<Plain, Refused> {
        Err(crate::crypto::OpenError::NoKeyCouldDecrypt.into())
    }

    /// A failure is kept until the keys change (a new key may open it), and only so many.
    #[test]
    fn failures_are_kept_until_the_keys_change() {
        let cache = DecryptCache::default();
        let mut tried = 0;
        for _ in 0..3 {
            let result = cache.get_or_open(&ciphertext_digest("c"), b"", 0, || {
                tried += 1;
                refused()
            });
            assert_eq!(result.err().map(|r| r.error), Some(crate::crypto::OpenError::NoKeyCouldDecrypt));
        }
        assert_eq!((tried, cache.failures(), cache.len()), (1, 1, 0), "tried once, nothing opened");
        cache.retain_keys(&["fp"], 1);
        assert_eq!(cache.failures(), 0, "a new key set forgets every failure");
        assert!(cache.get_or_open(&ciphertext_digest("c"), b"", 1, || plain(b"v")).is_ok(), "the new key opens it");
        for i in 0..FAILURES_KEPT + 10 {
            let _ = cache.get_or_open(&ciphertext_digest(&i.to_string()), b"", 1, refused);
        }
        assert_eq!(cache.failures(), FAILURES_KEPT);
    }

    /// An opening that started with an older key set (a key retired meanwhile) keeps nothing:
    /// what a retired key opened is never served from the cache.
    #[test]
    fn what_older_keys_opened_is_never_kept() {
        let cache = DecryptCache::default();
        cache.retain_keys(&["fp"], 2);
        assert!(cache.get_or_open(&ciphertext_digest("a"), b"", 1, || plain(b"v")).is_ok(), "used once");
        let _ = cache.get_or_open(&ciphertext_digest("b"), b"", 1, refused);
        assert!(cache.is_empty() && cache.failures() == 0, "nothing kept");
        assert!(cache.get(&ciphertext_digest("a"), b"").is_none());
    }

    #[test]
    fn bounded_in_bytes_oldest_first() {
        let cache = DecryptCache::with_capacity(10_000);
        let value = vec![7u8; 1000];
        for i in 0..100 {
            cache.get_or_open(&ciphertext_digest(&i.to_string()), b"", 0, || plain(&value)).unwrap();
        }
        assert!(cache.bytes() <= 10_000, "{} bytes", cache.bytes());
        assert!(cache.len() >= 8, "{} entries", cache.len());
        let before = cache.decryptions();
        cache.get_or_open(&ciphertext_digest("99"), b"", 0, || plain(&value)).unwrap();
        assert_eq!(cache.decryptions(), before, "the newest entry is kept");
        cache.get_or_open(&ciphertext_digest("0"), b"", 0, || plain(&value)).unwrap();
        assert_eq!(cache.decryptions(), before + 1, "the oldest entry went first");
    }

    /// A value that fills the cache exactly is kept; the default cache holds megabytes.
    #[test]
    fn the_capacity_is_what_it_says() {
        let cache = DecryptCache::with_capacity(100 + ENTRY_OVERHEAD);
        cache.get_or_open(&ciphertext_digest("fits"), b"", 0, || plain(&[1; 100])).unwrap();
        assert_eq!((cache.len(), cache.bytes()), (1, 100 + ENTRY_OVERHEAD));
        let cache = DecryptCache::default();
        let value = vec![1u8; 5 * 1024 * 1024];
        for name in ["a", "b", "c"] {
            cache.get_or_open(&ciphertext_digest(name), b"", 0, || plain(&value)).unwrap();
        }
        assert_eq!(cache.len(), 3, "15 MiB of values fit in the default 16 MiB");
    }

    /// A cache of no capacity (re-sealing's) keeps nothing, not even failures.
    #[test]
    fn a_cache_of_no_capacity_keeps_nothing() {
        let cache = DecryptCache::with_capacity(0);
        let _ = cache.get_or_open(&ciphertext_digest("c"), b"", 0, refused);
        cache.get_or_open(&ciphertext_digest("d"), b"", 0, || plain(b"v")).unwrap();
        assert_eq!((cache.failures(), cache.len()), (0, 0));
    }

    #[test]
    fn a_value_larger_than_the_cache_is_returned_but_not_kept() {
        let cache = DecryptCache::with_capacity(100);
        assert_eq!(cache.get_or_open(&ciphertext_digest("big"), b"", 0, || plain(&[1; 500])).unwrap().bytes.len(), 500);
        assert!(cache.is_empty());
    }

    #[test]
    fn only_what_a_removed_key_opened_is_dropped() {
        let cache = DecryptCache::default();
        let by = |fp: &str| Ok::<_, Refused>(Plain { bytes: Zeroizing::new(b"v".to_vec()), fingerprint: fp.into() });
        cache.get_or_open(&ciphertext_digest("a"), b"", 0, || by("old")).unwrap();
        cache.get_or_open(&ciphertext_digest("b"), b"", 0, || by("new")).unwrap();
        cache.retain_keys(&["old", "new", "newer"], 0);
        assert_eq!(cache.len(), 2, "adding a key keeps everything");
        cache.retain_keys(&["new"], 0);
        assert_eq!(cache.len(), 1);
        let before = cache.decryptions();
        cache.get_or_open(&ciphertext_digest("b"), b"", 0, || by("new")).unwrap();
        assert_eq!(cache.decryptions(), before);
        assert_eq!(cache.bytes(), cost(&by("new").unwrap()));
    }

    #[test]
    fn entries_of_one_key_share_its_fingerprint() {
        let cache = DecryptCache::default();
        let a = cache.get_or_open(&ciphertext_digest("a"), b"", 0, || plain(b"v")).unwrap();
        let b = cache.get_or_open(&ciphertext_digest("b"), b"", 0, || plain(b"w")).unwrap();
        assert!(Arc::ptr_eq(&a.fingerprint, &b.fingerprint), "one copy for both entries");
    }
}
