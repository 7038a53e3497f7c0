//! A fixed set of async locks, one picked by a key's hash: work on the same key is serialised
//! without keeping a lock per key (keys come from specs, so their number is unbounded). Two
//! different keys share a lock with probability 1/stripes, which only costs a wait.

use std::hash::{DefaultHasher, Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

pub struct Striped {
    locks: Vec<Mutex<()>>,
}

impl Striped {
    pub fn new(stripes: usize) -> Self {
        Self { locks: (0..stripes.max(1)).map(|_| Mutex::new(())).collect() }
    }

    /// Hold this while working on `key`.
    pub async fn lock(&self, key: impl Hash) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        self.locks[hasher.finish() as usize % self.locks.len()].lock().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_same_key_waits_and_another_stripe_does_not() {
        let striped = Striped::new(64);
        let held = striped.lock("a").await;
        let same = tokio::time::timeout(Duration::from_millis(50), striped.lock("a")).await;
        assert!(same.is_err(), "a second holder of the same key got the lock");
        // Some key lands on another stripe; it is not held up by "a".
        let other = (0..64)
            .map(|i| format!("k{i}"))
            .find(|k| futures::FutureExt::now_or_never(striped.lock(k.as_str())).is_some());
        assert!(other.is_some(), "every stripe was held");
        drop(held);
        assert!(futures::FutureExt::now_or_never(striped.lock("a")).is_some(), "released");
    }
}
