//! Whether a tenant's Secret, Role or RoleBinding is really ours, and the guarded writes that
//! follow from it. The operator holds cluster-wide rights on these kinds, so a name alone must
//! never be enough: an object is ours only when it carries our labels for this tenant *and* the
//! tenant's ownerReference. Anything else with the same name (a user's own Secret, another
//! tenant's object) is a conflict: never merged into, taken over or deleted.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::MLTenant;
use crate::api::labels;
use crate::api::limits::Protected;
use crate::reconcile::context::Context;
use crate::reconcile::index::{Cached, Child};
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
    /// Ours: our labels for this tenant and its ownerReference.
    Ours,
    /// Someone else's; the text says why it is not ours.
    Foreign(&'static str),
}

/// Decide from an object's metadata whether it belongs to `tenant`.
pub fn claim(meta: &ObjectMeta, tenant: &MLTenant) -> Claim {
    let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str);
    if label(labels::MANAGED_BY_KEY) != Some(labels::MANAGED_BY) {
        return Claim::Foreign("it is not managed by mltenant-operator");
    }
    if label(labels::TENANT) != Some(tenant.name_any().as_str()) {
        return Claim::Foreign("it is managed for another MLTenant");
    }
    let owned = meta.owner_references.iter().flatten().any(|o| Some(&o.uid) == tenant.metadata.uid.as_ref());
    if !owned {
        return Claim::Foreign("it does not carry this MLTenant's ownerReference");
    }
    Claim::Ours
}

/// Whether `obj`, a child labelled for `tenant`, is to be deleted (revoked): ours, not in `keep`
/// (namespace, name), and not in a protected namespace; no IO.
pub fn revocable<K: Resource>(
    obj: &K,
    tenant: &MLTenant,
    keep: &BTreeSet<(String, String)>,
    protected: &Protected,
) -> bool {
    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
    claim(obj.meta(), tenant) == Claim::Ours && !protected.contains(&key.0) && !keep.contains(&key)
}

/// The live object `name` in `namespace`: from the label-selected cache, or, when the cache has
/// nothing (a new name, or an object without our labels, which the cache never sees), from one
/// GET. Deciding on the cache alone would let an apply merge into a user's own object. In a
/// namespace this reconcile has just created (`fresh`) nothing can exist yet but what a
/// cluster-wide writer raced in within milliseconds, so no GET is spent there (a first converge
/// would otherwise read every object it writes).
pub async fn live<K>(
    ctx: &Context,
    cache: &Cached<K>,
    namespace: &str,
    name: &str,
    fresh: bool,
) -> kube::Result<Option<Arc<K>>>
where
    K: Child + Resource<Scope = NamespaceResourceScope> + Trim,
{
    if let Some(cached) = cache.get(Some(namespace), name) {
        return Ok(Some(cached));
    }
    if fresh {
        return Ok(None);
    }
    let read = Api::<K>::namespaced(ctx.client.clone(), namespace).get_opt(name).await?;
    // Decided on like a cached object, so trimmed like one.
    Ok(read.map(|mut obj| {
        obj.trim();
        Arc::new(obj)
    }))
}

/// Delete `obj`, which was judged ours, only if it is still the very object judged (same uid
/// and resourceVersion): an object replaced or edited since is looked at again, not deleted.
/// Gone already is fine.
pub async fn delete<K>(ctx: &Context, obj: &K) -> kube::Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let preconditions = Preconditions { uid: obj.uid(), resource_version: obj.resource_version() };
    match api.delete(&obj.name_any(), &DeleteParams::background().preconditions(preconditions)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

/// Why a name that was free when read is not ours now: a create found it taken.
pub const CREATED_MEANWHILE: &str = "was created by someone else meanwhile";

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::api::MLTenantSpec;

    fn tenant() -> MLTenant {
        let mut t = MLTenant::new("fin", MLTenantSpec::with_environments(&[]));
        t.metadata.uid = Some("uid-fin".into());
        t
    }

    fn meta(labels: &[(&str, &str)], owner_uid: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            owner_references: owner_uid.map(|uid| vec![OwnerReference { uid: uid.into(), ..Default::default() }]),
            ..Default::default()
        }
    }

    #[test]
    fn revocations() {
        let t = tenant();
        let ours = [(labels::MANAGED_BY_KEY, labels::MANAGED_BY), (labels::TENANT, "fin")];
        let secret = |namespace: &str, meta: ObjectMeta| k8s_openapi::api::core::v1::Secret {
            metadata: ObjectMeta { name: Some("s".into()), namespace: Some(namespace.into()), ..meta },
            ..Default::default()
        };
        let protected = Protected::new("mltenant-system", vec![]);
        let keep = |namespace: &str| BTreeSet::from([(namespace.to_string(), "s".to_string())]);
        let table = [
            ("ours, no longer wanted", secret("fin-dev", meta(&ours, Some("uid-fin"))), BTreeSet::new(), true),
            ("ours, wanted", secret("fin-dev", meta(&ours, Some("uid-fin"))), keep("fin-dev"), false),
            (
                "ours, wanted in another namespace only",
                secret("fin-dev", meta(&ours, Some("uid-fin"))),
                keep("fin-prod"),
                true,
            ),
            ("not ours", secret("fin-dev", meta(&ours, None)), BTreeSet::new(), false),
            ("in a protected namespace", secret("kube-system", meta(&ours, Some("uid-fin"))), BTreeSet::new(), false),
            (
                "in the operator's namespace",
                secret("mltenant-system", meta(&ours, Some("uid-fin"))),
                BTreeSet::new(),
                false,
            ),
        ];
        for (row, obj, keep, want) in table {
            assert_eq!(revocable(&obj, &t, &keep, &protected), want, "{row}");
        }
    }

    #[test]
    fn claims() {
        let t = tenant();
        let ours = [(labels::MANAGED_BY_KEY, labels::MANAGED_BY), (labels::TENANT, "fin")];
        let table: &[(ObjectMeta, Claim)] = &[
            (meta(&ours, Some("uid-fin")), Claim::Ours),
            (meta(&[], None), Claim::Foreign("it is not managed by mltenant-operator")),
            (meta(&[], Some("uid-fin")), Claim::Foreign("it is not managed by mltenant-operator")),
            (
                meta(&[(labels::MANAGED_BY_KEY, labels::MANAGED_BY), (labels::TENANT, "other")], Some("uid-fin")),
                Claim::Foreign("it is managed for another MLTenant"),
            ),
            (meta(&ours, None), Claim::Foreign("it does not carry this MLTenant's ownerReference")),
            (meta(&ours, Some("uid-other")), Claim::Foreign("it does not carry this MLTenant's ownerReference")),
        ];
        for (meta, want) in table {
            assert_eq!(claim(meta, &t), *want, "{meta:?}");
        }
    }
}
