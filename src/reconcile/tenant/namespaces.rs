//! Environment namespaces: who holds a namespace, what ours must look like, what to do about
//! it (decided without IO: [`decide_cached`], [`decide`], [`removal`]) and the writes that
//! create, adopt, restore, release or delete them.
//!
//! A namespace is ours only when the tenant's inventory recorded its UID (created, or adopted
//! with its owner's consent); only one it created is ever deleted. Its Pod Security labels are
//! only ever tightened: a level the namespace already has more strictly is kept, and letting it
//! go puts back what its owner had.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::inventory::{self, Entry, Inventory, Key, Records};
use super::{live, ownership};
use crate::api::conditions::{event, reason};
use crate::api::environments::Environment;
use crate::api::labels;
use crate::api::limits::{POD_SECURITY_LABELS, Protected};
use crate::api::{DeletionPolicy, MLTenant};
use crate::reconcile::apply;
use crate::reconcile::context::Context;
use crate::reconcile::guard::Guarded;
use crate::reconcile::rejected::Rejected;

/// Who holds a namespace, from the point of view of one tenant.
#[derive(Debug, PartialEq, Eq)]
pub enum Holder {
    /// It does not exist.
    Nobody,
    /// It is ours: the tenant's inventory recorded its UID, as created or adopted.
    Us { adopted: bool },
    /// It exists without any tenant label.
    Unlabelled,
    /// It carries this tenant's name but is not on its record: left over from an earlier
    /// MLTenant of the same name, labelled by hand, or forged. Not ours until its owner
    /// consents, like an unlabelled one.
    Stale,
    /// Another tenant holds it.
    Tenant(String),
    /// It is being deleted.
    Terminating,
}

/// Decide who holds `ns` from the point of view of `tenant`, whose inventory is `inventory`.
pub fn holder(ns: Option<&Namespace>, tenant: &MLTenant, inventory: &Inventory) -> Holder {
    let Some(ns) = ns else { return Holder::Nobody };
    if ns.metadata.deletion_timestamp.is_some() {
        return Holder::Terminating;
    }
    let key = Key::namespace(&ns.name_any());
    if inventory.owns(&key, &ns.metadata) {
        return Holder::Us { adopted: inventory.get(&key).is_some_and(|e| e.adopted) };
    }
    match ns.labels().get(labels::TENANT) {
        Some(name) if *name == tenant.name_any() => Holder::Stale,
        Some(other) => Holder::Tenant(other.clone()),
        None => Holder::Unlabelled,
    }
}

fn origin(adopted: bool) -> &'static str {
    if adopted { labels::ORIGIN_ADOPTED } else { labels::ORIGIN_CREATED }
}

/// Pod Security levels from the loosest; a level outside them is not compared.
fn strictness(level: &str) -> Option<usize> {
    ["privileged", "baseline", "restricted"].iter().position(|l| *l == level)
}

/// The Pod Security modes whose level a label sets.
const POD_SECURITY_MODES: [&str; 3] =
    ["pod-security.kubernetes.io/enforce", "pod-security.kubernetes.io/audit", "pod-security.kubernetes.io/warn"];

/// `wanted` (a namespace's labels as the spec has them) with each Pod Security level `live`
/// holds kept where the spec asks less or nothing, and a line for each level the spec asks less
/// of: a tenant only ever tightens what a namespace has. (A level the spec no longer names is
/// kept too: dropped from the apply, a label the operator owns alone would go, looser than the
/// owner's.)
fn tightened(wanted: &BTreeMap<String, String>, live: Option<&Namespace>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut labels = wanted.clone();
    let mut kept = Vec::new();
    let current = live.map(|ns| ns.labels());
    for mode in POD_SECURITY_MODES {
        let Some(have) = current.and_then(|c| c.get(mode)).filter(|have| strictness(have).is_some()) else {
            continue;
        };
        match wanted.get(mode) {
            None => {
                labels.insert(mode.to_owned(), have.clone());
            }
            Some(want) if strictness(want).is_some_and(|w| strictness(have) > Some(w)) => {
                kept.push(format!("{mode}={have} (the spec asks {want})"));
                labels.insert(mode.to_owned(), have.clone());
            }
            Some(_) => {}
        }
    }
    (labels, kept)
}

/// A namespace's Pod Security labels as `k=v` pairs, comma-separated (what
/// `mltenant.io/pod-security-before` holds).
fn pod_security_text(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> =
        POD_SECURITY_LABELS.iter().filter_map(|k| Some(format!("{k}={}", labels.get(*k)?))).collect();
    pairs.join(",")
}

fn parse_pod_security(text: &str) -> BTreeMap<String, String> {
    let pairs = text.split(',').filter_map(|pair| pair.split_once('='));
    pairs.filter(|(k, _)| POD_SECURITY_LABELS.contains(k)).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// The namespace as the operator applies it (only the fields it owns), and the Pod Security
/// levels kept from `live` because the spec asks less.
///
/// Only a namespace the tenant will delete (`deletionPolicy: Delete`, created by it) carries an
/// ownerReference. Any other would be deleted by the garbage collector when the tenant is
/// deleted with foreground propagation (Argo CD's default when pruning) or when the finalizer
/// is removed without the operator, which would break `Retain` and adoption.
pub fn desired(
    tenant: &MLTenant,
    env: &Environment,
    adopted: bool,
    live: Option<&Namespace>,
) -> (Namespace, Vec<String>) {
    let deletes_it = tenant.spec.deletion_policy == Some(DeletionPolicy::Delete) && !adopted;
    let (labels_wanted, kept) = tightened(&env.labels, live);
    let mut annotations = BTreeMap::from([
        (labels::ORIGIN.to_owned(), origin(adopted).to_owned()),
        (labels::TENANT_UID.to_owned(), tenant.metadata.uid.clone().unwrap_or_default()),
    ]);
    if adopted {
        // What its owner had, to put back on release: noted when adopting, kept after.
        let noted = live.and_then(|ns| ns.annotations().get(labels::POD_SECURITY_BEFORE).cloned());
        let before = noted.unwrap_or_else(|| pod_security_text(live.map(|ns| ns.labels()).unwrap_or(&BTreeMap::new())));
        annotations.insert(labels::POD_SECURITY_BEFORE.to_owned(), before);
    }
    let namespace = apply::stamped(Namespace {
        metadata: ObjectMeta {
            name: Some(env.namespace.clone()),
            labels: Some(labels_wanted),
            annotations: Some(annotations),
            owner_references: deletes_it.then(|| vec![ownership::owner_reference(tenant)]),
            ..Default::default()
        },
        ..Default::default()
    });
    (namespace, kept)
}

/// What a namespace let go of under `Retain` keeps from us: a note of where it came from, and
/// Pod Security labels never looser than its owner's: an adopted one gets back what its owner
/// had, one the tenant created keeps its levels.
fn released(ns: &Namespace, adopted: bool, tenant: &str) -> Namespace {
    let labels = match (adopted, ns.annotations().get(labels::POD_SECURITY_BEFORE)) {
        (true, Some(before)) => parse_pod_security(before),
        _ => ns
            .labels()
            .iter()
            .filter(|(k, _)| POD_SECURITY_LABELS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    Namespace {
        metadata: ObjectMeta {
            name: Some(ns.name_any()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(labels::RELEASED_FROM.to_owned(), tenant.to_owned())])),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// An Event's pointer to the namespace it is about.
fn reference(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Namespace".into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The state of one environment's namespace after `ensure`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceState {
    Ready,
    Protected(String),
    Conflict(String),
    Terminating(String),
    /// The API server refused a request about it.
    Rejected(Rejected),
}

impl NamespaceState {
    /// The condition (and environment status) reason when not ready.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            NamespaceState::Ready => None,
            NamespaceState::Protected(_) => Some(reason::PROTECTED_NAMESPACE),
            NamespaceState::Conflict(_) => Some(reason::NAMESPACE_CONFLICT),
            NamespaceState::Terminating(_) => Some(reason::TERMINATING),
            NamespaceState::Rejected(_) => Some(reason::NAMESPACE_REJECTED),
        }
    }
}

/// What `ensure` did to one environment's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ensured {
    pub state: NamespaceState,
    /// Created by this reconcile (nothing else can be in it yet).
    pub created: bool,
    /// Pod Security levels the namespace keeps because the spec asks less (see [`tightened`]).
    pub kept: Option<String>,
}

impl Ensured {
    fn new(state: NamespaceState) -> Self {
        Ensured { state, created: false, kept: None }
    }
}

/// Whether the namespace's owner consents to `tenant` adopting it.
fn consents(ns: &Namespace, tenant: &MLTenant) -> bool {
    ns.labels().get(labels::ADOPTABLE_BY) == Some(&tenant.name_any())
}

/// An Event to record on the tenant about the namespace.
#[derive(Debug, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// What [`ensure`] does to an environment's namespace (a namespace's counterpart of
/// `ownership::Write`, which has no refusals).
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// No write: it is ours and as desired.
    Nothing,
    /// Apply the desired namespace. `creates`: it does not exist yet; `adopted`: it is (or
    /// becomes) ours by adoption; `consent`: the owner's adoption label is still on it and is
    /// removed once adopted, so that it cannot outlive this tenant and be taken by a later one
    /// of the same name.
    Apply { adopted: bool, creates: bool, consent: bool },
    /// No write: the namespace is left alone, and the state (protected, conflict or
    /// terminating) says why.
    Refuse(NamespaceState),
}

/// What [`ensure`] does about an environment's namespace: the change, then the Event.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    pub change: Change,
    pub event: Option<Note>,
}

/// A refusal reported by a Warning Event saying the same as the state.
fn refused(state: fn(String) -> NamespaceState, reason: &'static str, message: String) -> Decision {
    let event = Note { type_: EventType::Warning, reason, message: message.clone() };
    Decision { change: Change::Refuse(state(message)), event: Some(event) }
}

/// An apply reported by a Normal Event with reason `reason`, if any.
fn applied(adopted: bool, creates: bool, consent: bool, event: Option<(&'static str, String)>) -> Decision {
    let event = event.map(|(reason, message)| Note { type_: EventType::Normal, reason, message });
    Decision { change: Change::Apply { adopted, creates, consent }, event }
}

/// What the cache alone decides, without the claim lock: a protected name is refused before
/// anything else is looked at, and a namespace the cache shows ours and as desired needs
/// nothing. `None`: a write may be needed, decided by [`decide`] on the live object.
pub fn decide_cached(
    tenant: &MLTenant,
    env: &Environment,
    protected: &Protected,
    inventory: &Inventory,
    cached: Option<&Namespace>,
) -> Option<Decision> {
    let name = &env.namespace;
    if protected.contains(name) {
        let message = format!(
            "namespace {name} is protected (the operator never writes into {}); choose another environments[].namespace",
            protected.list()
        );
        return Some(refused(NamespaceState::Protected, reason::PROTECTED_NAMESPACE, message));
    }
    let cached = cached?;
    let Holder::Us { adopted } = holder(Some(cached), tenant, inventory) else { return None };
    let (want, _) = desired(tenant, env, adopted, Some(cached));
    let as_desired = !apply::differs(cached, &want) && !consents(cached, tenant);
    as_desired.then_some(Decision { change: Change::Nothing, event: None })
}

/// The write to make to `env`'s namespace, decided on `live`, its state read under the claim
/// lock. `in_cache`: whether the cache had it; one of ours missing from that label-selected
/// cache had its labels stripped.
pub fn decide(
    tenant: &MLTenant,
    env: &Environment,
    inventory: &Inventory,
    live: Option<&Namespace>,
    in_cache: bool,
) -> Decision {
    let name = &env.namespace;
    let adopting = tenant.spec.adopt_existing_namespaces == Some(true);
    let consent = live.is_some_and(|ns| consents(ns, tenant));
    match holder(live, tenant, inventory) {
        // Creating what the tenant never had is reported by its status; an Event per new object
        // would double the writes of a first converge. Recreating what someone deleted is news.
        Holder::Nobody => {
            let event = tenant
                .had_environment(&env.name)
                .then(|| (event::NAMESPACE_RESTORED, format!("recreated namespace {name}, which was deleted")));
            applied(false, true, false, event)
        }
        Holder::Us { adopted } => {
            let event =
                (!in_cache).then(|| (event::NAMESPACE_RESTORED, format!("restored the labels of namespace {name}")));
            applied(adopted, false, consent, event)
        }
        // Adoption is two-sided: the tenant asks for it and the namespace's owner consents.
        Holder::Unlabelled | Holder::Stale if adopting && consent => {
            applied(true, false, true, Some((event::NAMESPACE_ADOPTED, format!("adopted existing namespace {name}"))))
        }
        Holder::Unlabelled | Holder::Stale => {
            let tenant_name = tenant.name_any();
            let message = if adopting {
                format!(
                    "namespace {name} already exists and its owner has not consented to adoption: label it {}={tenant_name}",
                    labels::ADOPTABLE_BY
                )
            } else {
                format!(
                    "namespace {name} already exists and is not managed by any tenant; to take it over, set spec.adoptExistingNamespaces: true and label the namespace {}={tenant_name}",
                    labels::ADOPTABLE_BY
                )
            };
            refused(NamespaceState::Conflict, reason::NAMESPACE_CONFLICT, message)
        }
        Holder::Tenant(holder) => {
            let message = format!("namespace {name} belongs to MLTenant {holder}");
            refused(NamespaceState::Conflict, reason::NAMESPACE_CONFLICT, message)
        }
        Holder::Terminating => {
            let message = format!("namespace {name} is terminating; it is recreated once gone");
            Decision { change: Change::Refuse(NamespaceState::Terminating(message)), event: None }
        }
    }
}

/// Make `env`'s namespace exist, labelled and owned by `tenant`, unless it is protected or
/// someone else holds it.
pub async fn ensure(tenant: &MLTenant, env: &Environment, records: &Records, ctx: &Context) -> kube::Result<Ensured> {
    let cached = ctx.namespaces.get(None, &env.namespace);
    let inventory = records.snapshot();
    if let Some(decision) = decide_cached(tenant, env, &ctx.config.protected, &inventory, cached.as_deref()) {
        return perform(tenant, env, decision, cached.as_deref(), records, ctx).await;
    }
    // A write may be needed. Decide on the live object, under the claim lock, so that two
    // tenants reconciled at once cannot both take a namespace that nobody holds yet.
    let _claim = ctx.claim(&env.namespace).await;
    let live = live::read_namespace(ctx, &env.namespace).await?;
    let decision = decide(tenant, env, &inventory, live.as_deref(), cached.is_some());
    perform(tenant, env, decision, live.as_deref(), records, ctx).await
}

/// Make the write `decision` describes, then record its Event (not if the write failed).
async fn perform(
    tenant: &MLTenant,
    env: &Environment,
    decision: Decision,
    live: Option<&Namespace>,
    records: &Records,
    ctx: &Context,
) -> kube::Result<Ensured> {
    let name = &env.namespace;
    let key = Key::namespace(name);
    let outcome = match decision.change {
        Change::Nothing => {
            Ensured { kept: kept_note(tenant, env, live, records), ..Ensured::new(NamespaceState::Ready) }
        }
        Change::Apply { adopted, creates, consent } => {
            let (want, kept) = desired(tenant, env, adopted, live);
            // A create or an adoption goes on record before it is sent.
            let on_record = records.with(|inventory| inventory.uid(&key).is_some());
            if creates || !on_record {
                inventory::intend(tenant, records, [(key.clone(), adopted)], ctx).await?;
                records.sending(&key);
            }
            let api = Api::<Guarded<Namespace>>::all(ctx.client.clone());
            let written = match apply::apply(&api, name, &want, !creates).await {
                Ok(written) => written,
                // Someone created it after it was read: decided again on the next look.
                Err(error) if creates && apply::is_conflict(&error) => {
                    records.with(|inventory| inventory.forget(&key));
                    let message = format!("namespace {name} {}", ownership::CREATED_MEANWHILE);
                    return Ok(Ensured::new(NamespaceState::Conflict(message)));
                }
                Err(error) => return Err(error),
            };
            if let Some(uid) = written.uid.clone() {
                records.with(|inventory| inventory.record(key, uid, adopted));
            }
            if consent {
                let without = serde_json::json!({"metadata": {"labels": {labels::ADOPTABLE_BY: null}}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(without)).await?;
            }
            let kept = (!kept.is_empty()).then(|| kept_message(name, &kept));
            Ensured { state: NamespaceState::Ready, created: creates, kept }
        }
        Change::Refuse(state) => Ensured::new(state),
    };
    if let Some(note) = decision.event {
        ctx.event(tenant, Some(reference(name)), note.type_, note.reason, &note.message).await;
    }
    Ok(outcome)
}

/// The levels a namespace that needed no write keeps against the spec.
fn kept_note(tenant: &MLTenant, env: &Environment, live: Option<&Namespace>, records: &Records) -> Option<String> {
    let adopted = records.with(|inventory| inventory.get(&Key::namespace(&env.namespace)).is_some_and(|e| e.adopted));
    let (_, kept) = desired(tenant, env, adopted, live);
    (!kept.is_empty()).then(|| kept_message(&env.namespace, &kept))
}

fn kept_message(namespace: &str, kept: &[String]) -> String {
    format!(
        "namespace {namespace} keeps {}: a tenant only ever tightens Pod Security (raise the spec's level to match)",
        kept.join(", ")
    )
}

/// [`ensure`], with a refusal of the API server reported and turned into the environment's state.
pub async fn ensure_reported(tenant: &MLTenant, env: &Environment, records: &Records, ctx: &Context) -> Ensured {
    match ensure(tenant, env, records, ctx).await {
        Ok(ensured) => ensured,
        Err(error) => {
            let rejected = Rejected::new("Namespace", &env.namespace, &error);
            ctx.rejected(tenant, &rejected).await;
            Ensured::new(NamespaceState::Rejected(rejected))
        }
    }
}

/// The namespaces on `tenant`'s record that `wanted` does not name (all of them when `None`),
/// except protected ones: a protected namespace is never released or deleted (both are writes).
pub fn recorded_except(inventory: &Inventory, wanted: Option<&[&str]>, protected: &Protected) -> Vec<(Key, Entry)> {
    inventory
        .of(crate::api::OwnedKind::Namespace)
        .filter(|(key, _)| wanted.is_none_or(|w| !w.contains(&key.name.as_str())) && !protected.contains(&key.name))
        .map(|(key, entry)| (key.clone(), entry.clone()))
        .collect()
}

/// [`remove`], with a refusal of the API server reported and returned.
pub async fn remove_reported(
    tenant: &MLTenant,
    key: &Key,
    entry: &Entry,
    policy: DeletionPolicy,
    records: &Records,
    ctx: &Context,
) -> Result<bool, Rejected> {
    match remove(tenant, key, entry, policy, records, ctx).await {
        Ok(pending) => Ok(pending),
        Err(error) => {
            let rejected = Rejected::new("Namespace", &key.name, &error);
            ctx.rejected(tenant, &rejected).await;
            Err(rejected)
        }
    }
}

/// What becomes of a namespace the tenant no longer wants.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// It is gone, or the name is held by another namespace: only the record goes.
    Forget,
    /// Delete it.
    Delete,
    /// It is being deleted already: wait for it to go.
    AwaitDeletion,
    /// Keep it, with our labels and ownerReference removed and a note of where it came from.
    Release,
}

/// Under `Delete` a namespace this tenant created (on record as created, the same UID) is
/// deleted; anything else of ours is released: `Delete` only ever removes what the operator
/// knows it created.
pub fn removal(entry: &Entry, live: Option<&Namespace>, policy: DeletionPolicy) -> Removal {
    let Some(ns) = live.filter(|ns| ns.metadata.uid.is_some() && ns.metadata.uid == entry.uid) else {
        return Removal::Forget;
    };
    match (policy, entry.adopted) {
        (DeletionPolicy::Delete, false) if ns.metadata.deletion_timestamp.is_some() => Removal::AwaitDeletion,
        (DeletionPolicy::Delete, false) => Removal::Delete,
        _ if ns.metadata.deletion_timestamp.is_some() => Removal::Forget,
        _ => Removal::Release,
    }
}

/// Let go of the namespace on record at `key` according to `policy` (see [`removal`]).
/// Returns whether the namespace is (still) being deleted.
pub async fn remove(
    tenant: &MLTenant,
    key: &Key,
    entry: &Entry,
    policy: DeletionPolicy,
    records: &Records,
    ctx: &Context,
) -> kube::Result<bool> {
    let api = Api::<Guarded<Namespace>>::all(ctx.client.clone());
    let name = &key.name;
    let live = live::read_namespace(ctx, name).await?;
    let (reason, message, pending) = match removal(entry, live.as_deref(), policy) {
        Removal::Forget => {
            records.with(|inventory| inventory.forget(key));
            return Ok(false);
        }
        Removal::AwaitDeletion => return Ok(true),
        Removal::Delete => {
            // This very namespace, the one on record: not one of the same name created since.
            let recorded = Preconditions { uid: entry.uid.clone(), resource_version: None };
            api.delete(name, &DeleteParams::background().preconditions(recorded)).await?;
            (event::NAMESPACE_DELETED, format!("deleted namespace {name}"), true)
        }
        Removal::Release => {
            let ns = live.as_deref().expect("a namespace to release exists");
            apply::apply(&api, name, &released(ns, entry.adopted, &tenant.name_any()), true).await?;
            records.with(|inventory| inventory.forget(key));
            (event::NAMESPACE_RELEASED, format!("released namespace {name} (kept, no longer managed)"), false)
        }
    };
    ctx.event(tenant, Some(reference(name)), EventType::Normal, reason, &message).await;
    Ok(pending)
}

#[cfg(test)]
mod tests;
