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
/// On an existing namespace: the tenant its owner allows to adopt it. Adoption needs this and
/// the tenant's `adoptExistingNamespaces: true`.
pub const ADOPTABLE_BY: &str = "mltenant.io/adoptable-by";
/// Left on a namespace the operator let go of under `deletionPolicy: Retain`.
pub const RELEASED_FROM: &str = "mltenant.io/released-from";
/// On an adopted namespace: its Pod Security labels as its owner had them when the tenant
/// adopted it (`key=value` pairs, comma-separated), restored when the tenant lets it go.
pub const POD_SECURITY_BEFORE: &str = "mltenant.io/pod-security-before";

/// On everything the operator applies: a digest of what it set (see `apply::stamped`).
pub const APPLIED: &str = "mltenant.io/applied";

/// On distributed Secrets: the SealedBundle they come from, a hash of its ciphertext (never of
/// the plaintext) and when the credentials expire.
pub const BUNDLE: &str = "mltenant.io/bundle";
pub const SOURCE_HASH: &str = "mltenant.io/source-hash";
pub const EXPIRES_AT: &str = "mltenant.io/expires-at";
/// On a distributed Secret: `v1.<key ids>.<proof>`, a keyed MAC (see `KeyRing::prove`) by the
/// sealing key(s) that opened its bundle, over the Secret's namespace and name, the consumer's
/// scope label, the bundle's source hash and a digest of the values written. Lets a restarted
/// operator see, without decrypting, that the Secret holds what the current ciphertext gives.
/// Reveals nothing of the values: only a holder of the sealing key can make or check it.
pub const OPENED_WITH: &str = "mltenant.io/opened-with";
/// On the operator's sealing-key Secrets (value `active`).
pub const SEALING_KEY: &str = "mltenant.io/sealing-key";
pub const ACTIVE: &str = "active";
/// Value of [`SEALING_KEY`] on a retired key: kept (and un-retired by setting `active` again),
/// but it opens nothing. Only whoever may patch Secrets in the operator's namespace can set it.
pub const RETIRED: &str = "retired";

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

/// Parse a label selector as `kubectl -l` takes it (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
/// `k in (a,b)`, `k notin (a,b)`, comma-separated), to match objects already in memory the way
/// the API server would.
pub fn parse_selector(text: &str) -> Result<kube::core::Selector, String> {
    use kube::core::Expression;
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    let set = |values: &str| -> Result<std::collections::BTreeSet<String>, String> {
        let inner = values.trim().strip_prefix('(').and_then(|v| v.strip_suffix(')'));
        let inner = inner.ok_or_else(|| format!("{values:?} is not a parenthesised list"))?;
        Ok(inner.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect())
    };
    let mut expressions = Vec::new();
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let expression = if let Some((k, v)) = part.split_once("!=") {
            Expression::NotEqual(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Expression::Equal(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once(" notin ") {
            Expression::NotIn(k.trim().into(), set(v)?)
        } else if let Some((k, v)) = part.split_once(" in ") {
            Expression::In(k.trim().into(), set(v)?)
        } else if let Some(k) = part.strip_prefix('!') {
            Expression::DoesNotExist(k.trim().into())
        } else {
            Expression::Exists(part.into())
        };
        let key = match &expression {
            Expression::In(k, _)
            | Expression::NotIn(k, _)
            | Expression::Equal(k, _)
            | Expression::NotEqual(k, _)
            | Expression::Exists(k)
            | Expression::DoesNotExist(k) => k,
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("{part:?} is not a label selector term"));
        }
        expressions.push(expression);
    }
    Ok(expressions.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use kube::core::SelectorExt as _;

    use super::*;

    #[test]
    fn selectors_match_like_the_api_server() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let a = labels(&[("shard", "a"), ("tier", "gold")]);
        let b = labels(&[("shard", "b")]);
        let table = [
            ("shard=a", true, false),
            ("shard==a", true, false),
            ("shard!=a", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("shard in (a, c)", true, false),
            ("shard notin (a,c)", false, true),
            ("shard=a,tier=gold", true, false),
            ("", true, true),
        ];
        for (text, on_a, on_b) in table {
            let selector = parse_selector(text).unwrap();
            assert_eq!((selector.matches(&a), selector.matches(&b)), (on_a, on_b), "{text}");
        }
        assert!(parse_selector("shard in a").is_err());
        assert!(parse_selector("a b").is_err());
    }

    /// The watches select what the operator labels: everything it manages, or only what it
    /// manages for tenants (its sealing keys carry `managed_by` alone).
    #[test]
    fn the_watch_selectors_select_what_the_operator_labels() {
        let all = parse_selector(&managed_selector()).unwrap();
        let children = parse_selector(&tenant_children_selector()).unwrap();
        let (child, key) = (managed("financial-ml", "dev"), managed_by());
        assert_eq!((all.matches(&child), all.matches(&key)), (true, true));
        assert_eq!((children.matches(&child), children.matches(&key)), (true, false));
        let foreign = BTreeMap::from([(MANAGED_BY_KEY.to_owned(), "helm".to_owned())]);
        assert!(!all.matches(&foreign) && !children.matches(&foreign));
    }
}
