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
    /// v2: the value names none of this operator's keys.
    #[error(
        "SealedBundle {bundle} key {key}: sealed for sealing keys {recipients}; this operator holds {ours} (seal it for this cluster too: mltenant seal --cert <this cluster's certificate>)"
    )]
    NotARecipient { bundle: String, key: String, recipients: String, ours: String },
    /// The key that opens it is retired: nothing is written until it is re-sealed or the key
    /// is un-retired.
    #[error(
        "SealedBundle {bundle} key {key}: the sealing key it needs, {fingerprint}, is retired, and a retired key re-seals nothing either: un-retire it (mltenant keys unretire), re-seal the bundle (mltenant rotate), then retire it again"
    )]
    KeyRetired { bundle: String, key: String, fingerprint: String },
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
            Failure::Decryption { .. } | Failure::NotARecipient { .. } => reason::DECRYPTION_FAILED,
            Failure::KeyRetired { .. } => reason::KEY_RETIRED,
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
            Failure::NotARecipient { .. } => OpenError::NotARecipient.reason(),
            other => other.reason(),
        }
    }

    pub fn bundle(&self) -> &str {
        match self {
            Failure::NotFound { bundle }
            | Failure::ScopeMismatch { bundle, .. }
            | Failure::Decryption { bundle, .. }
            | Failure::NotARecipient { bundle, .. }
            | Failure::KeyRetired { bundle, .. }
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

/// What the decrypt cache knows a value of `key` by: its key name and its ciphertext's digest.
/// The key name is part of it because a v2 value is bound to its key name: the value of `B`
/// moved under `A` must not be served from what `B` opened.
fn entry(key: &str, ciphertext: &Digest) -> Digest {
    crate::text::sha256(&[key.as_bytes(), b"\0", ciphertext])
}

pub fn ciphertext_digest(ciphertext: &str) -> Digest {
    crate::text::sha256(&[ciphertext.as_bytes()])
}

/// The shared cache of bundles keeps a value as `sha256:<base64 of its digest>`, not its
/// ciphertext (about 750 bytes for a value sealed to RSA-4096): what is in the decrypt cache
/// opens without it, and what is not is read from the API server first (`KeyRing::open`).
const CACHED_PREFIX: &str = "sha256:";

/// In a bundle of the shared cache (in memory only): the key ids its v2 values name, as
/// comma-separated hex (public: what the ciphertexts say in clear), followed by [`ANY_KEY`]
/// when the values may need a key they do not name.
pub const CACHED_RECIPIENTS: &str = "mltenant.io/cached-recipients";

/// Closes [`CACHED_RECIPIENTS`] when a value may need any key: a kubeseal-format value names
/// none (which key it needs is only learnt by opening it), and a bundle naming more ids than
/// one header can ([`crypto::v2::MAX_RECIPIENTS`]) keeps only that many (otherwise made-up ids,
/// 16 in each of 128 values, would make the cache keep more of a bundle than of its values).
const ANY_KEY: &str = "*";

/// What a bundle says in clear of the keys it needs: the key ids its v2 values name
/// (first-seen order, at most [`crypto::v2::MAX_RECIPIENTS`]) and whether a value may need a key
/// it does not name. A value that does not decode needs no key.
fn named_keys(bundle: &SealedBundle) -> (Vec<crypto::KeyId>, bool) {
    let (mut ids, mut any) = (Vec::new(), false);
    for value in bundle.spec.encrypted_data.values() {
        let Ok(raw) = crypto::decode_base64(value) else { continue };
        if !crypto::v2::is_ours(&raw) {
            any = true;
        }
        for id in crypto::v2::recipients(&raw) {
            if ids.contains(&id) {
                continue;
            }
            if ids.len() == crypto::v2::MAX_RECIPIENTS {
                any = true;
                break;
            }
            ids.push(id);
        }
    }
    (ids, any)
}

/// [`named_keys`] of a bundle of the shared cache (see [`keep_digests`]), or of one that still
/// holds its ciphertexts, as hex ids.
fn cached_named_keys(bundle: &SealedBundle) -> (Vec<String>, bool) {
    match bundle.annotations().get(CACHED_RECIPIENTS) {
        Some(kept) => {
            let mut ids: Vec<String> = kept.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
            let any = ids.last().is_some_and(|id| id == ANY_KEY);
            if any {
                ids.pop();
            }
            (ids, any)
        }
        None => {
            let (ids, any) = named_keys(bundle);
            (ids.iter().map(crypto::key_id_hex).collect(), any)
        }
    }
}

/// The key ids the v2 values of a bundle name (see [`cached_named_keys`]): its recipients.
pub fn cached_recipients(bundle: &SealedBundle) -> Vec<String> {
    cached_named_keys(bundle).0
}

/// Whether `bundle` needs the sealing key `fingerprint` (key id `key_id`, hex): what holds that
/// key's deletion. What the operator found out decides: the bundle's status lists every key its
/// values were opened with, or would be (retired ones), once an opening of every value
/// ([`opening`]) said so (`keyFingerprints`). Where no such status speaks for the bundle as it is
/// now (`reported_here` false: this installation does not report on it; not looked at since its
/// last change; written by an older operator), what the bundle says in clear stands in: the key
/// ids its v2 values name. Those ids are public, anybody can write a stanza naming one: a hint,
/// so they only hold a key until the operator has looked, never for good. A bundle this
/// installation reports on and has not looked at yet whose values may need a key they do not
/// name (kubeseal format, or too many ids) holds every key until it has: one new key or
/// edit away from stranding a credential otherwise, for the seconds until its status is
/// written. One another installation reports on does not (it would hold every key for good:
/// a sharded installation re-seals such bundles to v2 before deleting keys, docs/sealing.md).
pub fn needs_key(bundle: &SealedBundle, fingerprint: &str, key_id: &str, reported_here: bool) -> bool {
    let status = bundle.status.as_ref();
    let listed = status.is_some_and(|s| {
        s.key_fingerprint.as_deref() == Some(fingerprint)
            || s.key_fingerprints.iter().flatten().any(|f| f == fingerprint)
    });
    if listed {
        return true;
    }
    let current = reported_here
        && status.is_some_and(|s| s.key_fingerprints.is_some() && s.observed_generation == bundle.metadata.generation);
    if current {
        return false;
    }
    let (ids, any) = cached_named_keys(bundle);
    (any && reported_here) || ids.iter().any(|id| id == key_id)
}

/// A bundle as the shared cache keeps it: every value replaced by its digest, and the source
/// hash and the keys it names, which need the ciphertexts, computed first and kept as
/// annotations.
pub fn keep_digests(bundle: &mut SealedBundle) {
    let hash = source_hash(bundle);
    let (ids, any) = named_keys(bundle);
    let mut kept: Vec<String> = ids.iter().map(crypto::key_id_hex).collect();
    if any {
        kept.push(ANY_KEY.to_owned());
    }
    bundle.annotations_mut().insert(labels::SOURCE_HASH.to_owned(), hash);
    bundle.annotations_mut().insert(CACHED_RECIPIENTS.to_owned(), kept.join(","));
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
    /// Every key that opened one of the values (the bundle needs each of them), sorted.
    pub keys: Vec<Arc<str>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: BTreeMap<&str, String> =
            self.data.iter().map(|(k, v)| (k.as_str(), format!("<{} bytes redacted>", v.len()))).collect();
        f.debug_struct("Opened")
            .field("data", &sizes)
            .field("fingerprint", &self.fingerprint)
            .field("keys", &self.keys)
            .finish()
    }
}

/// The sealing keys a bundle is opened with: the active ones (newest first), which open, and
/// the retired ones, which open nothing and only let a failure name the retired key a value
/// needs; and the generation of that set of keys (the decrypt cache keeps only what the
/// current one opened or refused).
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub active: &'a [SealingKey],
    pub retired: &'a [SealingKey],
    pub generation: u64,
}

impl<'a> Keys<'a> {
    /// Only active keys, generation 0.
    pub fn active(active: &'a [SealingKey]) -> Self {
        Keys { active, retired: &[], generation: 0 }
    }
}

/// What opening a bundle found out: its values (or why not), and every sealing key its values
/// need, sorted: the active keys that opened them and the retired keys that would. Complete
/// even when the bundle fails (see [`opening`]): what decides whether a key may be deleted.
#[derive(Debug)]
pub struct Opening {
    pub opened: Result<Opened, Failure>,
    pub needs: Vec<Arc<str>>,
}

/// Check the bundle's claims (type, template, size), open every value under `label`, then
/// validate the payload for the bundle's Secret type. All or nothing: one bad value fails the
/// whole bundle, and the values after it are not opened. `bundle` holds its ciphertexts (not one
/// of the shared cache). One RSA operation per sealing run of v2 values (they share a data key),
/// one per kubeseal value.
pub fn open(bundle: &SealedBundle, label: &[u8], keys: Keys<'_>, cache: &DecryptCache) -> Result<Opened, Failure> {
    opening(bundle, label, keys, cache, false).opened
}

/// [`open`], and with `complete` going on past a value that fails to learn which keys every
/// other value needs: a bundle one of whose values is refused (tampered, or needing a retired
/// key) still needs the keys its other values were sealed to, and deleting one of those would
/// strand that value for good. What the bundle's status reports. Costs no more RSA work than a
/// bundle that opens, and failures are cached like openings.
pub fn opening(bundle: &SealedBundle, label: &[u8], keys: Keys<'_>, cache: &DecryptCache, complete: bool) -> Opening {
    let mut opener = crypto::Opener::new(keys.active, keys.retired, label);
    open_with(bundle, label, &mut opener, keys, cache, complete)
}

fn open_with(
    bundle: &SealedBundle,
    label: &[u8],
    opener: &mut crypto::Opener<'_>,
    keys: Keys<'_>,
    cache: &DecryptCache,
    complete: bool,
) -> Opening {
    let name = bundle.name_any();
    if let Err(refusal) = payload::check_claims(bundle) {
        return Opening { opened: Err(Failure::Refused { bundle: name, refusal }), needs: Vec::new() };
    }
    let mut plains = Vec::with_capacity(bundle.spec.encrypted_data.len());
    let mut refusals = Vec::new();
    for (key, value) in &bundle.spec.encrypted_data {
        let result = cache.get_or_open(&entry(key, &ciphertext_digest(value)), label, keys.generation, || {
            let raw = crypto::decode_base64(value)?;
            opener.open(key, &raw).map(|o| Plain { bytes: o.plaintext, fingerprint: o.fingerprint.into() })
        });
        match result {
            Ok(plain) => plains.push((key, plain)),
            Err(refused) => {
                refusals.push((key, refused));
                if !complete {
                    break;
                }
            }
        }
    }
    finish(bundle, keys.active, plains, refusals)
}

/// The opening of `bundle` from what its values gave: the first refusal fails it, else its
/// payload is checked; the keys needed are gathered either way.
fn finish(
    bundle: &SealedBundle,
    active: &[SealingKey],
    plains: Vec<(&String, Plain)>,
    refusals: Vec<(&String, crypto::Refused)>,
) -> Opening {
    let mut needs: Vec<Arc<str>> = plains.iter().map(|(_, p)| p.fingerprint.clone()).collect();
    needs.extend(refusals.iter().filter_map(|(_, r)| r.retired.clone()));
    needs.sort();
    needs.dedup();
    let opened = match refusals.into_iter().next() {
        Some((key, refused)) => Err(failure(&bundle.name_any(), key, active, refused)),
        None => validated(bundle, active, plains),
    };
    Opening { opened, needs }
}

/// Every value of `bundle` re-sealed to `newest` under `label` (the one label both the opening
/// and the sealing use), once every value opened and the payload passed: what `/v1/rotate`
/// returns. Each value keeps its format unless `format` says otherwise. A v2 run keeps its data
/// key and the other clusters' stanzas; this operator's stanzas become one for `newest`, so the
/// bundle still opens on every other recipient cluster. Kubeseal values, and values converted
/// to v2, are sealed afresh (one new v2 run for all of them).
pub fn reseal(
    bundle: &SealedBundle,
    label: &[u8],
    keys: Keys<'_>,
    newest: &SealingKey,
    format: Option<crypto::Format>,
) -> Result<BTreeMap<String, String>, ResealError> {
    let mut opener = crypto::Opener::new(keys.active, keys.retired, label);
    let opened = open_with(bundle, label, &mut opener, keys, &DecryptCache::with_capacity(0), false).opened?;
    let ours: Vec<crypto::KeyId> = keys.active.iter().chain(keys.retired).map(|k| k.certificate().key_id()).collect();
    let mut runs: BTreeMap<Vec<u8>, crypto::Sealer> = BTreeMap::new();
    let mut fresh: Option<crypto::Sealer> = None;
    let mut out = BTreeMap::new();
    for (key, value) in &bundle.spec.encrypted_data {
        let plaintext = &opened.data[key];
        let raw = crypto::decode_base64(value).map_err(|error| Failure::Decryption {
            bundle: bundle.name_any(),
            key: key.clone(),
            error,
        })?;
        let was_v2 = crypto::v2::is_ours(&raw);
        let sealed = match format.unwrap_or(if was_v2 { crypto::Format::V2 } else { crypto::Format::Kubeseal }) {
            crypto::Format::Kubeseal => {
                // Kubeseal's format has one recipient: converting a value other clusters' keys
                // open too would silently stop it opening there.
                let others: Vec<String> = crypto::v2::recipients(&raw)
                    .iter()
                    .filter(|id| !ours.contains(id))
                    .map(crypto::key_id_hex)
                    .collect();
                if !others.is_empty() {
                    return Err(ResealError::OtherRecipients {
                        bundle: bundle.name_any(),
                        key: key.clone(),
                        recipients: others.join(", "),
                    });
                }
                crypto::seal(newest.certificate(), label, plaintext)?
            }
            crypto::Format::V2 if was_v2 => {
                let header = crypto::v2::header(&raw).unwrap_or_default().to_vec();
                let sealer = match runs.entry(header) {
                    std::collections::btree_map::Entry::Occupied(run) => run.into_mut(),
                    std::collections::btree_map::Entry::Vacant(run) => run.insert(
                        opener
                            .rewrap(&raw, newest.certificate(), &ours)
                            .map_err(|refused| failure(&bundle.name_any(), key, keys.active, refused))?,
                    ),
                };
                sealer.seal(key, plaintext)?
            }
            crypto::Format::V2 => {
                if fresh.is_none() {
                    fresh = Some(crypto::Sealer::new(&[newest.certificate()], label)?);
                }
                fresh.as_ref().map(|s| s.seal(key, plaintext)).transpose()?.unwrap_or_default()
            }
        };
        out.insert(key.clone(), crypto::encode_base64(&sealed));
    }
    Ok(out)
}

/// Why a bundle could not be re-sealed.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error(transparent)]
    Open(#[from] Failure),
    #[error(transparent)]
    Seal(#[from] crypto::SealError),
    #[error(
        "SealedBundle {bundle} key {key}: also sealed for sealing keys {recipients} (other clusters), which kubeseal format cannot name; keep format v2"
    )]
    OtherRecipients { bundle: String, key: String, recipients: String },
}

/// The failure of `key`'s value, saying what a refusal knows beyond its reason.
pub fn failure(bundle: &str, key: &str, active: &[SealingKey], refused: crypto::Refused) -> Failure {
    let (bundle, key) = (bundle.to_owned(), key.to_owned());
    match refused.error {
        OpenError::NotARecipient => {
            let recipients = refused.recipients.iter().map(crypto::key_id_hex).collect::<Vec<_>>().join(", ");
            let ours = active.iter().map(|k| crypto::key_id_hex(&k.certificate().key_id())).collect::<Vec<_>>();
            let ours = if ours.is_empty() { "no key".to_owned() } else { ours.join(", ") };
            Failure::NotARecipient { bundle, key, recipients, ours }
        }
        OpenError::KeyRetired => {
            Failure::KeyRetired { bundle, key, fingerprint: refused.retired.map(|f| f.to_string()).unwrap_or_default() }
        }
        error => Failure::Decryption { bundle, key, error },
    }
}

/// [`open`] for a bundle of the shared cache, from what `cache` holds: `None` when a value is
/// not there (it has to be decrypted, from the bundle's ciphertexts). A value known not to
/// open fails the bundle at once.
pub fn open_cached(
    bundle: &SealedBundle,
    label: &[u8],
    keys: &[SealingKey],
    cache: &DecryptCache,
) -> Option<Result<Opened, Failure>> {
    opening_cached(bundle, label, keys, cache, false).map(|opening| opening.opened)
}

/// [`opening`] for a bundle of the shared cache, from what `cache` holds: `None` when a value
/// it needs is not there (with `complete`, unless every value is there, opened or refused).
pub fn opening_cached(
    bundle: &SealedBundle,
    label: &[u8],
    keys: &[SealingKey],
    cache: &DecryptCache,
    complete: bool,
) -> Option<Opening> {
    if let Err(refusal) = payload::check_claims(bundle) {
        return Some(Opening {
            opened: Err(Failure::Refused { bundle: bundle.name_any(), refusal }),
            needs: Vec::new(),
        });
    }
    let (mut plains, mut refusals, mut unknown) = (Vec::new(), Vec::new(), false);
    for (key, value) in &bundle.spec.encrypted_data {
        match cached_digest(value).and_then(|digest| cache.get(&entry(key, &digest), label)) {
            Some(Ok(plain)) => plains.push((key, plain)),
            Some(Err(refused)) => {
                refusals.push((key, refused));
                if !complete {
                    // Fails whatever the values not known yet give.
                    return Some(finish(bundle, keys, plains, refusals));
                }
            }
            None => unknown = true,
        }
    }
    (!unknown).then(|| finish(bundle, keys, plains, refusals))
}

/// The opened values, once their payload passed the check for the bundle's Secret type.
fn validated(bundle: &SealedBundle, keys: &[SealingKey], plains: Vec<(&String, Plain)>) -> Result<Opened, Failure> {
    let newest = keys.first().map(SealingKey::fingerprint);
    let mut data = BTreeMap::new();
    let mut fingerprint: Option<Arc<str>> = None;
    let mut used: Vec<Arc<str>> = Vec::new();
    for (key, plain) in plains {
        if !used.contains(&plain.fingerprint) {
            used.push(plain.fingerprint.clone());
        }
        if fingerprint.is_none() || Some(&*plain.fingerprint) != newest {
            fingerprint = Some(plain.fingerprint);
        }
        data.insert(key.clone(), plain.bytes);
    }
    used.sort();
    payload::check_values(payload::secret_type(bundle), &data).map_err(|(key, problem)| Failure::InvalidPayload {
        bundle: bundle.name_any(),
        key: key.to_owned(),
        problem,
    })?;
    Ok(Opened { data, fingerprint: fingerprint.map(|f| f.to_string()).unwrap_or_default(), keys: used })
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

    /// The decrypt cache does not let a v2 value opened under one key name open under another.
    #[test]
    fn a_value_moved_to_another_key_name_is_refused_even_once_cached() {
        let key = SealingKey::generate(std::time::Duration::from_secs(3600)).unwrap();
        let label = crypto::label(BundleScope::Tenant, "a", "");
        let sealer = crypto::Sealer::new(&[key.certificate()], &label).unwrap();
        let value = |k: &str| crypto::encode_base64(&sealer.seal(k, b"v").unwrap());
        let mut b = bundle(BundleScope::Tenant, Some("a"), None);
        b.spec.encrypted_data = [("A".to_string(), value("A")), ("B".to_string(), value("B"))].into();
        let cache = DecryptCache::default();
        let keys = std::slice::from_ref(&key);
        assert!(open(&b, &label, Keys::active(keys), &cache).is_ok());
        let moved = b.spec.encrypted_data["B"].clone();
        b.spec.encrypted_data.insert("A".into(), moved);
        let failure = open(&b, &label, Keys::active(keys), &cache).unwrap_err();
        assert_eq!((failure.metric_reason(), failure.to_string().contains("key A")), ("Tampered", true));
    }

    /// A bundle merged into over time (one value sealed to an older key, one to the newest)
    /// needs both keys, also while one of its values fails: the status lists every one, so
    /// neither is deleted while a value needs it (its status used to name one key only).
    #[test]
    fn every_key_a_value_needs_is_found_also_past_a_failure() {
        use crate::crypto::tests::{fixture_key, shared_key};
        let (newest, older) = (shared_key(), fixture_key());
        let label = crypto::label(BundleScope::Tenant, "a", "");
        let seal =
            |key: &SealingKey, v: &[u8]| crypto::encode_base64(&crypto::seal(key.certificate(), &label, v).unwrap());
        let mut b = bundle(BundleScope::Tenant, Some("a"), None);
        b.spec.encrypted_data = [("A".to_string(), seal(newest, b"a")), ("B".to_string(), seal(older, b"b"))].into();
        let both = [newest.clone(), older.clone()];
        let fingerprints = |needs: &[Arc<str>]| needs.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let mut expected = vec![newest.fingerprint().to_owned(), older.fingerprint().to_owned()];
        expected.sort();

        let found = opening(&b, &label, Keys::active(&both), &DecryptCache::default(), true);
        assert!(found.opened.is_ok());
        assert_eq!(fingerprints(&found.needs), expected);
        // The older key retired: the bundle fails naming it, and still needs both.
        let retired =
            Keys { active: std::slice::from_ref(newest), retired: std::slice::from_ref(older), generation: 1 };
        let found = opening(&b, &label, retired, &DecryptCache::default(), true);
        assert_eq!(found.opened.as_ref().unwrap_err().reason(), "KeyRetired");
        assert_eq!(fingerprints(&found.needs), expected);
        // The newest key's value tampered with: the older key is still needed by the other.
        let mut raw = crypto::decode_base64(&b.spec.encrypted_data["A"]).unwrap();
        *raw.last_mut().unwrap() ^= 1;
        b.spec.encrypted_data.insert("A".into(), crypto::encode_base64(&raw));
        let found = opening(&b, &label, Keys::active(&both), &DecryptCache::default(), true);
        assert_eq!(found.opened.unwrap_err().metric_reason(), "Tampered");
        assert_eq!(fingerprints(&found.needs), vec![older.fingerprint().to_owned()]);
        // A tenant's opening stops at the first failure.
        assert_eq!(
            open(&b, &label, Keys::active(&both), &DecryptCache::default()).unwrap_err().metric_reason(),
            "Tampered"
        );
    }

    /// `/v1/rotate?format=kubeseal` of a value other clusters open too is refused, naming them:
    /// kubeseal's format has one recipient, and the conversion used to drop the others
    /// silently (the bundle stopped opening on every other cluster). Without the format, or
    /// for a value only this cluster's keys open, it goes through.
    #[test]
    fn rotating_to_kubeseal_never_drops_another_clusters_recipient() {
        use crate::crypto::tests::{fixture_key, fixture_key_2, shared_key};
        let (ours, retired, foreign) = (shared_key(), fixture_key_2(), fixture_key());
        let label = crypto::label(BundleScope::Tenant, "a", "");
        let seal = |certs: &[&crypto::Certificate]| {
            let sealer = crypto::Sealer::new(certs, &label).unwrap();
            crypto::encode_base64(&sealer.seal("A", b"v").unwrap())
        };
        let mut b = bundle(BundleScope::Tenant, Some("a"), None);
        b.spec.encrypted_data = [("A".to_string(), seal(&[ours.certificate(), foreign.certificate()]))].into();
        let keys = Keys { active: std::slice::from_ref(ours), retired: &[], generation: 0 };
        let error = reseal(&b, &label, keys, ours, Some(crypto::Format::Kubeseal)).unwrap_err();
        let foreign_id = crypto::key_id_hex(&foreign.certificate().key_id());
        assert!(
            matches!(&error, ResealError::OtherRecipients { recipients, .. } if *recipients == foreign_id),
            "{error}"
        );
        let kept = reseal(&b, &label, keys, ours, None).unwrap();
        assert_eq!(crypto::v2::recipients(&crypto::decode_base64(&kept["A"]).unwrap()).len(), 2);
        // Our own keys (a retired one too) are no other cluster's.
        b.spec.encrypted_data = [("A".to_string(), seal(&[ours.certificate(), retired.certificate()]))].into();
        let keys = Keys { active: std::slice::from_ref(ours), retired: std::slice::from_ref(retired), generation: 0 };
        let converted = reseal(&b, &label, keys, ours, Some(crypto::Format::Kubeseal)).unwrap();
        assert!(!crypto::v2::is_ours(&crypto::decode_base64(&converted["A"]).unwrap()));
    }

    /// Values that open nothing cost their RSA work once per set of keys, however many times
    /// (and by however many tenants) the bundle is opened; and a bundle of the shared cache
    /// with such a value fails at once, from the cache.
    #[test]
    fn what_does_not_open_is_tried_once_per_key_set() {
        use crate::crypto::tests::{fixture_key, shared_key};
        let label = crypto::label(BundleScope::Tenant, "a", "");
        let other = crypto::label(BundleScope::Tenant, "b", "");
        let mut b = bundle(BundleScope::Tenant, Some("a"), None);
        b.spec.encrypted_data = (0..8)
            .map(|i| {
                (
                    format!("K{i}"),
                    crypto::encode_base64(&crypto::seal(fixture_key().certificate(), &other, b"v").unwrap()),
                )
            })
            .collect();
        let cache = DecryptCache::default();
        let keys = std::slice::from_ref(shared_key());
        for _ in 0..3 {
            let found = opening(&b, &label, Keys::active(keys), &cache, true);
            assert_eq!(found.opened.unwrap_err().metric_reason(), "NoKeyCouldDecrypt");
        }
        assert_eq!(cache.decryptions(), 8, "each value tried once");
        let mut cached = b.clone();
        keep_digests(&mut cached);
        let failure = open_cached(&cached, &label, keys, &cache).expect("known").unwrap_err();
        assert_eq!(failure.metric_reason(), "NoKeyCouldDecrypt");
        assert!(opening_cached(&cached, &label, keys, &cache, true).is_some_and(|o| o.needs.is_empty()));
        // Another key set: tried again.
        cache.retain_keys(&[shared_key().fingerprint()], 1);
        assert!(open_cached(&cached, &label, keys, &cache).is_none());
    }

    /// What holds a key's deletion: the keys a status found out (for the bundle as it is),
    /// else, while no such status speaks for it, the key ids its v2 values name.
    #[test]
    fn which_bundles_need_a_key() {
        use crate::api::SealedBundleStatus;
        const KEY: &str = "SHA256:aaaa";
        const ID: &str = "aaaa";
        let row = |generation: i64, status: Option<SealedBundleStatus>, names: &[&str]| {
            let mut b = bundle(BundleScope::Tenant, Some("a"), None);
            b.metadata.generation = Some(generation);
            b.status = status;
            b.annotations_mut().insert(CACHED_RECIPIENTS.to_owned(), names.join(","));
            b
        };
        let status = |observed: i64, fingerprint: Option<&str>, needs: Option<&[&str]>| SealedBundleStatus {
            observed_generation: Some(observed),
            key_fingerprint: fingerprint.map(Into::into),
            key_fingerprints: needs.map(|n| n.iter().map(|f| f.to_string()).collect()),
            ..Default::default()
        };
        for (what, bundle, reported_here, needed) in [
            ("its status lists the key", row(2, Some(status(2, None, Some(&["SHA256:bbbb", KEY]))), &[]), true, true),
            ("its status names the key", row(2, Some(status(2, Some(KEY), Some(&[]))), &[]), true, true),
            ("a forged stanza, looked at", row(2, Some(status(2, None, Some(&[]))), &[ID]), true, false),
            ("a stanza, not looked at since the change", row(3, Some(status(2, None, Some(&[]))), &[ID]), true, true),
            ("a stanza, never looked at", row(1, None, &[ID]), true, true),
            (
                "a stanza, status by an older operator",
                row(2, Some(status(2, Some("SHA256:bbbb"), None)), &[ID]),
                true,
                true,
            ),
            ("a stanza, reported on elsewhere", row(2, Some(status(2, None, Some(&[]))), &[ID]), false, true),
            ("nothing names it", row(1, None, &["bbbb"]), true, false),
            ("a kubeseal value, never looked at", row(1, None, &["bbbb", ANY_KEY]), true, true),
            (
                "a kubeseal value, reported on elsewhere",
                row(2, Some(status(2, None, Some(&[]))), &[ANY_KEY]),
                false,
                false,
            ),
            ("a kubeseal value, not looked at since", row(3, Some(status(2, None, Some(&[]))), &[ANY_KEY]), true, true),
            ("a kubeseal value, looked at", row(2, Some(status(2, None, Some(&[]))), &[ANY_KEY]), true, false),
        ] {
            assert_eq!(needs_key(&bundle, KEY, ID, reported_here), needed, "{what}");
        }
    }

    /// What the shared cache keeps of the keys a bundle names is bounded whatever its values
    /// say, and says "any key" where it cannot tell: a kubeseal-format value names no key (a
    /// bundle whose status is not current used to hold none for it, so the key it was sealed
    /// to could be deleted before the operator looked), and 17 or more distinct ids are more
    /// than one header can name (all were kept, up to 2,048 made-up ids per bundle).
    #[test]
    fn the_keys_a_cached_bundle_names_are_bounded() {
        use crate::crypto::tests::fixture_key;
        let label = crypto::label(BundleScope::Tenant, "a", "");
        let value = |id: u8| {
            // Structure only (no key needed to name one): MLT2, one stanza, nonce and tag.
            let mut raw = b"MLT2\x01".to_vec();
            raw.extend_from_slice(&[id; 8]);
            raw.extend_from_slice(&512u16.to_be_bytes());
            raw.extend_from_slice(&[0; 512 + 12 + 16]);
            crypto::encode_base64(&raw)
        };
        let cached = |data: BTreeMap<String, String>| {
            let mut b = bundle(BundleScope::Tenant, Some("a"), None);
            b.spec.encrypted_data = data;
            keep_digests(&mut b);
            b.annotations()[CACHED_RECIPIENTS].clone()
        };
        let hex = |id: u8| crypto::key_id_hex(&[id; 8]);
        assert_eq!(cached((1..=2).map(|i| (format!("K{i}"), value(i))).collect()), format!("{},{}", hex(1), hex(2)));
        let many = cached((1..=100).map(|i| (format!("K{i}"), value(i))).collect());
        assert_eq!(many.split(',').count(), crypto::v2::MAX_RECIPIENTS + 1, "{many}");
        assert!(many.ends_with(",*"), "{many}");
        let kubeseal = crypto::encode_base64(&crypto::seal(fixture_key().certificate(), &label, b"v").unwrap());
        let mixed = cached([("A".to_owned(), value(1)), ("B".to_owned(), kubeseal)].into());
        assert_eq!(mixed, format!("{},*", hex(1)));
        let mut b = bundle(BundleScope::Tenant, Some("a"), None);
        b.annotations_mut().insert(CACHED_RECIPIENTS.to_owned(), mixed);
        assert_eq!(cached_recipients(&b), vec![hex(1)], "recipients: the ids alone");
    }

    #[test]
    fn refusals_have_their_own_reasons() {
        let mut b = bundle(BundleScope::Tenant, Some("a"), None);
        b.spec.type_ = Some("kubernetes.io/service-account-token".into());
        let failure = open(&b, b"a", Keys::active(&[]), &DecryptCache::default()).unwrap_err();
        assert_eq!(failure.reason(), "UnsupportedType");
        assert!(failure.to_string().contains("is not allowed (one of Opaque, "), "{failure}");
    }
}
