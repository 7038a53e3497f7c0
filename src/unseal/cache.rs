//! Decrypted values, keyed by what determines them: the ciphertext's digest and the OAEP label.
//! A resync of converged tenants then does no RSA decryption at all. Bounded in bytes, not
//! entries (values range from a few bytes to a mebibyte): the oldest entries go first. When the
//! sealing keys change, only what a removed key opened is dropped, so adding a key (rotation)
//! causes no decryption storm while a removed key stops opening at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use super::Digest;

/// Bytes of plaintext (plus bookkeeping) kept at most. A nine-value bundle of typical
/// credentials takes about 1.5 KiB, so this holds thousands of tenants' values.
pub const CAPACITY_BYTES: usize = 16 * 1024 * 1024;

/// What an entry costs beyond its plaintext: the key, the pointer to the shared fingerprint
/// and the maps' own overhead, roughly.
const ENTRY_OVERHEAD: usize = 160;

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

    /// The cached plaintext of the ciphertext of digest `ciphertext` under `label`, or `open()`'s
    /// result (cached when it succeeds; failures are never cached, so a new key can fix them).
    pub fn get_or_open<E>(
        &self,
        ciphertext: &Digest,
        label: &[u8],
        open: impl FnOnce() -> Result<Plain, E>,
    ) -> Result<Plain, E> {
        let key = key(ciphertext, label);
        if let Some(hit) = self.lock().entries.get(&key) {
            return Ok(hit.clone());
        }
        self.decryptions.fetch_add(1, Ordering::Relaxed);
        let mut plain = open()?;
        let size = cost(&plain);
        if size > self.capacity {
            return Ok(plain);
        }
        let mut inner = self.lock();
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
        Ok(plain)
    }

    /// The cached plaintext of the ciphertext of digest `ciphertext` under `label`.
    pub fn get(&self, ciphertext: &Digest, label: &[u8]) -> Option<Plain> {
        self.lock().entries.get(&key(ciphertext, label)).cloned()
    }

    /// Drop what was opened by a key not in `fingerprints` (a removed key must stop opening).
    pub fn retain_keys(&self, fingerprints: &[&str]) {
        let mut inner = self.lock();
        let Inner { entries, order, bytes, fingerprints: shared } = &mut *inner;
        entries.retain(|_, plain| {
            let keep = fingerprints.contains(&&*plain.fingerprint);
            if !keep {
                *bytes -= cost(plain);
            }
            keep
        });
        order.retain(|key| entries.contains_key(key));
        shared.retain(|f| fingerprints.contains(&&**f));
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

    fn plain(b: &[u8]) -> Result<Plain, ()> {
        Ok(Plain { bytes: Zeroizing::new(b.to_vec()), fingerprint: "fp".into() })
    }

    #[test]
    fn opens_once_per_ciphertext_and_label() {
        let cache = DecryptCache::default();
        let mut opened = 0;
        for _ in 0..3 {
            cache
                .get_or_open(&ciphertext_digest("c"), b"t", || {
                    opened += 1;
                    plain(b"v")
                })
                .unwrap();
        }
        assert_eq!(opened, 1);
        assert_eq!(cache.decryptions(), 1);
        cache.get_or_open(&ciphertext_digest("c"), b"other", || plain(b"v")).unwrap();
        assert_eq!(cache.len(), 2, "the label is part of the key");
    }

    #[test]
    fn failures_are_not_cached() {
        let cache = DecryptCache::default();
        assert!(cache.get_or_open(&ciphertext_digest("c"), b"", || Err::<Plain, _>("no key")).is_err());
        assert!(cache.is_empty());
    }

    #[test]
    fn bounded_in_bytes_oldest_first() {
        let cache = DecryptCache::with_capacity(10_000);
        let value = vec![7u8; 1000];
        for i in 0..100 {
            cache.get_or_open(&ciphertext_digest(&i.to_string()), b"", || plain(&value)).unwrap();
        }
        assert!(cache.bytes() <= 10_000, "{} bytes", cache.bytes());
        assert!(cache.len() >= 8, "{} entries", cache.len());
        let before = cache.decryptions();
        cache.get_or_open(&ciphertext_digest("99"), b"", || plain(&value)).unwrap();
        assert_eq!(cache.decryptions(), before, "the newest entry is kept");
        cache.get_or_open(&ciphertext_digest("0"), b"", || plain(&value)).unwrap();
        assert_eq!(cache.decryptions(), before + 1, "the oldest entry went first");
    }

    #[test]
    fn a_value_larger_than_the_cache_is_returned_but_not_kept() {
        let cache = DecryptCache::with_capacity(100);
        assert_eq!(cache.get_or_open(&ciphertext_digest("big"), b"", || plain(&[1; 500])).unwrap().bytes.len(), 500);
        assert!(cache.is_empty());
    }

    #[test]
    fn only_what_a_removed_key_opened_is_dropped() {
        let cache = DecryptCache::default();
        let by = |fp: &str| Ok::<_, ()>(Plain { bytes: Zeroizing::new(b"v".to_vec()), fingerprint: fp.into() });
        cache.get_or_open(&ciphertext_digest("a"), b"", || by("old")).unwrap();
        cache.get_or_open(&ciphertext_digest("b"), b"", || by("new")).unwrap();
        cache.retain_keys(&["old", "new", "newer"]);
        assert_eq!(cache.len(), 2, "adding a key keeps everything");
        cache.retain_keys(&["new"]);
        assert_eq!(cache.len(), 1);
        let before = cache.decryptions();
        cache.get_or_open(&ciphertext_digest("b"), b"", || by("new")).unwrap();
        assert_eq!(cache.decryptions(), before);
        assert_eq!(cache.bytes(), cost(&by("new").unwrap()));
    }

    #[test]
    fn entries_of_one_key_share_its_fingerprint() {
        let cache = DecryptCache::default();
        let a = cache.get_or_open(&ciphertext_digest("a"), b"", || plain(b"v")).unwrap();
        let b = cache.get_or_open(&ciphertext_digest("b"), b"", || plain(b"w")).unwrap();
        assert!(Arc::ptr_eq(&a.fingerprint, &b.fingerprint), "one copy for both entries");
    }
}
