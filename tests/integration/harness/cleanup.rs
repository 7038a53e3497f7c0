//! Telling the operator's cleanup from the garbage collector's.
//!
//! Distributed Secrets, reader Roles and RoleBindings, and `Delete`-policy namespaces carry an
//! ownerReference to their tenant, so once the tenant is gone the garbage collector deletes
//! them as well: a test that only waits for them to go passes with the operator's cleanup code
//! removed. A test finalizer holds the tenant while it is deleted: an owner that still exists
//! protects its dependents from the collector (background deletion), so whatever went while it
//! is held went by the operator's hand. For what must survive a deletion, a marker namespace
//! owned by the tenant shows when the collector has acted on the tenant's dependents.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, Client, Resource as _, ResourceExt};
use mltenant_operator::api::MLTenant;
use mltenant_operator::api::labels;

use super::{TIMEOUT, delete_tenant, edit, events_for, get_namespace, wait_for, wait_tenant_gone};

/// A finalizer of the tests' own, never the operator's.
pub const HOLD: &str = "test.mltenant.io/hold";

/// Delete tenant `name` while [`HOLD`] keeps it, and wait until the operator has finished its
/// cleanup (its `mltenant.io/cleanup` finalizer removed). The tenant still exists afterwards,
/// so nothing the garbage collector does has happened yet; [`release`] lets it go.
pub async fn delete_held(client: &Client, name: &str) {
    let api = Api::<MLTenant>::all(client.clone());
    edit(&api, name, |t: &mut MLTenant| t.finalizers_mut().push(HOLD.to_owned())).await;
    delete_tenant(client, name).await;
    wait_for(&format!("the operator to finish cleaning up MLTenant {name}"), TIMEOUT, || async {
        let t = api.get_opt(name).await.unwrap().expect("the held tenant exists");
        let cleaned = t.metadata.deletion_timestamp.is_some() && !t.finalizers().iter().any(|f| f == labels::FINALIZER);
        cleaned.then_some(())
    })
    .await;
}

/// Drop [`HOLD`] from a tenant [`delete_held`] deleted, and wait until it is gone.
pub async fn release(client: &Client, name: &str) {
    let api = Api::<MLTenant>::all(client.clone());
    edit(&api, name, |t: &mut MLTenant| t.finalizers_mut().retain(|f| f != HOLD)).await;
    wait_tenant_gone(client, name).await;
}

/// A namespace owned by `tenant` exactly as a `Delete`-policy namespace is (controller,
/// blockOwnerDeletion), but unknown to the operator (no labels, no environment of that name).
/// The garbage collector deletes it when it acts on the tenant's dependents; see
/// [`wait_collected`].
pub async fn gc_marker(client: &Client, tenant: &MLTenant) -> String {
    let name = format!("{}-gc-marker", tenant.name_any());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    ns.metadata.owner_references = Some(vec![tenant.controller_owner_ref(&()).expect("a stored tenant")]);
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create the marker");
    name
}

/// Wait until the garbage collector has deleted `marker` (it is terminating or gone): it has
/// then processed the owner's deletion, and any namespace still carrying an ownerReference to
/// that owner would have been deleted in the same pass (same owner, same resource, same
/// collector).
pub async fn wait_collected(client: &Client, marker: &str) {
    wait_for(&format!("the garbage collector to delete {marker}"), TIMEOUT, || async {
        get_namespace(client, marker).await.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()).then_some(())
    })
    .await;
}

/// The objects (`namespace/name`, or `name` for cluster-scoped ones) the Events with `reason`
/// on tenant `tenant` are about: what the operator says it did.
pub async fn event_subjects(client: &Client, tenant: &str, reason: &str) -> BTreeSet<String> {
    events_for(client, tenant, reason)
        .await
        .into_iter()
        .filter_map(|e| {
            let related = e.related?;
            let name = related.name?;
            Some(related.namespace.map_or(name.clone(), |ns| format!("{ns}/{name}")))
        })
        .collect()
}

/// [`event_subjects`] once it holds every one of `expected`: the operator publishes an Event
/// after the change it reports, so a test that has seen the change waits for the Event too.
pub async fn wait_event_subjects(client: &Client, tenant: &str, reason: &str, expected: &[&str]) -> BTreeSet<String> {
    wait_for(&format!("{reason} Events about {expected:?}"), TIMEOUT, || async {
        let subjects = event_subjects(client, tenant, reason).await;
        expected.iter().all(|e| subjects.contains(*e)).then_some(subjects)
    })
    .await
}
