//! Opening a `SealedBundle` for one consumer: the scope check, decryption of every value (all
//! or nothing) and payload validation. Shared by the tenant controller (distribution), the
//! bundle controller (status) and `/v1/verify`. Nothing here ever puts a value into an error.

pub mod cache;
pub mod payload;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use zeroize::Zeroizing;

use crate::api::conditions::reason;
use crate::api::labels;
use crate::api::limits::{MAX_VALUES, SECRET_TYPES};
use crate::api::{BundleScope, SealedBundle};
use crate::crypto::{self, OpenError, SealingKey};
use cache::{DecryptCache, Plain};
use payload::Refusal;

/// Why a bundle cannot be used by a consumer. Messages name the bundle and the key, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("SealedBundle {bundle} not found")]
    NotFound { bundle: String },
    #[error("SealedBundle {bundle}: {problem}")]
    ScopeMismatch { bundle: String, problem: String },
    #[error("SealedBundle {bundle} key {key}: {error}")]
    Decryption { bundle: String, key: String, error: OpenError },
    #[error("SealedBundle {bundle} key {key}: {problem}")]
    InvalidPayload { bundle: String, key: String, problem: &'static str },
    #[error("SealedBundle {bundle}: {}", describe(.refusal))]
    Refused { bundle: String, refusal: Refusal },
    /// The bundle holds a field the operator cannot read (see `reconcile::guard`).
    #[error("SealedBundle {bundle}: field {field} holds a value the operator cannot read")]
    Unreadable { bundle: String, field: String },
}

fn describe(refusal: &Refusal) -> String {
    match refusal {
        Refusal::UnsupportedType(type_) => {
            format!("type {type_:?} is not allowed (one of {})", SECRET_TYPES.join(", "))
        }
        Refusal::ReservedMetadata(key) => format!("template key {key:?} uses a reserved prefix"),
        Refusal::TooManyValues(count) => format!("{count} values, more than the {MAX_VALUES} allowed"),
        Refusal::OutOfBounds(out) => out.to_string(),
    }
}

impl Failure {
    /// The `SecretsSynced` condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::NotFound { .. } => reason::BUNDLE_NOT_FOUND,
            Failure::ScopeMismatch { .. } => reason::SCOPE_MISMATCH,
            Failure::Decryption { .. } => reason::DECRYPTION_FAILED,
            Failure::InvalidPayload { .. } => reason::INVALID_PAYLOAD,
            Failure::Refused { refusal: Refusal::UnsupportedType(_), .. } => reason::UNSUPPORTED_TYPE,
            Failure::Refused { refusal: Refusal::ReservedMetadata(_), .. } => reason::RESERVED_METADATA,
            Failure::Refused { refusal: Refusal::TooManyValues(_), .. } => reason::TOO_MANY_VALUES,
            Failure::Refused { refusal: Refusal::OutOfBounds(_), .. } => reason::OUT_OF_BOUNDS,
            Failure::Unreadable { .. } => reason::INVALID_OBJECT,
        }
    }

    /// The `reason` label of `mltenant_decryption_failures_total`: a closed set.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Failure::Decryption { error, .. } => error.reason(),
            other => other.reason(),
        }
    }

    pub fn bundle(&self) -> &str {
        match self {
            Failure::NotFound { bundle }
            | Failure::ScopeMismatch { bundle, .. }
            | Failure::Decryption { bundle, .. }
            | Failure::InvalidPayload { bundle, .. }
            | Failure::Refused { bundle, .. }
            | Failure::Unreadable { bundle, .. } => bundle,
        }
    }
}

/// The OAEP label for `tenant`'s `environment` consuming `bundle`, after checking that the
/// bundle's declared scope allows that consumer. The label comes from the consumer: a bundle
/// whose claims were edited still only opens for the consumer it was sealed for.
pub fn consumer_label(
    bundle: &SealedBundle,
    tenant: &str,
    tenant_labels: &BTreeMap<String, String>,
    environment: &str,
) -> Result<Vec<u8>, Failure> {
    let spec = &bundle.spec;
    let mismatch = |problem: String| Failure::ScopeMismatch { bundle: bundle.name_any(), problem };
    match spec.scope {
        BundleScope::Cluster => {
            let selector = spec.tenant_selector.clone().unwrap_or_default();
            let selector = Selector::try_from(selector)
                .map_err(|_| mismatch("tenantSelector is not a valid label selector".into()))?;
            if !selector.matches(tenant_labels) {
                return Err(mismatch(format!("MLTenant {tenant} is outside its tenantSelector")));
            }
        }
        BundleScope::Tenant | BundleScope::Environment => {
            let sealed_for = spec.tenant.as_deref().unwrap_or_default();
            if sealed_for != tenant {
                return Err(mismatch(format!("sealed for tenant {sealed_for}, not {tenant}")));
            }
            if spec.scope == BundleScope::Environment {
                let sealed_env = spec.environment.as_deref().unwrap_or_default();
                if sealed_env != environment {
                    return Err(mismatch(format!("sealed for environment {sealed_env}, not {environment}")));
                }
            }
        }
    }
    Ok(crypto::label(spec.scope, tenant, environment))
}

/// The label the bundle's own claims give: what its status and `/v1/verify` check.
pub fn declared_label(bundle: &SealedBundle) -> Vec<u8> {
    let spec = &bundle.spec;
    crypto::label(
        spec.scope,
        spec.tenant.as_deref().unwrap_or_default(),
        spec.environment.as_deref().unwrap_or_default(),
    )
}

/// `sha256:<hex>` over the bundle's keys and ciphertexts (never over plaintext): changes exactly
/// when the bundle is re-sealed or edited. Computed when a bundle enters the shared cache,
/// which keeps it in place of the ciphertexts: see [`cached_source_hash`].
pub fn source_hash(bundle: &SealedBundle) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (key, value) in &bundle.spec.encrypted_data {
        for part in [key.as_bytes(), b"\0", value.as_bytes(), b"\0"] {
            ctx.update(part);
        }
    }
    format!("sha256:{}", crate::text::hex(ctx.finish().as_ref()))
}

/// What a sealed value is known by: the SHA-256 of its ciphertext as written in the bundle.
/// The decrypt cache is keyed by it.
pub type Digest = [u8; 32];

pub fn ciphertext_digest(ciphertext: &str) -> Digest {
    crate::text::sha256(&[ciphertext.as_bytes()])
}

/// The shared cache of bundles keeps a value as `sha256:<base64 of its digest>`, not its
/// ciphertext (about 750 bytes for a value sealed to RSA-4096): what is in the decrypt cache
/// opens without it, and what is not is read from the API server first (`KeyRing::open`).
const CACHED_PREFIX: &str = "sha256:";

/// A bundle as the shared cache keeps it: every value replaced by its digest, and the source
/// hash, which needs the ciphertexts, computed first and kept as an annotation.
pub fn keep_digests(bundle: &mut SealedBundle) {
    let hash = source_hash(bundle);
    bundle.annotations_mut().insert(labels::SOURCE_HASH.to_owned(), hash);
    for value in bundle.spec.encrypted_data.values_mut() {
        *value = format!("{CACHED_PREFIX}{}", BASE64.encode(ciphertext_digest(value)));
    }
}

/// The source hash of a bundle from the shared cache (see [`keep_digests`]), or of one that
/// still holds its ciphertexts (the bench's write floor builds Secrets from those).
pub fn cached_source_hash(bundle: &SealedBundle) -> String {
    bundle.annotations().get(labels::SOURCE_HASH).cloned().unwrap_or_else(|| source_hash(bundle))
}

fn cached_digest(value: &str) -> Option<Digest> {
    BASE64.decode(value.strip_prefix(CACHED_PREFIX)?).ok()?.try_into().ok()
}

/// Whether `sealed` holds the values whose digests the cached bundle `cached` keeps.
pub fn same_values(cached: &SealedBundle, sealed: &SealedBundle) -> bool {
    let (cached, sealed) = (&cached.spec.encrypted_data, &sealed.spec.encrypted_data);
    cached.len() == sealed.len()
        && cached
            .iter()
            .zip(sealed)
            .all(|((ck, cv), (k, v))| ck == k && cached_digest(cv) == Some(ciphertext_digest(v)))
}

/// Every value of a bundle, opened. `Debug` shows the keys and sizes, never a value.
pub struct Opened {
    pub data: BTreeMap<String, Zeroizing<Vec<u8>>>,
    /// The key that opened the values (if several did, one that is not the newest: the bundle
    /// needs re-sealing while any value depends on an older key).
    pub fingerprint: String,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: BTreeMap<&str, String> =
            self.data.iter().map(|(k, v)| (k.as_str(), format!("<{} bytes redacted>", v.len()))).collect();
        f.debug_struct("Opened").field("data", &sizes).field("fingerprint", &self.fingerprint).finish()
    }
}

/// Check the bundle's claims (type, template, size), open every value under `label`, then
/// validate the payload for the bundle's Secret type. All or nothing: one bad value fails the
/// whole bundle. `bundle` holds its ciphertexts (not one of the shared cache).
pub fn open(bundle: &SealedBundle, label: &[u8], keys: &[SealingKey], cache: &DecryptCache) -> Result<Opened, Failure> {
    let name = bundle.name_any();
    payload::check_claims(bundle).map_err(|refusal| Failure::Refused { bundle: name.clone(), refusal })?;
    let mut plains = Vec::with_capacity(bundle.spec.encrypted_data.len());
    for (key, value) in &bundle.spec.encrypted_data {
        let plain = cache
            .get_or_open(&ciphertext_digest(value), label, || {
                crypto::open(keys, label, value)
                    .map(|o| Plain { bytes: o.plaintext, fingerprint: o.fingerprint.into() })
            })
            .map_err(|error| Failure::Decryption { bundle: name.clone(), key: key.clone(), error })?;
        plains.push((key, plain));
    }
    validated(bundle, keys, plains)
}

/// [`open`] for a bundle of the shared cache, from what `cache` holds: `None` when a value is
/// not there (it has to be decrypted, from the bundle's ciphertexts).
pub fn open_cached(
    bundle: &SealedBundle,
    label: &[u8],
    keys: &[SealingKey],
    cache: &DecryptCache,
) -> Option<Result<Opened, Failure>> {
    if let Err(refusal) = payload::check_claims(bundle) {
        return Some(Err(Failure::Refused { bundle: bundle.name_any(), refusal }));
    }
    let plains =
        bundle.spec.encrypted_data.iter().map(|(key, value)| Some((key, cache.get(&cached_digest(value)?, label)?)));
    Some(validated(bundle, keys, plains.collect::<Option<Vec<_>>>()?))
}

/// The opened values, once their payload passed the check for the bundle's Secret type.
fn validated(bundle: &SealedBundle, keys: &[SealingKey], plains: Vec<(&String, Plain)>) -> Result<Opened, Failure> {
    let newest = keys.first().map(SealingKey::fingerprint);
    let mut data = BTreeMap::new();
    let mut fingerprint: Option<Arc<str>> = None;
    for (key, plain) in plains {
        if fingerprint.is_none() || Some(&*plain.fingerprint) != newest {
            fingerprint = Some(plain.fingerprint);
        }
        data.insert(key.clone(), plain.bytes);
    }
    payload::check_values(payload::secret_type(bundle), &data).map_err(|(key, problem)| Failure::InvalidPayload {
        bundle: bundle.name_any(),
        key: key.to_owned(),
        problem,
    })?;
    Ok(Opened { data, fingerprint: fingerprint.map(|f| f.to_string()).unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::api::SealedBundleSpec;

    fn bundle(scope: BundleScope, tenant: Option<&str>, environment: Option<&str>) -> SealedBundle {
        SealedBundle::new(
            "b",
            SealedBundleSpec {
                tenant: tenant.map(Into::into),
                environment: environment.map(Into::into),
                tenant_selector: (scope == BundleScope::Cluster).then(|| LabelSelector {
                    match_labels: Some([("tier".to_string(), "gold".to_string())].into()),
                    ..Default::default()
                }),
                ..SealedBundleSpec::new(scope, [("K".to_string(), "AgB".to_string())].into())
            },
        )
    }

    #[test]
    fn scope_checks_use_the_consumer() {
        let none = BTreeMap::new();
        let gold: BTreeMap<String, String> = [("tier".to_string(), "gold".to_string())].into();
        let tenant = bundle(BundleScope::Tenant, Some("a"), None);
        assert_eq!(consumer_label(&tenant, "a", &none, "dev").unwrap(), b"a");
        let err = consumer_label(&tenant, "b", &none, "dev").unwrap_err();
        assert_eq!(
            (err.reason(), err.to_string().as_str()),
            ("ScopeMismatch", "SealedBundle b: sealed for tenant a, not b")
        );

        let env = bundle(BundleScope::Environment, Some("a"), Some("dev"));
        assert_eq!(consumer_label(&env, "a", &none, "dev").unwrap(), b"a/dev");
        assert_eq!(consumer_label(&env, "a", &none, "production").unwrap_err().reason(), "ScopeMismatch");

        let cluster = bundle(BundleScope::Cluster, None, None);
        assert_eq!(consumer_label(&cluster, "a", &gold, "dev").unwrap(), b"");
        let outside = consumer_label(&cluster, "a", &none, "dev").unwrap_err();
        assert!(outside.to_string().contains("outside its tenantSelector"), "{outside}");
    }

    #[test]
    fn source_hash_follows_the_ciphertext() {
        let a = bundle(BundleScope::Tenant, Some("a"), None);
        let mut b = a.clone();
        assert_eq!(source_hash(&a), source_hash(&b));
        b.spec.encrypted_data.insert("K".into(), "AgC".into());
        assert_ne!(source_hash(&a), source_hash(&b));
        assert!(source_hash(&a).starts_with("sha256:"));
    }

    #[test]
    fn the_cached_form_keeps_digests_and_the_source_hash() {
        let full = bundle(BundleScope::Tenant, Some("a"), None);
        let mut cached = full.clone();
        keep_digests(&mut cached);
        assert!(cached.spec.encrypted_data["K"].starts_with("sha256:"), "{:?}", cached.spec.encrypted_data);
        assert_eq!(cached_source_hash(&cached), source_hash(&full));
        assert_eq!(cached_source_hash(&full), source_hash(&full), "computed when not cached");
        assert!(same_values(&cached, &full));
        let mut resealed = full.clone();
        resealed.spec.encrypted_data.insert("K".into(), "AgC".into());
        assert!(!same_values(&cached, &resealed));
    }

    #[test]
    fn refusals_have_their_own_reasons() {
        let mut b = bundle(BundleScope::Tenant, Some("a"), None);
        b.spec.type_ = Some("kubernetes.io/service-account-token".into());
        let failure = open(&b, b"a", &[], &DecryptCache::default()).unwrap_err();
        assert_eq!(failure.reason(), "UnsupportedType");
        assert!(failure.to_string().contains("is not allowed (one of Opaque, "), "{failure}");
    }
}
