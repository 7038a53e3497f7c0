//! Environment namespaces: who holds a namespace, what ours must look like, what to do about
//! it (decided without IO: [`decide_cached`], [`decide`], [`removal`]) and the writes that
//! create, adopt, restore, release or delete them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::ownership;
use crate::api::conditions::{event, reason};
use crate::api::environments::Environment;
use crate::api::labels;
use crate::api::limits::Protected;
use crate::api::{DeletionPolicy, MLTenant};
use crate::reconcile::apply;
use crate::reconcile::context::Context;
use crate::reconcile::rejected::Rejected;

/// Who holds a namespace, from the point of view of one tenant.
#[derive(Debug, PartialEq, Eq)]
pub enum Holder {
    /// It does not exist.
    Nobody,
    /// It is ours: it carries this tenant's UID (annotation or ownerReference), and no other
    /// tenant's label (ours may have been stripped by hand).
    Us { origin: String },
    /// It exists without any tenant label.
    Unlabelled,
    /// It carries this tenant's name but not its UID: left over from an earlier MLTenant of the
    /// same name (deleted without the operator releasing it), or labelled by hand. Not ours
    /// until its owner consents, like an unlabelled one.
    Stale,
    /// Another tenant holds it.
    Tenant(String),
    /// It is being deleted.
    Terminating,
}

/// Decide who holds `ns` from the point of view of `tenant`.
pub fn holder(ns: Option<&Namespace>, tenant: &MLTenant) -> Holder {
    let Some(ns) = ns else { return Holder::Nobody };
    if ns.metadata.deletion_timestamp.is_some() {
        return Holder::Terminating;
    }
    match ns.labels().get(labels::TENANT) {
        _ if ours(ns, tenant) => Holder::Us { origin: origin(ns).to_owned() },
        Some(name) if *name == tenant.name_any() => Holder::Stale,
        Some(other) => Holder::Tenant(other.clone()),
        None => Holder::Unlabelled,
    }
}

/// Carries `tenant`'s UID (the annotation every namespace it created or adopted gets, or its
/// ownerReference) and no other tenant's label.
fn ours(ns: &Namespace, tenant: &MLTenant) -> bool {
    let Some(uid) = tenant.metadata.uid.as_ref() else { return false };
    let labelled_for_other = ns.labels().get(labels::TENANT).is_some_and(|t| *t != tenant.name_any());
    !labelled_for_other
        && (ns.annotations().get(labels::TENANT_UID) == Some(uid)
            || ns.owner_references().iter().any(|o| o.uid == *uid))
}

/// Unknown origin counts as adopted: `Delete` only ever removes what we know we created.
fn origin(ns: &Namespace) -> &str {
    ns.annotations().get(labels::ORIGIN).map_or(labels::ORIGIN_ADOPTED, String::as_str)
}

/// Whether `tenant` created `ns`, terminating or not.
fn created_by(ns: &Namespace, tenant: &MLTenant) -> bool {
    ours(ns, tenant) && origin(ns) == labels::ORIGIN_CREATED
}

/// The namespace as the operator applies it: only the fields it owns.
///
/// Only a namespace the tenant will delete (`deletionPolicy: Delete`, created by it) carries an
/// ownerReference. Any other would be deleted by the garbage collector when the tenant is
/// deleted with foreground propagation (Argo CD's default when pruning) or when the finalizer
/// is removed without the operator, which would break `Retain` and adoption.
pub fn desired(tenant: &MLTenant, env: &Environment, origin: &str) -> Namespace {
    let deletes_it = tenant.spec.deletion_policy == Some(DeletionPolicy::Delete) && origin == labels::ORIGIN_CREATED;
    apply::stamped(Namespace {
        metadata: ObjectMeta {
            name: Some(env.namespace.clone()),
            labels: Some(env.labels.clone()),
            annotations: Some(BTreeMap::from([
                (labels::ORIGIN.to_owned(), origin.to_owned()),
                (labels::TENANT_UID.to_owned(), tenant.metadata.uid.clone().unwrap_or_default()),
            ])),
            owner_references: deletes_it.then(|| vec![ownership::owner_reference(tenant)]),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// What a namespace let go of under `Retain` keeps from us: only a note of where it came from.
fn released(name: &str, tenant: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
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
    /// Apply the desired namespace with this origin; `creates`: it does not exist yet.
    Apply { origin: String, creates: bool },
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
fn applied(origin: &str, creates: bool, event: Option<(&'static str, String)>) -> Decision {
    let event = event.map(|(reason, message)| Note { type_: EventType::Normal, reason, message });
    Decision { change: Change::Apply { origin: origin.to_owned(), creates }, event }
}

/// What the cache alone decides, without the claim lock: a protected name is refused before
/// anything else is looked at, and a namespace the cache shows ours and as desired needs
/// nothing. `None`: a write may be needed, decided by [`decide`] on the live object.
pub fn decide_cached(
    tenant: &MLTenant,
    env: &Environment,
    protected: &Protected,
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
    let Holder::Us { origin } = holder(Some(cached), tenant) else { return None };
    let as_desired = !apply::metadata_differs(&cached.metadata, &desired(tenant, env, &origin).metadata);
    as_desired.then_some(Decision { change: Change::Nothing, event: None })
}

/// The write to make to `env`'s namespace, decided on `live`, its state read under the claim
/// lock. `in_cache`: whether the cache had it; one of ours missing from that label-selected
/// cache had its labels stripped.
pub fn decide(tenant: &MLTenant, env: &Environment, live: Option<&Namespace>, in_cache: bool) -> Decision {
    let name = &env.namespace;
    let adopting = tenant.spec.adopt_existing_namespaces == Some(true);
    match holder(live, tenant) {
        // Creating what the tenant never had is reported by its status; an Event per new object
        // would double the writes of a first converge. Recreating what someone deleted is news.
        Holder::Nobody => {
            let event = tenant
                .had_environment(&env.name)
                .then(|| (event::NAMESPACE_RESTORED, format!("recreated namespace {name}, which was deleted")));
            applied(labels::ORIGIN_CREATED, true, event)
        }
        Holder::Us { origin } => {
            let event =
                (!in_cache).then(|| (event::NAMESPACE_RESTORED, format!("restored the labels of namespace {name}")));
            applied(&origin, false, event)
        }
        // Adoption is two-sided: the tenant asks for it and the namespace's owner consents.
        Holder::Unlabelled | Holder::Stale if adopting && live.is_some_and(|ns| consents(ns, tenant)) => applied(
            labels::ORIGIN_ADOPTED,
            false,
            Some((event::NAMESPACE_ADOPTED, format!("adopted existing namespace {name}"))),
        ),
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
/// Also says whether it created the namespace just now.
pub async fn ensure(tenant: &MLTenant, env: &Environment, ctx: &Context) -> kube::Result<(NamespaceState, bool)> {
    let cached = ctx.namespaces.get(None, &env.namespace);
    if let Some(decision) = decide_cached(tenant, env, &ctx.config.protected, cached.as_deref()) {
        return perform(tenant, env, decision, ctx).await;
    }
    // A write may be needed. Decide on the live object, under the claim lock, so that two
    // tenants reconciled at once cannot both take a namespace that nobody holds yet.
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let _claim = ctx.claim(&env.namespace).await;
    let live = api.get_opt(&env.namespace).await?;
    perform(tenant, env, decide(tenant, env, live.as_ref(), cached.is_some()), ctx).await
}

/// Make the write `decision` describes, then record its Event (not if the write failed).
/// Returns the namespace's state and whether it was created.
async fn perform(
    tenant: &MLTenant,
    env: &Environment,
    decision: Decision,
    ctx: &Context,
) -> kube::Result<(NamespaceState, bool)> {
    let name = &env.namespace;
    let outcome = match decision.change {
        Change::Nothing => (NamespaceState::Ready, false),
        Change::Apply { origin, creates } => {
            let api: Api<Namespace> = Api::all(ctx.client.clone());
            match apply::apply(&api, name, &desired(tenant, env, &origin), !creates).await {
                Ok(_) => (NamespaceState::Ready, creates),
                // Someone created it after it was read: decided again on the next look.
                Err(error) if creates && apply::is_conflict(&error) => {
                    let message = format!("namespace {name} {}", ownership::CREATED_MEANWHILE);
                    return Ok((NamespaceState::Conflict(message), false));
                }
                Err(error) => return Err(error),
            }
        }
        Change::Refuse(state) => (state, false),
    };
    if let Some(note) = decision.event {
        ctx.event(tenant, Some(reference(name)), note.type_, note.reason, &note.message).await;
    }
    Ok(outcome)
}

/// Namespaces currently labelled for `tenant`, except protected ones: a protected namespace
/// someone labelled by hand is never released or deleted (both are writes).
pub fn labelled_for(tenant: &MLTenant, ctx: &Context) -> Vec<std::sync::Arc<Namespace>> {
    let labelled = ctx.namespaces.of(&tenant.name_any()).into_iter();
    labelled.filter(|ns| ours(ns, tenant) && !ctx.config.protected.contains(&ns.name_any())).collect()
}

/// [`ensure`], with a refusal of the API server reported and turned into the environment's state.
pub async fn ensure_reported(tenant: &MLTenant, env: &Environment, ctx: &Context) -> (NamespaceState, bool) {
    match ensure(tenant, env, ctx).await {
        Ok(ensured) => ensured,
        Err(error) => {
            let rejected = Rejected::new("Namespace", &env.namespace, &error);
            ctx.rejected(tenant, &rejected).await;
            (NamespaceState::Rejected(rejected), false)
        }
    }
}

/// [`remove`], with a refusal of the API server reported and returned.
pub async fn remove_reported(
    tenant: &MLTenant,
    ns: &Namespace,
    policy: DeletionPolicy,
    ctx: &Context,
) -> Result<bool, Rejected> {
    match remove(tenant, ns, policy, ctx).await {
        Ok(pending) => Ok(pending),
        Err(error) => {
            let rejected = Rejected::new("Namespace", ns.name_any(), &error);
            ctx.rejected(tenant, &rejected).await;
            Err(rejected)
        }
    }
}

/// What becomes of a namespace the tenant no longer wants.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// Delete it.
    Delete,
    /// It is being deleted already: wait for it to go.
    AwaitDeletion,
    /// Keep it, with our labels and ownerReference removed and a note of where it came from.
    Release,
}

/// Under `Delete` a namespace this tenant created is deleted; anything else is released:
/// `Delete` only ever removes what we know we created.
pub fn removal(tenant: &MLTenant, ns: &Namespace, policy: DeletionPolicy) -> Removal {
    match (policy, created_by(ns, tenant)) {
        (DeletionPolicy::Delete, true) if ns.metadata.deletion_timestamp.is_some() => Removal::AwaitDeletion,
        (DeletionPolicy::Delete, true) => Removal::Delete,
        _ => Removal::Release,
    }
}

/// Let go of `ns` according to `policy` (see [`removal`]).
/// Returns whether the namespace is (still) being deleted.
pub async fn remove(tenant: &MLTenant, ns: &Namespace, policy: DeletionPolicy, ctx: &Context) -> kube::Result<bool> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let name = ns.name_any();
    let (reason, message, pending) = match removal(tenant, ns, policy) {
        Removal::AwaitDeletion => return Ok(true),
        Removal::Delete => {
            // This very namespace, judged ours: not one of the same name created since.
            let judged = Preconditions { uid: ns.uid(), resource_version: None };
            api.delete(&name, &DeleteParams::background().preconditions(judged)).await?;
            (event::NAMESPACE_DELETED, format!("deleted namespace {name}"), true)
        }
        Removal::Release => {
            apply::apply(&api, &name, &released(&name, &tenant.name_any()), true).await?;
            (event::NAMESPACE_RELEASED, format!("released namespace {name} (kept, no longer managed)"), false)
        }
    };
    ctx.event(tenant, Some(reference(&name)), EventType::Normal, reason, &message).await;
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::environments;
    use crate::api::labels::{ADOPTABLE_BY, ORIGIN, ORIGIN_ADOPTED, ORIGIN_CREATED, TENANT, TENANT_UID};
    use crate::api::{EnvironmentSpec, EnvironmentStatus, MLTenantSpec, MLTenantStatus};

    /// The annotation that makes a namespace `tenant()`'s.
    const OUR_UID: (&str, &str) = (TENANT_UID, "uid-fin");

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

    /// Namespace `fin-dev` with these labels and annotations.
    fn ns(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Namespace {
        let map = |pairs: &[(&str, &str)]| Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let mut ns = Namespace::default();
        ns.metadata.name = Some("fin-dev".into());
        ns.metadata.labels = map(labels);
        ns.metadata.annotations = map(annotations);
        ns
    }

    fn owned_by(mut ns: Namespace, tenant: &MLTenant) -> Namespace {
        ns.metadata.owner_references = Some(vec![ownership::owner_reference(tenant)]);
        ns
    }

    fn terminating(mut ns: Namespace) -> Namespace {
        ns.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
        ns
    }

    fn us(origin: &str) -> Holder {
        Holder::Us { origin: origin.into() }
    }

    #[test]
    fn holders() {
        let t = tenant();
        let rows = [
            ("absent", None, Holder::Nobody),
            ("no tenant label", Some(ns(&[], &[])), Holder::Unlabelled),
            ("another tenant's label", Some(ns(&[(TENANT, "other")], &[])), Holder::Tenant("other".into())),
            ("our name, not our uid", Some(ns(&[(TENANT, "fin")], &[])), Holder::Stale),
            (
                "an earlier MLTenant of the same name",
                Some(ns(&[(TENANT, "fin")], &[(TENANT_UID, "uid-earlier")])),
                Holder::Stale,
            ),
            ("our name and uid, origin unknown", Some(ns(&[(TENANT, "fin")], &[OUR_UID])), us(ORIGIN_ADOPTED)),
            (
                "our name and uid, created",
                Some(ns(&[(TENANT, "fin")], &[OUR_UID, (ORIGIN, ORIGIN_CREATED)])),
                us(ORIGIN_CREATED),
            ),
            (
                "another tenant's label wins over our uid and ownerReference",
                Some(owned_by(ns(&[(TENANT, "other")], &[OUR_UID]), &t)),
                Holder::Tenant("other".into()),
            ),
            // Labels stripped by hand: our ownerReference or tenant-uid annotation still proves it is ours.
            ("labels stripped, our ownerReference", Some(owned_by(ns(&[], &[]), &t)), us(ORIGIN_ADOPTED)),
            ("labels stripped, our uid", Some(ns(&[], &[OUR_UID])), us(ORIGIN_ADOPTED)),
            ("terminating", Some(terminating(ns(&[(TENANT, "fin")], &[]))), Holder::Terminating),
            ("terminating, even ours", Some(terminating(ns(&[(TENANT, "fin")], &[OUR_UID]))), Holder::Terminating),
        ];
        for (why, ns, expected) in rows {
            assert_eq!(holder(ns.as_ref(), &t), expected, "{why}");
        }
    }

    /// A decision as the `ensure` table states it. `Create` and `Apply` carry the reason of the
    /// Normal Event reporting them; `Refuse` the state's reason, and whether a Warning Event with
    /// the same reason and message reports it.
    #[derive(Debug, PartialEq)]
    enum Expect<'a> {
        Nothing,
        Create(Option<&'a str>),
        Apply(&'a str, Option<&'a str>),
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
            Change::Apply { origin, creates } => {
                assert!(event.is_none_or(|e| e.type_ == EventType::Normal), "{event:?}");
                let reason = event.map(|e| e.reason);
                match creates {
                    true if origin == ORIGIN_CREATED => (Create(reason), reported("")),
                    true => panic!("creates a namespace of origin {origin}"),
                    false => (Apply(origin, reason), reported("")),
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

        let as_desired = desired(&t, &env(&t), ORIGIN_CREATED);
        let system_as_desired = desired(&system, &env(&system), ORIGIN_CREATED);
        let outdated = ns(&[(TENANT, "fin")], &[OUR_UID, (ORIGIN, ORIGIN_CREATED)]);
        let adopted = desired(&t, &env(&t), ORIGIN_ADOPTED);
        let stripped = ns(&[], &[OUR_UID, (ORIGIN, ORIGIN_CREATED)]);
        let owned = owned_by(ns(&[], &[]), &t);
        let others = ns(&[(TENANT, "other")], &[]);
        let others_consenting = ns(&[(TENANT, "other"), (ADOPTABLE_BY, "fin")], &[]);
        let others_with_our_uid = ns(&[(TENANT, "other")], &[OUR_UID]);
        let unmanaged = ns(&[], &[]);
        let consenting = ns(&[(ADOPTABLE_BY, "fin")], &[]);
        let consenting_to_other = ns(&[(ADOPTABLE_BY, "other")], &[]);
        let stale = ns(&[(TENANT, "fin")], &[(TENANT_UID, "uid-earlier")]);
        let stale_consenting = ns(&[(TENANT, "fin"), (ADOPTABLE_BY, "fin")], &[(TENANT_UID, "uid-earlier")]);
        let ours_terminating = terminating(as_desired.clone());
        let consenting_terminating = terminating(consenting.clone());

        let (protected, conflict) = (reason::PROTECTED_NAMESPACE, reason::NAMESPACE_CONFLICT);
        let (restored, adopted_event) = (Some(event::NAMESPACE_RESTORED), Some(event::NAMESPACE_ADOPTED));
        let not_asked = "set spec.adoptExistingNamespaces: true and label the namespace mltenant.io/adoptable-by=fin";
        let no_consent = "has not consented to adoption: label it mltenant.io/adoptable-by=fin";
        #[rustfmt::skip]
        let rows = [
            // why                                                tenant            cached                   live
            //     -> decision                                    part of the message
            // Settled by the cache, without the claim lock.
            ("protected, nothing there",                          &system,          None,                    None,
                Refuse(protected, true),                          "namespace kube-system is protected (the operator never writes into default, "),
            ("protected before anything else: ours, as desired",  &system,          Some(&system_as_desired), Some(&system_as_desired),
                Refuse(protected, true),                          "choose another environments[].namespace"),
            ("ours and as desired",                               &t,               Some(&as_desired),       Some(&as_desired),
                Nothing,                                          ""),
            // Decided on the live object.
            ("not found, never had",                              &t,               None,                    None,
                Create(None),                                     ""),
            ("not found, in conflict before",                     &was_conflicting, None,                    None,
                Create(None),                                     ""),
            ("not found, ready before: someone deleted it",       &returning,       None,                    None,
                Create(restored),                                 "recreated namespace fin-dev, which was deleted"),
            ("not found, terminating before",                     &was_terminating, None,                    None,
                Create(restored),                                 "recreated namespace fin-dev"),
            ("gone since the cache saw it outdated",              &returning,       Some(&outdated),         None,
                Create(restored),                                 "recreated namespace fin-dev"),
            ("ours, outdated (the spec's labels changed)",        &t,               Some(&outdated),         Some(&outdated),
                Apply(ORIGIN_CREATED, None),                      ""),
            ("ours, as desired before deletionPolicy: Delete",    &deleting,        Some(&as_desired),       Some(&as_desired),
                Apply(ORIGIN_CREATED, None),                      ""),
            ("ours, adopted, adoption since turned off",          &declining,       Some(&adopted),          Some(&adopted),
                Nothing,                                          ""),
            ("ours, labels stripped: not in the cache",           &t,               None,                    Some(&stripped),
                Apply(ORIGIN_CREATED, restored),                  "restored the labels of namespace fin-dev"),
            ("ours by ownerReference only: origin unknown",       &t,               None,                    Some(&owned),
                Apply(ORIGIN_ADOPTED, restored),                  "restored the labels of namespace fin-dev"),
            ("another tenant's",                                  &t,               Some(&others),           Some(&others),
                Refuse(conflict, true),                           "namespace fin-dev belongs to MLTenant other"),
            ("another tenant's, adoptable-by us, adopting",       &adopting,        Some(&others_consenting), Some(&others_consenting),
                Refuse(conflict, true),                           "belongs to MLTenant other"),
            ("another tenant's label on our uid",                 &t,               Some(&others_with_our_uid), Some(&others_with_our_uid),
                Refuse(conflict, true),                           "belongs to MLTenant other"),
            ("unmanaged, adoption not asked",                     &t,               None,                    Some(&unmanaged),
                Refuse(conflict, true),                           not_asked),
            ("unmanaged, adoptable-by us, adoption not asked",    &t,               None,                    Some(&consenting),
                Refuse(conflict, true),                           not_asked),
            ("unmanaged, adoptable-by us, adoption declined",     &declining,       None,                    Some(&consenting),
                Refuse(conflict, true),                           not_asked),
            ("unmanaged, adopting, no consent",                   &adopting,        None,                    Some(&unmanaged),
                Refuse(conflict, true),                           no_consent),
            ("unmanaged, adopting, adoptable-by another tenant",  &adopting,        None,                    Some(&consenting_to_other),
                Refuse(conflict, true),                           no_consent),
            ("unmanaged, adopting, adoptable-by us",              &adopting,        None,                    Some(&consenting),
                Apply(ORIGIN_ADOPTED, adopted_event),             "adopted existing namespace fin-dev"),
            ("stale (an earlier fin's), adopting, no consent",    &adopting,        Some(&stale),            Some(&stale),
                Refuse(conflict, true),                           no_consent),
            ("stale, adopting, adoptable-by us",                  &adopting,        Some(&stale_consenting), Some(&stale_consenting),
                Apply(ORIGIN_ADOPTED, adopted_event),             "adopted existing namespace fin-dev"),
            ("terminating, ours",                                 &t,               Some(&ours_terminating), Some(&ours_terminating),
                Refuse(reason::TERMINATING, false),               "namespace fin-dev is terminating; it is recreated once gone"),
            ("terminating, adopting, adoptable-by us",            &adopting,        None,                    Some(&consenting_terminating),
                Refuse(reason::TERMINATING, false),               "namespace fin-dev is terminating"),
        ];
        let protected_set = Protected::new("mltenant-system", Vec::new());
        for (why, tenant, cached, live, expected, says) in rows {
            let env = env(tenant);
            let decision = decide_cached(tenant, &env, &protected_set, cached)
                .unwrap_or_else(|| decide(tenant, &env, live, cached.is_some()));
            let (decided, message) = expect(&decision);
            assert_eq!(decided, expected, "{why}: {decision:?}");
            assert!(message.contains(says), "{why}: {message:?} does not say {says:?}");
        }
    }

    #[test]
    fn removals() {
        use DeletionPolicy::{Delete, Retain};
        let t = tenant();
        let created = ns(&[(TENANT, "fin")], &[OUR_UID, (ORIGIN, ORIGIN_CREATED)]);
        let adopted = ns(&[(TENANT, "fin")], &[OUR_UID, (ORIGIN, ORIGIN_ADOPTED)]);
        let earlier = ns(&[(TENANT, "fin")], &[(TENANT_UID, "uid-earlier"), (ORIGIN, ORIGIN_CREATED)]);
        let rows = [
            ("Retain keeps what we created", created.clone(), Retain, Removal::Release),
            ("Retain keeps what we adopted", adopted.clone(), Retain, Removal::Release),
            ("Retain releases one being deleted", terminating(created.clone()), Retain, Removal::Release),
            ("Delete deletes what we created", created.clone(), Delete, Removal::Delete),
            ("Delete waits for one being deleted", terminating(created), Delete, Removal::AwaitDeletion),
            ("Delete keeps what we adopted", adopted, Delete, Removal::Release),
            ("Delete keeps one of unknown origin", owned_by(ns(&[(TENANT, "fin")], &[]), &t), Delete, Removal::Release),
            ("Delete keeps what an earlier fin created", earlier, Delete, Removal::Release),
        ];
        for (why, ns, policy, expected) in rows {
            assert_eq!(removal(&t, &ns, policy), expected, "{why}");
        }
    }

    #[test]
    fn desired_namespace_carries_labels_and_origin() {
        let t = tenant();
        let ns = desired(&t, &env(&t), ORIGIN_CREATED);
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
        assert_eq!(desired(&t, &env, ORIGIN_CREATED).metadata.owner_references, None, "Retain");
        t.spec.deletion_policy = Some(DeletionPolicy::Delete);
        assert_eq!(desired(&t, &env, ORIGIN_ADOPTED).metadata.owner_references, None, "adopted");
        let owned = desired(&t, &env, ORIGIN_CREATED).metadata.owner_references.unwrap();
        let owner = &owned[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("MLTenant", "uid-fin", Some(true)));
    }
}
