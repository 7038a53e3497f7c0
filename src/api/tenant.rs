use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::conditions::reason;
use super::limits::{self, *};

/// One ML team: its environment namespaces, the credentials written into them and who may
/// read those credentials. Cluster-scoped; every field is optional except `environments`, and
/// the schema injects no defaults, so the object stays exactly as committed to Git.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mltenant.io",
    version = "v1alpha1",
    kind = "MLTenant",
    plural = "mltenants",
    shortname = "mlt",
    status = "MLTenantStatus",
    doc = "An ML team's environments and credentials.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    // Why not: the failing condition's reason (DecryptionFailed, NamespaceConflict, ...).
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn(name = "Environments", type_ = "string", json_path = ".status.environmentsReady"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    validation = Rule::new(
        "self.spec.environments.all(e, has(e.__namespace__) || (e.name == 'production' ? size(self.metadata.name) : size(self.metadata.name) + 1 + size(e.name)) <= 63)"
    ).message("a computed namespace name (<tenant>-<environment>, or <tenant> for production) exceeds 63 characters: shorten the names or set environments[].namespace"),
    validation = Rule::new(
        "self.spec.environments.all(e, has(e.__namespace__)) || self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"
    ).message("the tenant name must be a DNS-1123 label (no dots) unless every environment sets an explicit namespace"),
    validation = Rule::new(limits::protected_namespace_rule()).message(limits::protected_namespace_message().as_str())
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.secrets) || self.secrets.all(s, !has(s.environments) || s.environments.all(n, self.environments.exists(e, e.name == n)))")
        .message("secrets[].environments must only name environments declared in spec.environments"),
    validation = Rule::new("!has(self.secrets) || self.secrets.all(s, !has(s.environmentBundles) || s.environmentBundles.all(n, self.environments.exists(e, e.name == n)))")
        .message("secrets[].environmentBundles keys must name environments declared in spec.environments"),
    validation = Rule::new("!has(self.secretReaders) || !has(self.secrets) || self.secretReaders.all(r, !has(r.secrets) || r.secrets.all(n, self.secrets.exists(s, s.name == n)))")
        .message("secretReaders[].secrets must only name secrets declared in spec.secrets"),
    validation = Rule::new("self.environments.all(e, !has(e.__namespace__) || self.environments.exists_one(f, has(f.__namespace__) && f.__namespace__ == e.__namespace__))")
        .message("two environments must not set the same namespace")
)]
pub struct MLTenantSpec {
    /// The team's environments; each gets its own namespace.
    #[schemars(length(min = 1, max = MAX_ENVIRONMENTS))]
    #[x_kube(validation = Rule::new("self.all(e, self.exists_one(f, f.name == e.name))").message("environment names must be unique"))]
    pub environments: Vec<EnvironmentSpec>,

    /// Secrets written, with the same name, into the environment namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_SECRETS))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("secret names must be unique"))]
    pub secrets: Option<Vec<SecretSpec>>,

    /// Service accounts allowed to `get` the distributed Secrets (and nothing else); each at
    /// most once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_READERS))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(o, o.serviceAccount == r.serviceAccount))").message("each serviceAccount must be listed once in secretReaders"))]
    pub secret_readers: Option<Vec<SecretReader>>,

    /// What happens to namespaces when an environment or the tenant is removed:
    /// `Retain` (default) keeps them, `Delete` deletes the ones this tenant created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// Take over namespaces that already exist without any tenant's label. The namespace must
    /// consent too, with the label `mltenant.io/adoptable-by: <tenant>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt_existing_namespaces: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// Environment name, a DNS-1123 label: `dev`, `staging`, `production`, ...
    #[schemars(length(min = 1, max = DNS_LABEL_MAX), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,

    /// Explicit namespace name. Default: the tenant name for `production`,
    /// `<tenant>-<environment>` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DNS_LABEL_MAX), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,

    /// Extra labels for the namespace (e.g. Pod Security admission levels). Reserved prefixes
    /// (`kubernetes.io/`, `k8s.io/`, `mltenant.io/`, `argocd.argoproj.io/`, ... and their
    /// subdomains) are refused, except `pod-security.kubernetes.io/`, whose `enforce` level may
    /// only be `baseline` or `restricted`. At most 64 labels of Kubernetes' label syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = MAX_LABELS, "additionalProperties" = super::schemas::label_value()))]
    #[x_kube(
        validation = Rule::new(limits::namespace_label_rule()).message(limits::namespace_label_message().as_str()),
        validation = Rule::new(limits::pod_security_rule()).message(limits::pod_security_message().as_str()),
        validation = Rule::new(limits::qualified_keys_rule(false)).message(limits::qualified_keys_message("environments[].labels").as_str()),
        validation = Rule::new(limits::map_size_rule(MAX_MAP_CHARS)).message(limits::map_size_message("environments[].labels", MAX_MAP_CHARS).as_str())
    )]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretSpec {
    /// Name of the Secret in every environment namespace.
    #[schemars(length(min = 1, max = DNS_SUBDOMAIN_MAX), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,

    /// The SealedBundle to decrypt.
    #[schemars(length(min = 1, max = DNS_SUBDOMAIN_MAX), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub bundle: String,

    /// Per-environment bundle override, keyed by environment name; each a SealedBundle name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "maxProperties" = MAX_ENVIRONMENTS,
        "additionalProperties" = {"type": "string", "maxLength": DNS_SUBDOMAIN_MAX, "pattern": DNS_SUBDOMAIN_PATTERN},
        "x-kubernetes-validations" = [{
            "rule": limits::map_size_rule(MAX_MAP_CHARS),
            "message": limits::map_size_message("secrets[].environmentBundles", MAX_MAP_CHARS),
        }]
    ))]
    pub environment_bundles: Option<BTreeMap<String, String>>,

    /// Only these environments get the Secret. Default: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = MAX_ENVIRONMENTS),
        inner(length(max = DNS_LABEL_MAX), regex(pattern = DNS_LABEL_PATTERN))
    )]
    pub environments: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReader {
    /// The ServiceAccount that gets `get` on the Secrets (a Role and RoleBinding per
    /// environment namespace).
    pub service_account: ServiceAccountRef,
    /// Secrets this account may `get`. Default: every secret in `spec.secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = MAX_SECRETS),
        inner(length(max = DNS_SUBDOMAIN_MAX), regex(pattern = DNS_SUBDOMAIN_PATTERN))
    )]
    pub secrets: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema)]
pub struct ServiceAccountRef {
    /// The ServiceAccount's namespace (a DNS-1123 label).
    #[schemars(length(min = 1, max = DNS_LABEL_MAX), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// The ServiceAccount's name (a DNS-1123 subdomain).
    #[schemars(length(min = 1, max = DNS_SUBDOMAIN_MAX), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MLTenantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
    /// `Ready` (overall), `NamespacesReady`, `SecretsSynced`, `AccessGranted` and
    /// `CredentialsExpiring`, each with a reason and message.
    #[serde(default)]
    #[schemars(schema_with = "super::schemas::conditions")]
    pub conditions: Vec<Condition>,
    /// Per environment: its namespace, whether it is ready and the Secrets in it.
    #[serde(default)]
    #[schemars(length(max = MAX_ENVIRONMENTS))]
    pub environments: Vec<EnvironmentStatus>,
    /// `<ready>/<declared>` environments, for `kubectl get mlt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = STATUS_COUNT_MAX))]
    pub environments_ready: Option<String>,
    /// What the operator created (or adopted) for this tenant, by UID: the only namespaces it
    /// ever deletes and the only Secrets, Roles and RoleBindings it ever updates or deletes.
    /// Labels and annotations, which others can set, are never proof of that. Only the operator
    /// writes it (the chart's `tenant-guard` admission policy refuses anyone else changing it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::MAX_OWNED))]
    pub owned: Option<Vec<OwnedObject>>,
}

/// One object the operator created for a tenant (a namespace also when adopted).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnedObject {
    /// `Namespace`, `Secret`, `Role` or `RoleBinding`.
    pub kind: OwnedKind,
    /// The object's namespace (none for a namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DNS_LABEL_MAX), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
    /// The object's name.
    #[schemars(length(min = 1, max = DNS_SUBDOMAIN_MAX), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Its UID, from the answer to the create. Absent while the create is in flight: the entry
    /// is written before the create is sent, so that an operator stopped between the two still
    /// knows the object it may have created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub uid: Option<String>,
    /// A namespace taken over with its owner's consent, not created: never deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
pub enum OwnedKind {
    Namespace,
    Secret,
    Role,
    RoleBinding,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// The environment's name, as in `spec.environments`.
    #[schemars(length(max = DNS_LABEL_MAX), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// The environment's namespace.
    #[schemars(length(max = DNS_LABEL_MAX), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// Whether the namespace exists and belongs to this tenant.
    pub ready: bool,
    /// Why it is not ready (e.g. `NamespaceConflict`), when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = STATUS_REASON_MAX))]
    pub reason: Option<String>,
    /// The Secrets distributed into this environment's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_SECRETS))]
    pub secrets: Vec<SecretStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStatus {
    /// Name of the Secret in the namespace.
    #[schemars(length(max = DNS_SUBDOMAIN_MAX), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// The SealedBundle it is written from.
    #[schemars(length(max = DNS_SUBDOMAIN_MAX), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub bundle: String,
    /// Whether the Secret holds the bundle's current content.
    pub synced: bool,
    /// Why not (a `SecretsSynced` reason), when not synced; the last good Secret stays in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = STATUS_REASON_MAX))]
    pub reason: Option<String>,
    /// `sha256:` of the bundle ciphertext the Secret was written from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = STATUS_DIGEST_MAX))]
    pub source_hash: Option<String>,
    /// When the credentials in it stop working (the bundle's `expiresAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = MAX_TIME_CHARS, "x-kubernetes-validations" = limits::time_range_validations()))]
    pub expires_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Its declared readers and when each last read it, recorded from the API server's audit
    /// events while the operator's audit sink is enabled (refreshed at most every
    /// `--usage-record-period`): a grant not used for long can go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_READERS))]
    pub readers: Vec<ReaderStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReaderStatus {
    /// The declared reader, `namespace/name` of its ServiceAccount.
    #[schemars(length(max = SERVICE_ACCOUNT_MAX), regex(pattern = SERVICE_ACCOUNT_PATTERN))]
    pub service_account: String,
    /// When it last read the Secret with its own credentials (`get`, or a `list`/`watch` of
    /// its namespace); absent if it has not since `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = MAX_TIME_CHARS, "x-kubernetes-validations" = limits::time_range_validations()))]
    pub last_read_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Since when its reads are recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = MAX_TIME_CHARS, "x-kubernetes-validations" = limits::time_range_validations()))]
    pub since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

impl MLTenant {
    /// Whether the last status had environment `name` ready, or terminating (so a namespace
    /// missing now was deleted, not never created).
    pub fn had_environment(&self, name: &str) -> bool {
        self.environment_status(name).is_some_and(|e| e.ready || e.reason.as_deref() == Some(reason::TERMINATING))
    }

    /// Whether the last status had Secret `secret` synced in environment `environment`.
    pub fn had_secret(&self, environment: &str, secret: &str) -> bool {
        self.environment_status(environment).is_some_and(|e| e.secrets.iter().any(|s| s.name == secret && s.synced))
    }

    fn environment_status(&self, name: &str) -> Option<&EnvironmentStatus> {
        self.status.as_ref()?.environments.iter().find(|e| e.name == name)
    }
}

impl MLTenantSpec {
    /// A spec of `environments` only, every optional field unset (no secrets, no readers, the
    /// default policies). Tests and benches build specs with these constructors (and those of
    /// the parts: `EnvironmentSpec::named`, `SecretSpec::new`, `SecretReader::new`), so a new
    /// optional field touches only them.
    pub fn new(environments: Vec<EnvironmentSpec>) -> Self {
        MLTenantSpec {
            environments,
            secrets: None,
            secret_readers: None,
            deletion_policy: None,
            adopt_existing_namespaces: None,
        }
    }

    /// Like `new`, with environments of these names in their computed namespaces.
    pub fn with_environments(names: &[&str]) -> Self {
        Self::new(names.iter().copied().map(EnvironmentSpec::named).collect())
    }

    /// The names of the SealedBundles this spec distributes (a bundle change concerns exactly
    /// the tenants whose spec names it).
    pub fn referenced_bundles(&self) -> std::collections::BTreeSet<&str> {
        let specs = self.secrets.iter().flatten();
        specs
            .flat_map(|s| {
                std::iter::once(s.bundle.as_str())
                    .chain(s.environment_bundles.iter().flat_map(|m| m.values().map(String::as_str)))
            })
            .collect()
    }
}

impl EnvironmentSpec {
    /// Environment `name` in its computed namespace, without extra labels.
    pub fn named(name: &str) -> Self {
        EnvironmentSpec { name: name.to_owned(), namespace: None, labels: None }
    }

    /// The environment in the explicit namespace `namespace`.
    pub fn in_namespace(self, namespace: &str) -> Self {
        EnvironmentSpec { namespace: Some(namespace.to_owned()), ..self }
    }
}

impl SecretSpec {
    /// Secret `name` from SealedBundle `bundle`, in every environment, without overrides.
    pub fn new(name: impl Into<String>, bundle: impl Into<String>) -> Self {
        SecretSpec { name: name.into(), bundle: bundle.into(), environment_bundles: None, environments: None }
    }

    /// The secret only in `environments`.
    pub fn environments(self, environments: &[&str]) -> Self {
        SecretSpec { environments: Some(environments.iter().map(|&e| e.to_owned()).collect()), ..self }
    }
}

impl SecretReader {
    /// ServiceAccount `namespace/name` may `get` every secret of the tenant.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        SecretReader {
            service_account: ServiceAccountRef { namespace: namespace.into(), name: name.into() },
            secrets: None,
        }
    }

    /// The reader may `get` only `secrets`.
    pub fn secrets(self, secrets: &[&str]) -> Self {
        SecretReader { secrets: Some(secrets.iter().map(|&s| s.to_owned()).collect()), ..self }
    }

    /// The name of the Role and RoleBinding that grant this reader its Secrets in each
    /// environment namespace: `mltenant-reader-<sa namespace>-<sa name>`, shortened with a hash
    /// past the name limit.
    pub fn grant_name(&self) -> String {
        let name = format!("mltenant-reader-{}-{}", self.service_account.namespace, self.service_account.name);
        crate::text::fit_name(&name, 253)
    }
}

impl MLTenantSpec {
    /// Refuse readers whose grants would share a name (`a-b/c` and `a/b-c` both give
    /// `mltenant-reader-a-b-c`): one Role cannot say what each of them may read.
    pub fn check_readers(&self) -> Result<(), String> {
        let mut seen = BTreeMap::new();
        for reader in self.secret_readers.iter().flatten() {
            let account = &reader.service_account;
            if let Some(other) = seen.insert(reader.grant_name(), account) {
                return Err(format!(
                    "secretReaders {}/{} and {}/{} would share the Role {}: list each ServiceAccount once",
                    other.namespace,
                    other.name,
                    account.namespace,
                    account.name,
                    reader.grant_name()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readers(readers: Vec<SecretReader>) -> MLTenantSpec {
        MLTenantSpec { secret_readers: Some(readers), ..MLTenantSpec::with_environments(&["dev"]) }
    }

    #[test]
    fn a_secret_limited_to_some_environments_names_them() {
        let spec = SecretSpec::new("ghcr", "ghcr-bundle").environments(&["production"]);
        assert_eq!((spec.name.as_str(), spec.bundle.as_str()), ("ghcr", "ghcr-bundle"));
        assert_eq!(spec.environments, Some(vec!["production".to_owned()]));
    }

    /// What the last status says decides whether something missing now was deleted (and is
    /// restored, with an Event) or never existed.
    #[test]
    fn the_last_status_says_what_the_tenant_had() {
        let tenant: MLTenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "mltenant.io/v1alpha1", "kind": "MLTenant", "metadata": {"name": "t"},
            "spec": {"environments": [{"name": "dev"}, {"name": "staging"}, {"name": "qa"}]},
            "status": {"environments": [
                {"name": "dev", "namespace": "t-dev", "ready": true, "secrets": [
                    {"name": "s", "bundle": "b", "synced": true},
                    {"name": "u", "bundle": "b", "synced": false, "reason": "DecryptionFailed"}]},
                {"name": "staging", "namespace": "t-staging", "ready": false, "reason": "Terminating",
                 "secrets": [{"name": "s", "bundle": "b", "synced": false}]},
                {"name": "qa", "namespace": "t-qa", "ready": false, "reason": "NamespaceConflict"}]}
        }))
        .unwrap();
        let had: Vec<bool> = ["dev", "staging", "qa", "production"].map(|e| tenant.had_environment(e)).into();
        assert_eq!(had, [true, true, false, false]);
        let had: Vec<bool> =
            [("dev", "s"), ("dev", "u"), ("staging", "s"), ("qa", "s")].map(|(e, s)| tenant.had_secret(e, s)).into();
        assert_eq!(had, [true, false, false, false]);
    }

    #[test]
    fn readers_whose_grants_would_share_a_name_are_refused() {
        let argo = SecretReader::new("argowf", "argo-workflow");
        assert!(readers(vec![argo.clone(), SecretReader::new("argowf", "other")]).check_readers().is_ok());
        let err =
            readers(vec![SecretReader::new("a-b", "c"), SecretReader::new("a", "b-c")]).check_readers().unwrap_err();
        assert!(err.contains("a-b/c and a/b-c would share the Role mltenant-reader-a-b-c"), "{err}");
        assert!(readers(vec![argo.clone(), argo.secrets(&["ml-platform"])]).check_readers().is_err(), "listed twice");
    }

    #[test]
    fn long_grant_names_are_shortened() {
        let reader = SecretReader::new("argowf", "x".repeat(253));
        assert!(reader.grant_name().len() <= 253);
        assert!(reader.grant_name().starts_with("mltenant-reader-argowf-xxx"));
    }

    proptest::proptest! {
        #[test]
        fn grant_names_never_panic_and_fit(namespace in ".{0,70}", name in ".{0,300}") {
            proptest::prop_assert!(SecretReader::new(namespace, name).grant_name().len() <= 253);
        }
    }
}
