//! Which namespace each environment of a tenant lives in (part of the API: the naming rule,
//! and what the CRD's rules cannot check). Pure: no client.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::{EnvironmentSpec, MLTenant, OwnedKind, labels, limits};

/// The environment named `production` lives in the namespace named like the tenant.
pub const PRODUCTION: &str = "production";

/// One environment as the operator will realise it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub namespace: String,
    /// Every label the namespace gets: the spec's extra labels, then ours (ours win).
    pub labels: BTreeMap<String, String>,
}

/// `production` -> `<tenant>`, others -> `<tenant>-<environment>`, unless the spec names the
/// namespace explicitly.
pub fn namespace_name(tenant: &str, env: &EnvironmentSpec) -> String {
    match (&env.namespace, env.name.as_str()) {
        (Some(explicit), _) => explicit.clone(),
        (None, PRODUCTION) => tenant.to_owned(),
        (None, other) => format!("{tenant}-{other}"),
    }
}

/// Whether `name` is a DNS-1123 label, the form a namespace name must have.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The environments of `tenant`, or why the spec cannot be realised. The CRD's CEL rules
/// reject most of these cases already; this guards objects stored under an older CRD (every
/// field's bounds first: `MLTenantSpec::check_bounds`) and the collisions CEL cannot see (an explicit namespace equal to another environment's computed one).
pub fn plan(tenant: &MLTenant) -> Result<Vec<Environment>, String> {
    tenant.spec.check_bounds().map_err(|e| e.to_string())?;
    let tenant_name = tenant.name_any();
    let mut seen_envs = BTreeSet::new();
    let mut seen_namespaces = BTreeMap::new();
    let mut planned = Vec::with_capacity(tenant.spec.environments.len());
    for env in &tenant.spec.environments {
        if !seen_envs.insert(env.name.as_str()) {
            return Err(format!("environment {:?} is declared twice", env.name));
        }
        let namespace = namespace_name(&tenant_name, env);
        if !is_dns_label(&namespace) {
            return Err(format!(
                "environment {:?} maps to namespace {namespace:?}, which is not a DNS-1123 label of at most 63 characters",
                env.name
            ));
        }
        if let Some(other) = seen_namespaces.insert(namespace.clone(), env.name.as_str()) {
            return Err(format!("environments {other:?} and {:?} both map to namespace {namespace:?}", env.name));
        }
        if let Some(refusal) = env.labels.iter().flatten().find_map(|(k, v)| limits::namespace_label_refusal(k, v)) {
            return Err(format!("environment {:?}: {refusal}", env.name));
        }
        let mut labels = env.labels.clone().unwrap_or_default();
        labels.extend(labels::managed(&tenant_name, &env.name));
        planned.push(Environment { name: env.name.clone(), namespace, labels });
    }
    Ok(planned)
}

/// Whether `tenant` claims the object of `kind` named `name` (in `namespace`): it is on the
/// tenant's record, or it is what the spec wants (a namespace of its environments; a Secret, or
/// a reader's Role or RoleBinding, the spec names, in one of them). The watches keep nothing
/// else, so what others label as a tenant's costs the operator no memory.
pub fn claims(tenant: &MLTenant, kind: OwnedKind, namespace: &str, name: &str) -> bool {
    let home = if kind == OwnedKind::Namespace { "" } else { namespace };
    let owned = tenant.status.iter().flat_map(|s| s.owned.iter().flatten());
    if owned.into_iter().any(|o| o.kind == kind && o.name == name && o.namespace.as_deref().unwrap_or_default() == home)
    {
        return true;
    }
    let tenant_name = tenant.name_any();
    let of_environment = |ns: &str| tenant.spec.environments.iter().any(|e| namespace_name(&tenant_name, e) == ns);
    match kind {
        OwnedKind::Namespace => of_environment(name),
        OwnedKind::Secret => of_environment(namespace) && tenant.spec.secrets.iter().flatten().any(|s| s.name == name),
        OwnedKind::Role | OwnedKind::RoleBinding => {
            of_environment(namespace) && tenant.spec.secret_readers.iter().flatten().any(|r| r.grant_name() == name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MLTenantSpec;

    fn env(name: &str) -> EnvironmentSpec {
        EnvironmentSpec::named(name)
    }

    fn tenant(name: &str, envs: Vec<EnvironmentSpec>) -> MLTenant {
        MLTenant::new(name, MLTenantSpec::new(envs))
    }

    /// Claimed: what the record names (kind, namespace and name all matching) and what the spec
    /// wants in its environments' namespaces; nothing else.
    #[test]
    fn a_tenant_claims_its_record_and_its_spec_only() {
        let tenant: MLTenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "mltenant.io/v1alpha1", "kind": "MLTenant", "metadata": {"name": "fin"},
            "spec": {"environments": [{"name": "dev"}], "secrets": [{"name": "ml-platform", "bundle": "b"}],
                     "secretReaders": [{"serviceAccount": {"namespace": "argowf", "name": "wf"}}]},
            "status": {"owned": [{"kind": "Secret", "namespace": "elsewhere", "name": "kept"},
                                 {"kind": "Namespace", "name": "old-fin"}]},
        }))
        .unwrap();
        let grant = tenant.spec.secret_readers.as_ref().unwrap()[0].grant_name();
        for (kind, namespace, name, claimed) in [
            (OwnedKind::Secret, "elsewhere", "kept", true),
            (OwnedKind::Role, "elsewhere", "kept", false),
            (OwnedKind::Secret, "elsewhere", "other", false),
            (OwnedKind::Secret, "fin-dev2", "kept", false),
            (OwnedKind::Namespace, "", "old-fin", true),
            (OwnedKind::Namespace, "", "fin-dev", true),
            (OwnedKind::Namespace, "", "fin-staging", false),
            (OwnedKind::Secret, "fin-dev", "ml-platform", true),
            (OwnedKind::Secret, "fin-dev", "ghcr", false),
            (OwnedKind::Secret, "fin-staging", "ml-platform", false),
            (OwnedKind::Role, "fin-dev", &grant, true),
            (OwnedKind::RoleBinding, "fin-dev", &grant, true),
            (OwnedKind::Role, "fin-dev", "ml-platform", false),
            (OwnedKind::RoleBinding, "fin-staging", &grant, false),
        ] {
            assert_eq!(claims(&tenant, kind, namespace, name), claimed, "{kind:?} {namespace}/{name}");
        }
    }

    #[test]
    fn naming_rule() {
        assert_eq!(namespace_name("financial-ml", &env("dev")), "financial-ml-dev");
        assert_eq!(namespace_name("financial-ml", &env("production")), "financial-ml");
        assert_eq!(namespace_name("financial-ml", &env("dev").in_namespace("fin-sandbox")), "fin-sandbox");
    }

    #[test]
    fn sixty_three_characters_is_the_limit() {
        let name = "t".repeat(59);
        assert_eq!(plan(&tenant(&name, vec![env("dev")])).unwrap()[0].namespace.len(), 63);
        let err = plan(&tenant(&name, vec![env("test")])).unwrap_err();
        assert!(err.contains("at most 63 characters"), "{err}");
        // production maps to the bare tenant name, so it fits where `-production` would not.
        assert!(plan(&tenant(&name, vec![env("production")])).is_ok());
    }

    #[test]
    fn namespace_labels_may_tighten_pod_security_and_nothing_reserved() {
        let labelled = |key: &str, value: &str| {
            let labels = BTreeMap::from([(key.to_owned(), value.to_owned())]);
            plan(&tenant("fin", vec![EnvironmentSpec { labels: Some(labels), ..env("dev") }]))
        };
        for (key, value) in [
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce", "baseline"),
            ("pod-security.kubernetes.io/warn", "privileged"),
            ("istio-injection", "enabled"),
            ("example.com/team", "fin"),
        ] {
            assert!(labelled(key, value).is_ok(), "{key}={value}");
        }
        for (key, value, why) in [
            ("pod-security.kubernetes.io/enforce", "privileged", "may only be baseline or restricted"),
            ("mltenant.io/tenant", "other", "reserved prefix"),
            ("app.kubernetes.io/managed-by", "x", "reserved prefix"),
            ("argocd.argoproj.io/managed-by", "argocd", "reserved prefix"),
        ] {
            let err = labelled(key, value).unwrap_err();
            assert!(err.contains(why) && err.contains(key), "{key}={value}: {err}");
        }
    }

    /// What got through before the bounds: a 313-character bundle name with spaces, stored
    /// under an older CRD, would have become a metric label value. Refused before any plan,
    /// naming the field, not the value.
    #[test]
    fn a_spec_out_of_bounds_is_refused_first() {
        let mut t = tenant("t", vec![env("dev")]);
        let mut secret = crate::api::SecretSpec::new("s", "b");
        secret.environment_bundles = Some(BTreeMap::from([("dev".to_owned(), "a bundle ".repeat(35))]));
        t.spec.secrets = Some(vec![secret]);
        let err = plan(&t).unwrap_err();
        assert_eq!(
            err,
            "spec.secrets[0].environmentBundles is out of bounds: values must be DNS-1123 subdomains of at most 253 characters"
        );
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("a-1"));
        for bad in ["", "-a", "a-", "A", "a.b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn collisions_are_refused() {
        let dup = plan(&tenant("t", vec![env("dev"), env("dev")])).unwrap_err();
        assert!(dup.contains("declared twice"), "{dup}");
        let clash = plan(&tenant("t", vec![env("dev"), env("qa").in_namespace("t-dev")])).unwrap_err();
        assert!(clash.contains("both map to namespace \"t-dev\""), "{clash}");
    }

    #[test]
    fn a_namespace_gets_the_spec_labels_and_ours() {
        let mut e = env("dev");
        e.labels = Some(BTreeMap::from([("pod-security.kubernetes.io/enforce".into(), "restricted".into())]));
        let planned = plan(&tenant("t", vec![e])).unwrap();
        assert_eq!(planned[0].labels[labels::TENANT], "t");
        assert_eq!(planned[0].labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(planned[0].labels[labels::ENVIRONMENT], "dev");
    }
}
