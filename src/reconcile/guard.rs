//! Reading stored objects without trusting every one of them to be readable.
//!
//! An object the API server stored is not necessarily one the operator's types can hold: a
//! timestamp beyond the time library's range (year 9999), a field stored under an older CRD, or
//! a `managedFields[].time` that anyone allowed to update the object may set. Decoded directly,
//! one such object fails a whole list: every replica would stay "caches not synced" and
//! reconcile nothing, and kube's client logs the entire response it could not decode. So every
//! object the operator reads from the API server (watches, reads, the answers to its writes)
//! comes through [`Guarded`]: the object, or [`Unreadable`] with enough of its metadata to report
//! it and the path of the field that failed (never a value). The rest of the list goes on.
//!
//! Of `managedFields` only the operator's own entry is decoded, without its time; before the
//! object is decoded, each kind drops what the operator never reads ([`Trim::prune`]).

use std::borrow::Cow;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::trim::Trim;
use crate::api::labels::FIELD_MANAGER;

/// A stored object, or why it could not be read.
#[derive(Clone, Debug)]
pub struct Guarded<K>(pub Result<K, Unreadable>);

/// An object the operator could not decode.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("field {field} holds a value the operator cannot read")]
pub struct Unreadable {
    /// What could be read of its metadata: name, namespace, uid, resourceVersion, generation,
    /// labels.
    pub metadata: Box<ObjectMeta>,
    /// The path of the field that failed (`spec.expiresAt`), never its value.
    pub field: String,
}

impl<K> Guarded<K> {
    /// The object, or an error naming it and the field that failed (for a read whose caller
    /// cannot go on without the object).
    pub fn into_result(self) -> kube::Result<K>
    where
        K: Resource<DynamicType = ()>,
    {
        self.0.map_err(|unreadable| unreadable.into_error(&K::kind(&())))
    }
}

impl Unreadable {
    /// The reason text of an object that cannot be read: `<kind> <namespace/name>: field ...`.
    pub fn describe(&self, kind: &str) -> String {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        match self.metadata.namespace.as_deref() {
            Some(namespace) => format!("{kind} {namespace}/{name}: {self}"),
            None => format!("{kind} {name}: {self}"),
        }
    }

    /// As the API error of the read or write that met it (422: the object is invalid to us).
    pub fn into_error(self, kind: &str) -> kube::Error {
        let status = kube::core::Status::failure(&self.describe(kind), "Invalid").with_code(422);
        kube::Error::Api(status.boxed())
    }
}

impl<'de, K: Trim + DeserializeOwned> Deserialize<'de> for Guarded<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Each field is taken as raw text first: serde_json skips over it without a depth limit
        // (its parser stops at 128 levels, and `managedFields` may nest as deep as whoever
        // updates the object likes), then decoded on its own, so that what fails is this field
        // of this object, never the list around it.
        let fields = BTreeMap::<String, Box<RawValue>>::deserialize(deserializer)?;
        let mut value = Map::new();
        let mut failed = None;
        for (key, raw) in fields {
            let decoded = if key == "metadata" { metadata(&raw) } else { serde_json::from_str(raw.get()) };
            match decoded {
                Ok(decoded) => {
                    value.insert(key, decoded);
                }
                Err(_) => failed = failed.or(Some(key)),
            }
        }
        let mut value = Value::Object(value);
        if let Some(field) = failed {
            return Ok(Guarded(Err(Unreadable { metadata: Box::new(lenient_metadata(&value)), field })));
        }
        K::prune(&mut value);
        Ok(Guarded(decode(&value)))
    }
}

/// An object's metadata, of whose `managedFields` only the operator's own server-side-apply
/// entry is kept, without its time: what its field manager owns is what the caches compare
/// (see `trim`); the other entries, and every time, are written by whoever updates the object
/// and never read. An entry whose field set does not decode (nested past the parser's depth)
/// is kept without it: the operator then owns nothing there, applies again, and the API server
/// rewrites the entry.
fn metadata(raw: &RawValue) -> serde_json::Result<Value> {
    let mut fields: Map<String, Value> = Map::new();
    for (key, raw) in serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(raw.get())? {
        let decoded = if key == "managedFields" {
            let entries = serde_json::from_str::<Vec<BTreeMap<String, Box<RawValue>>>>(raw.get())?;
            Value::Array(entries.into_iter().filter_map(own_field_entry).collect())
        } else {
            serde_json::from_str(raw.get())?
        };
        fields.insert(key, decoded);
    }
    Ok(Value::Object(fields))
}

/// A `managedFields` entry if it is the operator's own apply (not of a subresource), without
/// its time.
fn own_field_entry(entry: BTreeMap<String, Box<RawValue>>) -> Option<Value> {
    let text = |key: &str| entry.get(key).and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    let own = text("manager").as_deref() == Some(FIELD_MANAGER)
        && text("operation").as_deref() == Some("Apply")
        && !entry.contains_key("subresource");
    if !own {
        return None;
    }
    let kept = entry
        .iter()
        .filter(|(key, _)| key.as_str() != "time")
        .filter_map(|(key, raw)| Some((key.clone(), serde_json::from_str::<Value>(raw.get()).ok()?)));
    Some(Value::Object(kept.collect()))
}

/// `value` as a `K`, or what can be said about it.
fn decode<K: DeserializeOwned>(value: &Value) -> Result<K, Unreadable> {
    serde_path_to_error::deserialize(value)
        .map_err(|error| Unreadable { metadata: Box::new(lenient_metadata(value)), field: error.path().to_string() })
}

/// The metadata of an object that did not decode, field by field: whatever has the expected
/// type is kept, the rest left out.
fn lenient_metadata(value: &Value) -> ObjectMeta {
    let meta = &value["metadata"];
    let text = |key: &str| meta[key].as_str().map(str::to_owned);
    let labels = meta["labels"]
        .as_object()
        .map(|labels| labels.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect());
    ObjectMeta {
        name: text("name"),
        namespace: text("namespace"),
        uid: text("uid"),
        resource_version: text("resourceVersion"),
        generation: meta["generation"].as_i64(),
        labels,
        ..Default::default()
    }
}

impl<K: Resource> Resource for Guarded<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.as_ref().map_or_else(|unreadable| &*unreadable.metadata, K::meta)
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.as_mut().map_or_else(|unreadable| &mut *unreadable.metadata, K::meta_mut)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;
    use serde_json::json;

    use super::*;
    use crate::api::SealedBundle;

    #[test]
    fn a_timestamp_beyond_the_time_library_is_reported_by_path_not_value() {
        let far = json!({
            "apiVersion": "mltenant.io/v1alpha1", "kind": "SealedBundle",
            "metadata": {"name": "far", "uid": "u1", "resourceVersion": "7", "generation": 2, "labels": {"a": "b"}},
            "spec": {"scope": "Cluster", "tenantSelector": {}, "expiresAt": "9999-12-31T23:59:59Z",
                     "encryptedData": {"K": "AgB-sealed"}},
        });
        let guarded: Guarded<SealedBundle> = serde_json::from_str(&far.to_string()).unwrap();
        let unreadable = guarded.0.unwrap_err();
        assert_eq!(unreadable.field, "spec.expiresAt");
        assert_eq!(
            (unreadable.metadata.name.as_deref(), unreadable.metadata.uid.as_deref(), unreadable.metadata.generation),
            (Some("far"), Some("u1"), Some(2))
        );
        let text = unreadable.describe("SealedBundle");
        assert_eq!(text, "SealedBundle far: field spec.expiresAt holds a value the operator cannot read");
        assert!(!text.contains("9999") && !text.contains("AgB"), "{text}");
    }

    #[test]
    fn one_unreadable_object_does_not_fail_the_list() {
        let item = |name: &str, expires: &str| {
            json!({"metadata": {"name": name}, "spec": {"scope": "Cluster", "tenantSelector": {},
                   "expiresAt": expires, "encryptedData": {"K": "x"}}})
        };
        let list = json!([
            item("a", "2027-01-01T00:00:00Z"),
            item("b", "9999-12-31T23:59:59Z"),
            item("c", "2028-01-01T00:00:00Z")
        ]);
        let read: Vec<Guarded<SealedBundle>> = serde_json::from_str(&list.to_string()).unwrap();
        let readable: Vec<bool> = read.iter().map(|g| g.0.is_ok()).collect();
        assert_eq!(readable, [true, false, true]);
        assert_eq!(read[1].meta().name.as_deref(), Some("b"));
    }

    #[test]
    fn field_times_anyone_may_set_are_never_read() {
        // Anyone allowed to update a Secret may write managedFields, times included.
        let secret = json!({
            "metadata": {"name": "s", "namespace": "ns", "managedFields": [
                {"manager": "mltenant-operator", "operation": "Apply", "time": "9999-12-31T23:59:59Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:K": {}}}},
                {"manager": "kubectl-edit", "operation": "Update", "time": "9999-12-31T23:59:59Z"},
                {"manager": "mltenant-operator", "operation": "Apply", "subresource": "status"},
            ]},
            "data": {"K": "dg=="},
        });
        let guarded: Guarded<Secret> = serde_json::from_str(&secret.to_string()).unwrap();
        let secret = guarded.0.expect("readable once the times are dropped");
        let entries = secret.metadata.managed_fields.unwrap();
        assert_eq!(entries.len(), 1, "only the operator's own apply entry stays");
        assert_eq!((entries[0].manager.as_deref(), entries[0].time.as_ref()), (Some("mltenant-operator"), None));
    }

    #[test]
    fn fields_nested_past_the_parsers_depth_fail_no_list() {
        let deep = |depth: usize| format!("{}{{}}{}", "{\"f:x\":".repeat(depth), "}".repeat(depth));
        let entry = |manager: &str| {
            format!(r#"{{"manager":"{manager}","operation":"Apply","fieldsType":"FieldsV1","fieldsV1":{}}}"#, deep(200))
        };
        let item = |name: &str, manager: &str| {
            format!(r#"{{"metadata":{{"name":"{name}","managedFields":[{}]}},"data":{{"K":"dg=="}}}}"#, entry(manager))
        };
        let list = format!("[{},{}]", item("theirs", "someone"), item("ours", "mltenant-operator"));
        let read: Vec<Guarded<Secret>> = serde_json::from_str(&list).expect("the list decodes");
        let secrets: Vec<Secret> = read.into_iter().map(|g| g.0.expect("each Secret decodes")).collect();
        assert_eq!(secrets[0].metadata.managed_fields, Some(vec![]), "someone else's entry is not kept");
        let ours = &secrets[1].metadata.managed_fields.as_ref().unwrap()[0];
        assert_eq!((ours.manager.as_deref(), ours.fields_v1.as_ref()), (Some("mltenant-operator"), None));
    }

    #[test]
    fn an_unreadable_read_becomes_an_error_naming_object_and_field() {
        let unreadable = Unreadable {
            metadata: Box::new(ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            }),
            field: "data.K".into(),
        };
        let error = Guarded::<Secret>(Err(unreadable)).into_result().unwrap_err();
        assert!(
            matches!(&error, kube::Error::Api(s) if s.code == 422 && s.message == "Secret ns/s: field data.K holds a value the operator cannot read"),
            "{error}"
        );
    }
}
