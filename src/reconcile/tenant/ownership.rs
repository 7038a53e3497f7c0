//! Whether a tenant's Secret, Role or RoleBinding is really ours, and the guarded writes that
//! follow from it. The operator holds cluster-wide rights on these kinds, so a name
//! must never be enough, nor labels and ownerReferences, which anyone allowed to patch the object
//! can set: an object is ours only when its UID is the one the tenant's inventory recorded when
//! the operator created it (`inventory`). Anything else with the same name (a user's own Secret,
//! another tenant's object, one forged with our labels) is a conflict: never merged into, taken
//! over or deleted.

use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::inventory::{Inventory, Key};
use crate::api::MLTenant;
use crate::api::labels;
use crate::reconcile::context::Context;
use crate::reconcile::guard::Guarded;
use crate::reconcile::trim::Trim;

/// How a child of ours (a Secret, Role or RoleBinding) is written, as its decision says.
#[derive(Debug, PartialEq)]
pub enum Write<K> {
    /// Nothing by that name: applied as a create, so an object someone created meanwhile makes
    /// the apply fail (409) instead of being merged into.
    Create,
    /// Ours, not as wanted: applied with force, taking back fields someone edited by hand.
    Update,
    /// Ours, with a field that cannot change (a Secret's type, a RoleBinding's roleRef): this
    /// very object is deleted, then the wanted one applied as a create.
    Replace(Arc<K>),
}

impl<K> Write<K> {
    /// Whether the apply takes over an object of ours (`apply::apply`'s `ours`); otherwise it
    /// only creates.
    pub fn ours(&self) -> bool {
        matches!(self, Write::Update)
    }

    /// Whether the write creates an object (which the inventory records first).
    pub fn creates(&self) -> bool {
        !self.ours()
    }
}

/// The owner reference every child of `tenant` carries.
pub fn owner_reference(tenant: &MLTenant) -> OwnerReference {
    tenant.controller_owner_ref(&()).expect("a stored MLTenant has a name and uid")
}

/// Who holds a child name, from one tenant's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nothing by that name exists.
    Absent,
    /// Ours: the UID the inventory recorded.
    Ours,
    /// Someone else's; the text says why it is not ours.
    Foreign(&'static str),
}

/// Decide whether `live`, the object at `key`, belongs to `tenant`: only if the inventory
/// recorded its UID. Its labels only say, in the message, why it is not.
pub fn claim(live: Option<&ObjectMeta>, tenant: &MLTenant, inventory: &Inventory, key: &Key) -> Claim {
    let Some(meta) = live else { return Claim::Absent };
    if inventory.owns(key, meta) {
        return Claim::Ours;
    }
    let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str);
    if label(labels::MANAGED_BY_KEY) != Some(labels::MANAGED_BY) {
        return Claim::Foreign("it is not managed by mltenant-operator");
    }
    if label(labels::TENANT) != Some(tenant.name_any().as_str()) {
        return Claim::Foreign("it is managed for another MLTenant");
    }
    Claim::Foreign(NOT_CREATED_HERE)
}

/// Why an object labelled for the tenant is not its: the operator did not record creating it.
pub const NOT_CREATED_HERE: &str =
    "mltenant-operator did not create it for this MLTenant (its labels say so, its UID does not)";

/// Delete `obj`, which was judged ours, only if it is still the very object judged (same uid
/// and resourceVersion): an object replaced or edited since is looked at again, not deleted.
/// Gone already is fine.
pub async fn delete<K>(ctx: &Context, obj: &K) -> kube::Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Trim + Clone + DeserializeOwned + std::fmt::Debug,
{
    let preconditions = Preconditions { uid: obj.uid(), resource_version: obj.resource_version() };
    delete_with::<K>(ctx, &obj.namespace().unwrap_or_default(), &obj.name_any(), preconditions).await.map(|_| ())
}

/// Delete the object the inventory recorded at `key` under `uid`, whatever was done to it since
/// (relabelled, its ownerReferences stripped by an orphaning delete of the tenant). Gone
/// already, or the name held by another object (so ours is gone), is fine.
pub async fn delete_recorded<K>(ctx: &Context, key: &Key, uid: &str) -> kube::Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Trim + Clone + DeserializeOwned + std::fmt::Debug,
{
    let preconditions = Preconditions { uid: Some(uid.to_owned()), resource_version: None };
    match delete_with::<K>(ctx, &key.namespace, &key.name, preconditions).await {
        // The precondition failed: the name is held by another object, ours is gone.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        other => other,
    }
}

async fn delete_with<K>(ctx: &Context, namespace: &str, name: &str, preconditions: Preconditions) -> kube::Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Trim + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api = Api::<Guarded<K>>::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::background().preconditions(preconditions)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

/// Why a name that was free when read is not ours now: a create found it taken.
pub const CREATED_MEANWHILE: &str = "was created by someone else meanwhile";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MLTenantSpec, OwnedKind};

    fn tenant() -> MLTenant {
        let mut t = MLTenant::new("fin", MLTenantSpec::with_environments(&[]));
        t.metadata.uid = Some("uid-fin".into());
        t
    }

    fn meta(labels: &[(&str, &str)], uid: &str) -> ObjectMeta {
        ObjectMeta {
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }

    #[test]
    fn claims() {
        let t = tenant();
        let key = Key::child(OwnedKind::Secret, "fin-dev", "s");
        let mut inventory = Inventory::default();
        inventory.record(key.clone(), "recorded".into(), false);
        let ours = [(labels::MANAGED_BY_KEY, labels::MANAGED_BY), (labels::TENANT, "fin")];
        let table: &[(&str, Option<ObjectMeta>, Claim)] = &[
            ("nothing there", None, Claim::Absent),
            ("the recorded object", Some(meta(&ours, "recorded")), Claim::Ours),
            ("the recorded object, its labels stripped", Some(meta(&[], "recorded")), Claim::Ours),
            ("unlabelled", Some(meta(&[], "other")), Claim::Foreign("it is not managed by mltenant-operator")),
            (
                "labelled for another tenant",
                Some(meta(&[(labels::MANAGED_BY_KEY, labels::MANAGED_BY), (labels::TENANT, "x")], "other")),
                Claim::Foreign("it is managed for another MLTenant"),
            ),
            (
                "our labels, not our UID (forged, or recreated)",
                Some(meta(&ours, "other")),
                Claim::Foreign(NOT_CREATED_HERE),
            ),
        ];
        for (why, live, want) in table {
            assert_eq!(claim(live.as_ref(), &t, &inventory, &key), *want, "{why}");
        }
        assert_eq!(
            claim(Some(&meta(&ours, "recorded")), &t, &Inventory::default(), &key),
            Claim::Foreign(NOT_CREATED_HERE)
        );
    }
}
