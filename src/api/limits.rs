//! The trust-boundary vocabulary of the API: protected namespaces, allowed Secret types,
//! reserved metadata prefixes and size caps. One list each, used both to generate the CRDs' CEL
//! rules (the API server refuses a bad manifest) and by the operator at run time (objects stored
//! under an older CRD, and the operator's own namespace or `--protected-namespaces`, which no
//! CRD can know).

/// Namespaces no tenant may ever name, whatever the installation: `default`, and every name
/// starting with `kube-` (`kube-system`, `kube-public`, `kube-node-lease`, and the prefix
/// Kubernetes reserves for its system namespaces, so a tenant cannot claim one before the
/// component that needs it is installed). An entry ending in `*` is a prefix.
pub const BUILTIN_PROTECTED_NAMESPACES: [&str; 2] = ["default", "kube-*"];

/// The Secret types a SealedBundle may produce. Anything else (notably
/// `kubernetes.io/service-account-token`, which makes Kubernetes mint a token) is refused.
pub const SECRET_TYPES: [&str; 6] = [OPAQUE, DOCKER_CONFIG_JSON, DOCKER_CFG, BASIC_AUTH, SSH_AUTH, TLS];
pub const OPAQUE: &str = "Opaque";
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CFG: &str = "kubernetes.io/dockercfg";
pub const BASIC_AUTH: &str = "kubernetes.io/basic-auth";
pub const SSH_AUTH: &str = "kubernetes.io/ssh-auth";
/// Also the type of the operator's own sealing-key Secrets.
pub const TLS: &str = "kubernetes.io/tls";

/// Label and annotation prefixes a bundle's template may not use (the prefix itself or any of
/// its subdomains): they steer Kubernetes itself, this operator or Argo CD, or they make a
/// replicating controller (emberstack's Reflector, mittwald's Replicator, AppsCode's Kubed)
/// copy the decrypted Secret into namespaces the bundle's author chooses.
pub const RESERVED_PREFIXES: [&str; 7] =
    ["kubernetes.io", "k8s.io", "mltenant.io", "argocd.argoproj.io", "emberstack.com", "mittwald.de", "appscode.com"];

/// The one reserved prefix a tenant's namespace labels may use: Pod Security admission's.
pub const POD_SECURITY_PREFIX: &str = "pod-security.kubernetes.io/";
/// The Pod Security label that decides what runs, and the levels a tenant may set it to: it may
/// tighten the cluster's default, never loosen it to `privileged`.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
pub const POD_SECURITY_LEVELS: [&str; 2] = ["baseline", "restricted"];
/// Every label Pod Security admission reads: a level per mode, and the policy version per mode.
pub const POD_SECURITY_LABELS: [&str; 6] = [
    "pod-security.kubernetes.io/enforce",
    "pod-security.kubernetes.io/enforce-version",
    "pod-security.kubernetes.io/audit",
    "pod-security.kubernetes.io/audit-version",
    "pod-security.kubernetes.io/warn",
    "pod-security.kubernetes.io/warn-version",
];

/// Values one SealedBundle may hold: each is one RSA decryption per consumer.
pub const MAX_VALUES: usize = 128;

/// Entries of a tenant's `status.owned`: per environment its namespace, a Secret per
/// `spec.secrets` entry and a Role and a RoleBinding per reader (16 x (1 + 32 + 2 x 16)), twice
/// over, for the moment a spec change has created the new ones and not yet removed the old.
pub const MAX_OWNED: usize = 2 * 16 * (1 + 32 + 2 * 16);

/// Whether `key` (a label or annotation key) uses a reserved prefix.
pub fn is_reserved_key(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else { return false };
    RESERVED_PREFIXES.iter().any(|r| prefix == *r || prefix.strip_suffix(r).is_some_and(|sub| sub.ends_with('.')))
}

/// Why a tenant's label for its namespaces is refused, if it is: a reserved prefix other than
/// Pod Security's, or Pod Security enforcement loosened.
pub fn namespace_label_refusal(key: &str, value: &str) -> Option<String> {
    if is_reserved_key(key) && !key.starts_with(POD_SECURITY_PREFIX) {
        return Some(format!("namespace label {key} uses a reserved prefix ({})", namespace_label_message()));
    }
    if key == POD_SECURITY_ENFORCE && !POD_SECURITY_LEVELS.contains(&value) {
        return Some(format!("namespace label {key}={value}: {}", pod_security_message()));
    }
    None
}

/// CEL list literal of `items`: `['a', 'b']`.
fn cel_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// CEL (on the MLTenant): no environment's namespace, explicit or computed, is protected. The
/// computed `<tenant>-<environment>` is matched through the tenant name (and, for an exact
/// name, the (tenant, environment) pairs that would spell it), because concatenating unbounded
/// strings costs more than the API server's rule budget allows.
pub fn protected_namespace_rule() -> String {
    let (prefixes, exact): (Vec<&str>, Vec<&str>) =
        BUILTIN_PROTECTED_NAMESPACES.iter().partition(|entry| entry.ends_with('*'));
    let prefixes: Vec<&str> = prefixes.iter().map(|p| p.trim_end_matches('*')).collect();
    let protected = |name: &str| {
        let starts: Vec<String> = prefixes.iter().map(|p| format!("{name}.startsWith('{p}')")).collect();
        format!("({name} in {} || {})", cel_list(&exact), starts.join(" || "))
    };
    // `<tenant>-<environment>` starts with `p-` when the tenant is `p` or starts with `p-`.
    let computed: Vec<String> = prefixes
        .iter()
        .map(|p| format!("self.metadata.name == '{}' || self.metadata.name.startsWith('{p}')", p.trim_end_matches('-')))
        .chain(
            exact
                .iter()
                .flat_map(|ns| ns.match_indices('-').map(|(i, _)| (&ns[..i], &ns[i + 1..])))
                .map(|(tenant, env)| format!("(self.metadata.name == '{tenant}' && e.name == '{env}')")),
        )
        .collect();
    format!(
        "self.spec.environments.all(e, !(has(e.__namespace__) ? {} : e.name == 'production' ? {} : ({})))",
        protected("e.__namespace__"),
        protected("self.metadata.name"),
        computed.join(" || ")
    )
}

pub fn protected_namespace_message() -> String {
    format!(
        "an environment maps to a protected namespace ({}): the operator never writes there",
        BUILTIN_PROTECTED_NAMESPACES.join(", ")
    )
}

/// CEL (on `type`): one of the allowed Secret types.
pub fn secret_type_rule() -> String {
    format!("self in {}", cel_list(&SECRET_TYPES))
}

pub fn secret_type_message() -> String {
    format!("type must be one of {}", SECRET_TYPES.join(", "))
}

/// CEL (on a template's labels or annotations): no key uses a reserved prefix.
pub fn reserved_key_rule() -> String {
    format!("self.all(k, {})", reserved_key_test("k"))
}

/// CEL: `key` uses no reserved prefix (nor a subdomain of one).
fn reserved_key_test(key: &str) -> String {
    let alternatives: Vec<String> = RESERVED_PREFIXES.iter().map(|p| p.replace('.', "\\\\.")).collect();
    format!("!{key}.matches('^([^/]*\\\\.)?({})/')", alternatives.join("|"))
}

pub fn reserved_key_message() -> String {
    format!(
        "template labels and annotations must not use the prefixes {} (or their subdomains)",
        RESERVED_PREFIXES.map(|p| format!("{p}/")).join(", ")
    )
}

/// CEL (on an environment's labels): no reserved prefix but Pod Security's.
pub fn namespace_label_rule() -> String {
    format!("self.all(k, k.startsWith('{POD_SECURITY_PREFIX}') || {})", reserved_key_test("k"))
}

pub fn namespace_label_message() -> String {
    format!(
        "namespace labels must not use the prefixes {} (or their subdomains), except {POD_SECURITY_PREFIX}",
        RESERVED_PREFIXES.map(|p| format!("{p}/")).join(", ")
    )
}

/// CEL (on an environment's labels): Pod Security enforcement only tightened.
pub fn pod_security_rule() -> String {
    format!(
        "!('{POD_SECURITY_ENFORCE}' in self) || self['{POD_SECURITY_ENFORCE}'] in {}",
        cel_list(&POD_SECURITY_LEVELS)
    )
}

pub fn pod_security_message() -> String {
    format!(
        "{POD_SECURITY_ENFORCE} may only be {} (a tenant may tighten the cluster's default, not loosen it)",
        POD_SECURITY_LEVELS.join(" or ")
    )
}

/// Namespaces the operator never creates, adopts, labels, writes into or grants on (rule 1 of
/// the trust boundaries): the built-in ones, the operator's own, and what the installation adds.
/// An entry ending in `*` protects every namespace with that prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protected {
    entries: Vec<String>,
}

impl Protected {
    /// The built-in list, `own` (the operator's namespace) and `extra`.
    pub fn new(own: &str, extra: impl IntoIterator<Item = String>) -> Self {
        let mut entries: Vec<String> = BUILTIN_PROTECTED_NAMESPACES.iter().map(|n| n.to_string()).collect();
        entries.push(own.to_owned());
        entries.extend(extra.into_iter().map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()));
        entries.sort();
        entries.dedup();
        Self { entries }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        self.entries.iter().any(|entry| match entry.strip_suffix('*') {
            Some(prefix) => namespace.starts_with(prefix),
            None => entry == namespace,
        })
    }

    /// The entries, for messages.
    pub fn list(&self) -> String {
        self.entries.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_prefixes_and_their_subdomains() {
        for key in [
            "kubernetes.io/service-account.name",
            "kubernetes.io/service-account.uid",
            "node-role.kubernetes.io/x",
            "k8s.io/x",
            "mltenant.io/tenant",
            "argocd.argoproj.io/instance",
            "a.b.argocd.argoproj.io/x",
        ] {
            assert!(is_reserved_key(key), "{key}");
        }
        for key in ["team", "example.com/owner", "notkubernetes.io/x", "app.kubernetes.io.evil.com/x", "kubernetes.io"]
        {
            assert!(!is_reserved_key(key), "{key}");
        }
    }

    #[test]
    fn computed_names_are_matched_through_the_tenant_name() {
        let rule = protected_namespace_rule();
        for part in [
            "e.__namespace__ in ['default'] || e.__namespace__.startsWith('kube-')",
            "self.metadata.name in ['default'] || self.metadata.name.startsWith('kube-')",
            "self.metadata.name == 'kube' || self.metadata.name.startsWith('kube-')",
        ] {
            assert!(rule.contains(part), "{part} missing from {rule}");
        }
    }

    #[test]
    fn the_admission_policy_holds_the_same_lists() {
        let policy = include_str!("../../charts/mltenant-operator/templates/admission-policy.yaml");
        let builtin = BUILTIN_PROTECTED_NAMESPACES.map(|ns| ns.trim_end_matches('*'));
        for name in SECRET_TYPES.iter().chain(&builtin).chain(&RESERVED_PREFIXES) {
            assert!(policy.contains(&format!("\"{name}\"")), "{name} is missing from the chart's admission policy");
        }
    }

    #[test]
    fn the_allowed_types_exclude_service_account_tokens() {
        assert!(SECRET_TYPES.contains(&"kubernetes.io/tls"));
        assert!(!SECRET_TYPES.contains(&"kubernetes.io/service-account-token"));
        assert!(secret_type_rule().starts_with("self in ['Opaque', "));
    }

    #[test]
    fn protected_namespaces() {
        let protected = Protected::new("mltenant-system", ["openshift-*".to_string(), " ".to_string()]);
        for ns in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "kube-flannel",
            "default",
            "mltenant-system",
            "openshift-x",
        ] {
            assert!(protected.contains(ns), "{ns}");
        }
        for ns in ["kube", "kubeflow", "fin-dev", "openshift", "defaults"] {
            assert!(!protected.contains(ns), "{ns}");
        }
        assert_eq!(protected.list(), "default, kube-*, mltenant-system, openshift-*");
    }
}
