//! The trust-boundary vocabulary of the API: protected namespaces, allowed Secret types,
//! reserved metadata prefixes and size caps. One list each, used both to generate the CRDs' CEL
//! rules (the API server refuses a bad manifest) and by the operator at run time (objects stored
//! under an older CRD, and the operator's own namespace or `--protected-namespaces`, which no
//! CRD can know).

/// Namespaces no tenant may ever name, whatever the installation.
pub const BUILTIN_PROTECTED_NAMESPACES: [&str; 4] = ["kube-system", "kube-public", "kube-node-lease", "default"];

/// The Secret types a SealedBundle may produce. Anything else (notably
/// `kubernetes.io/service-account-token`, which makes Kubernetes mint a token) is refused.
pub const SECRET_TYPES: [&str; 6] =
    [OPAQUE, DOCKER_CONFIG_JSON, DOCKER_CFG, "kubernetes.io/basic-auth", "kubernetes.io/ssh-auth", "kubernetes.io/tls"];
pub const OPAQUE: &str = "Opaque";
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

/// Label and annotation prefixes a bundle's template may not use (the prefix itself or any of
/// its subdomains): they steer Kubernetes itself, this operator, or Argo CD.
pub const RESERVED_PREFIXES: [&str; 4] = ["kubernetes.io", "k8s.io", "mltenant.io", "argocd.argoproj.io"];

/// Values one SealedBundle may hold: each is one RSA decryption per consumer.
pub const MAX_VALUES: usize = 128;

/// Whether `key` (a label or annotation key) uses a reserved prefix.
pub fn is_reserved_key(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else { return false };
    RESERVED_PREFIXES.iter().any(|r| prefix == *r || prefix.strip_suffix(r).is_some_and(|sub| sub.ends_with('.')))
}

/// CEL list literal of `items`: `['a', 'b']`.
fn cel_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// CEL (on the MLTenant): no environment's namespace, explicit or computed, is protected. The
/// computed `<tenant>-<environment>` is matched as the (tenant, environment) pairs that would
/// spell a protected name, because concatenating unbounded strings costs more than the API
/// server's rule budget allows.
pub fn protected_namespace_rule() -> String {
    let list = cel_list(&BUILTIN_PROTECTED_NAMESPACES);
    let pairs: Vec<String> = BUILTIN_PROTECTED_NAMESPACES
        .iter()
        .flat_map(|ns| ns.match_indices('-').map(|(i, _)| (&ns[..i], &ns[i + 1..])))
        .map(|(tenant, env)| format!("(self.metadata.name == '{tenant}' && e.name == '{env}')"))
        .collect();
    format!(
        "self.spec.environments.all(e, !(has(e.__namespace__) ? e.__namespace__ in {list} : e.name == 'production' ? self.metadata.name in {list} : {}))",
        pairs.join(" || ")
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
    let alternatives: Vec<String> = RESERVED_PREFIXES.iter().map(|p| p.replace('.', "\\\\.")).collect();
    format!("self.all(k, !k.matches('^([^/]*\\\\.)?({})/'))", alternatives.join("|"))
}

pub fn reserved_key_message() -> String {
    format!(
        "template labels and annotations must not use the prefixes {} (or their subdomains)",
        RESERVED_PREFIXES.map(|p| format!("{p}/")).join(", ")
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
    fn computed_names_are_matched_as_tenant_environment_pairs() {
        let rule = protected_namespace_rule();
        for pair in [
            "name == 'kube' && e.name == 'system'",
            "name == 'kube-node' && e.name == 'lease'",
            "name == 'kube' && e.name == 'node-lease'",
        ] {
            assert!(rule.contains(pair), "{pair} missing from {rule}");
        }
    }

    #[test]
    fn the_admission_policy_holds_the_same_lists() {
        let policy = include_str!("../../charts/mltenant-operator/templates/admission-policy.yaml");
        for name in SECRET_TYPES.iter().chain(&BUILTIN_PROTECTED_NAMESPACES) {
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
        for ns in ["kube-system", "kube-public", "kube-node-lease", "default", "mltenant-system", "openshift-x"] {
            assert!(protected.contains(ns), "{ns}");
        }
        for ns in ["kube-systemx", "fin-dev", "openshift", "defaults"] {
            assert!(!protected.contains(ns), "{ns}");
        }
        assert_eq!(
            protected.list(),
            "default, kube-node-lease, kube-public, kube-system, mltenant-system, openshift-*"
        );
    }
}
