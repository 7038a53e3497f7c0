//! The label-selected caches, indexed by the tenant their objects are labelled for. A reconcile
//! finds its tenant's namespaces, Secrets, Roles and RoleBindings by lookup instead of scanning
//! (and cloning) every cached object, which made a converge of N tenants cost O(N^2).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::api::labels;

/// (namespace, name) of a cached object; no namespace for cluster-scoped ones.
type Key = (Option<String>, String);

#[derive(Default)]
struct Index {
    by_tenant: HashMap<String, BTreeSet<Key>>,
    tenant_of: HashMap<Key, String>,
}

impl Index {
    fn insert(&mut self, key: Key, tenant: Option<&String>) {
        self.remove(&key);
        if let Some(tenant) = tenant {
            self.by_tenant.entry(tenant.clone()).or_default().insert(key.clone());
            self.tenant_of.insert(key, tenant.clone());
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(tenant) = self.tenant_of.remove(key)
            && let Some(keys) = self.by_tenant.get_mut(&tenant)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.by_tenant.remove(&tenant);
            }
        }
    }
}

/// A watch cache and its index by tenant.
pub struct Cached<K: Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    index: Arc<RwLock<Index>>,
    /// Filled while the watch (re)lists; replaces the index once the list is complete, as the
    /// store itself does.
    relisting: Arc<RwLock<Option<Index>>>,
}

impl<K> Cached<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    pub fn new(store: Store<K>) -> Self {
        Self { store, index: Arc::default(), relisting: Arc::default() }
    }

    /// What keeps the index in step: call it with every event of the watch feeding the store.
    pub fn observer(&self) -> impl FnMut(&watcher::Event<K>) + Send + Sync + use<K> {
        let (index, relisting) = (self.index.clone(), self.relisting.clone());
        move |event| {
            let key = |obj: &K| (obj.namespace(), obj.name_any());
            match event {
                watcher::Event::Apply(obj) => write(&index).insert(key(obj), obj.labels().get(labels::TENANT)),
                watcher::Event::Delete(obj) => write(&index).remove(&key(obj)),
                watcher::Event::Init => *write(&relisting) = Some(Index::default()),
                watcher::Event::InitApply(obj) => {
                    if let Some(pending) = write(&relisting).as_mut() {
                        pending.insert(key(obj), obj.labels().get(labels::TENANT));
                    }
                }
                watcher::Event::InitDone => {
                    if let Some(complete) = write(&relisting).take() {
                        *write(&index) = complete;
                    }
                }
            }
        }
    }

    /// The cached objects labelled for `tenant`.
    pub fn of(&self, tenant: &str) -> Vec<Arc<K>> {
        let keys: Vec<Key> = read(&self.index).by_tenant.get(tenant).into_iter().flatten().cloned().collect();
        keys.into_iter()
            .filter_map(|(namespace, name)| {
                let reference = ObjectRef::new(&name);
                self.store.get(&match namespace {
                    Some(namespace) => reference.within(&namespace),
                    None => reference,
                })
            })
            .collect()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use super::*;

    fn secret(namespace: &str, name: &str, tenant: Option<&str>) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some(namespace.into());
        s.metadata.name = Some(name.into());
        s.metadata.labels = tenant.map(|t| [(labels::TENANT.to_string(), t.to_string())].into());
        s
    }

    #[test]
    fn lookups_follow_the_watch() {
        let (store, mut writer) = reflector::store::<Secret>();
        let cached = Cached::new(store);
        let mut observe = cached.observer();
        let mut feed = |event: Event<Secret>| {
            writer.apply_watcher_event(&event);
            observe(&event);
        };
        let names = |c: &Cached<Secret>, t: &str| -> Vec<String> { c.of(t).iter().map(|s| s.name_any()).collect() };
        feed(Event::Init);
        feed(Event::InitApply(secret("a", "one", Some("fin"))));
        feed(Event::InitApply(secret("b", "two", Some("ops"))));
        feed(Event::InitDone);
        assert_eq!(names(&cached, "fin"), ["one"]);
        feed(Event::Apply(secret("a", "three", Some("fin"))));
        assert_eq!(names(&cached, "fin"), ["one", "three"]);
        // Relabelled for another tenant: it moves.
        feed(Event::Apply(secret("a", "one", Some("ops"))));
        assert_eq!(names(&cached, "fin"), ["three"]);
        assert_eq!(names(&cached, "ops"), ["one", "two"]);
        feed(Event::Delete(secret("a", "three", Some("fin"))));
        assert!(names(&cached, "fin").is_empty());
        // A relist replaces the index once it is complete.
        feed(Event::Init);
        feed(Event::InitApply(secret("c", "four", Some("fin"))));
        assert_eq!(names(&cached, "ops"), ["one", "two"], "the old index serves until InitDone");
        feed(Event::InitDone);
        assert_eq!(names(&cached, "fin"), ["four"]);
        assert!(names(&cached, "ops").is_empty());
    }
}
