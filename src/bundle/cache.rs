//! Decrypted values, keyed by what determines them: the ciphertext's hash and the OAEP label.
//! A resync of converged tenants then does no RSA decryption at all. Bounded: the oldest
//! entries go first. Cleared whenever the sealing keys change, so a removed key stops opening.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

/// Entries kept at most (a value is typically a few hundred bytes).
pub const CAPACITY: usize = 16_384;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    ciphertext_sha256: [u8; 32],
    label: Vec<u8>,
}

/// A value that opened, with the fingerprint of the key that opened it.
#[derive(Clone)]
pub struct Plain {
    pub bytes: Zeroizing<Vec<u8>>,
    pub fingerprint: String,
}

#[derive(Default)]
pub struct DecryptCache {
    inner: Mutex<Inner>,
    /// Values actually decrypted (cache misses): RSA work done.
    decryptions: AtomicU64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Plain>,
    order: VecDeque<Key>,
}

impl DecryptCache {
    /// The cached plaintext of `ciphertext` under `label`, or `open()`'s result (cached when it
    /// succeeds; failures are never cached, so a new key can fix them).
    pub fn get_or_open<E>(
        &self,
        ciphertext: &str,
        label: &[u8],
        open: impl FnOnce() -> Result<Plain, E>,
    ) -> Result<Plain, E> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ciphertext.as_bytes());
        let key =
            Key { ciphertext_sha256: digest.as_ref().try_into().expect("SHA-256 is 32 bytes"), label: label.to_vec() };
        if let Some(hit) = self.inner.lock().expect("not poisoned").entries.get(&key) {
            return Ok(hit.clone());
        }
        self.decryptions.fetch_add(1, Ordering::Relaxed);
        let plain = open()?;
        let mut inner = self.inner.lock().expect("not poisoned");
        if inner.entries.insert(key.clone(), plain.clone()).is_none() {
            inner.order.push_back(key);
            while inner.order.len() > CAPACITY {
                let oldest = inner.order.pop_front().expect("non-empty");
                inner.entries.remove(&oldest);
            }
        }
        Ok(plain)
    }

    /// How many values were decrypted (not served from the cache) so far.
    pub fn decryptions(&self) -> u64 {
        self.decryptions.load(Ordering::Relaxed)
    }

    pub fn clear(&self) {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.entries.clear();
        inner.order.clear();
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("not poisoned").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(b: &[u8]) -> Result<Plain, ()> {
        Ok(Plain { bytes: Zeroizing::new(b.to_vec()), fingerprint: "fp".into() })
    }

    #[test]
    fn opens_once_per_ciphertext_and_label() {
        let cache = DecryptCache::default();
        let mut opened = 0;
        for _ in 0..3 {
            cache
                .get_or_open("c", b"t", || {
                    opened += 1;
                    plain(b"v")
                })
                .unwrap();
        }
        assert_eq!(opened, 1);
        assert_eq!(cache.decryptions(), 1);
        cache.get_or_open("c", b"other", || plain(b"v")).unwrap();
        assert_eq!(cache.len(), 2, "the label is part of the key");
    }

    #[test]
    fn failures_are_not_cached() {
        let cache = DecryptCache::default();
        assert!(cache.get_or_open("c", b"", || Err::<Plain, _>("no key")).is_err());
        assert!(cache.is_empty());
    }

    #[test]
    fn bounded() {
        let cache = DecryptCache::default();
        for i in 0..CAPACITY + 10 {
            cache.get_or_open(&i.to_string(), b"", || plain(b"v")).unwrap();
        }
        assert_eq!(cache.len(), CAPACITY);
    }
}
