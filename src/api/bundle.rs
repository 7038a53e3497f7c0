use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::limits;

/// A set of sealed values (what `mltenant seal` prints). Only the operator's private keys
/// open it, and only for the consumers its scope names.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mltenant.io",
    version = "v1alpha1",
    kind = "SealedBundle",
    plural = "sealedbundles",
    shortname = "sb",
    status = "SealedBundleStatus",
    doc = "Sealed credentials, decryptable only by the operator for the consumers its scope allows.",
    // JSON form: clippy's duplicated_attributes misreads repeated `type_ = ...` in the list form.
    printcolumn = r#"{"name":"Scope","type":"string","jsonPath":".spec.scope"}"#,
    printcolumn = r#"{"name":"Tenant","type":"string","jsonPath":".spec.tenant"}"#,
    printcolumn = r#"{"name":"Decryptable","type":"string","jsonPath":".status.conditions[?(@.type==\"Decryptable\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Decryptable\")].reason"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Key","type":"string","priority":1,"jsonPath":".status.keyFingerprint"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scope == 'Cluster' ? !has(self.tenant) : has(self.tenant)")
        .message("tenant is required for Tenant and Environment scope and not allowed for Cluster scope"),
    validation = Rule::new("self.scope == 'Environment' ? has(self.environment) : !has(self.environment)")
        .message("environment is required for Environment scope and allowed only there"),
    validation = Rule::new("has(self.tenantSelector) == (self.scope == 'Cluster')")
        .message("tenantSelector is required for Cluster scope (use {} to allow every tenant) and allowed only there")
)]
pub struct SealedBundleSpec {
    /// Who may consume the bundle: `Cluster` (tenants matching `tenantSelector`), `Tenant`
    /// (every environment of `tenant`) or `Environment` (`tenant`'s `environment` only).
    pub scope: BundleScope,

    /// Tenant and Environment scope: the MLTenant that may use the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tenant: Option<String>,

    /// Environment scope: the one environment of `tenant` that may use the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub environment: Option<String>,

    /// Cluster scope only: the MLTenants (by label) allowed to use this bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_selector: Option<LabelSelector>,

    /// Type of the produced Secrets. Default `Opaque`. One of `Opaque`,
    /// `kubernetes.io/dockerconfigjson`, `kubernetes.io/dockercfg`, `kubernetes.io/basic-auth`,
    /// `kubernetes.io/ssh-auth`, `kubernetes.io/tls`; the payload is checked against it.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(limits::secret_type_rule()).message(limits::secret_type_message().as_str()))]
    pub type_: Option<String>,

    /// Labels and annotations for the produced Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,

    /// When the credentials inside stop working (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// Sealed values: base64 of the sealed-secrets hybrid format, keyed by Secret data key.
    /// At most 128 values.
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[-._a-zA-Z0-9]+$'))").message("encryptedData keys must be valid Secret keys ([-._a-zA-Z0-9]+)"))]
    #[schemars(length(min = 1), extend("maxProperties" = limits::MAX_VALUES))]
    pub encrypted_data: BTreeMap<String, String>,
}

impl SealedBundleSpec {
    /// A bundle of `scope` with `encrypted_data`, every optional field unset except the
    /// `tenantSelector` Cluster scope requires, which allows every tenant (`{}`). Tenant and
    /// Environment scope still need `tenant` (and `environment`): set them with
    /// `SealedBundleSpec { tenant: ..., ..SealedBundleSpec::new(scope, data) }`.
    pub fn new(scope: BundleScope, encrypted_data: BTreeMap<String, String>) -> Self {
        SealedBundleSpec {
            scope,
            tenant: None,
            environment: None,
            tenant_selector: (scope == BundleScope::Cluster).then(LabelSelector::default),
            type_: None,
            template: None,
            expires_at: None,
            encrypted_data,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum BundleScope {
    Cluster,
    Tenant,
    Environment,
}

/// Metadata for the produced Secrets. Keys under `kubernetes.io/`, `k8s.io/`, `mltenant.io/`
/// and `argocd.argoproj.io/` (or their subdomains) are refused: they steer Kubernetes, this
/// operator or Argo CD.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct SecretTemplate {
    /// Labels of the produced Secrets (the operator's own labels are added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(limits::reserved_key_rule()).message(limits::reserved_key_message().as_str()))]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations of the produced Secrets (the operator's own annotations are added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(limits::reserved_key_rule()).message(limits::reserved_key_message().as_str()))]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedBundleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Decryptable`: whether the bundle opens for the consumer its scope names, and why not.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Fingerprint of the sealing key that opens this bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
}
