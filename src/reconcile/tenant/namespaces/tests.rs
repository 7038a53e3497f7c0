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
    ns.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
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
        ("our labels and annotations, forged by a patch: hints, not proof", Some(forged.clone()), &none, Holder::Stale),
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
    assert_eq!(back.metadata.name, Some(managed.name_any()), "the patch names its namespace");
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

/// Events about a namespace point at it.
#[test]
fn an_event_refers_to_its_namespace() {
    let r = reference("fin-dev");
    assert_eq!(
        (r.api_version.as_deref(), r.kind.as_deref(), r.name.as_deref(), r.namespace),
        (Some("v1"), Some("Namespace"), Some("fin-dev"), None)
    );
}
