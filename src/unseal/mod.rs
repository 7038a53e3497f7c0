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
mod tests;
