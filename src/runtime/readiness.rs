//! Whether this process is ready (`/readyz`): every watch cache it runs holds its initial list.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Whether every live watch cache has received its initial list (what `/readyz` reports).
/// Flags are held weakly: when the controllers stop (leadership lost), their caches and flags
/// go, and a standby is ready on what it still runs (the sealing keys).
#[derive(Default)]
pub struct Readiness {
    caches: Mutex<Vec<Weak<AtomicBool>>>,
}

impl Readiness {
    /// A new flag that must be raised before the process reports ready, as long as it is held.
    pub fn track(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        let mut caches = self.caches.lock().expect("not poisoned");
        caches.retain(|c| c.strong_count() > 0);
        caches.push(Arc::downgrade(&flag));
        flag
    }

    pub fn is_ready(&self) -> bool {
        let caches = self.caches.lock().expect("not poisoned");
        let live: Vec<Arc<AtomicBool>> = caches.iter().filter_map(Weak::upgrade).collect();
        !live.is_empty() && live.iter().all(|c| c.load(Ordering::Acquire))
    }
}
