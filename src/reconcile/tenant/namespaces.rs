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
mod tests {
    use super::*;
    use crate::api::environments;
    use crate::api::labels::{ADOPTABLE_BY, TENANT, TENANT_UID};
    use crate::api::{EnvironmentSpec, EnvironmentStatus, MLTenantSpec, MLTenantStatus};
    use crate::reconcile::trim::as_cached;

    const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

    /// The tenant `fin` (uid `uid-fin`) with one environment, `dev`, in namespace `namespace`
    /// (`fin-dev` when `None`).
    fn tenant_in(namespace: Option<&str>) -> MLTenant {
        let dev = EnvironmentSpec::named("dev");
        let spec = MLTenantSpec::new(vec![namespace.map_or(dev.clone(), |ns| dev.in_namespace(ns))]);
        let mut t = MLTenant::new("fin", spec);
        t.metadata.uid = Some("uid-fin".into());
        t
    }

    fn tenant() -> MLTenant {
        tenant_in(None)
    }

    fn adopting(adopt: bool) -> MLTenant {
        let mut t = tenant();
        t.spec.adopt_existing_namespaces = Some(adopt);
        t
    }

    /// `tenant()` whose spec asks `labels` of its namespace.
    fn labelled(labels: &[(&str, &str)]) -> MLTenant {
        let mut t = adopting(true);
        t.spec.environments[0].labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        t
    }

    /// `tenant()` whose last status had `dev` ready or not, for `reason`.
    fn with_history(ready: bool, reason: Option<&str>) -> MLTenant {
        let mut t = tenant();
        let env = EnvironmentStatus {
            name: "dev".into(),
            namespace: "fin-dev".into(),
            ready,
            reason: reason.map(Into::into),
            ..Default::default()
        };
        t.status = Some(MLTenantStatus { environments: vec![env], ..Default::default() });
        t
    }

    fn env(tenant: &MLTenant) -> Environment {
        environments::plan(tenant).unwrap().remove(0)
    }

    /// Namespace `fin-dev` of `uid` with these labels and annotations.
    fn ns(uid: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Namespace {
        let map = |pairs: &[(&str, &str)]| Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let mut ns = Namespace::default();
        ns.metadata.name = Some("fin-dev".into());
        ns.metadata.uid = Some(uid.into());
        ns.metadata.labels = map(labels);
        ns.metadata.annotations = map(annotations);
        ns
    }

    fn terminating(mut ns: Namespace) -> Namespace {
        ns.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
        ns
    }

    /// An inventory holding `fin-dev` as `uid` (created, or adopted).
    fn recorded(uid: &str, adopted: bool) -> Inventory {
        let mut inventory = Inventory::default();
        inventory.record(Key::namespace("fin-dev"), uid.into(), adopted);
        inventory
    }

    /// `desired` as the cache holds it after the operator applied it, as the namespace `uid`.
    fn applied(desired: &Namespace, uid: &str) -> Namespace {
        as_cached(desired, |ns| ns.metadata.uid = Some(uid.into()))
    }

    #[test]
    fn holders() {
        let t = tenant();
        let ours = [(labels::MANAGED_BY_KEY, labels::MANAGED_BY), (TENANT, "fin")];
        let forged = ns("victim", &ours, &[(TENANT_UID, "uid-fin"), (labels::ORIGIN, labels::ORIGIN_CREATED)]);
        let none = Inventory::default();
        let rows = [
            ("absent", None, &none, Holder::Nobody),
            ("no tenant label", Some(ns("u", &[], &[])), &none, Holder::Unlabelled),
            ("another tenant's label", Some(ns("u", &[(TENANT, "other")], &[])), &none, Holder::Tenant("other".into())),
            ("our name, not on record", Some(ns("u", &[(TENANT, "fin")], &[])), &none, Holder::Stale),
            (
                "our labels and annotations, forged by a patch: hints, not proof",
                Some(forged.clone()),
                &none,
                Holder::Stale,
            ),
            (
                "on record, its labels stripped",
                Some(ns("ns-ours", &[], &[])),
                &recorded("ns-ours", false),
                Holder::Us { adopted: false },
            ),
            (
                "on record, relabelled for another tenant: the record wins",
                Some(ns("ns-ours", &[(TENANT, "other")], &[])),
                &recorded("ns-ours", false),
                Holder::Us { adopted: false },
            ),
            ("adopted", Some(ns("ns-ours", &ours, &[])), &recorded("ns-ours", true), Holder::Us { adopted: true }),
            ("recreated under the same name since", Some(forged), &recorded("ns-ours", false), Holder::Stale),
            ("terminating", Some(terminating(ns("u", &[(TENANT, "fin")], &[]))), &none, Holder::Terminating),
            (
                "terminating, even ours",
                Some(terminating(ns("ns-ours", &ours, &[]))),
                &recorded("ns-ours", false),
                Holder::Terminating,
            ),
        ];
        for (why, ns, inventory, expected) in rows {
            assert_eq!(holder(ns.as_ref(), &t, inventory), expected, "{why}");
        }
    }

    /// A decision as the `ensure` table states it. `Create` and `Apply` carry the reason of the
    /// Normal Event reporting them; `Refuse` the state's reason, and whether a Warning Event with
    /// the same reason and message reports it.
    #[derive(Debug, PartialEq)]
    enum Expect<'a> {
        Nothing,
        Create(Option<&'a str>),
        /// adopted, removes the consent label, the Event's reason
        Apply(bool, bool, Option<&'a str>),
        Refuse(&'a str, bool),
    }
    use Expect::{Apply, Create, Nothing, Refuse};

    /// `decision` in the table's terms, and the message it reports (the Event's, else the
    /// refusal's).
    fn expect(decision: &Decision) -> (Expect<'_>, &str) {
        let event = decision.event.as_ref();
        let reported = |fallback: &'static str| event.map_or(fallback, |e| e.message.as_str());
        match &decision.change {
            Change::Nothing => {
                assert_eq!(event, None, "nothing written, nothing reported");
                (Nothing, "")
            }
            Change::Apply { adopted, creates, consent } => {
                assert!(event.is_none_or(|e| e.type_ == EventType::Normal), "{event:?}");
                let reason = event.map(|e| e.reason);
                match creates {
                    true if !adopted && !consent => (Create(reason), reported("")),
                    true => panic!("creates a namespace adopted or with consent to remove"),
                    false => (Apply(*adopted, *consent, reason), reported("")),
                }
            }
            Change::Refuse(state) => {
                let (NamespaceState::Protected(message)
                | NamespaceState::Conflict(message)
                | NamespaceState::Terminating(message)) = state
                else {
                    panic!("not a refusal: {state:?}")
                };
                let reason = state.reason().expect("a refusal has a reason");
                if let Some(e) = event {
                    assert_eq!((e.type_, e.reason, &e.message), (EventType::Warning, reason, message));
                }
                (Refuse(reason, event.is_some()), message)
            }
        }
    }

    /// Every branch of `ensure`'s decision: the cache first ([`decide_cached`]), then, when it
    /// does not settle it, the live object ([`decide`]).
    #[test]
    fn ensure_decisions() {
        let t = tenant();
        let mut deleting = tenant();
        deleting.spec.deletion_policy = Some(DeletionPolicy::Delete);
        let (returning, was_terminating) = (with_history(true, None), with_history(false, Some(reason::TERMINATING)));
        let was_conflicting = with_history(false, Some(reason::NAMESPACE_CONFLICT));
        let (adopting, declining) = (adopting(true), adopting(false));
        let system = tenant_in(Some("kube-system"));

        let none = Inventory::default();
        let ours = recorded("ns-ours", false);
        let ours_adopted = recorded("ns-ours", true);
        let as_desired = applied(&desired(&t, &env(&t), false, None).0, "ns-ours");
        let system_as_desired = applied(&desired(&system, &env(&system), false, None).0, "ns-ours");
        let outdated = ns("ns-ours", &[(TENANT, "fin")], &[]);
        let adopted = applied(&desired(&t, &env(&t), true, None).0, "ns-ours");
        let adopted_consent_left = as_cached(&desired(&t, &env(&t), true, None).0, |ns| {
            ns.metadata.uid = Some("ns-ours".into());
            ns.metadata.labels.as_mut().unwrap().insert(ADOPTABLE_BY.into(), "fin".into());
        });
        let stripped = ns("ns-ours", &[], &[]);
        let forged = ns(
            "victim",
            &[(labels::MANAGED_BY_KEY, labels::MANAGED_BY), (TENANT, "fin")],
            &[(TENANT_UID, "uid-fin"), (labels::ORIGIN, labels::ORIGIN_CREATED)],
        );
        let others = ns("u", &[(TENANT, "other")], &[]);
        let others_consenting = ns("u", &[(TENANT, "other"), (ADOPTABLE_BY, "fin")], &[]);
        let unmanaged = ns("u", &[], &[]);
        let consenting = ns("u", &[(ADOPTABLE_BY, "fin")], &[]);
        let consenting_to_other = ns("u", &[(ADOPTABLE_BY, "other")], &[]);
        let stale = ns("u", &[(TENANT, "fin")], &[(TENANT_UID, "uid-earlier")]);
        let stale_consenting = ns("u", &[(TENANT, "fin"), (ADOPTABLE_BY, "fin")], &[(TENANT_UID, "uid-earlier")]);
        let ours_terminating = terminating(as_desired.clone());
        let consenting_terminating = terminating(consenting.clone());

        let (protected, conflict) = (reason::PROTECTED_NAMESPACE, reason::NAMESPACE_CONFLICT);
        let (restored, adopted_event) = (Some(event::NAMESPACE_RESTORED), Some(event::NAMESPACE_ADOPTED));
        let not_asked = "set spec.adoptExistingNamespaces: true and label the namespace mltenant.io/adoptable-by=fin";
        let no_consent = "has not consented to adoption: label it mltenant.io/adoptable-by=fin";
        #[rustfmt::skip]
        let rows = [
            // why                                                tenant            record           cached                   live
            //     -> decision                                    part of the message
            // Settled by the cache, without the claim lock.
            ("protected, nothing there",                          &system,          &none,           None,                    None,
                Refuse(protected, true),                          "namespace kube-system is protected (the operator never writes into default, "),
            ("protected before anything else: ours, as desired",  &system,          &ours,           Some(&system_as_desired), Some(&system_as_desired),
                Refuse(protected, true),                          "choose another environments[].namespace"),
            ("ours and as desired",                               &t,               &ours,           Some(&as_desired),       Some(&as_desired),
                Nothing,                                          ""),
            // Decided on the live object.
            ("not found, never had",                              &t,               &none,           None,                    None,
                Create(None),                                     ""),
            ("not found, in conflict before",                     &was_conflicting, &none,           None,                    None,
                Create(None),                                     ""),
            ("not found, ready before: someone deleted it",       &returning,       &ours,           None,                    None,
                Create(restored),                                 "recreated namespace fin-dev, which was deleted"),
            ("not found, terminating before",                     &was_terminating, &ours,           None,                    None,
                Create(restored),                                 "recreated namespace fin-dev"),
            ("gone since the cache saw it outdated",              &returning,       &ours,           Some(&outdated),         None,
                Create(restored),                                 "recreated namespace fin-dev"),
            ("ours, outdated (the spec's labels changed)",        &t,               &ours,           Some(&outdated),         Some(&outdated),
                Apply(false, false, None),                        ""),
            ("ours, as desired before deletionPolicy: Delete",    &deleting,        &ours,           Some(&as_desired),       Some(&as_desired),
                Apply(false, false, None),                        ""),
            ("ours, adopted, adoption since turned off",          &declining,       &ours_adopted,   Some(&adopted),          Some(&adopted),
                Nothing,                                          ""),
            ("ours, adopted, the consent label still there",      &adopting,        &ours_adopted,   Some(&adopted_consent_left), Some(&adopted_consent_left),
                Apply(true, true, None),                          ""),
            ("ours, labels stripped: not in the cache",           &t,               &ours,           None,                    Some(&stripped),
                Apply(false, false, restored),                    "restored the labels of namespace fin-dev"),
            ("our labels and uid annotation forged on another namespace", &t,       &ours,           Some(&forged),           Some(&forged),
                Refuse(conflict, true),                           not_asked),
            ("another tenant's",                                  &t,               &none,           Some(&others),           Some(&others),
                Refuse(conflict, true),                           "namespace fin-dev belongs to MLTenant other"),
            ("another tenant's, adoptable-by us, adopting",       &adopting,        &none,           Some(&others_consenting), Some(&others_consenting),
                Refuse(conflict, true),                           "belongs to MLTenant other"),
            ("unmanaged, adoption not asked",                     &t,               &none,           None,                    Some(&unmanaged),
                Refuse(conflict, true),                           not_asked),
            ("unmanaged, adoptable-by us, adoption not asked",    &t,               &none,           None,                    Some(&consenting),
                Refuse(conflict, true),                           not_asked),
            ("unmanaged, adoptable-by us, adoption declined",     &declining,       &none,           None,                    Some(&consenting),
                Refuse(conflict, true),                           not_asked),
            ("unmanaged, adopting, no consent",                   &adopting,        &none,           None,                    Some(&unmanaged),
                Refuse(conflict, true),                           no_consent),
            ("unmanaged, adopting, adoptable-by another tenant",  &adopting,        &none,           None,                    Some(&consenting_to_other),
                Refuse(conflict, true),                           no_consent),
            ("unmanaged, adopting, adoptable-by us",              &adopting,        &none,           None,                    Some(&consenting),
                Apply(true, true, adopted_event),                 "adopted existing namespace fin-dev"),
            ("stale (an earlier fin's), adopting, no consent",    &adopting,        &none,           Some(&stale),            Some(&stale),
                Refuse(conflict, true),                           no_consent),
            ("stale, adopting, adoptable-by us",                  &adopting,        &none,           Some(&stale_consenting), Some(&stale_consenting),
                Apply(true, true, adopted_event),                 "adopted existing namespace fin-dev"),
            ("terminating, ours",                                 &t,               &ours,           Some(&ours_terminating), Some(&ours_terminating),
                Refuse(reason::TERMINATING, false),               "namespace fin-dev is terminating; it is recreated once gone"),
            ("terminating, adopting, adoptable-by us",            &adopting,        &none,           None,                    Some(&consenting_terminating),
                Refuse(reason::TERMINATING, false),               "namespace fin-dev is terminating"),
        ];
        let protected_set = Protected::new("mltenant-system", Vec::new());
        for (why, tenant, inventory, cached, live, expected, says) in rows {
            let env = env(tenant);
            let decision = decide_cached(tenant, &env, &protected_set, inventory, cached)
                .unwrap_or_else(|| decide(tenant, &env, inventory, live, cached.is_some()));
            let (decided, message) = expect(&decision);
            assert_eq!(decided, expected, "{why}: {decision:?}");
            assert!(message.contains(says), "{why}: {message:?} does not say {says:?}");
        }
    }

    #[test]
    fn pod_security_is_only_ever_tightened() {
        let owner = |level: &str| ns("u", &[(ENFORCE, level)], &[]);
        // (spec's level, the namespace's, the level applied, kept)
        let rows = [
            (Some("restricted"), None, Some("restricted"), false),
            (Some("restricted"), Some("baseline"), Some("restricted"), false),
            (Some("baseline"), Some("restricted"), Some("restricted"), true),
            (Some("baseline"), Some("privileged"), Some("baseline"), false),
            // Not named by the spec (or no longer): the namespace keeps its level.
            (None, Some("restricted"), Some("restricted"), false),
            (None, None, None, false),
        ];
        for (spec, have, want, kept) in rows {
            let t = labelled(&spec.map(|l| vec![(ENFORCE, l)]).unwrap_or_default());
            let live = have.map(owner);
            let (applied, noted) = desired(&t, &env(&t), true, live.as_ref());
            let level = applied.metadata.labels.as_ref().unwrap().get(ENFORCE).map(String::as_str);
            assert_eq!((level, !noted.is_empty()), (want, kept), "spec {spec:?}, namespace {have:?}");
        }
    }

    #[test]
    fn an_adopted_namespace_gets_back_its_owners_levels_and_a_created_one_keeps_its_own() {
        let t = labelled(&[(ENFORCE, "restricted")]);
        let owners =
            ns("u", &[(ENFORCE, "baseline"), ("pod-security.kubernetes.io/warn-version", "v1.28"), ("team", "a")], &[]);
        let (adopted, _) = desired(&t, &env(&t), true, Some(&owners));
        let before = adopted.metadata.annotations.as_ref().unwrap()[labels::POD_SECURITY_BEFORE].clone();
        assert_eq!(before, "pod-security.kubernetes.io/enforce=baseline,pod-security.kubernetes.io/warn-version=v1.28");
        // Adopted and tightened, then let go: its owner's levels come back.
        let managed = applied(&adopted, "u");
        let back = released(&managed, true, "fin");
        let labels = back.metadata.labels.unwrap();
        assert_eq!(labels.get(ENFORCE).map(String::as_str), Some("baseline"));
        assert_eq!(labels.get("pod-security.kubernetes.io/warn-version").map(String::as_str), Some("v1.28"));
        assert_eq!(back.metadata.annotations.unwrap()[labels::RELEASED_FROM], "fin");
        // Created by the tenant, then let go under Retain: it keeps the levels it had.
        let created = applied(&desired(&t, &env(&t), false, None).0, "u");
        let kept = released(&created, false, "fin").metadata.labels.unwrap();
        assert_eq!(kept.get(ENFORCE).map(String::as_str), Some("restricted"));
        assert!(!kept.contains_key(TENANT), "no label of ours stays");
    }

    #[test]
    fn removals() {
        use DeletionPolicy::{Delete, Retain};
        let created = Entry { uid: Some("ns-ours".into()), adopted: false };
        let adopted = Entry { uid: Some("ns-ours".into()), adopted: true };
        let live = ns("ns-ours", &[(TENANT, "fin")], &[]);
        let recreated =
            ns("other", &[(TENANT, "fin")], &[(TENANT_UID, "uid-fin"), (labels::ORIGIN, labels::ORIGIN_CREATED)]);
        let rows = [
            ("Retain keeps what we created", &created, Some(live.clone()), Retain, Removal::Release),
            ("Retain keeps what we adopted", &adopted, Some(live.clone()), Retain, Removal::Release),
            ("Retain forgets one being deleted", &created, Some(terminating(live.clone())), Retain, Removal::Forget),
            ("Delete deletes what we created", &created, Some(live.clone()), Delete, Removal::Delete),
            (
                "Delete waits for one being deleted",
                &created,
                Some(terminating(live.clone())),
                Delete,
                Removal::AwaitDeletion,
            ),
            ("Delete keeps what we adopted", &adopted, Some(live.clone()), Delete, Removal::Release),
            ("gone", &created, None, Delete, Removal::Forget),
            (
                "the name now held by another namespace, whatever its marks",
                &created,
                Some(recreated),
                Delete,
                Removal::Forget,
            ),
        ];
        for (why, entry, live, policy, expected) in rows {
            assert_eq!(removal(entry, live.as_ref(), policy), expected, "{why}");
        }
    }

    #[test]
    fn desired_namespace_carries_labels_and_origin() {
        let t = tenant();
        let (ns, _) = desired(&t, &env(&t), false, None);
        let labels = ns.metadata.labels.unwrap();
        assert_eq!(labels[labels::MANAGED_BY_KEY], labels::MANAGED_BY);
        assert_eq!(labels[labels::TENANT], "fin");
        assert_eq!(labels[labels::ENVIRONMENT], "dev");
        let annotations = ns.metadata.annotations.unwrap();
        assert_eq!(annotations[labels::ORIGIN], "created");
        assert_eq!(annotations[labels::TENANT_UID], "uid-fin");
    }

    #[test]
    fn only_namespaces_the_tenant_will_delete_are_owned() {
        let mut t = tenant();
        let env = env(&t);
        assert_eq!(desired(&t, &env, false, None).0.metadata.owner_references, None, "Retain");
        t.spec.deletion_policy = Some(DeletionPolicy::Delete);
        assert_eq!(desired(&t, &env, true, None).0.metadata.owner_references, None, "adopted");
        let owned = desired(&t, &env, false, None).0.metadata.owner_references.unwrap();
        let owner = &owned[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("MLTenant", "uid-fin", Some(true)));
    }
}
