//! What the operator keeps in memory of each object it watches or reads: only what its
//! decisions look at, in a size that does not depend on what others put on the object.
//!
//! Before decoding, `managedFields` is cut to the operator's own server-side-apply entry (see
//! `guard`) and each kind drops what it never reads ([`Trim::prune`]). After decoding
//! ([`Trim::trim`]):
//!
//! * MLTenants and SealedBundles lose their field ownership and their annotations (`kubectl`'s
//!   last-applied copy among them: for a bundle, a second copy of every ciphertext); a bundle
//!   keeps digests in place of its ciphertexts (`unseal::keep_digests`).
//! * The children (namespaces, Secrets, Roles, RoleBindings) are kept compact: their identity,
//!   the labels and annotations decisions read whoever set them (the operator's own keys, Pod
//!   Security's, the adoption consent; each value capped), a Secret's type, a RoleBinding's
//!   roleRef, the MLTenant ownerReferences, and one digest, [`OWNED`], of everything the
//!   operator's field manager owns on the object (labels, annotations, a Secret's data, a Role's
//!   rules, a RoleBinding's subjects). A decision compares it with [`desired_digest`] of the
//!   object it would apply: after a server-side apply the manager owns exactly what it applied,
//!   so the two are equal until someone changes, removes or takes over one of those fields. What
//!   others add (labels, annotations, data keys, however large) is neither kept nor compared.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde_json::Value;

use crate::api::labels;
use crate::api::limits::POD_SECURITY_LABELS;
use crate::api::{MLTenant, SealedBundle};
use crate::unseal;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// In a cached child, in place of what the operator set on it: see the module docs. Only ever
/// in memory; a stored object carrying this key has it replaced.
pub const OWNED: &str = "mltenant.io/cached-owned-digest";

/// Longest label or annotation value kept as it is; a longer one is kept as a digest (no value
/// the operator writes under a kept key is that long).
const KEPT_VALUE_BYTES: usize = 256;

/// An object the operator caches, reduced to what it uses.
pub trait Trim {
    /// Before decoding (`guard` has already cut `managedFields` to the operator's own entry):
    /// drop what this kind never reads.
    fn prune(_value: &mut Value) {}

    /// After decoding: reduce to what decisions read.
    fn trim(&mut self);
}

/// A child kind kept compact: what of its content (beyond labels and annotations) the operator
/// sets, and how to drop it once digested.
pub trait Compact: Resource {
    /// Feed the content the operator sets into `digest`: only the fields `owned` lists (the
    /// operator's `fieldsV1` on a live object), or all of it (`None`, a desired object).
    fn content(&self, owned: Option<&Value>, digest: &mut Digest);
    /// Drop the content, now digested.
    fn drop_content(&mut self);
}

/// A SHA-256 over length-prefixed parts (so no two sequences of parts feed the same bytes).
pub struct Digest(aws_lc_rs::digest::Context);

impl Digest {
    fn new() -> Self {
        Digest(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }

    pub fn part(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn finish(self) -> String {
        format!("sha256:{}", crate::text::hex(self.0.finish().as_ref()))
    }
}

/// The digest of everything the operator sets on `desired` (labels, annotations, content).
pub fn desired_digest<K: Compact>(desired: &K) -> String {
    digest(desired, None)
}

/// The digest of `obj`'s labels, annotations and content, restricted to the fields `owned`
/// lists (`None`: all of them).
fn digest<K: Compact>(obj: &K, owned: Option<&Value>) -> String {
    let mut digest = Digest::new();
    metadata_digest(obj, owned, &mut digest);
    obj.content(owned, &mut digest);
    digest.finish()
}

/// The digest [`desired_digest`] gives a Secret whose values have the data digest `data`
/// ([`secret_data_digest`]): what a decision compares with the live Secret's without the
/// plaintext, once a proof says the live values are the bundle's (`mltenant.io/opened-with`).
pub fn desired_digest_with_data(desired: &Secret, data: &[u8; 32]) -> String {
    let mut digest = Digest::new();
    metadata_digest(desired, None, &mut digest);
    digest.part(b"data");
    digest.part(data);
    digest.finish()
}

/// A digest of a Secret's values by key name (each value as its SHA-256): in memory only, and
/// under a keyed MAC in `mltenant.io/opened-with`, never published as it is.
pub fn secret_data_digest<'a>(values: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> [u8; 32] {
    let mut digest = Digest::new();
    for (key, value) in values {
        digest.part(key.as_bytes());
        digest.part(&value_digest(value));
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.0.finish().as_ref());
    out
}

/// In a cached Secret (in memory only): [`secret_data_digest`] of the values the operator's
/// field manager owns, hex.
pub const DATA_DIGEST: &str = "mltenant.io/cached-data-digest";

fn metadata_digest<K: Compact>(obj: &K, owned: Option<&Value>, digest: &mut Digest) {
    let meta = obj.meta();
    let owned_meta = owned.map(|o| &o["f:metadata"]);
    for (part, map, field) in
        [("labels", &meta.labels, "f:labels"), ("annotations", &meta.annotations, "f:annotations")]
    {
        digest.part(part.as_bytes());
        let keys: Vec<&str> = match owned_meta {
            Some(fields) => owned_keys(&fields[field]).collect(),
            None => {
                map.iter().flatten().map(|(k, _)| k.as_str()).filter(|k| *k != OWNED && *k != DATA_DIGEST).collect()
            }
        };
        for key in keys {
            digest.part(key.as_bytes());
            match map.as_ref().and_then(|m| m.get(key)) {
                Some(value) => digest.part(value.as_bytes()),
                // Owned by the operator's manager but not there: someone rewrote managedFields.
                None => digest.part(b"\xffmissing"),
            }
        }
    }
}

/// The keys a `fieldsV1` map of a map field lists (`f:<key>`), in order.
fn owned_keys(fields: &Value) -> impl Iterator<Item = &str> {
    fields.as_object().into_iter().flatten().filter_map(|(k, _)| k.strip_prefix("f:"))
}

/// Whether the operator's `fieldsV1` (`None`: a desired object, which owns everything) lists
/// the top-level field `field` (e.g. `f:rules`).
fn owns(owned: Option<&Value>, field: &str) -> bool {
    owned.is_none_or(|o| o.get(field).is_some())
}

/// Label and annotation keys decisions read whoever set them.
fn read_as_is(key: &str) -> bool {
    [
        labels::MANAGED_BY_KEY,
        labels::TENANT,
        labels::ENVIRONMENT,
        labels::ORIGIN,
        labels::TENANT_UID,
        labels::ADOPTABLE_BY,
        labels::RELEASED_FROM,
        labels::APPLIED,
        labels::BUNDLE,
        labels::SOURCE_HASH,
        labels::EXPIRES_AT,
        labels::OPENED_WITH,
        labels::POD_SECURITY_BEFORE,
    ]
    .contains(&key)
        || POD_SECURITY_LABELS.contains(&key)
}

/// Keep of `map` the keys read as they are, each value capped.
fn keep_read_as_is(map: &mut Option<BTreeMap<String, String>>) {
    if let Some(entries) = map.as_mut() {
        entries.retain(|k, _| read_as_is(k));
        for value in entries.values_mut().filter(|v| v.len() > KEPT_VALUE_BYTES) {
            *value = format!("sha256:{}", crate::text::hex(&crate::text::sha256(&[value.as_bytes()])));
        }
    }
}

/// Drop field ownership, the last-applied copy and the creation time: no decision reads them.
fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.creation_timestamp = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A child reduced as the module docs say.
fn compact<K: Compact>(obj: &mut K) {
    let own_entry = obj.meta().managed_fields.iter().flatten().find_map(|entry| entry.fields_v1.clone());
    let owned = own_entry.map_or(Value::Null, |fields| fields.0);
    let digest = digest(obj, Some(&owned));
    obj.drop_content();
    let meta = obj.meta_mut();
    slim(meta);
    keep_read_as_is(&mut meta.labels);
    keep_read_as_is(&mut meta.annotations);
    meta.annotations.get_or_insert_default().insert(OWNED.to_owned(), digest);
    // Only the references decisions look at: to MLTenants, a handful at most.
    if let Some(references) = meta.owner_references.as_mut() {
        references.retain(|r| r.kind == "MLTenant" && r.api_version.starts_with("mltenant.io/"));
        references.truncate(4);
    }
    meta.finalizers = None;
}

/// A Secret value as it is digested: its SHA-256.
fn value_digest(value: &[u8]) -> [u8; 32] {
    crate::text::sha256(&[value])
}

/// [`secret_data_digest`] of the values of `secret` that `owned` lists (`None`: all of them);
/// a key listed but not there counts as a value no Secret can have.
fn owned_data_digest(secret: &Secret, owned: Option<&Value>) -> [u8; 32] {
    let data = secret.data.as_ref();
    let keys: Vec<&str> = match owned {
        Some(fields) => owned_keys(&fields["f:data"]).collect(),
        None => data.into_iter().flatten().map(|(k, _)| k.as_str()).collect(),
    };
    let missing: &[u8] = b"\xffmissing";
    secret_data_digest(keys.into_iter().map(|key| match data.and_then(|d| d.get(key)) {
        Some(ByteString(value)) => (key, value.as_slice()),
        None => (key, missing),
    }))
}

impl Compact for Secret {
    fn content(&self, owned: Option<&Value>, digest: &mut Digest) {
        digest.part(b"data");
        digest.part(&owned_data_digest(self, owned));
    }

    fn drop_content(&mut self) {
        self.data = None;
        self.string_data = None;
    }
}

impl Compact for Namespace {
    fn content(&self, _: Option<&Value>, _: &mut Digest) {}

    fn drop_content(&mut self) {
        self.spec = None;
        self.status = None;
    }
}

impl Compact for Role {
    fn content(&self, owned: Option<&Value>, digest: &mut Digest) {
        if owns(owned, "f:rules") {
            digest.part(b"rules");
            digest.part(&serde_json::to_vec(&self.rules).expect("rules serialize"));
        }
    }

    fn drop_content(&mut self) {
        self.rules = None;
    }
}

impl Compact for RoleBinding {
    fn content(&self, owned: Option<&Value>, digest: &mut Digest) {
        if owns(owned, "f:subjects") {
            digest.part(b"subjects");
            digest.part(&serde_json::to_vec(&self.subjects).expect("subjects serialize"));
        }
    }

    /// The roleRef stays: it cannot change, so a different one means replacing the binding.
    fn drop_content(&mut self) {
        self.subjects = None;
    }
}

impl Trim for Secret {
    fn trim(&mut self) {
        // What a proof (`mltenant.io/opened-with`) is checked against: the digest of the values
        // the operator's field manager owns, kept (in memory) once the values are dropped.
        let own_entry = self.metadata.managed_fields.iter().flatten().find_map(|entry| entry.fields_v1.clone());
        let owned = own_entry.map_or(Value::Null, |fields| fields.0);
        let data = crate::text::hex(&owned_data_digest(self, Some(&owned)));
        compact(self);
        self.metadata.annotations.get_or_insert_default().insert(DATA_DIGEST.to_owned(), data);
    }
}

impl Trim for Namespace {
    /// Its spec and status (finalizers, phase, conditions) are the API server's business, and a
    /// namespace being deleted shows in its metadata: neither is decoded.
    fn prune(value: &mut Value) {
        if let Some(fields) = value.as_object_mut() {
            fields.remove("spec");
            fields.remove("status");
        }
    }

    fn trim(&mut self) {
        compact(self);
    }
}

impl Trim for Role {
    fn trim(&mut self) {
        compact(self);
    }
}

impl Trim for RoleBinding {
    fn trim(&mut self) {
        compact(self);
    }
}

/// The answer to a write, metadata only (`apply::apply`): nothing to reduce.
impl<K> Trim for kube::core::PartialObjectMeta<K> {
    fn trim(&mut self) {}
}

/// Labels of an MLTenant or SealedBundle kept: what selectors match (`tenantSelector`,
/// `--bundle-selector`) needs no more, and Kubernetes bounds their number only by the object's
/// size.
const OWN_KIND_LABELS: usize = 64;

/// Keep the first [`OWN_KIND_LABELS`] labels (in key order).
fn cap_labels(meta: &mut ObjectMeta) {
    if let Some(labels) = meta.labels.as_mut()
        && labels.len() > OWN_KIND_LABELS
    {
        let kept: BTreeMap<String, String> = std::mem::take(labels).into_iter().take(OWN_KIND_LABELS).collect();
        *labels = kept;
    }
}

impl Trim for MLTenant {
    fn prune(value: &mut Value) {
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    }

    fn trim(&mut self) {
        slim(&mut self.metadata);
        cap_labels(&mut self.metadata);
        // No decision reads a tenant's annotations.
        self.metadata.annotations = None;
    }
}

impl Trim for SealedBundle {
    fn prune(value: &mut Value) {
        <MLTenant as Trim>::prune(value);
    }

    fn trim(&mut self) {
        slim(&mut self.metadata);
        cap_labels(&mut self.metadata);
        // No decision reads a bundle's annotations: the cache gets only the source hash.
        self.metadata.annotations = None;
        unseal::keep_digests(self);
    }
}

/// `desired` as the cache holds it once the operator applied it (its field manager owning
/// exactly what it applied) and `edit` changed it: for the tables of decisions.
#[cfg(test)]
pub fn as_cached<K: Compact + Trim + Clone + serde::Serialize>(desired: &K, edit: impl FnOnce(&mut K)) -> K {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    let value = serde_json::to_value(desired).expect("an object serializes");
    let keys = |map: &Value| -> Value {
        let owned =
            map.as_object().into_iter().flatten().map(|(k, _)| (format!("f:{k}"), Value::Object(Default::default())));
        Value::Object(owned.collect())
    };
    let mut fields = serde_json::json!({"f:metadata": {
        "f:labels": keys(&value["metadata"]["labels"]),
        "f:annotations": keys(&value["metadata"]["annotations"]),
    }});
    if value.get("data").is_some() {
        fields["f:data"] = keys(&value["data"]);
    }
    for field in ["rules", "subjects", "type"] {
        if value.get(field).is_some() {
            fields[format!("f:{field}")] = Value::Object(Default::default());
        }
    }
    let mut stored = desired.clone();
    stored.meta_mut().managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some(labels::FIELD_MANAGER.into()),
        operation: Some("Apply".into()),
        fields_v1: Some(FieldsV1(fields)),
        ..Default::default()
    }]);
    edit(&mut stored);
    stored.trim();
    stored
}

#[cfg(test)]
mod tests;
