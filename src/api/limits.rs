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
/// The levels `audit` and `warn` may be (they refuse nothing, so any level tightens nothing
/// away).
pub const POD_SECURITY_ANY_LEVEL: [&str; 3] = ["privileged", "baseline", "restricted"];
/// The one policy version a tenant may name: an older one loosens what a level checks.
pub const POD_SECURITY_VERSION: &str = "latest";
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

// The bounds of every field of both kinds (rule 9 of the trust boundaries). The CRDs'
// `maxLength`, `maxItems`, `maxProperties`, `pattern` and CEL rules are generated from these
// constants, and the run-time checks (`MLTenantSpec::check_bounds`,
// `SealedBundleSpec::check_bounds`) use the same ones, for objects stored under an older CRD or
// with a CRD installed without them. `api::tests::every_field_is_bounded` fails on a field of
// the CRDs that has none.

/// Environments of a tenant (each a namespace).
pub const MAX_ENVIRONMENTS: usize = 16;
/// Secrets of a tenant, written into each of its environments.
pub const MAX_SECRETS: usize = 32;
/// Readers of a tenant (each a Role and RoleBinding per environment).
pub const MAX_READERS: usize = 16;
/// Entries of a tenant's `status.owned`: per environment its namespace, a Secret per
/// `spec.secrets` entry and a Role and a RoleBinding per reader, twice over, for the moment a
/// spec change has created the new ones and not yet removed the old.
pub const MAX_OWNED: usize = 2 * MAX_ENVIRONMENTS * (1 + MAX_SECRETS + 2 * MAX_READERS);
/// Labels of an environment's namespace or of a template; annotations of a template.
pub const MAX_LABELS: usize = 64;
pub const MAX_ANNOTATIONS: usize = 64;
/// Characters of one template annotation value.
pub const MAX_ANNOTATION_VALUE: usize = 4 * 1024;
/// Characters of a whole map of labels, annotations or names, keys and values together. A
/// bundle's template is copied onto one Secret per consuming environment, so this is what
/// one bundle can add to each of them.
pub const MAX_MAP_CHARS: usize = 16 * 1024;

/// A DNS-1123 label (namespace and environment names) and subdomain (Secret, SealedBundle,
/// MLTenant and ServiceAccount names).
pub const DNS_LABEL_MAX: usize = 63;
pub const DNS_SUBDOMAIN_MAX: usize = 253;
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A ServiceAccount as `namespace/name` (a DNS label and a DNS subdomain).
pub const SERVICE_ACCOUNT_MAX: usize = DNS_LABEL_MAX + 1 + DNS_SUBDOMAIN_MAX;
pub const SERVICE_ACCOUNT_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A label or annotation key: an optional DNS subdomain prefix of at most 253 characters and
/// `/`, then a name of at most 63 (Kubernetes' qualified name). Two patterns: the shape, and
/// the prefix's length, which a regular expression cannot count across its dots.
pub const QUALIFIED_NAME_MAX: usize = DNS_SUBDOMAIN_MAX + 1 + 63;
pub const QUALIFIED_NAME_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
pub const QUALIFIED_PREFIX_PATTERN: &str = r"^([^/]{1,253}/)?[^/]*$";
/// A label value: empty, or at most 63 alphanumerics, `-`, `_` and `.` starting and ending
/// with an alphanumeric.
pub const LABEL_VALUE_MAX: usize = 63;
pub const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

/// A Secret data key (`encryptedData` keys), as Kubernetes checks a Secret's keys.
pub const SECRET_KEY_MAX: usize = 253;
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// Characters of one sealed value: the base64 of the 1 MiB the crypto layer opens at most
/// (`crypto::MAX_SEALED_LEN`).
pub const MAX_SEALED_VALUE_CHARS: usize = (1024 * 1024usize).div_ceil(3) * 4;
/// Characters of all of `encryptedData`, keys and values: 1.5 MiB, etcd's default limit on a
/// whole object, above what 128 values of a 1 MiB Secret take once sealed.
pub const MAX_SEALED_DATA_CHARS: usize = 1536 * 1024;
/// Characters of a bundle's `type` (the allowed types are shorter).
pub const MAX_SECRET_TYPE_CHARS: usize = 63;

/// A SealedBundle's `tenantSelector`: `matchLabels` entries, `matchExpressions`, the values of
/// one expression, and the operators Kubernetes knows.
pub const MAX_SELECTOR_LABELS: usize = 16;
pub const MAX_SELECTOR_EXPRESSIONS: usize = 16;
pub const MAX_SELECTOR_VALUES: usize = 64;
pub const SELECTOR_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// Status conditions, bounded as Kubernetes bounds `metav1.Condition` in its own APIs.
pub const MAX_CONDITIONS: usize = 16;
pub const CONDITION_TYPE_MAX: usize = 316;
pub const CONDITION_TYPE_PATTERN: &str =
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$";
pub const CONDITION_REASON_MAX: usize = 1024;
pub const CONDITION_REASON_PATTERN: &str = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$";
pub const CONDITION_MESSAGE_MAX: usize = 32 * 1024;
pub const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];
/// Other status text the operator writes: a reason, a `sha256:` digest, a key fingerprint,
/// `<ready>/<declared>`.
pub const STATUS_REASON_MAX: usize = CONDITION_REASON_MAX;
pub const STATUS_DIGEST_MAX: usize = 128;
pub const STATUS_COUNT_MAX: usize = 32;

/// Timestamps (`expiresAt`, `lastTransitionTime`): from `EARLIEST_TIME` up to, not
/// including, `END_OF_TIME`, far inside what every reader can represent (Rust's jiff ends
/// at 9999-12-30T22:00:00Z, so a later date would make a stored object unreadable), at most
/// `MAX_TIME_CHARS` characters (RFC 3339 allows any number of fractional digits).
pub const EARLIEST_TIME: &str = "1970-01-01T00:00:00Z";
pub const END_OF_TIME: &str = "9000-01-01T00:00:00Z";
pub const MAX_TIME_CHARS: usize = 64;

/// The start of every total-size rule, [`map_size_rule`] (the bounds test recognises it).
pub const MAP_SIZE_RULE_PREFIX: &str = "self.map(k, size(k) + size(self[k])).sum() <= ";

/// CEL (on a map of strings): keys and values together hold at most `max` characters. `sum()`
/// is Kubernetes' list library; its cost is one step per entry, which `maxProperties` bounds.
pub fn map_size_rule(max: usize) -> String {
    format!("{MAP_SIZE_RULE_PREFIX}{max}")
}

pub fn map_size_message(what: &str, max: usize) -> String {
    format!("{what} may hold at most {max} characters in all, keys and values together")
}

/// CEL (on a map of labels or annotations): every key is a qualified name. Annotation keys are
/// checked lowercased, as Kubernetes checks them.
pub fn qualified_keys_rule(lowercase: bool) -> String {
    let key = if lowercase { "k.lowerAscii()" } else { "k" };
    format!(
        "self.all(k, {key}.matches('{}') && k.matches('{}'))",
        cel_escape(QUALIFIED_NAME_PATTERN),
        cel_escape(QUALIFIED_PREFIX_PATTERN)
    )
}

pub fn qualified_keys_message(what: &str) -> String {
    format!(
        "{what} keys must be qualified names: an optional DNS subdomain prefix of at most {DNS_SUBDOMAIN_MAX} characters and '/', then at most 63 characters of [-A-Za-z0-9_.] starting and ending with an alphanumeric"
    )
}

/// CEL (on a string): the prefix of a qualified name fits (its shape is the field's `pattern`).
pub fn qualified_prefix_rule() -> String {
    format!("self.matches('{}')", cel_escape(QUALIFIED_PREFIX_PATTERN))
}

pub fn qualified_prefix_message() -> String {
    format!("the prefix of a qualified name (before '/') may have at most {DNS_SUBDOMAIN_MAX} characters")
}

/// CEL (on a `date-time`): within [`EARLIEST_TIME`, `END_OF_TIME`).
pub fn time_range_rule() -> String {
    format!("self >= timestamp('{EARLIEST_TIME}') && self < timestamp('{END_OF_TIME}')")
}

pub fn time_range_message() -> String {
    format!("must be a time from {EARLIEST_TIME} up to (not including) {END_OF_TIME}")
}

/// The rule and message of [`time_range_rule`] as an `x-kubernetes-validations` list, for the
/// schemas that are not derived with `KubeSchema`.
pub fn time_range_validations() -> serde_json::Value {
    serde_json::json!([{"rule": time_range_rule(), "message": time_range_message()}])
}

/// CEL (on `encryptedData`): every key is a Secret data key.
pub fn secret_keys_rule() -> String {
    format!("self.all(k, size(k) <= {SECRET_KEY_MAX} && k.matches('{}'))", cel_escape(SECRET_KEY_PATTERN))
}

pub fn secret_keys_message() -> String {
    format!("encryptedData keys must be valid Secret keys ([-._a-zA-Z0-9]+, at most {SECRET_KEY_MAX} characters)")
}

/// A regular expression as a single-quoted CEL string literal's content.
fn cel_escape(pattern: &str) -> String {
    pattern.replace('\\', "\\\\").replace('\'', "\\'")
}

/// The run-time side of the bounds: the same patterns, each compiled once.
fn compiled(pattern: &'static str) -> &'static regex::Regex {
    use std::sync::LazyLock;
    const PATTERNS: [&str; 6] = [
        DNS_LABEL_PATTERN,
        DNS_SUBDOMAIN_PATTERN,
        QUALIFIED_NAME_PATTERN,
        QUALIFIED_PREFIX_PATTERN,
        LABEL_VALUE_PATTERN,
        SECRET_KEY_PATTERN,
    ];
    static COMPILED: LazyLock<Vec<regex::Regex>> =
        LazyLock::new(|| PATTERNS.iter().map(|p| regex::Regex::new(p).expect("a valid pattern")).collect());
    let index = PATTERNS.iter().position(|p| *p == pattern).expect("one of the patterns above");
    &COMPILED[index]
}

/// Whether `text` has at most `max` characters and matches `pattern` (as the CRD's `maxLength`
/// and `pattern` judge it: lengths in characters).
pub fn fits(text: &str, max: usize, pattern: &'static str) -> bool {
    text.chars().nth(max).is_none() && compiled(pattern).is_match(text)
}

/// Whether `text` has at most `max` characters.
pub fn fits_length(text: &str, max: usize) -> bool {
    text.chars().nth(max).is_none()
}

/// Whether `key` is a qualified name (lowercased first for an annotation key).
pub fn is_qualified_name(key: &str, lowercase: bool) -> bool {
    let shape = if lowercase {
        compiled(QUALIFIED_NAME_PATTERN).is_match(&key.to_ascii_lowercase())
    } else {
        compiled(QUALIFIED_NAME_PATTERN).is_match(key)
    };
    shape && compiled(QUALIFIED_PREFIX_PATTERN).is_match(key)
}

/// Characters of a map, keys and values together (what [`map_size_rule`] counts).
pub fn map_chars<'a>(map: impl IntoIterator<Item = (&'a String, &'a String)>) -> usize {
    map.into_iter().map(|(k, v)| k.chars().count() + v.chars().count()).sum()
}

/// Whether `time` is within [`EARLIEST_TIME`, `END_OF_TIME`).
pub fn time_in_range(time: jiff::Timestamp) -> bool {
    let parse = |text: &str| text.parse::<jiff::Timestamp>().expect("a valid bound");
    parse(EARLIEST_TIME) <= time && time < parse(END_OF_TIME)
}

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
    let allowed = match key {
        _ if !key.starts_with(POD_SECURITY_PREFIX) => true,
        POD_SECURITY_ENFORCE => POD_SECURITY_LEVELS.contains(&value),
        _ if key.ends_with("-version") => POD_SECURITY_LABELS.contains(&key) && value == POD_SECURITY_VERSION,
        _ => POD_SECURITY_LABELS.contains(&key) && POD_SECURITY_ANY_LEVEL.contains(&value),
    };
    (!allowed).then(|| format!("namespace label {key}={value}: {}", pod_security_message()))
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
    protected_rule(&BUILTIN_PROTECTED_NAMESPACES)
}

/// [`protected_namespace_rule`] for the protected `entries` (a trailing `*` makes a prefix).
fn protected_rule(entries: &[&str]) -> String {
    let (prefixes, exact): (Vec<&str>, Vec<&str>) = entries.iter().partition(|entry| entry.ends_with('*'));
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

/// CEL (on an environment's labels): Pod Security only tightened: the labels Pod Security
/// reads and no other under its prefix, `enforce` no looser than `baseline`, every policy
/// version `latest`.
pub fn pod_security_rule() -> String {
    format!(
        "self.all(k, !k.startsWith('{POD_SECURITY_PREFIX}') || (k in {labels} && (k.endsWith('-version') ? self[k] == '{POD_SECURITY_VERSION}' : self[k] in (k == '{POD_SECURITY_ENFORCE}' ? {enforce} : {any}))))",
        labels = cel_list(&POD_SECURITY_LABELS),
        enforce = cel_list(&POD_SECURITY_LEVELS),
        any = cel_list(&POD_SECURITY_ANY_LEVEL),
    )
}

pub fn pod_security_message() -> String {
    format!(
        "Pod Security labels: {POD_SECURITY_ENFORCE} may only be {}, audit and warn a level, every *-version only {POD_SECURITY_VERSION}, and no other {POD_SECURITY_PREFIX} key (a tenant may tighten the cluster's default, not loosen it)",
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

    /// An exact name with dashes is matched through every (tenant, environment) pair that
    /// spells it, split at each dash.
    #[test]
    fn exact_names_are_matched_through_the_pairs_that_spell_them() {
        let rule = protected_rule(&["kube-*", "ml-ops-system"]);
        for pair in [
            "(self.metadata.name == 'ml' && e.name == 'ops-system')",
            "(self.metadata.name == 'ml-ops' && e.name == 'system')",
        ] {
            assert!(rule.contains(pair), "{pair} missing from {rule}");
        }
        assert_eq!(rule.matches("&& e.name ==").count(), 2, "{rule}");
    }

    #[test]
    fn pod_security_labels_may_tighten_only() {
        let refused = |key: &str, value: &str| namespace_label_refusal(key, value).is_some();
        for (key, value) in [
            (POD_SECURITY_ENFORCE, "restricted"),
            (POD_SECURITY_ENFORCE, "baseline"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
            ("pod-security.kubernetes.io/warn", "privileged"),
            ("team", "anything"),
        ] {
            assert!(!refused(key, value), "{key}={value}");
        }
        for (key, value) in [
            (POD_SECURITY_ENFORCE, "privileged"),
            ("pod-security.kubernetes.io/enforce-version", "v1.24"),
            ("pod-security.kubernetes.io/warn", "lax"),
            ("pod-security.kubernetes.io/other", "restricted"),
            ("mltenant.io/tenant", "x"),
        ] {
            assert!(refused(key, value), "{key}={value}");
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
