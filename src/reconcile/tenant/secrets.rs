//! Credential distribution: for each `spec.secrets` entry and each selected environment, open
//! the SealedBundle for that consumer and server-side apply a Secret of the bundle's type.
//! A failing bundle writes nothing (the last good Secret stays); a Secret no longer wanted is
//! deleted (credentials revoked). A Secret of the same name that is not ours is a conflict:
//! never merged into, taken over or deleted.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::inventory::{self, Key, Records};
use super::live;
use super::ownership::{self, Claim, Write, owner_reference};
use crate::api::conditions::{event, reason};
use crate::api::environments::Environment;
use crate::api::labels;
use crate::api::{MLTenant, OwnedKind, SealedBundle, SecretSpec, SecretStatus};
use crate::keys::ring::Proven;
use crate::reconcile::context::Context;
use crate::reconcile::guard::Guarded;
use crate::reconcile::rejected::Rejected;
use crate::reconcile::{apply, trim};
use crate::unseal::{self, Failure};

/// One Secret the tenant wants in one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedSecret {
    pub environment: String,
    pub namespace: String,
    pub secret: String,
    pub bundle: String,
}

/// What happened to one wanted Secret.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub wanted: WantedSecret,
    pub result: std::result::Result<Synced, Unsynced>,
    /// Whether a Secret of ours exists under that name now (this reconcile's, or the last
    /// good one while the bundle fails): only such Secrets are granted to readers.
    pub present: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    pub source_hash: String,
    pub expires_at: Option<Time>,
}

/// Why a wanted Secret does not hold its bundle's current content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsynced {
    #[error(transparent)]
    Bundle(#[from] Failure),
    /// The name is taken by a Secret the operator did not write for this tenant.
    #[error(
        "Secret {namespace}/{name} already exists and {why}: it is left untouched (rename spec.secrets[].name or remove that Secret)"
    )]
    Conflict { namespace: String, name: String, why: &'static str },
    /// The API server refused a request about it.
    #[error(transparent)]
    Rejected(Rejected),
}

impl Unsynced {
    /// The `SecretsSynced` condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Unsynced::Bundle(failure) => failure.reason(),
            Unsynced::Conflict { .. } => reason::SECRET_CONFLICT,
            Unsynced::Rejected(_) => reason::SECRET_REJECTED,
        }
    }
}

/// The Secrets `tenant` wants in `env`: every `spec.secrets` entry that selects it, with the
/// per-environment bundle override applied.
pub fn wanted(tenant: &MLTenant, env: &Environment) -> Vec<WantedSecret> {
    let selects = |s: &SecretSpec| s.environments.as_ref().is_none_or(|envs| envs.contains(&env.name));
    tenant
        .spec
        .secrets
        .iter()
        .flatten()
        .filter(|s| selects(s))
        .map(|s| WantedSecret {
            environment: env.name.clone(),
            namespace: env.namespace.clone(),
            secret: s.name.clone(),
            bundle: s.environment_bundles.as_ref().and_then(|m| m.get(&env.name)).unwrap_or(&s.bundle).clone(),
        })
        .collect()
}

/// The Secret as the operator applies it; `proof` is its `mltenant.io/opened-with` ([`proof`]).
pub fn desired(
    tenant: &MLTenant,
    wanted: &WantedSecret,
    bundle: &SealedBundle,
    opened: &unseal::Opened,
    proof: Option<String>,
) -> Secret {
    let template = bundle.spec.template.clone().unwrap_or_default();
    let mut secret_labels = template.labels.unwrap_or_default();
    secret_labels.extend(labels::managed(&tenant.name_any(), &wanted.environment));
    let mut annotations = template.annotations.unwrap_or_default();
    annotations.insert(labels::BUNDLE.to_owned(), wanted.bundle.clone());
    annotations.insert(labels::SOURCE_HASH.to_owned(), unseal::cached_source_hash(bundle));
    if let Some(expires) = &bundle.spec.expires_at {
        annotations.insert(labels::EXPIRES_AT.to_owned(), expires.0.to_string());
    }
    if let Some(proof) = proof {
        annotations.insert(labels::OPENED_WITH.to_owned(), proof);
    }
    apply::stamped(Secret {
        metadata: ObjectMeta {
            name: Some(wanted.secret.clone()),
            namespace: Some(wanted.namespace.clone()),
            labels: Some(secret_labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(tenant)]),
            ..Default::default()
        },
        type_: Some(unseal::payload::secret_type(bundle).to_owned()),
        data: Some(opened.data.iter().map(|(k, v)| (k.clone(), ByteString(v.to_vec()))).collect()),
        ..Default::default()
    })
}

/// Whether applying `desired` would change `live` (trimmed: what the operator owns on it is a
/// digest). Keys someone else added to the data are tolerated (server-side apply cannot remove
/// fields it does not own); ours must match.
pub fn differs(live: &Secret, desired: &Secret) -> bool {
    live.type_ != desired.type_ || apply::differs(live, desired)
}

/// Where a wanted Secret is on the tenant's record.
fn key(wanted: &WantedSecret) -> Key {
    Key::child(OwnedKind::Secret, &wanted.namespace, &wanted.secret)
}

/// What `sync` did: one outcome per wanted Secret, and the revocations the API server refused.
#[derive(Debug, Default)]
pub struct Distribution {
    pub outcomes: Vec<Outcome>,
    pub unrevoked: Vec<Rejected>,
}

/// Bring every wanted Secret of the ready environments up to date and delete the ones no
/// longer wanted. A refused request is reported on its Secret; the others go on.
/// `fresh`: the namespaces this reconcile created (see `ownership::live`).
pub async fn sync(
    tenant: &MLTenant,
    environments: &[&Environment],
    fresh: &BTreeSet<String>,
    records: &Records,
    ctx: &Context,
) -> Distribution {
    // Read and decide one Secret after the other (a bundle is opened once, the others of the
    // tenant's environments find it in the decrypt cache), then write them all at once.
    let mut decided = Vec::new();
    for env in environments {
        for wanted in wanted(tenant, env) {
            let fresh = fresh.contains(&wanted.namespace);
            decided.push(match read(tenant, &wanted, fresh, records, ctx).await {
                Ok(read) => (wanted, Ok(decide(read))),
                Err(error) => (wanted, Err(error)),
            });
        }
    }
    // What is about to be created goes on record first.
    let creates = decided.iter().filter_map(|(wanted, decision)| match decision {
        Ok(Decision::Apply { how, .. }) if how.creates() => Some((key(wanted), false)),
        _ => None,
    });
    let recorded = inventory::intend(tenant, records, creates.collect::<Vec<_>>(), ctx).await;
    let outcomes = join_all(decided.into_iter().map(|(wanted, decided)| {
        let recorded = recorded
            .as_ref()
            .map_err(|e| Rejected::new("Secret", format!("{}/{}", wanted.namespace, wanted.secret), e));
        async move {
            match (decided, recorded) {
                (Ok(Decision::Apply { how, .. }), Err(unrecorded)) if how.creates() => {
                    ctx.rejected(tenant, &unrecorded).await;
                    Outcome { wanted, result: Err(Unsynced::Rejected(unrecorded)), present: false }
                }
                (Ok(decision), _) => carry_out(tenant, wanted, decision, records, ctx).await,
                (Err(error), _) => rejected(tenant, wanted, &error, false, ctx).await,
            }
        }
    }))
    .await;
    let mut done = Distribution { outcomes, unrevoked: Vec::new() };
    let keep: BTreeSet<(String, String)> =
        done.outcomes.iter().map(|o| (o.wanted.namespace.clone(), o.wanted.secret.clone())).collect();
    done.unrevoked = revoke_except(tenant, &keep, records, ctx).await;
    done
}

/// Delete the Secrets on the tenant's record except `keep` (namespace, name), never in a
/// protected namespace (credentials revoked); the deletions the API server refused.
pub async fn revoke_except(
    tenant: &MLTenant,
    keep: &BTreeSet<(String, String)>,
    records: &Records,
    ctx: &Context,
) -> Vec<Rejected> {
    let mut refused = Vec::new();
    for (key, uid) in records.revocable(&[OwnedKind::Secret], keep, &ctx.config.protected) {
        if let Err(rejected) = delete(tenant, &key, &uid, records, ctx).await {
            refused.push(rejected);
        }
    }
    refused
}

/// Revoke: delete the recorded Secret at `key`; a refusal is reported.
async fn delete(
    tenant: &MLTenant,
    key: &Key,
    uid: &str,
    records: &Records,
    ctx: &Context,
) -> std::result::Result<(), Rejected> {
    let (namespace, name) = (&key.namespace, &key.name);
    if let Err(error) = ownership::delete_recorded::<Secret>(ctx, key, uid).await {
        let rejected = Rejected::new("Secret", format!("{namespace}/{name}"), &error);
        ctx.rejected(tenant, &rejected).await;
        return Err(rejected);
    }
    records.with(|inventory| inventory.forget(key));
    let note = format!("deleted Secret {namespace}/{name} (no longer wanted)");
    ctx.event(tenant, Some(reference(namespace, name)), EventType::Normal, event::SECRET_REMOVED, &note).await;
    Ok(())
}

/// What the bundle gives one wanted Secret: the Secret to apply, and its status entry.
#[derive(Debug, PartialEq)]
struct Content {
    secret: Box<Secret>,
    synced: Synced,
}

/// The Secret `bundle` gives `wanted`, opened as `opened` under `label`.
fn content(
    tenant: &MLTenant,
    wanted: &WantedSecret,
    bundle: &SealedBundle,
    opened: &unseal::Opened,
    label: &[u8],
    keys: &crate::keys::ring::KeyRing,
) -> Content {
    let source_hash = unseal::cached_source_hash(bundle);
    let data = trim::secret_data_digest(opened.data.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    let subject =
        Proven { namespace: &wanted.namespace, name: &wanted.secret, label, source_hash: &source_hash, data: &data };
    let proof = keys.prove(&opened.keys, &subject);
    Content {
        secret: Box::new(desired(tenant, wanted, bundle, opened, proof)),
        synced: Synced { source_hash, expires_at: bundle.spec.expires_at.clone() },
    }
}

/// What a restart costs nothing for: the live Secret carries a proof, by sealing keys active
/// here, that its values are what the bundle's current ciphertexts give this consumer, and
/// everything else the operator sets on it is as it would set it now. Then it is `Unchanged`
/// without decrypting anything. None when anything differs or does not check (the normal path
/// decides then, decrypting if it must).
fn proven(tenant: &MLTenant, wanted: &WantedSecret, live: Option<&Secret>, ctx: &Context) -> Option<Synced> {
    let live = live?;
    let annotations = live.metadata.annotations.as_ref()?;
    let proof = annotations.get(labels::OPENED_WITH)?;
    let data: [u8; 32] = crate::text::unhex(annotations.get(trim::DATA_DIGEST)?)?.try_into().ok()?;
    let bundle = ctx.bundles.get(&ObjectRef::new(&wanted.bundle))?;
    let label = unseal::consumer_label(&bundle, &tenant.name_any(), tenant.labels(), &wanted.environment).ok()?;
    unseal::payload::check_claims(&bundle).ok()?;
    let source_hash = unseal::cached_source_hash(&bundle);
    let subject = Proven {
        namespace: &wanted.namespace,
        name: &wanted.secret,
        label: &label,
        source_hash: &source_hash,
        data: &data,
    };
    if !ctx.keys.proven(proof, &subject) {
        return None;
    }
    // The Secret as it would be written now, its values aside (they are proven), with the same proof.
    let opened = unseal::Opened { data: Default::default(), fingerprint: String::new(), keys: Vec::new() };
    let desired = desired(tenant, wanted, &bundle, &opened, Some(proof.clone()));
    let owned = annotations.get(trim::OWNED)?;
    let references = live.metadata.owner_references.as_deref().unwrap_or_default();
    let same = live.type_ == desired.type_
        && *owned == trim::desired_digest_with_data(&desired, &data)
        && desired.metadata.owner_references.iter().flatten().all(|r| references.contains(r));
    same.then(|| Synced { source_hash, expires_at: bundle.spec.expires_at.clone() })
}

/// What was read for one wanted Secret.
enum Read {
    /// The name is held by a Secret that is not ours (why). Its bundle is not opened: that
    /// Secret is never written, so it is not worth a decryption.
    Foreign(&'static str),
    /// Our live Secret holds what the bundle gives, shown by its proof (see [`proven`]).
    Proven(Synced),
    Writable {
        /// Our live Secret of that name, if there is one.
        live: Option<Arc<Secret>>,
        /// The bundle's Secret, or why the bundle did not open.
        content: std::result::Result<Content, Failure>,
        /// Whether the last status had this Secret synced (a missing one was deleted).
        had_secret: bool,
    },
}

/// What to do about one wanted Secret.
#[derive(Debug, PartialEq)]
enum Decision {
    /// The live Secret holds the bundle's content already.
    Unchanged(Synced),
    /// Apply the bundle's Secret (of `values` bytes of values), then say `verb` in a
    /// `SecretSynced` Event. A first write has no Event (the status reports it, see
    /// namespaces::ensure); an update (a re-sealed bundle, reverted drift) or the return of a
    /// deleted Secret has one. The Secret itself is not kept until it is written: it is built
    /// again then (from the decrypt cache), within the process's budget of values being written.
    Apply { values: usize, how: Write<Secret>, verb: Option<&'static str> },
    /// The name is someone else's (why): a `SecretConflict` Event, nothing written.
    Conflict(&'static str),
    /// The bundle did not open: the metric and an Event, nothing written, so a Secret of ours
    /// keeps its last good content (`present`).
    KeepLast { failure: Failure, present: bool },
}

/// The live Secret of `wanted`'s name and, unless it is someone else's, the bundle opened.
async fn read(
    tenant: &MLTenant,
    wanted: &WantedSecret,
    fresh: bool,
    records: &Records,
    ctx: &Context,
) -> kube::Result<Read> {
    let live = live::object(ctx, &ctx.secrets, &wanted.namespace, &wanted.secret, fresh).await?;
    let claim = records
        .with(|inventory| ownership::claim(live.as_deref().map(|s| &s.metadata), tenant, inventory, &key(wanted)));
    if let Claim::Foreign(why) = claim {
        return Ok(Read::Foreign(why));
    }
    if let Some(synced) = proven(tenant, wanted, live.as_deref(), ctx) {
        return Ok(Read::Proven(synced));
    }
    let content = open(tenant, wanted, ctx)
        .await?
        .map(|(bundle, label, opened)| content(tenant, wanted, &bundle, &opened, &label, &ctx.keys));
    let had_secret = tenant.had_secret(&wanted.environment, &wanted.secret);
    Ok(Read::Writable { live, content, had_secret })
}

/// Decide from what was read; no IO.
fn decide(read: Read) -> Decision {
    let (live, content, had_secret) = match read {
        Read::Foreign(why) => return Decision::Conflict(why),
        Read::Proven(synced) => return Decision::Unchanged(synced),
        Read::Writable { live, content, had_secret } => (live, content, had_secret),
    };
    let content = match content {
        Ok(content) => content,
        Err(failure) => return Decision::KeepLast { failure, present: live.is_some() },
    };
    let (how, verb) = match live {
        None => (Write::Create, had_secret.then_some("recreated")),
        Some(live) if !differs(&live, &content.secret) => return Decision::Unchanged(content.synced),
        Some(live) if live.type_ != content.secret.type_ => (Write::Replace(live), Some("updated")),
        Some(_) => (Write::Update, Some("updated")),
    };
    let values = content.secret.data.iter().flatten().map(|(k, v)| k.len() + v.0.len()).sum();
    Decision::Apply { values, how, verb }
}

/// Do what [`decide`] decided: the writes, Events and metrics.
async fn carry_out(
    tenant: &MLTenant,
    wanted: WantedSecret,
    decision: Decision,
    records: &Records,
    ctx: &Context,
) -> Outcome {
    match decision {
        Decision::Unchanged(synced) => Outcome { wanted, result: Ok(synced), present: true },
        Decision::Apply { values, how, verb } => {
            // Built again here, only once the budget of values being written has room for it:
            // a tenant of 512 Secrets of a 1 MiB bundle must not hold 512 MiB at once.
            let _room = ctx.writing(values).await;
            match open(tenant, &wanted, ctx).await {
                Ok(Ok((bundle, label, opened))) => {
                    let content = content(tenant, &wanted, &bundle, &opened, &label, &ctx.keys);
                    write(tenant, wanted, content, how, verb, records, ctx).await
                }
                // The bundle changed since, and fails now: as if decided so.
                Ok(Err(failure)) => {
                    let present = !matches!(how, Write::Create);
                    Box::pin(carry_out(tenant, wanted, Decision::KeepLast { failure, present }, records, ctx)).await
                }
                Err(error) => rejected(tenant, wanted, &error, !matches!(how, Write::Create), ctx).await,
            }
        }
        Decision::Conflict(why) => conflict(tenant, wanted, why, ctx).await,
        Decision::KeepLast { failure, present } => {
            ctx.metrics.decryption_failed(&tenant.name_any(), failure.bundle(), failure.metric_reason());
            let note = format!("Secret {}/{} not updated: {failure}", wanted.namespace, wanted.secret);
            let related = Some(reference(&wanted.namespace, &wanted.secret));
            ctx.event(tenant, related, EventType::Warning, failure.reason(), &note).await;
            Outcome { wanted, result: Err(failure.into()), present }
        }
    }
}

async fn write(
    tenant: &MLTenant,
    wanted: WantedSecret,
    content: Content,
    how: Write<Secret>,
    verb: Option<&'static str>,
    records: &Records,
    ctx: &Context,
) -> Outcome {
    let (namespace, name) = (wanted.namespace.as_str(), wanted.secret.as_str());
    if let Write::Replace(live) = &how {
        // The payload was checked against the new type already, so the apply right after
        // cannot be refused for it.
        if let Err(error) = ownership::delete(ctx, &**live).await {
            return rejected(tenant, wanted, &error, true, ctx).await;
        }
    }
    let api: Api<Guarded<Secret>> = Api::namespaced(ctx.client.clone(), namespace);
    if how.creates() {
        records.sending(&key(&wanted));
    }
    match apply::apply(&api, name, &content.secret, how.ours()).await {
        Ok(written) => {
            if let (true, Some(uid)) = (how.creates(), written.uid.clone()) {
                records.with(|inventory| inventory.record(key(&wanted), uid, false));
            }
        }
        Err(error) if how.creates() && apply::is_conflict(&error) => {
            records.with(|inventory| inventory.forget(&key(&wanted)));
            return conflict(tenant, wanted, ownership::CREATED_MEANWHILE, ctx).await;
        }
        // Ours is still there unless it was deleted to be replaced.
        Err(error) => return rejected(tenant, wanted, &error, matches!(how, Write::Update), ctx).await,
    }
    if let Some(verb) = verb {
        let note = format!("{verb} Secret {namespace}/{name} from SealedBundle {}", wanted.bundle);
        ctx.event(tenant, Some(reference(namespace, name)), EventType::Normal, event::SECRET_SYNCED, &note).await;
    }
    Outcome { wanted, result: Ok(content.synced), present: true }
}

/// The name is taken by a Secret not written for this tenant (why): reported, left alone.
async fn conflict(tenant: &MLTenant, wanted: WantedSecret, why: &'static str, ctx: &Context) -> Outcome {
    let (namespace, name) = (wanted.namespace.clone(), wanted.secret.clone());
    let related = Some(reference(&namespace, &name));
    let conflict = Unsynced::Conflict { namespace, name, why };
    ctx.event(tenant, related, EventType::Warning, conflict.reason(), &conflict.to_string()).await;
    Outcome { wanted, result: Err(conflict), present: false }
}

/// The API server refused a request about `wanted`; `present`: whether a Secret of ours is
/// still there.
async fn rejected(
    tenant: &MLTenant,
    wanted: WantedSecret,
    error: &kube::Error,
    present: bool,
    ctx: &Context,
) -> Outcome {
    let rejected = Rejected::new("Secret", format!("{}/{}", wanted.namespace, wanted.secret), error);
    ctx.rejected(tenant, &rejected).await;
    Outcome { wanted, result: Err(Unsynced::Rejected(rejected)), present }
}

/// The bundle `wanted` names (from the shared cache), opened for this tenant and environment.
async fn open(
    tenant: &MLTenant,
    wanted: &WantedSecret,
    ctx: &Context,
) -> kube::Result<std::result::Result<(Arc<SealedBundle>, Vec<u8>, unseal::Opened), Failure>> {
    let Some(bundle) = ctx.bundles.get(&ObjectRef::new(&wanted.bundle)) else {
        let bundle = wanted.bundle.clone();
        return Ok(Err(match ctx.invalids.get("SealedBundle", &bundle) {
            Some(unreadable) => Failure::Unreadable { bundle, field: unreadable.field },
            None => Failure::NotFound { bundle },
        }));
    };
    let label = match unseal::consumer_label(&bundle, &tenant.name_any(), tenant.labels(), &wanted.environment) {
        Ok(label) => label,
        Err(failure) => return Ok(Err(failure)),
    };
    Ok(ctx.open(&bundle, label.clone()).await?.map(|opened| (bundle, label, opened)))
}

fn reference(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The per-environment secret status entries.
pub fn statuses(outcomes: &[Outcome], environment: &str) -> Vec<SecretStatus> {
    outcomes
        .iter()
        .filter(|o| o.wanted.environment == environment)
        .map(|o| match &o.result {
            Ok(synced) => SecretStatus {
                name: o.wanted.secret.clone(),
                bundle: o.wanted.bundle.clone(),
                synced: true,
                reason: None,
                source_hash: Some(synced.source_hash.clone()),
                expires_at: synced.expires_at.clone(),
                readers: Vec::new(),
            },
            Err(unsynced) => SecretStatus {
                name: o.wanted.secret.clone(),
                bundle: o.wanted.bundle.clone(),
                synced: false,
                reason: Some(unsynced.reason().to_owned()),
                source_hash: None,
                expires_at: None,
                readers: Vec::new(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::trim::as_cached;

    fn secret(type_: &str, data: &[(&str, &[u8])]) -> Secret {
        apply::stamped(Secret {
            type_: Some(type_.into()),
            data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
            ..Default::default()
        })
    }

    /// `desired` as the cache has it once applied and then edited by `edit`.
    fn live(desired: &Secret, edit: fn(&mut Secret)) -> Arc<Secret> {
        Arc::new(as_cached(desired, edit))
    }

    /// The Secret carries the bundle's template, the operator's labels and annotations (bundle,
    /// source hash, expiry, proof), the opened values, and the tenant as its owner.
    #[test]
    fn the_desired_secret_is_the_template_the_values_and_our_marks() {
        let mut tenant = MLTenant::new("fin", crate::api::MLTenantSpec::with_environments(&["dev"]));
        tenant.metadata.uid = Some("uid-fin".into());
        let bundle: SealedBundle = serde_json::from_value(serde_json::json!({
            "apiVersion": "mltenant.io/v1alpha1", "kind": "SealedBundle", "metadata": {"name": "b"},
            "spec": {"scope": "Tenant", "tenant": "fin", "encryptedData": {"K": "AgB"},
                     "expiresAt": "2027-01-01T00:00:00Z",
                     "type": "kubernetes.io/basic-auth", "template": {"labels": {"team": "a"}, "annotations": {"note": "n"}}}
        }))
        .unwrap();
        let wanted = WantedSecret {
            environment: "dev".into(),
            namespace: "fin-dev".into(),
            secret: "s".into(),
            bundle: "b".into(),
        };
        let opened = unseal::Opened {
            data: [("username".to_string(), zeroize::Zeroizing::new(b"u".to_vec()))].into(),
            fingerprint: "SHA256:f".into(),
            keys: Vec::new(),
        };
        let secret = desired(&tenant, &wanted, &bundle, &opened, Some("proof".into()));
        let meta = &secret.metadata;
        assert_eq!((meta.name.as_deref(), meta.namespace.as_deref()), (Some("s"), Some("fin-dev")));
        let mut want_labels = labels::managed("fin", "dev");
        want_labels.insert("team".into(), "a".into());
        assert_eq!(meta.labels.as_ref(), Some(&want_labels));
        let annotations = meta.annotations.as_ref().unwrap();
        for (key, value) in [
            ("note", "n"),
            (labels::BUNDLE, "b"),
            (labels::SOURCE_HASH, unseal::cached_source_hash(&bundle).as_str()),
            (labels::EXPIRES_AT, "2027-01-01T00:00:00Z"),
            (labels::OPENED_WITH, "proof"),
        ] {
            assert_eq!(annotations.get(key).map(String::as_str), Some(value), "{key}");
        }
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "uid-fin");
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(secret.data.unwrap()["username"].0, b"u");
        let r = reference("fin-dev", "s");
        assert_eq!(
            (r.api_version.as_deref(), r.kind.as_deref(), r.namespace.as_deref(), r.name.as_deref()),
            (Some("v1"), Some("Secret"), Some("fin-dev"), Some("s"))
        );
    }

    #[test]
    fn a_trimmed_live_secret_is_compared_by_digest() {
        let desired = secret("Opaque", &[("K", b"v")]);
        assert!(!differs(&live(&desired, |_| {}), &desired), "same values");
        let changed = live(&desired, |s| {
            s.data.as_mut().unwrap().insert("K".into(), ByteString(b"other".to_vec()));
        });
        assert!(differs(&changed, &desired), "another value");
        assert!(
            differs(&live(&desired, |s| s.type_ = Some("kubernetes.io/basic-auth".into())), &desired),
            "another type"
        );
        let extra = live(&desired, |s| {
            s.data.as_mut().unwrap().insert("theirs".into(), ByteString(b"x".to_vec()));
        });
        assert!(!differs(&extra, &desired), "a key someone else added is tolerated");
    }

    #[test]
    fn decisions() {
        let content = || Content {
            secret: Box::new(secret("Opaque", &[("K", b"v")])),
            synced: Synced { source_hash: "sha256:h".into(), expires_at: None },
        };
        // Live Secrets as the cache has them once applied: trimmed.
        let applied = secret("Opaque", &[("K", b"v")]);
        let current = || live(&applied, |_| {});
        let unstamped = live(&applied, |s| s.metadata.annotations = None);
        let retyped = live(&applied, |s| s.type_ = Some("kubernetes.io/basic-auth".into()));
        let theirs = live(&applied, |s| {
            s.data.as_mut().unwrap().insert("theirs".into(), ByteString(b"x".to_vec()));
        });
        let drifted = live(&applied, |s| {
            s.data.as_mut().unwrap().insert("K".into(), ByteString(b"old".to_vec()));
        });
        let failure = || Failure::Decryption {
            bundle: "b".into(),
            key: "K".into(),
            error: crate::crypto::OpenError::NoKeyCouldDecrypt,
        };
        let writable = |live, content, had_secret| Read::Writable { live, content, had_secret };
        // One value: key `K` and value `v`, 2 bytes.
        let apply = |how, verb| Decision::Apply { values: 2, how, verb };
        let not_ours = "it is not managed by mltenant-operator";
        let table: Vec<(&str, Read, Decision)> = vec![
            ("a name someone else holds", Read::Foreign(not_ours), Decision::Conflict(not_ours)),
            ("first write", writable(None, Ok(content()), false), apply(Write::Create, None)),
            (
                "a deleted Secret comes back",
                writable(None, Ok(content()), true),
                apply(Write::Create, Some("recreated")),
            ),
            ("converged", writable(Some(current()), Ok(content()), true), Decision::Unchanged(content().synced)),
            (
                "a key someone else added is tolerated",
                writable(Some(theirs), Ok(content()), true),
                Decision::Unchanged(content().synced),
            ),
            (
                "a re-sealed or drifted value",
                writable(Some(drifted.clone()), Ok(content()), true),
                apply(Write::Update, Some("updated")),
            ),
            ("drifted metadata", writable(Some(unstamped), Ok(content()), true), apply(Write::Update, Some("updated"))),
            (
                "another type is replaced",
                writable(Some(retyped.clone()), Ok(content()), true),
                apply(Write::Replace(retyped), Some("updated")),
            ),
            (
                "the bundle fails before a first write",
                writable(None, Err(failure()), false),
                Decision::KeepLast { failure: failure(), present: false },
            ),
            (
                "the bundle fails: the last good Secret stays",
                writable(Some(drifted), Err(failure()), true),
                Decision::KeepLast { failure: failure(), present: true },
            ),
        ];
        for (row, read, want) in table {
            assert_eq!(decide(read), want, "{row}");
        }
    }
}
