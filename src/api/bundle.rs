use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::limits::{self, *};

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
    #[schemars(length(min = 1, max = DNS_SUBDOMAIN_MAX), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub tenant: Option<String>,

    /// Environment scope: the one environment of `tenant` that may use the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DNS_LABEL_MAX), regex(pattern = DNS_LABEL_PATTERN))]
    pub environment: Option<String>,

    /// Cluster scope only: the MLTenants (by label) allowed to use this bundle. At most 16
    /// `matchLabels` and 16 `matchExpressions` (of at most 64 values each), in label syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schemas::optional_label_selector")]
    pub tenant_selector: Option<LabelSelector>,

    /// Type of the produced Secrets. Default `Opaque`. One of `Opaque`,
    /// `kubernetes.io/dockerconfigjson`, `kubernetes.io/dockercfg`, `kubernetes.io/basic-auth`,
    /// `kubernetes.io/ssh-auth`, `kubernetes.io/tls`; the payload is checked against it.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_SECRET_TYPE_CHARS))]
    #[x_kube(validation = Rule::new(limits::secret_type_rule()).message(limits::secret_type_message().as_str()))]
    pub type_: Option<String>,

    /// Labels and annotations for the produced Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,

    /// When the credentials inside stop working (RFC 3339), before 9000-01-01T00:00:00Z.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = MAX_TIME_CHARS))]
    #[x_kube(validation = Rule::new(limits::time_range_rule()).message(limits::time_range_message().as_str()))]
    pub expires_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// Sealed values: base64 of the sealed-secrets hybrid format, keyed by Secret data key.
    /// At most 128 values of at most 1 MiB each once decoded, 1.5 MiB of text in all.
    #[x_kube(
        validation = Rule::new(limits::secret_keys_rule()).message(limits::secret_keys_message().as_str()),
        validation = Rule::new(limits::map_size_rule(MAX_SEALED_DATA_CHARS)).message(limits::map_size_message("encryptedData", MAX_SEALED_DATA_CHARS).as_str())
    )]
    #[schemars(
        length(min = 1),
        extend("maxProperties" = MAX_VALUES, "additionalProperties" = {"type": "string", "maxLength": MAX_SEALED_VALUE_CHARS})
    )]
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
    /// Labels of the produced Secrets (the operator's own labels are added): at most 64, in
    /// Kubernetes' label syntax, 16 KiB in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = MAX_LABELS, "additionalProperties" = super::schemas::label_value()))]
    #[x_kube(
        validation = Rule::new(limits::reserved_key_rule()).message(limits::reserved_key_message().as_str()),
        validation = Rule::new(limits::qualified_keys_rule(false)).message(limits::qualified_keys_message("template.labels").as_str()),
        validation = Rule::new(limits::map_size_rule(MAX_MAP_CHARS)).message(limits::map_size_message("template.labels", MAX_MAP_CHARS).as_str())
    )]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations of the produced Secrets (the operator's own annotations are added): at most
    /// 64, each value at most 4 KiB, 16 KiB in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "maxProperties" = MAX_ANNOTATIONS,
        "additionalProperties" = {"type": "string", "maxLength": MAX_ANNOTATION_VALUE}
    ))]
    #[x_kube(
        validation = Rule::new(limits::reserved_key_rule()).message(limits::reserved_key_message().as_str()),
        validation = Rule::new(limits::qualified_keys_rule(true)).message(limits::qualified_keys_message("template.annotations").as_str()),
        validation = Rule::new(limits::map_size_rule(MAX_MAP_CHARS)).message(limits::map_size_message("template.annotations", MAX_MAP_CHARS).as_str())
    )]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedBundleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
    /// `Decryptable`: whether the bundle opens for the consumer its scope names, and why not.
    #[serde(default)]
    #[schemars(schema_with = "super::schemas::conditions")]
    pub conditions: Vec<Condition>,
    /// Fingerprint of the sealing key that opens this bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = STATUS_DIGEST_MAX))]
    pub key_fingerprint: Option<String>,
    /// Fingerprints of every sealing key a value of this bundle needs (sorted): those that opened
    /// its values, and retired ones that would, also when another value fails. A key listed here
    /// is not deleted (its deletion waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_VALUES), inner(length(max = STATUS_DIGEST_MAX)))]
    pub key_fingerprints: Option<Vec<String>>,
}
