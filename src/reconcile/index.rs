//! The label-selected caches of what tenants own, indexed by the tenant their objects are
//! labelled for. A reconcile finds its tenant's namespaces, Secrets, Roles and RoleBindings by
//! lookup instead of scanning (and cloning) every cached object, which made a converge of N
//! tenants cost O(N^2).
//!
//! Each object is kept as the JSON of its trimmed form and read back when a reconcile asks for
//! it. As k8s-openapi structs a trimmed Secret of nine values took about 2.4 KiB (a B-tree node
//! per label and annotation map, a heap string per field); as JSON it takes about 1 KiB. At
//! 1,000 tenants the 15,000 children were most of the operator's heap. The JSON is kept LZ4-
//! compressed against the first object the index cached, which spells out the same field names,
//! label keys and owner as every other object of its kind: a managed Secret then takes about
//! 450 bytes, mostly its digests, UIDs and hashes. A reconcile reads one tenant's dozen
//! objects, so reading them back costs microseconds.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::guard::Guarded;
use crate::api::labels;

/// (namespace, name) of a cached object; no namespace for cluster-scoped ones.
type Key = (Option<String>, String);

/// How much of the first object's JSON the dictionary keeps (an object of a few KiB, unless a
/// Secret holds a large value).
const DICTIONARY_BYTES: usize = 16 * 1024;

/// A cached object: the tenant it is labelled for, and its JSON compressed against the
/// dictionary.
struct Entry {
    tenant: Option<String>,
    packed: Box<[u8]>,
}

#[derive(Default)]
struct Index {
    objects: HashMap<Key, Entry>,
    by_tenant: HashMap<String, BTreeSet<Key>>,
    /// The start of the first cached object's JSON; fixed from then on, since every entry is
    /// compressed against it. A relist builds a new index, and so a new dictionary.
    dictionary: Vec<u8>,
}

impl Index {
    fn insert<K: Resource + Serialize>(&mut self, obj: &K) {
        let key = key(obj);
        self.remove(&key);
        let Ok(json) = serde_json::to_vec(obj) else {
            // Not expected of an object that came as JSON; without an entry it is read live.
            tracing::error!(name = %key.1, "a watched object could not be cached");
            return;
        };
        if self.dictionary.is_empty() {
            self.dictionary = json[..json.len().min(DICTIONARY_BYTES)].to_vec();
        }
        let packed = lz4_flex::block::compress_prepend_size_with_dict(&json, &self.dictionary);
        let tenant = obj.labels().get(labels::TENANT).cloned();
        if let Some(tenant) = &tenant {
            self.by_tenant.entry(tenant.clone()).or_default().insert(key.clone());
        }
        self.objects.insert(key, Entry { tenant, packed: packed.into_boxed_slice() });
    }

    fn remove(&mut self, key: &Key) {
        if let Some(Entry { tenant: Some(tenant), .. }) = self.objects.remove(key)
            && let Some(keys) = self.by_tenant.get_mut(&tenant)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.by_tenant.remove(&tenant);
            }
        }
    }

    fn load<K: DeserializeOwned>(&self, key: &Key) -> Option<Arc<K>> {
        let entry = self.objects.get(key)?;
        let json = lz4_flex::block::decompress_size_prepended_with_dict(&entry.packed, &self.dictionary).ok();
        match json.and_then(|json| serde_json::from_slice(&json).ok()) {
            Some(obj) => Some(Arc::new(obj)),
            None => {
                tracing::error!(name = %key.1, "a cached object could not be read back");
                None
            }
        }
    }
}

fn key<K: Resource>(obj: &K) -> Key {
    (obj.namespace(), obj.name_any())
}

/// What the caches hold: a Kubernetes object that goes to JSON and back.
pub trait Child:
    Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
}

impl<K> Child for K where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
}

/// A watch cache and its index by tenant.
pub struct Cached<K> {
    index: Arc<RwLock<Index>>,
    /// Filled while the watch (re)lists; replaces the index once the list is complete, so that
    /// objects deleted while the watch was down drop out.
    relisting: Arc<RwLock<Option<Index>>>,
    kind: std::marker::PhantomData<fn() -> K>,
}

impl<K> Default for Cached<K> {
    fn default() -> Self {
        Self { index: Arc::default(), relisting: Arc::default(), kind: std::marker::PhantomData }
    }
}

impl<K: Child> Cached<K> {
    /// What keeps the cache in step: call it with every event of the (guarded) watch feeding
    /// it. Only objects `claimed` are kept; one no longer claimed, or no longer readable, is
    /// dropped.
    pub fn observer<F>(&self, claimed: F) -> impl FnMut(&watcher::Event<Guarded<K>>) + Send + Sync + use<K, F>
    where
        F: Fn(&K) -> bool + Send + Sync + 'static,
    {
        let (index, relisting) = (self.index.clone(), self.relisting.clone());
        move |event| match event {
            watcher::Event::Apply(Guarded(Ok(obj))) if claimed(obj) => write(&index).insert(obj),
            watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => write(&index).remove(&key(obj)),
            watcher::Event::Init => *write(&relisting) = Some(Index::default()),
            watcher::Event::InitApply(Guarded(Ok(obj))) if claimed(obj) => {
                if let Some(pending) = write(&relisting).as_mut() {
                    pending.insert(obj);
                }
            }
            watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                if let Some(complete) = write(&relisting).take() {
                    *write(&index) = complete;
                }
            }
        }
    }

    /// The cached objects labelled for `tenant`.
    pub fn of(&self, tenant: &str) -> Vec<Arc<K>> {
        let index = read(&self.index);
        index.by_tenant.get(tenant).into_iter().flatten().filter_map(|key| index.load(key)).collect()
    }

    /// The cached object `name` (in `namespace`, for a namespaced kind).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        read(&self.index).load(&(namespace.map(str::to_owned), name.to_owned()))
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
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::reconcile::guard::Unreadable;

    fn ok(s: Secret) -> Guarded<Secret> {
        Guarded(Ok(s))
    }

    /// Every object counts as claimed.
    fn all(_: &Secret) -> bool {
        true
    }

    fn secret(namespace: &str, name: &str, tenant: Option<&str>) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some(namespace.into());
        s.metadata.name = Some(name.into());
        s.metadata.labels = tenant.map(|t| [(labels::TENANT.to_string(), t.to_string())].into());
        s
    }

    #[test]
    fn lookups_follow_the_watch() {
        let cached = Cached::<Secret>::default();
        let mut observe = cached.observer(all);
        let mut feed = |event: Event<Secret>| {
            observe(&match event {
                Event::Apply(s) => Event::Apply(ok(s)),
                Event::Delete(s) => Event::Delete(ok(s)),
                Event::InitApply(s) => Event::InitApply(ok(s)),
                Event::Init => Event::Init,
                Event::InitDone => Event::InitDone,
            })
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

    #[test]
    fn an_object_reads_back_as_it_was_cached() {
        let cached = Cached::<Secret>::default();
        let mut stored = secret("a", "one", Some("fin"));
        stored.metadata.annotations = Some([("mltenant.io/applied".to_string(), "sha256:00".to_string())].into());
        stored.metadata.uid = Some("uid-1".into());
        stored.type_ = Some("Opaque".into());
        stored.data = Some([("password".to_string(), k8s_openapi::ByteString(vec![0, 159, 255]))].into());
        cached.observer(all)(&Event::Apply(ok(stored.clone())));
        assert_eq!(cached.get(Some("a"), "one").as_deref(), Some(&stored));
        assert_eq!(cached.of("fin").first().map(|s| &**s), Some(&stored));
        assert_eq!(cached.get(Some("b"), "one"), None);
        assert_eq!(cached.get(None, "one"), None);
    }

    /// A Secret as the operator writes them: the same keys, labels and owner in every tenant.
    fn managed(tenant: &str, uid: &str, value: u8) -> Secret {
        let mut s = secret(&format!("{tenant}-dev"), "ml-platform", Some(tenant));
        let labels = s.metadata.labels.get_or_insert_default();
        labels.extend(labels::managed(tenant, "dev"));
        s.metadata.annotations = Some([(labels::APPLIED.to_string(), format!("sha256:{uid}"))].into());
        s.metadata.uid = Some(uid.into());
        s.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "mltenant.io/v1alpha1".into(),
            kind: "MLTenant".into(),
            name: tenant.into(),
            uid: format!("{uid}-tenant"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        let keys = ["MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MLFLOW_TRACKING_URI"];
        s.data =
            Some(keys.iter().map(|k| (k.to_string(), k8s_openapi::ByteString(vec![value, k.len() as u8]))).collect());
        s
    }

    #[test]
    fn objects_are_kept_compressed_against_the_first() {
        let cached = Cached::<Secret>::default();
        let mut observe = cached.observer(all);
        observe(&Event::Apply(ok(managed("fin", "1b4e28ba-2fa1-11d2-883f-0016d3cca427", 1))));
        let second = managed("ops", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", 2);
        observe(&Event::Apply(ok(second.clone())));
        let json = serde_json::to_vec(&second).unwrap().len();
        let key = (second.metadata.namespace.clone(), "ml-platform".to_string());
        let packed = read(&cached.index).objects[&key].packed.len();
        assert!(packed * 2 < json, "{packed} bytes kept for {json} of JSON");
        assert_eq!(cached.get(Some("ops-dev"), "ml-platform").as_deref(), Some(&second));
    }

    #[test]
    fn a_first_object_larger_than_the_dictionary_reads_back() {
        let cached = Cached::<Secret>::default();
        let mut large = secret("a", "large", Some("fin"));
        large.data =
            Some([("blob".to_string(), k8s_openapi::ByteString((0..=255).cycle().take(64 * 1024).collect()))].into());
        let small = managed("fin", "uid", 3);
        cached.observer(all)(&Event::Apply(ok(large.clone())));
        cached.observer(all)(&Event::Apply(ok(small.clone())));
        assert_eq!(read(&cached.index).dictionary.len(), DICTIONARY_BYTES);
        assert_eq!(cached.get(Some("a"), "large").as_deref(), Some(&large));
        assert_eq!(cached.get(Some("fin-dev"), "ml-platform").as_deref(), Some(&small));
    }

    #[test]
    fn only_claimed_and_readable_objects_are_kept() {
        let cached = Cached::<Secret>::default();
        let mut observe = cached.observer(|s: &Secret| s.metadata.name.as_deref() != Some("forged"));
        observe(&Event::Apply(ok(secret("a", "wanted", Some("fin")))));
        observe(&Event::Apply(ok(secret("a", "forged", Some("fin")))));
        assert!(cached.get(Some("a"), "forged").is_none(), "nobody claims it: not kept");
        assert!(cached.get(Some("a"), "wanted").is_some());
        // The same object, now unreadable: dropped, not left as it was.
        let metadata = Box::new(secret("a", "wanted", Some("fin")).metadata);
        let unreadable = Unreadable { metadata, field: "data.K".into() };
        observe(&Event::Apply(Guarded(Err(unreadable.clone()))));
        assert!(cached.get(Some("a"), "wanted").is_none());
        observe(&Event::Init);
        observe(&Event::InitApply(Guarded(Err(unreadable))));
        observe(&Event::InitApply(ok(secret("a", "forged", Some("fin")))));
        observe(&Event::InitApply(ok(secret("a", "other", Some("fin")))));
        observe(&Event::InitDone);
        assert_eq!(cached.of("fin").iter().map(|s| s.name_any()).collect::<Vec<_>>(), ["other"]);
    }
}
