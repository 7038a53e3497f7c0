//! Server-side apply with the one field manager, and the check that keeps a resync of a
//! converged object free of writes.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::{Serialize, de::DeserializeOwned};

use crate::labels::FIELD_MANAGER;

/// Apply `desired` (a complete statement of the fields the operator owns on that object).
/// `force` takes over fields last written by someone editing the object by hand: the operator
/// is the source of truth for the fields it manages.
pub async fn apply<K>(api: &Api<K>, name: &str, desired: &K) -> kube::Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired)).await
}

/// Apply `status` through the `/status` subresource of `K` named `name`.
pub async fn apply_status<K>(api: &Api<K>, name: &str, status: &impl Serialize) -> kube::Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await
}

/// Whether applying `desired` would change `live`'s metadata: a desired label, annotation or
/// ownerReference is missing or different, or the operator still owns a label, annotation or
/// ownerReference it no longer wants (server-side apply would remove it).
pub fn metadata_differs(live: &ObjectMeta, desired: &ObjectMeta) -> bool {
    let contains = |live: &Option<BTreeMap<String, String>>, want: &Option<BTreeMap<String, String>>| {
        want.iter().flatten().all(|(k, v)| live.as_ref().and_then(|l| l.get(k)) == Some(v))
    };
    if !contains(&live.labels, &desired.labels) || !contains(&live.annotations, &desired.annotations) {
        return true;
    }
    let live_refs = live.owner_references.as_deref().unwrap_or_default();
    let want_refs = desired.owner_references.as_deref().unwrap_or_default();
    if !want_refs.iter().all(|w| live_refs.contains(w)) {
        return true;
    }
    let keys = |m: &Option<BTreeMap<String, String>>| -> BTreeSet<String> {
        m.iter().flatten().map(|(k, _)| k.clone()).collect()
    };
    let want_uids: BTreeSet<String> = want_refs.iter().map(|r| r.uid.clone()).collect();
    !owned_fields(live, &["f:metadata", "f:labels"]).is_subset(&keys(&desired.labels))
        || !owned_fields(live, &["f:metadata", "f:annotations"]).is_subset(&keys(&desired.annotations))
        || !owned_fields(live, &["f:metadata", "f:ownerReferences"]).is_subset(&want_uids)
}

/// The names of the fields under `path` that the operator's field manager owns through
/// server-side apply, read from `managedFields`: map keys (`f:<key>`) as `<key>`, list items
/// keyed by uid (`k:{"uid":...}`) as the uid.
pub fn owned_fields(meta: &ObjectMeta, path: &[&str]) -> BTreeSet<String> {
    let entries = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply"));
    let mut owned = BTreeSet::new();
    for entry in entries {
        let Some(mut node) = entry.fields_v1.as_ref().map(|f| &f.0) else { continue };
        for step in path {
            node = &node[*step];
        }
        for key in node.as_object().into_iter().flat_map(|o| o.keys()) {
            if let Some(field) = key.strip_prefix("f:") {
                owned.insert(field.to_owned());
            } else if let Some(uid) = owner_uid(key) {
                owned.insert(uid);
            }
        }
    }
    owned
}

/// `k:{"uid":"..."}` is how managedFields keys an ownerReference.
fn owner_uid(key: &str) -> Option<String> {
    let json = key.strip_prefix("k:")?;
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value["uid"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, OwnerReference};
    use serde_json::json;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            uid: uid.into(),
            name: "t".into(),
            kind: "MLTenant".into(),
            api_version: "v".into(),
            ..Default::default()
        }
    }

    fn managed(fields: serde_json::Value) -> Option<Vec<ManagedFieldsEntry>> {
        Some(vec![ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }])
    }

    #[test]
    fn converged_metadata_needs_no_apply() {
        let desired =
            ObjectMeta { labels: map(&[("a", "1")]), owner_references: Some(vec![owner("u1")]), ..Default::default() };
        let live = ObjectMeta {
            labels: map(&[("a", "1"), ("someone-else", "x")]),
            owner_references: Some(vec![owner("u1")]),
            managed_fields: managed(
                json!({"f:metadata": {"f:labels": {"f:a": {}}, "f:ownerReferences": {"k:{\"uid\":\"u1\"}": {}}}}),
            ),
            ..Default::default()
        };
        assert!(!metadata_differs(&live, &desired));
    }

    #[test]
    fn missing_or_changed_label_needs_apply() {
        let desired = ObjectMeta { labels: map(&[("a", "1")]), ..Default::default() };
        assert!(metadata_differs(&ObjectMeta::default(), &desired));
        assert!(metadata_differs(&ObjectMeta { labels: map(&[("a", "2")]), ..Default::default() }, &desired));
    }

    #[test]
    fn owned_label_no_longer_wanted_needs_apply() {
        let desired = ObjectMeta { labels: map(&[("a", "1")]), ..Default::default() };
        let live = ObjectMeta {
            labels: map(&[("a", "1"), ("old", "x")]),
            managed_fields: managed(json!({"f:metadata": {"f:labels": {"f:a": {}, "f:old": {}}}})),
            ..Default::default()
        };
        assert!(metadata_differs(&live, &desired));
    }

    #[test]
    fn stale_owner_reference_needs_apply() {
        let desired = ObjectMeta { owner_references: Some(vec![owner("new")]), ..Default::default() };
        let live = ObjectMeta {
            owner_references: Some(vec![owner("new"), owner("old")]),
            managed_fields: managed(
                json!({"f:metadata": {"f:ownerReferences": {"k:{\"uid\":\"old\"}": {}, "k:{\"uid\":\"new\"}": {}}}}),
            ),
            ..Default::default()
        };
        assert!(metadata_differs(&live, &desired));
    }
}
