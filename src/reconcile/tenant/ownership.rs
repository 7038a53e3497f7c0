//! Whether a tenant's Secret, Role or RoleBinding is really ours, and the guarded writes that
//! follow from it. The operator holds cluster-wide rights on these kinds, so a name alone must
//! never be enough: an object is ours only when it carries our labels for this tenant *and* the
//! tenant's ownerReference. Anything else with the same name (a user's own Secret, another
//! tenant's object) is a conflict: never merged into, taken over or deleted.

use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::MLTenant;
use crate::api::labels::{self, FIELD_MANAGER};
use crate::reconcile::context::Context;
use crate::reconcile::index::{Cached, Child};
use crate::reconcile::trim::Trim;

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

/// Server-side apply `desired` as the one field manager. Only an object that is ours is applied
/// with `force` (taking back fields someone edited by hand). Anything else is applied as a
/// create: with a resourceVersion no stored object can have, so the API server creates the
/// object when the name is free and refuses (409) when something holds it. A plain apply
/// without force would not do: it refuses only where a field's value clashes, and merges into an
/// object someone created meanwhile (a user's Secret with other keys) whenever none does.
pub async fn apply<K>(api: &Api<K>, name: &str, desired: &K, ours: bool) -> kube::Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    if ours {
        return api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired)).await;
    }
    api.patch(name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(create_only(desired))).await
}

/// A resourceVersion the precondition of an apply can never match: the largest the API server
/// parses, which etcd's revision counter will not reach. On a name nothing holds, the API server
/// ignores it and creates the object.
const NO_STORED_VERSION: &str = "18446744073709551615";

/// `desired` as an apply that only creates (see [`apply`]).
fn create_only<K: Resource + Clone>(desired: &K) -> K {
    let mut create = desired.clone();
    create.meta_mut().resource_version = Some(NO_STORED_VERSION.to_owned());
    create
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

/// Whether a server-side apply failed because someone else holds the object or its fields.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

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
    fn an_apply_that_only_creates_carries_a_version_no_object_has() {
        let desired = k8s_openapi::api::core::v1::Secret::default();
        assert_eq!(create_only(&desired).metadata.resource_version.as_deref(), Some(NO_STORED_VERSION));
        assert_eq!(NO_STORED_VERSION.parse::<u64>(), Ok(u64::MAX), "the API server parses it as a uint64");
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
