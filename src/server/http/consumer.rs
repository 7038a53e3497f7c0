//! Whom a `/v1/verify` or `/v1/rotate` request opens ciphertexts for. The caller names it in
//! the URL (`?tenant=<name>`, or nothing for Cluster scope), so it is authorised from the
//! request line alone, before a byte of the body is read; the body must then claim exactly
//! that consumer. Authorising on a name inside the body would let a caller allowed one name
//! post another tenant's ciphertexts under it.
//!
//! Why the claims are enough: the OAEP label a value opens with is computed from the claims
//! (`crypto::label`): the tenant's name for Tenant scope, `<tenant>/<environment>` for
//! Environment scope, empty for Cluster scope. Tenant names are DNS subdomains (no `/`), so a
//! body whose claims name tenant T only opens ciphertexts sealed for T; one sealed for another
//! tenant, or for Cluster scope, does not open under T's label whatever else the body says.

use crate::api::{BundleScope, SealedBundleSpec};
use crate::server::auth::Permission;

/// Longest tenant name (a DNS-1123 subdomain).
const MAX_NAME: usize = 253;

/// The consumer a request is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consumer {
    /// Ciphertexts of scope Tenant or Environment sealed for this tenant.
    Tenant(String),
    /// Cluster-scope ciphertexts, which open for any tenant.
    Cluster,
}

impl Consumer {
    /// The consumer named by a request's query: `tenant=<name>`, or none. Anything else (an
    /// unknown or repeated parameter, a name that is not a DNS-1123 subdomain) is refused with
    /// a one-line reason. The value is taken as sent: a valid name needs no percent-encoding.
    pub fn from_query(query: Option<&str>) -> Result<Self, String> {
        let mut tenant = None;
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let Some(value) = pair.strip_prefix("tenant=") else {
                let key = pair.split('=').next().unwrap_or_default();
                return Err(format!(
                    "unknown query parameter {:?}: only tenant=<name> is accepted",
                    crate::text::shorten(key, 64)
                ));
            };
            if tenant.is_some() {
                return Err("the tenant parameter is given more than once".into());
            }
            if !is_dns_subdomain(value) {
                return Err(format!(
                    "tenant {:?} is not a tenant name (a DNS-1123 subdomain of at most {MAX_NAME} characters)",
                    crate::text::shorten(value, 64)
                ));
            }
            tenant = Some(value.to_owned());
        }
        Ok(tenant.map_or(Consumer::Cluster, Consumer::Tenant))
    }

    /// What the caller must be allowed to do `subresource` (`verify` or `rotate`) for this
    /// consumer.
    pub fn permission(&self, subresource: &'static str) -> Permission {
        let tenant = match self {
            Consumer::Tenant(name) => Some(name.clone()),
            Consumer::Cluster => None,
        };
        Permission::Ciphertexts { subresource, tenant }
    }

    /// Whether the bundle `spec` claims this consumer: scope Cluster for [`Consumer::Cluster`],
    /// scope Tenant or Environment of the same tenant otherwise. The refusal says which consumer
    /// the body is sealed for and which one was authorised, in one line.
    pub fn check(&self, spec: &SealedBundleSpec) -> Result<(), String> {
        let sealed_for = match (spec.scope, spec.tenant.as_deref()) {
            (BundleScope::Cluster, _) => None,
            (_, Some(tenant)) => Some(tenant),
            (scope, None) => return Err(format!("the body has scope {scope:?} but names no tenant")),
        };
        let authorised = match self {
            Consumer::Tenant(name) => Some(name.as_str()),
            Consumer::Cluster => None,
        };
        if sealed_for == authorised {
            return Ok(());
        }
        let sealed = match sealed_for {
            Some(tenant) => format!("tenant {} (scope {:?})", shown(tenant), spec.scope),
            None => "every tenant (scope Cluster)".to_owned(),
        };
        let (allowed, hint) = match (authorised, sealed_for) {
            (Some(name), Some(_)) => (format!("tenant {name}"), String::new()),
            (Some(name), None) => (format!("tenant {name}"), ": send Cluster-scope bundles without ?tenant".to_owned()),
            (None, Some(tenant)) => {
                ("Cluster-scope bundles".to_owned(), format!(": send it with ?tenant={}", shown(tenant)))
            }
            (None, None) => unreachable!("equal claims returned above"),
        };
        Err(format!("the body is sealed for {sealed}, but the request was authorised for {allowed}{hint}"))
    }
}

/// A tenant name from a body, for a one-line message: as is when it is a valid name, quoted
/// and escaped (and shortened) otherwise.
fn shown(name: &str) -> String {
    if is_dns_subdomain(name) { name.to_owned() } else { format!("{:?}", crate::text::shorten(name, 64)) }
}

/// Whether `name` is a DNS-1123 subdomain: dot-separated labels of lowercase letters, digits
/// and `-`, each starting and ending with a letter or digit, at most 253 characters in all.
fn is_dns_subdomain(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    name.len() <= MAX_NAME && name.split('.').all(label_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scope: BundleScope, tenant: Option<&str>) -> SealedBundleSpec {
        let environment = (scope == BundleScope::Environment).then(|| "dev".to_owned());
        SealedBundleSpec {
            tenant: tenant.map(Into::into),
            environment,
            ..SealedBundleSpec::new(scope, Default::default())
        }
    }

    #[test]
    fn the_query_names_one_valid_tenant_or_none() {
        let tenant = |name: &str| Ok(Consumer::Tenant(name.into()));
        assert_eq!(Consumer::from_query(None), Ok(Consumer::Cluster));
        assert_eq!(Consumer::from_query(Some("")), Ok(Consumer::Cluster));
        assert_eq!(Consumer::from_query(Some("tenant=financial-ml")), tenant("financial-ml"));
        assert_eq!(Consumer::from_query(Some("tenant=a.b-c.0")), tenant("a.b-c.0"));
        let longest = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        assert_eq!(Consumer::from_query(Some(&format!("tenant={longest}"))), tenant(&longest));
        let refused = |query: &str, why: &str| {
            let message = Consumer::from_query(Some(query)).expect_err(query);
            assert!(message.contains(why), "{query}: {message}");
            assert!(!message.contains('\n'), "{message}");
        };
        refused(&format!("tenant={longest}c"), "not a tenant name");
        refused("tenant=", "not a tenant name");
        for bad in ["Upper", "-lead", "trail-", "a..b", ".a", "a/b", "a%2Fb", "a_b", "é"] {
            refused(&format!("tenant={bad}"), "not a tenant name");
        }
        refused("tenant=a&tenant=b", "more than once");
        refused("tenant", "unknown query parameter");
        refused("tennant=a", "unknown query parameter \"tennant\"");
        refused("tenant=a&name=b", "unknown query parameter \"name\"");
    }

    #[test]
    fn permissions_name_the_tenant_or_nothing() {
        assert_eq!(
            Consumer::Tenant("t".into()).permission("verify"),
            Permission::Ciphertexts { subresource: "verify", tenant: Some("t".into()) }
        );
        assert_eq!(
            Consumer::Cluster.permission("rotate"),
            Permission::Ciphertexts { subresource: "rotate", tenant: None }
        );
    }

    #[test]
    fn the_body_must_claim_the_authorised_consumer() {
        let own = Consumer::Tenant("own".into());
        assert_eq!(own.check(&spec(BundleScope::Tenant, Some("own"))), Ok(()));
        assert_eq!(own.check(&spec(BundleScope::Environment, Some("own"))), Ok(()));
        assert_eq!(Consumer::Cluster.check(&spec(BundleScope::Cluster, None)), Ok(()));
        // Cluster scope opens with the empty label whatever tenant the body adds.
        assert!(own.check(&spec(BundleScope::Cluster, Some("own"))).is_err());
        for (consumer, body, expected) in [
            (
                &own,
                spec(BundleScope::Tenant, Some("victim")),
                "the body is sealed for tenant victim (scope Tenant), but the request was authorised for tenant own",
            ),
            (
                &own,
                spec(BundleScope::Environment, Some("victim")),
                "the body is sealed for tenant victim (scope Environment), but the request was authorised for tenant own",
            ),
            (
                &own,
                spec(BundleScope::Cluster, None),
                "the body is sealed for every tenant (scope Cluster), but the request was authorised for tenant own: send Cluster-scope bundles without ?tenant",
            ),
            (
                &Consumer::Cluster,
                spec(BundleScope::Tenant, Some("victim")),
                "the body is sealed for tenant victim (scope Tenant), but the request was authorised for Cluster-scope bundles: send it with ?tenant=victim",
            ),
            (&own, spec(BundleScope::Tenant, None), "the body has scope Tenant but names no tenant"),
            (
                &own,
                spec(BundleScope::Tenant, Some("two\nlines")),
                "the body is sealed for tenant \"two\\nlines\" (scope Tenant), but the request was authorised for tenant own",
            ),
        ] {
            assert_eq!(consumer.check(&body), Err(expected.to_owned()));
        }
    }
}
