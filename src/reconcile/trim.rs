//! What the operator keeps in memory of each object it watches or reads: only what its
//! decisions look at. `managedFields` (its own entry alone was most of a cached object; the
//! `mltenant.io/applied` stamp replaces it, see `apply::stamped`) and `kubectl`'s last-applied
//! copy (for a SealedBundle, a second copy of every ciphertext) are dropped, and a Secret's
//! values are kept as SHA-256 digests: enough to tell whether a Secret holds what the operator
//! would write, without a plaintext copy of every distributed credential in the caches. A
//! SealedBundle's values are kept as digests too (`unseal::keep_digests`): they key the decrypt
//! cache, and a value not in it is decrypted from the bundle read again.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{MLTenant, SealedBundle};
use crate::unseal;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An object the operator caches, reduced to what it uses.
pub trait Trim {
    fn trim(&mut self);
}

/// Drop field ownership, the last-applied copy and the creation time: no decision reads them.
fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.creation_timestamp = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A Secret value as the trimmed Secret holds it: the first 16 bytes of its SHA-256. That tells
/// whether a live value is the one the operator would write (finding another value with the
/// same 128 bits is out of reach) in half the space of the whole hash, 1 MiB of the cache at
/// 1,000 tenants.
pub fn value_digest(value: &[u8]) -> ByteString {
    ByteString(crate::text::sha256(&[value])[..16].to_vec())
}

impl Trim for Secret {
    fn trim(&mut self) {
        slim(&mut self.metadata);
        for value in self.data.iter_mut().flat_map(|d| d.values_mut()) {
            *value = value_digest(&value.0);
        }
        self.string_data = None;
    }
}

impl Trim for Namespace {
    /// Its finalizers and phase are the API server's business; a namespace being deleted
    /// shows in its metadata.
    fn trim(&mut self) {
        slim(&mut self.metadata);
        self.spec = None;
        self.status = None;
    }
}

impl Trim for Role {
    fn trim(&mut self) {
        slim(&mut self.metadata);
    }
}

impl Trim for RoleBinding {
    fn trim(&mut self) {
        slim(&mut self.metadata);
    }
}

impl Trim for MLTenant {
    fn trim(&mut self) {
        slim(&mut self.metadata);
    }
}

impl Trim for SealedBundle {
    fn trim(&mut self) {
        slim(&mut self.metadata);
        unseal::keep_digests(self);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::*;

    #[test]
    fn a_trimmed_secret_holds_digests_and_no_field_ownership() {
        let entry = |manager: &str, operation: &str| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            ..Default::default()
        };
        let mut secret = Secret {
            metadata: ObjectMeta {
                managed_fields: Some(vec![entry("mltenant-operator", "Apply"), entry("kubectl-edit", "Update")]),
                annotations: Some([(LAST_APPLIED.to_string(), "{...}".to_string())].into()),
                creation_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())),
                ..Default::default()
            },
            data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
            ..Default::default()
        };
        secret.trim();
        assert_eq!(secret.data.as_ref().unwrap()["password"], value_digest(b"hunter2"));
        assert_ne!(secret.data.unwrap()["password"].0, b"hunter2");
        assert_eq!(secret.metadata.managed_fields, None);
        assert_eq!(secret.metadata.creation_timestamp, None);
        assert!(secret.metadata.annotations.unwrap().is_empty());
    }
}
