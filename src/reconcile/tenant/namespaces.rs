//! Environment namespaces: who holds a namespace, what ours must look like, and the writes
//! that create, adopt, restore, release or delete them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::DeleteParams;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::environments::Environment;
use crate::api::conditions::{event, reason};
use crate::api::labels;
use crate::api::{DeletionPolicy, MLTenant};
use crate::reconcile::rejected::Rejected;
use crate::reconcile::{Context, apply};

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

/// The owner reference every child of `tenant` carries.
pub fn owner_reference(tenant: &MLTenant) -> OwnerReference {
    tenant.controller_owner_ref(&()).expect("a stored MLTenant has a name and uid")
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
            owner_references: deletes_it.then(|| vec![owner_reference(tenant)]),
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

/// Make `env`'s namespace exist, labelled and owned by `tenant`, unless it is protected or
/// someone else holds it.
/// Also says whether it created the namespace just now.
pub async fn ensure(tenant: &MLTenant, env: &Environment, ctx: &Context) -> kube::Result<(NamespaceState, bool)> {
    let name = &env.namespace;
    if ctx.config.protected.contains(name) {
        let message = format!(
            "namespace {name} is protected (the operator never writes into {}); choose another environments[].namespace",
            ctx.config.protected.list()
        );
        ctx.event(tenant, Some(reference(name)), EventType::Warning, reason::PROTECTED_NAMESPACE, &message).await;
        return Ok((NamespaceState::Protected(message), false));
    }
    let cached = ctx.namespaces.store.get(&ObjectRef::new(&env.namespace));
    if let Some(ns) = cached.as_deref()
        && let Holder::Us { origin } = holder(Some(ns), tenant)
        && !apply::metadata_differs(&ns.metadata, &desired(tenant, env, &origin).metadata)
    {
        return Ok((NamespaceState::Ready, false));
    }

    // A write may be needed. Decide on the live object, under the claim lock, so that two
    // tenants reconciled at once cannot both take a namespace that nobody holds yet.
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let _claim = ctx.claim(&env.namespace).await;
    let live = api.get_opt(&env.namespace).await?;
    let created = live.is_none();
    let (origin, event) = match holder(live.as_ref(), tenant) {
        // Creating what the tenant never had is reported by its status; an Event per new object
        // would double the writes of a first converge. Recreating what someone deleted is news.
        Holder::Nobody => {
            let event = super::status::had_environment(tenant, &env.name)
                .then(|| (event::NAMESPACE_RESTORED, format!("recreated namespace {name}, which was deleted")));
            (labels::ORIGIN_CREATED.to_owned(), event)
        }
        Holder::Us { origin } => {
            let event = cached
                .is_none()
                .then(|| (event::NAMESPACE_RESTORED, format!("restored the labels of namespace {name}")));
            (origin, event)
        }
        Holder::Unlabelled | Holder::Stale
            if tenant.spec.adopt_existing_namespaces == Some(true)
                && live.as_ref().is_some_and(|ns| consents(ns, tenant)) =>
        {
            (
                labels::ORIGIN_ADOPTED.to_owned(),
                Some((event::NAMESPACE_ADOPTED, format!("adopted existing namespace {name}"))),
            )
        }
        Holder::Unlabelled | Holder::Stale => {
            let tenant_name = tenant.name_any();
            let message = if tenant.spec.adopt_existing_namespaces == Some(true) {
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
            ctx.event(tenant, Some(reference(name)), EventType::Warning, reason::NAMESPACE_CONFLICT, &message).await;
            return Ok((NamespaceState::Conflict(message), false));
        }
        Holder::Tenant(holder) => {
            let message = format!("namespace {name} belongs to MLTenant {holder}");
            ctx.event(tenant, Some(reference(name)), EventType::Warning, reason::NAMESPACE_CONFLICT, &message).await;
            return Ok((NamespaceState::Conflict(message), false));
        }
        Holder::Terminating => {
            let message = format!("namespace {name} is terminating; it is recreated once gone");
            return Ok((NamespaceState::Terminating(message), false));
        }
    };
    apply::apply(&api, name, &desired(tenant, env, &origin)).await?;
    if let Some((reason, message)) = event {
        ctx.event(tenant, Some(reference(name)), EventType::Normal, reason, &message).await;
    }
    Ok((NamespaceState::Ready, created))
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

/// Let go of `ns` according to `policy`: under `Delete` a namespace this tenant created is
/// deleted, anything else is released (our labels and ownerReference removed, annotated).
/// Returns whether the namespace is (still) being deleted.
pub async fn remove(tenant: &MLTenant, ns: &Namespace, policy: DeletionPolicy, ctx: &Context) -> kube::Result<bool> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let name = ns.name_any();
    let created = created_by(ns, tenant);
    if policy == DeletionPolicy::Delete && created {
        if ns.metadata.deletion_timestamp.is_none() {
            api.delete(&name, &DeleteParams::background()).await?;
            ctx.event(
                tenant,
                Some(reference(&name)),
                EventType::Normal,
                event::NAMESPACE_DELETED,
                &format!("deleted namespace {name}"),
            )
            .await;
        }
        return Ok(true);
    }
    apply::apply(&api, &name, &released(&name, &tenant.name_any())).await?;
    ctx.event(
        tenant,
        Some(reference(&name)),
        EventType::Normal,
        event::NAMESPACE_RELEASED,
        &format!("released namespace {name} (kept, no longer managed)"),
    )
    .await;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EnvironmentSpec, MLTenantSpec};

    fn tenant() -> MLTenant {
        let mut t = MLTenant::new(
            "fin",
            MLTenantSpec {
                environments: vec![EnvironmentSpec { name: "dev".into(), namespace: None, labels: None }],
                secrets: None,
                secret_readers: None,
                deletion_policy: None,
                adopt_existing_namespaces: None,
            },
        );
        t.metadata.uid = Some("uid-fin".into());
        t
    }

    fn ns(labels: &[(&str, &str)], owner: Option<&MLTenant>) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some("fin-dev".into());
        ns.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        ns.metadata.owner_references = owner.map(|t| vec![owner_reference(t)]);
        ns
    }

    #[test]
    fn holders() {
        let t = tenant();
        assert_eq!(holder(None, &t), Holder::Nobody);
        assert_eq!(holder(Some(&ns(&[], None)), &t), Holder::Unlabelled);
        assert_eq!(holder(Some(&ns(&[(labels::TENANT, "other")], None)), &t), Holder::Tenant("other".into()));
        assert_eq!(holder(Some(&ns(&[(labels::TENANT, "fin")], None)), &t), Holder::Stale, "our name, not our uid");
        let mut labelled = ns(&[(labels::TENANT, "fin")], None);
        labelled.metadata.annotations = Some([(labels::TENANT_UID.to_string(), "uid-fin".to_string())].into());
        assert_eq!(holder(Some(&labelled), &t), Holder::Us { origin: "adopted".into() });
        labelled.metadata.annotations = Some([(labels::TENANT_UID.to_string(), "uid-earlier".to_string())].into());
        assert_eq!(holder(Some(&labelled), &t), Holder::Stale, "an earlier MLTenant of the same name");
        let mut other = ns(&[(labels::TENANT, "other")], Some(&t));
        other.metadata.annotations = Some([(labels::TENANT_UID.to_string(), "uid-fin".to_string())].into());
        assert_eq!(holder(Some(&other), &t), Holder::Tenant("other".into()), "another tenant's label wins");
        // Labels stripped by hand: our ownerReference or tenant-uid annotation still proves it is ours.
        assert_eq!(holder(Some(&ns(&[], Some(&t))), &t), Holder::Us { origin: "adopted".into() });
        let mut stripped = ns(&[], None);
        stripped.metadata.annotations = Some([(labels::TENANT_UID.to_string(), "uid-fin".to_string())].into());
        assert_eq!(holder(Some(&stripped), &t), Holder::Us { origin: "adopted".into() });
        let mut terminating = ns(&[(labels::TENANT, "fin")], None);
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
        assert_eq!(holder(Some(&terminating), &t), Holder::Terminating);
    }

    #[test]
    fn desired_namespace_carries_labels_and_origin() {
        let t = tenant();
        let env = &super::super::environments::plan(&t).unwrap()[0];
        let ns = desired(&t, env, labels::ORIGIN_CREATED);
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
        let env = super::super::environments::plan(&t).unwrap().remove(0);
        assert_eq!(desired(&t, &env, labels::ORIGIN_CREATED).metadata.owner_references, None, "Retain");
        t.spec.deletion_policy = Some(DeletionPolicy::Delete);
        assert_eq!(desired(&t, &env, labels::ORIGIN_ADOPTED).metadata.owner_references, None, "adopted");
        let owned = desired(&t, &env, labels::ORIGIN_CREATED).metadata.owner_references.unwrap();
        let owner = &owned[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("MLTenant", "uid-fin", Some(true)));
    }
}
