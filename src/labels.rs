//! Names the operator stamps on what it manages. Watches select on [`MANAGED_BY`], so the
//! operator's memory does not grow with unrelated objects in the cluster.

use std::collections::BTreeMap;

/// The one server-side-apply field manager used for every write.
pub const FIELD_MANAGER: &str = "mltenant-operator";
/// Finalizer that lets the operator revoke credentials and apply `deletionPolicy` first.
pub const FINALIZER: &str = "mltenant.io/cleanup";

pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "mltenant-operator";
pub const TENANT: &str = "mltenant.io/tenant";
pub const ENVIRONMENT: &str = "mltenant.io/environment";

/// Whether the operator created a namespace (`created`) or took it over (`adopted`);
/// `deletionPolicy: Delete` only ever deletes `created` ones.
pub const ORIGIN: &str = "mltenant.io/origin";
pub const ORIGIN_CREATED: &str = "created";
pub const ORIGIN_ADOPTED: &str = "adopted";
/// UID of the tenant a namespace belongs to: recognises our namespace even when someone strips
/// its labels (namespaces under `Retain` carry no ownerReference, see `namespaces::desired`).
pub const TENANT_UID: &str = "mltenant.io/tenant-uid";
/// Left on a namespace the operator let go of under `deletionPolicy: Retain`.
pub const RELEASED_FROM: &str = "mltenant.io/released-from";

/// On distributed Secrets: the SealedBundle they come from, a hash of its ciphertext (never of
/// the plaintext) and when the credentials expire.
pub const BUNDLE: &str = "mltenant.io/bundle";
pub const SOURCE_HASH: &str = "mltenant.io/source-hash";
pub const EXPIRES_AT: &str = "mltenant.io/expires-at";

/// Label selector matching everything this operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_KEY}={MANAGED_BY}")
}

/// Label selector matching what this operator manages for tenants (not its own sealing keys).
pub fn tenant_children_selector() -> String {
    format!("{MANAGED_BY_KEY}={MANAGED_BY},{TENANT}")
}

/// The label every object of this operator carries.
pub fn managed_by() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_KEY.to_owned(), MANAGED_BY.to_owned())])
}

/// The labels every object managed for `tenant`'s `environment` carries.
pub fn managed(tenant: &str, environment: &str) -> BTreeMap<String, String> {
    let mut labels = managed_by();
    labels.insert(TENANT.to_owned(), tenant.to_owned());
    labels.insert(ENVIRONMENT.to_owned(), environment.to_owned());
    labels
}
