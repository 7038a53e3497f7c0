//! What the operator created for a tenant, by UID (`status.owned`): the facts its destructive
//! decisions rest on. A namespace is deleted, and a Secret, Role or RoleBinding updated or
//! deleted, only when its UID is the one recorded here when the operator created it (or, for a
//! namespace, adopted it with its owner's consent). Labels, annotations and ownerReferences can
//! be set by anyone allowed to patch the object, so they are hints (for messages, for the
//! label-selected watches), never proof: otherwise a patch of one namespace's labels would turn
//! into its deletion. And because the record does not depend on ownerReferences, revocation is
//! complete whatever the deletion propagation (an orphaning delete strips them first).
//!
//! An entry is written before its create is sent (without a UID: "in flight") and completed
//! with the UID from the create's answer; an entry still in flight when a reconcile starts (the
//! operator stopped in between) is settled by looking at the object: one carrying the
//! operator's labels and this tenant's ownerReference is the one it created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{live, publish};
use crate::api::labels;
use crate::api::limits::Protected;
use crate::api::{MLTenant, OwnedKind, OwnedObject};
use crate::reconcile::context::Context;

/// An object's place: its kind, namespace (empty for a namespace) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: OwnedKind,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn namespace(name: &str) -> Self {
        Key { kind: OwnedKind::Namespace, namespace: String::new(), name: name.to_owned() }
    }

    pub fn child(kind: OwnedKind, namespace: &str, name: &str) -> Self {
        Key { kind, namespace: namespace.to_owned(), name: name.to_owned() }
    }

    /// The namespace the object lives in (a namespace: itself).
    pub fn home(&self) -> &str {
        if self.kind == OwnedKind::Namespace { &self.name } else { &self.namespace }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            OwnedKind::Namespace => write!(f, "Namespace {}", self.name),
            kind => write!(f, "{kind:?} {}/{}", self.namespace, self.name),
        }
    }
}

/// What is recorded of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `None` while its create is in flight.
    pub uid: Option<String>,
    /// A namespace adopted, not created.
    pub adopted: bool,
}

/// A tenant's record of what the operator created for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    entries: BTreeMap<Key, Entry>,
}

impl Inventory {
    /// The record as a status holds it.
    pub fn from_status(owned: &[OwnedObject]) -> Self {
        let entries = owned.iter().map(|o| {
            let key = Key { kind: o.kind, namespace: o.namespace.clone().unwrap_or_default(), name: o.name.clone() };
            (key, Entry { uid: o.uid.clone(), adopted: o.adopted })
        });
        Inventory { entries: entries.collect() }
    }

    /// The record as the status gets it.
    pub fn to_status(&self) -> Vec<OwnedObject> {
        let owned = self.entries.iter().map(|(key, entry)| OwnedObject {
            kind: key.kind,
            namespace: (key.kind != OwnedKind::Namespace).then(|| key.namespace.clone()),
            name: key.name.clone(),
            uid: entry.uid.clone(),
            adopted: entry.adopted,
        });
        owned.collect()
    }

    pub fn get(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The recorded UID at `key` (none while in flight).
    pub fn uid(&self, key: &Key) -> Option<&str> {
        self.entries.get(key)?.uid.as_deref()
    }

    /// Whether `meta` is the object recorded at `key`: the same UID.
    pub fn owns(&self, key: &Key, meta: &ObjectMeta) -> bool {
        meta.uid.as_deref().is_some_and(|uid| self.uid(key) == Some(uid))
    }

    /// The entries of `kind`.
    pub fn of(&self, kind: OwnedKind) -> impl Iterator<Item = (&Key, &Entry)> {
        self.entries.iter().filter(move |(key, _)| key.kind == kind)
    }

    /// The entries whose create is in flight.
    pub fn in_flight(&self) -> Vec<Key> {
        self.entries.iter().filter(|(_, e)| e.uid.is_none()).map(|(k, _)| k.clone()).collect()
    }

    /// Put `key` in flight: about to be created (in place of what was recorded there, if
    /// anything: it was deleted, or is being replaced) or, a namespace, `adopted`. Whether that
    /// changed the record.
    pub fn intend(&mut self, key: &Key, adopted: bool) -> bool {
        let entry = Entry { uid: None, adopted };
        if self.entries.get(key) == Some(&entry) {
            return false;
        }
        self.entries.insert(key.clone(), entry);
        true
    }

    /// Record `uid` at `key`: created, or adopted (a namespace).
    pub fn record(&mut self, key: Key, uid: String, adopted: bool) {
        self.entries.insert(key, Entry { uid: Some(uid), adopted });
    }

    /// The object at `key` is gone, or not ours after all.
    pub fn forget(&mut self, key: &Key) {
        self.entries.remove(key);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An inventory shared by the writes of one reconcile (sent together, recorded as they
/// succeed), and the creates it sent.
#[derive(Debug)]
pub struct Records {
    inventory: Mutex<Inventory>,
    sent: Mutex<BTreeSet<Key>>,
    /// The tenant's version every status write of the reconcile is made onto.
    pub version: publish::Version,
}

impl Records {
    /// The reconcile of a tenant at `version`, whose inventory is `inventory`.
    pub fn new(inventory: Inventory, version: Option<String>) -> Self {
        Records { inventory: Mutex::new(inventory), sent: Mutex::default(), version: publish::Version::new(version) }
    }

    /// Read or change the inventory (never held across an await).
    pub fn with<T>(&self, f: impl FnOnce(&mut Inventory) -> T) -> T {
        f(&mut self.inventory.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn snapshot(&self) -> Inventory {
        self.with(|inventory| inventory.clone())
    }

    /// The objects of `kinds` on record (in that order of kinds) that are to be revoked: not in
    /// `keep` (namespace, name), not in a protected namespace; with their UIDs.
    pub fn revocable(
        &self,
        kinds: &[OwnedKind],
        keep: &BTreeSet<(String, String)>,
        protected: &Protected,
    ) -> Vec<(Key, String)> {
        self.with(|inventory| {
            let recorded = kinds.iter().flat_map(|kind| inventory.of(*kind));
            let uids = recorded.filter_map(|(key, entry)| Some((key.clone(), entry.uid.clone()?)));
            uids.filter(|(key, _)| revocable(key, keep, protected)).collect()
        })
    }

    /// A create (or adoption) of `key` is being sent: if its answer is lost, the object may
    /// exist, so its entry stays in flight to be settled by the next reconcile.
    pub fn sending(&self, key: &Key) {
        self.sent.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone());
    }

    /// The inventory once the reconcile's writes are done: what it put in flight and never
    /// sent (it turned out not to be needed) is dropped.
    pub fn finish(&self) -> Inventory {
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner).clone();
        self.with(|inventory| {
            inventory.entries.retain(|key, entry| entry.uid.is_some() || sent.contains(key));
            inventory.clone()
        })
    }
}

/// Whether the recorded object at `key` is to be deleted (revoked): not in `keep` (namespace,
/// name) and not in a protected namespace; no IO.
pub fn revocable(key: &Key, keep: &BTreeSet<(String, String)>, protected: &Protected) -> bool {
    !protected.contains(&key.namespace) && !keep.contains(&(key.namespace.clone(), key.name.clone()))
}

/// The proof an earlier operator version used, and the operator's own mark on what it creates:
/// its labels for `tenant` and `tenant`'s ownerReference (a namespace: its tenant-uid annotation
/// or ownerReference). Trusted only for an entry in flight (this operator sent its create) and,
/// once, for a tenant reconciled before the inventory existed ([`carried_over`]).
pub fn marked_for(meta: &ObjectMeta, kind: OwnedKind, tenant: &MLTenant) -> bool {
    let Some(uid) = tenant.metadata.uid.as_deref() else { return false };
    let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str);
    let owner = meta.owner_references.iter().flatten().any(|o| o.uid == uid);
    match kind {
        OwnedKind::Namespace => {
            label(labels::TENANT).is_none_or(|t| t == tenant.name_any())
                && (owner
                    || meta.annotations.as_ref().and_then(|a| a.get(labels::TENANT_UID)).map(String::as_str)
                        == Some(uid))
        }
        _ => {
            label(labels::MANAGED_BY_KEY) == Some(labels::MANAGED_BY)
                && label(labels::TENANT) == Some(tenant.name_any().as_str())
                && owner
        }
    }
}

/// Whether `tenant` was reconciled by an operator from before the inventory: it has a status
/// but no `owned`. Its objects are taken over once by their marks ([`marked_for`]); a new
/// tenant (no status yet) never is.
pub fn carried_over(tenant: &MLTenant) -> bool {
    tenant.status.as_ref().is_some_and(|s| s.owned.is_none() && s.observed_generation.is_some())
}

/// The tenant's inventory as a reconcile starts: this replica's own copy if it has one (while it
/// leads it is the only writer, and the cache may not have caught up with its last write), else
/// the status's, else, for a tenant reconciled before the inventory existed, what carries the
/// operator's marks. Entries still in flight are settled against the objects.
pub async fn load(tenant: &MLTenant, ctx: &Context) -> kube::Result<Inventory> {
    let known = ctx.inventory(&tenant.uid().unwrap_or_default()).map(|owned| Inventory::from_status(&owned));
    let mut inventory = known.unwrap_or_else(|| match tenant.status.as_ref().and_then(|s| s.owned.as_deref()) {
        Some(owned) => Inventory::from_status(owned),
        None if carried_over(tenant) => carry_over(tenant, ctx),
        None => Inventory::default(),
    });
    for key in inventory.in_flight() {
        let adopted = inventory.get(&key).is_some_and(|e| e.adopted);
        match live_meta(ctx, &key).await? {
            Some(meta) if marked_for(&meta, key.kind, tenant) => match meta.uid {
                Some(uid) => inventory.record(key, uid, adopted),
                None => inventory.forget(&key),
            },
            // Never created (or someone else's): nothing to record.
            _ => inventory.forget(&key),
        }
    }
    Ok(inventory)
}

/// A tenant an earlier operator version reconciled: its objects taken over by their marks.
fn carry_over(tenant: &MLTenant, ctx: &Context) -> Inventory {
    let name = tenant.name_any();
    let mut inventory = Inventory::default();
    for ns in ctx.namespaces.of(&name) {
        if marked_for(&ns.metadata, OwnedKind::Namespace, tenant)
            && !ctx.config.protected.contains(&ns.name_any())
            && let Some(uid) = ns.uid()
        {
            // Taken over as adopted, whatever its origin annotation says: such a namespace is
            // released, never deleted, on the marks alone (anyone who may patch a namespace can
            // set them; the record of what the operator created starts now).
            inventory.record(Key::namespace(&ns.name_any()), uid, true);
        }
    }
    let children = [
        (OwnedKind::Secret, ctx.secrets.of(&name).iter().map(|s| s.metadata.clone()).collect::<Vec<_>>()),
        (OwnedKind::Role, ctx.roles.of(&name).iter().map(|r| r.metadata.clone()).collect()),
        (OwnedKind::RoleBinding, ctx.role_bindings.of(&name).iter().map(|b| b.metadata.clone()).collect()),
    ];
    for (kind, metas) in children {
        for meta in metas {
            let namespace = meta.namespace.clone().unwrap_or_default();
            if marked_for(&meta, kind, tenant)
                && !ctx.config.protected.contains(&namespace)
                && let (Some(name), Some(uid)) = (meta.name, meta.uid)
            {
                inventory.record(Key::child(kind, &namespace, &name), uid, false);
            }
        }
    }
    inventory
}

/// The metadata of the object at `key` (trimmed, from the cache or one GET).
async fn live_meta(ctx: &Context, key: &Key) -> kube::Result<Option<ObjectMeta>> {
    let (namespace, name) = (key.namespace.as_str(), key.name.as_str());
    Ok(match key.kind {
        OwnedKind::Namespace => live::namespace(ctx, name).await?.map(|o| o.metadata.clone()),
        OwnedKind::Secret => live::object(ctx, &ctx.secrets, namespace, name, false).await?.map(|o| o.metadata.clone()),
        OwnedKind::Role => live::object(ctx, &ctx.roles, namespace, name, false).await?.map(|o| o.metadata.clone()),
        OwnedKind::RoleBinding => {
            live::object(ctx, &ctx.role_bindings, namespace, name, false).await?.map(|o| o.metadata.clone())
        }
    })
}

/// Put `keys` on record as in flight (with whether each is an adoption) before they are
/// created, writing the status if that added any. An error means the record could not be
/// written, and then nothing of `keys` may be created.
pub async fn intend(
    tenant: &MLTenant,
    records: &Records,
    keys: impl IntoIterator<Item = (Key, bool)>,
    ctx: &Context,
) -> kube::Result<()> {
    let added =
        records.with(|inventory| keys.into_iter().filter(|(key, adopted)| inventory.intend(key, *adopted)).count());
    if added == 0 {
        return Ok(());
    }
    let owned = records.with(|inventory| inventory.to_status());
    publish::write_owned(tenant, owned, &records.version, ctx).await
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::api::{MLTenantSpec, MLTenantStatus};

    fn tenant() -> MLTenant {
        let mut t = MLTenant::new("fin", MLTenantSpec::with_environments(&["dev"]));
        t.metadata.uid = Some("uid-fin".into());
        t
    }

    #[test]
    fn revocations() {
        let key = |namespace: &str| Key::child(OwnedKind::Secret, namespace, "s");
        let protected = Protected::new("mltenant-system", vec![]);
        let keep = |namespace: &str| BTreeSet::from([(namespace.to_string(), "s".to_string())]);
        let table = [
            ("no longer wanted", key("fin-dev"), BTreeSet::new(), true),
            ("wanted", key("fin-dev"), keep("fin-dev"), false),
            ("wanted in another namespace only", key("fin-dev"), keep("fin-prod"), true),
            ("in a protected namespace", key("kube-system"), BTreeSet::new(), false),
            ("in the operator's namespace", key("mltenant-system"), BTreeSet::new(), false),
        ];
        for (row, key, keep, want) in table {
            assert_eq!(revocable(&key, &keep, &protected), want, "{row}");
        }
    }

    #[test]
    fn the_record_round_trips_through_the_status() {
        let mut inventory = Inventory::default();
        inventory.record(Key::namespace("fin-dev"), "u1".into(), false);
        inventory.record(Key::namespace("shared"), "u2".into(), true);
        assert!(inventory.intend(&Key::child(OwnedKind::Secret, "fin-dev", "ml-platform"), false));
        assert!(
            !inventory.intend(&Key::child(OwnedKind::Secret, "fin-dev", "ml-platform"), false),
            "in flight already"
        );
        let status = inventory.to_status();
        assert_eq!(status.len(), 3);
        let secret = status.iter().find(|o| o.kind == OwnedKind::Secret).unwrap();
        assert_eq!((secret.namespace.as_deref(), secret.uid.as_deref()), (Some("fin-dev"), None));
        assert_eq!(status.iter().find(|o| o.name == "fin-dev").unwrap().namespace, None);
        assert_eq!(Inventory::from_status(&status), inventory);
        assert_eq!(inventory.in_flight(), [Key::child(OwnedKind::Secret, "fin-dev", "ml-platform")]);
    }

    #[test]
    fn only_the_recorded_uid_is_ours() {
        let mut inventory = Inventory::default();
        let key = Key::child(OwnedKind::Secret, "fin-dev", "s");
        let meta = |uid: &str| ObjectMeta { uid: Some(uid.into()), ..Default::default() };
        assert!(!inventory.owns(&key, &meta("u1")), "nothing recorded");
        inventory.intend(&key, false);
        assert!(!inventory.owns(&key, &meta("u1")), "in flight: not known yet");
        inventory.record(key.clone(), "u1".into(), false);
        assert!(inventory.owns(&key, &meta("u1")));
        assert!(!inventory.owns(&key, &meta("u2")), "another object of the same name");
        assert!(!inventory.owns(&key, &ObjectMeta::default()));
    }

    #[test]
    fn marks_are_the_operators_labels_and_the_tenants_owner_reference() {
        let t = tenant();
        let ours = [(labels::MANAGED_BY_KEY, labels::MANAGED_BY), (labels::TENANT, "fin")];
        let meta = |labels: &[(&str, &str)], owner: Option<&str>, annotations: &[(&str, &str)]| ObjectMeta {
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            owner_references: owner.map(|uid| vec![OwnerReference { uid: uid.into(), ..Default::default() }]),
            ..Default::default()
        };
        let rows = [
            ("a Secret with both", OwnedKind::Secret, meta(&ours, Some("uid-fin"), &[]), true),
            ("a Secret without the owner", OwnedKind::Secret, meta(&ours, None, &[]), false),
            ("a Secret of another tenant", OwnedKind::Secret, meta(&ours, Some("uid-other"), &[]), false),
            (
                "a namespace by annotation",
                OwnedKind::Namespace,
                meta(&[], None, &[(labels::TENANT_UID, "uid-fin")]),
                true,
            ),
            (
                "a namespace by owner",
                OwnedKind::Namespace,
                meta(&[(labels::TENANT, "fin")], Some("uid-fin"), &[]),
                true,
            ),
            (
                "a namespace labelled for another tenant",
                OwnedKind::Namespace,
                meta(&[(labels::TENANT, "x")], None, &[(labels::TENANT_UID, "uid-fin")]),
                false,
            ),
        ];
        for (why, kind, meta, want) in rows {
            assert_eq!(marked_for(&meta, kind, &t), want, "{why}");
        }
    }

    #[test]
    fn only_a_tenant_with_an_older_status_is_carried_over() {
        let mut t = tenant();
        assert!(!carried_over(&t), "a new tenant");
        t.status = Some(MLTenantStatus { observed_generation: Some(3), ..Default::default() });
        assert!(carried_over(&t), "reconciled before the inventory");
        t.status.as_mut().unwrap().owned = Some(vec![]);
        assert!(!carried_over(&t), "has an inventory, even an empty one");
    }
}
