//! Server-side apply with the one field manager, and the check that keeps a resync of a
//! converged object free of writes: desired objects are stamped with a digest of what the
//! operator sets, and a live object whose fields owned by the operator hold what would be
//! applied (`trim::OWNED`) and which carries the desired ownerReferences needs no apply.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Resource};
use serde::{Serialize, de::DeserializeOwned};

use super::guard::Guarded;
use super::trim::{self, Compact, Trim};
use crate::api::labels::{APPLIED, FIELD_MANAGER};

/// Apply `desired` (a complete statement of the fields the operator owns on that object).
///
/// An object that is `ours` is applied with `force`, taking back fields someone edited by hand:
/// the operator is the source of truth for the fields it manages. Anything else is applied as a
/// create: with a resourceVersion no stored object can have, so the API server creates the
/// object when the name is free and refuses (409) when something holds it. A plain apply
/// without force would not do: it refuses only where a field's value clashes, and merges into an
/// object someone created meanwhile (a user's Secret with other keys) whenever none does.
///
/// The answer is the object's metadata only (its uid, for the inventory): a Secret's values are
/// not sent back and decoded for nothing.
pub async fn apply<K>(api: &Api<Guarded<K>>, name: &str, desired: &K, ours: bool) -> kube::Result<ObjectMeta>
where
    K: Resource<DynamicType = ()> + Trim + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let request = kube::core::Request::new(api.resource_url());
    let request = if ours {
        request.patch_metadata(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired))
    } else {
        request.patch_metadata(name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(create_only(desired)))
    };
    let request = request.map_err(kube::Error::BuildRequest)?;
    let written: Guarded<PartialObjectMeta<K>> = api.clone().into_client().request(request).await?;
    match written.0 {
        Ok(written) => Ok(written.metadata),
        Err(unreadable) => Err(unreadable.into_error(&K::kind(&()))),
    }
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

/// Whether a write failed because someone else holds the object (a create found the name
/// taken) or its fields.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Apply `status` through the `/status` subresource of `K` named `name`; with `version`, only
/// onto the object at that resourceVersion (409 otherwise): a status decided on an object
/// changed since, by a replica that no longer leads among others, is not written.
pub async fn apply_status<K>(
    api: &Api<Guarded<K>>,
    name: &str,
    version: Option<&str>,
    status: &impl Serialize,
) -> kube::Result<Guarded<K>>
where
    K: Resource<DynamicType = ()> + Trim + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(version) = version {
        patch["metadata"] = serde_json::json!({"resourceVersion": version});
    }
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await
}

/// `desired` with the annotation `mltenant.io/applied`: a digest of everything the operator sets
/// on the object except a Secret's values (those are covered by `mltenant.io/source-hash`, and a
/// digest of plaintext must not be published). Any change to what the operator would apply
/// changes it, so comparing it spares keeping every object's `managedFields` in memory.
pub fn stamped<K: Resource + Serialize>(mut desired: K) -> K {
    let mut value = serde_json::to_value(&desired).expect("an object always serializes");
    if let Some(fields) = value.as_object_mut() {
        fields.remove("data");
        fields.remove("stringData");
    }
    let digest = crate::text::sha256(&[value.to_string().as_bytes()]);
    let stamp = format!("sha256:{}", crate::text::hex(&digest));
    desired.meta_mut().annotations.get_or_insert_default().insert(APPLIED.to_owned(), stamp);
    desired
}

/// Whether applying `desired` (stamped) would change `live` (trimmed): a field the operator
/// owns holds something else (or is gone, or taken over), or a desired ownerReference is
/// missing. What the operator set earlier but no longer wants needs no separate check: it
/// changed the stamp, which is a desired annotation.
pub fn differs<K: Compact>(live: &K, desired: &K) -> bool {
    let owned = live.meta().annotations.as_ref().and_then(|a| a.get(trim::OWNED));
    let live_refs = live.meta().owner_references.as_deref().unwrap_or_default();
    let want_refs = desired.meta().owner_references.as_deref().unwrap_or_default();
    owned != Some(&trim::desired_digest(desired)) || !want_refs.iter().all(|w| live_refs.contains(w))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;
    use crate::reconcile::trim::as_cached;

    fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn namespace(labels: &[(&str, &str)], owner: Option<&str>) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("ns".into()),
                labels: map(labels),
                owner_references: owner.map(|uid| {
                    let kind = "MLTenant".to_owned();
                    vec![OwnerReference {
                        uid: uid.into(),
                        kind,
                        api_version: "mltenant.io/v1alpha1".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
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
    fn converged_metadata_needs_no_apply() {
        let desired = stamped(namespace(&[("a", "1")], Some("u1")));
        assert!(!differs(&as_cached(&desired, |_| {}), &desired));
        let others = as_cached(&desired, |ns| {
            ns.metadata.labels.as_mut().unwrap().insert("someone-else".into(), "x".into());
        });
        assert!(!differs(&others, &desired), "what others add is not compared");
    }

    #[test]
    fn a_missing_or_changed_label_needs_apply() {
        let desired = stamped(namespace(&[("a", "1")], None));
        let changed = as_cached(&desired, |ns| ns.metadata.labels = map(&[("a", "2")]));
        assert!(differs(&changed, &desired));
        assert!(differs(&Namespace::default(), &desired), "nothing owned");
    }

    #[test]
    fn what_is_no_longer_wanted_changes_the_stamp() {
        let live = as_cached(&stamped(namespace(&[("a", "1"), ("old", "x")], Some("old-owner"))), |_| {});
        assert!(differs(&live, &stamped(namespace(&[("a", "1")], Some("old-owner")))));
        assert!(differs(&live, &stamped(namespace(&[("a", "1"), ("old", "x")], None))));
        assert!(differs(&live, &stamped(namespace(&[("a", "1"), ("old", "x")], Some("new-owner")))));
    }

    #[test]
    fn the_stamp_never_covers_secret_values() {
        use k8s_openapi::ByteString;
        use k8s_openapi::api::core::v1::Secret;
        let secret = |value: &[u8]| Secret {
            data: Some([("K".to_string(), ByteString(value.to_vec()))].into()),
            ..Default::default()
        };
        let a = stamped(secret(b"one")).metadata.annotations.unwrap()[APPLIED].clone();
        let b = stamped(secret(b"two")).metadata.annotations.unwrap()[APPLIED].clone();
        assert_eq!(a, b, "values are covered by the source hash, never digested into an annotation");
        assert!(a.starts_with("sha256:"));
    }
}
