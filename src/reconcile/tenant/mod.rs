//! The MLTenant controller: validate -> plan -> apply -> status, behind the cleanup finalizer.

pub mod access;
pub mod inventory;
pub mod isolation;
mod live;
pub mod namespaces;
pub mod ownership;
mod publish;
mod reads;
pub mod secrets;
pub mod status;
mod undone;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::api::conditions::reason;
use crate::api::environments::{self, Environment};
use crate::api::labels::{self, FIELD_MANAGER};
use crate::api::{MLTenant, OwnedKind};
use crate::reconcile::context::Context;
use crate::reconcile::error::{Error, Result};
use crate::reconcile::guard::Guarded;
use inventory::{Key, Records};
use namespaces::NamespaceState;
use undone::Undone;

/// How soon to look again while something is in flight (a namespace terminating).
const PENDING_RECHECK: Duration = Duration::from_secs(5);

#[tracing::instrument(skip_all, fields(tenant = %tenant.name_any()))]
pub async fn reconcile(tenant: Arc<MLTenant>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.caches_synced() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    // A reconcile that panics, on demand, for the tests of that path (feature `failpoints`).
    fail::fail_point!("tenant-reconcile");
    if tenant.metadata.deletion_timestamp.is_some() { cleanup(&tenant, &ctx).await } else { apply(&tenant, &ctx).await }
}

async fn apply(tenant: &MLTenant, ctx: &Context) -> Result<Action> {
    let version =
        set_finalizer(tenant, ctx, true).await.map_err(Error::AddFinalizer)?.or_else(|| tenant.resource_version());
    let now = Time(jiff::Timestamp::now());
    let records = Records::new(inventory::load(tenant, ctx).await.map_err(Error::ReadRecord)?, version);
    let planned = match environments::plan(tenant).and_then(|planned| tenant.spec.check_readers().map(|()| planned)) {
        Ok(planned) => planned,
        Err(message) => {
            ctx.event(tenant, None, kube::runtime::events::EventType::Warning, reason::INVALID_SPEC, &message).await;
            let observed = status::invalid(&message);
            let status = status::build(tenant, &observed, &records.snapshot(), &now);
            publish::write(tenant, status, &records.version, ctx).await.map_err(Error::WriteStatus)?;
            // Nothing to retry until the spec changes, which triggers a reconcile by itself.
            return Ok(Action::await_change());
        }
    };

    // What environments new to the tenant will get goes on record in one write before any of
    // it is created (each step puts on record what else it creates, see `inventory`).
    inventory::intend(tenant, &records, predicted(tenant, &planned, &records.snapshot()), ctx)
        .await
        .map_err(Error::RecordIntent)?;
    // The RBAC of its namespaces matters from now on, before any of them is created: one
    // created afterwards is then known to hold nothing the RBAC watches have not seen.
    let matter: Vec<String> = crate::reconcile::rbac::namespaces_of(tenant).collect();
    ctx.rbac.need(matter.iter().map(String::as_str));

    // Each step goes on past a child the API server refuses: that child is reported (status,
    // Event, metric) and the tenant retried with backoff once its status is written. Within a
    // step the writes are independent, so they are sent together: a tenant then waits for
    // one round trip per step, not one per object.
    let ensured = join_all(planned.iter().map(|env| namespaces::ensure_reported(tenant, env, &records, ctx))).await;
    let mut namespace_states: Vec<(Environment, NamespaceState)> = Vec::with_capacity(planned.len());
    let mut fresh = BTreeSet::new();
    let mut kept = Vec::new();
    for (env, ensured) in planned.into_iter().zip(ensured) {
        if ensured.created {
            ctx.rbac.created(&env.namespace);
            fresh.insert(env.namespace.clone());
        }
        kept.extend(ensured.kept);
        namespace_states.push((env, ensured.state));
    }

    // Environments removed from spec: apply the deletion policy to their namespaces.
    let wanted_namespaces: Vec<&str> = namespace_states.iter().map(|(e, _)| e.namespace.as_str()).collect();
    let policy = tenant.spec.deletion_policy.unwrap_or_default();
    let mut unreleased = Vec::new();
    let removed = namespaces::recorded_except(&records.snapshot(), Some(&wanted_namespaces), &ctx.config.protected);
    for (key, entry) in removed {
        if let Err(rejected) = namespaces::remove_reported(tenant, &key, &entry, policy, &records, ctx).await {
            unreleased.push(rejected);
        }
    }

    let ready: Vec<&Environment> =
        namespace_states.iter().filter(|(_, s)| *s == NamespaceState::Ready).map(|(e, _)| e).collect();
    let distribution = secrets::sync(tenant, &ready, &fresh, &records, ctx).await;
    let present: Vec<&secrets::WantedSecret> =
        distribution.outcomes.iter().filter(|o| o.present).map(|o| &o.wanted).collect();
    let granted = access::sync(tenant, &ready, &present, &fresh, &records, ctx).await;
    let places = isolation::places(tenant, &ready, &present);
    let isolated = isolation::assess(tenant, &places, ctx).await;
    let readers = ctx.usage.as_ref().map(|usage| reads::record(tenant, &places, usage, now.0)).unwrap_or_default();

    // What waits on a change the watches do not see is looked at again soon (a protected
    // namespace needs a spec change); what the API server refused fails the reconcile below.
    let undone: [&dyn Undone; 5] = [&namespace_states, &unreleased, &distribution, &granted, &isolated];
    let pending = undone[..].pending();
    // Failure series of bundles the tenant no longer names go now, not only at the next scrape.
    ctx.metrics.forget_failures(&tenant.name_any(), Some(&tenant.spec.referenced_bundles()));
    let inventory = records.finish();
    ctx.keep_inventory(tenant.uid().unwrap_or_default(), inventory.to_status());
    let mut observed = status::observe(&namespace_states, &kept, &unreleased, &distribution, &granted, now.0);
    observed.push(isolated.observed.clone());
    let worked = status::Worked { namespaces: &namespace_states, distribution: &distribution, readers: &readers };
    let status = status::build_worked(tenant, &observed, worked, &inventory, &now);
    isolation::count(tenant, &isolated, ctx);
    publish::write(tenant, status, &records.version, ctx).await.map_err(Error::WriteStatus)?;
    isolation::report(tenant, &isolated, ctx).await;

    undone::partial(&undone[..])?;
    Ok(Action::requeue(if pending { PENDING_RECHECK } else { ctx.config.resync }))
}

/// What a reconcile will create for environments the tenant has not had ready (all of them, for
/// a new tenant): their namespaces, wanted Secrets and reader grants that are not on record. An
/// environment in conflict or terminating is left out: nothing is created there until that
/// changes, and putting it on record at every look would be a write each time.
fn predicted(tenant: &MLTenant, planned: &[Environment], inventory: &inventory::Inventory) -> Vec<(Key, bool)> {
    let settled = |env: &Environment| {
        let last = tenant.status.iter().flat_map(|s| &s.environments).find(|e| e.name == env.name);
        last.is_some_and(|e| {
            e.ready
                || [reason::NAMESPACE_CONFLICT, reason::PROTECTED_NAMESPACE, reason::TERMINATING]
                    .contains(&e.reason.as_deref().unwrap_or_default())
        })
    };
    let mut keys = Vec::new();
    for env in planned.iter().filter(|env| !settled(env)) {
        keys.push(Key::namespace(&env.namespace));
        keys.extend(
            secrets::wanted(tenant, env).iter().map(|w| Key::child(OwnedKind::Secret, &w.namespace, &w.secret)),
        );
        for reader in tenant.spec.secret_readers.iter().flatten() {
            for kind in [OwnedKind::Role, OwnedKind::RoleBinding] {
                keys.push(Key::child(kind, &env.namespace, &reader.grant_name()));
            }
        }
    }
    // A namespace that exists unlabelled may turn out to be adopted, not created: that one is
    // put on record again, as adopted, when its adoption is decided.
    keys.into_iter().filter(|key| inventory.get(key).is_none()).map(|key| (key, false)).collect()
}

/// Revoke everything on the tenant's record and apply the deletion policy to its namespaces,
/// then let the object go: whatever the deletion's propagation, since the record does not
/// depend on ownerReferences (an orphaning delete strips them before this runs). Tolerates
/// `apply` never having run. The finalizer stays until every revocation succeeded.
async fn cleanup(tenant: &MLTenant, ctx: &Context) -> Result<Action> {
    if !has_finalizer(tenant) {
        return Ok(Action::await_change());
    }
    let records =
        Records::new(inventory::load(tenant, ctx).await.map_err(Error::ReadRecord)?, tenant.resource_version());
    // Credentials and the access to them are revoked whatever the deletion policy.
    let nothing = BTreeSet::new();
    let mut refused = access::revoke_except(tenant, &nothing, &records, ctx).await;
    refused.extend(secrets::revoke_except(tenant, &nothing, &records, ctx).await);
    let policy = tenant.spec.deletion_policy.unwrap_or_default();
    let mut pending = Vec::new();
    for (key, entry) in namespaces::recorded_except(&records.snapshot(), None, &ctx.config.protected) {
        match namespaces::remove_reported(tenant, &key, &entry, policy, &records, ctx).await {
            Ok(true) => pending.push(key.name),
            Ok(false) => {}
            Err(rejected) => refused.push(rejected),
        }
    }
    let inventory = records.snapshot();
    ctx.keep_inventory(tenant.uid().unwrap_or_default(), inventory.to_status());
    undone::partial(&refused)?;
    if !pending.is_empty() {
        let now = Time(jiff::Timestamp::now());
        let observed = status::deleting(&pending);
        let status = status::build(tenant, &observed, &inventory, &now);
        publish::write(tenant, status, &records.version, ctx).await.map_err(Error::WriteStatus)?;
        return Ok(Action::requeue(PENDING_RECHECK));
    }
    set_finalizer(tenant, ctx, false).await.map_err(Error::RemoveFinalizer)?;
    ctx.forget(&tenant.uid().unwrap_or_default());
    ctx.metrics.forget_failures(&tenant.name_any(), None);
    ctx.metrics.forget_exposure(&tenant.name_any());
    if let Some(usage) = &ctx.usage {
        usage.forget(&tenant.name_any());
    }
    Ok(Action::await_change())
}

/// Add or drop our finalizer with server-side apply: `finalizers` is a set, so other
/// controllers' finalizers are untouched and we own only our entry. The tenant's version after
/// the write, when there was one.
///
/// Dropping it is decided on a fresh read, not the cache: the cached tenant may be a stale
/// copy of one already gone. Adding needs no read: an apply to a tenant deleted meanwhile
/// cannot create it (the patch has no `spec`, which the schema requires), it only fails.
async fn set_finalizer(tenant: &MLTenant, ctx: &Context, present: bool) -> kube::Result<Option<String>> {
    if has_finalizer(tenant) == present {
        return Ok(None);
    }
    let api: Api<Guarded<MLTenant>> = Api::all(ctx.client.clone());
    if !present {
        match api.get_opt(&tenant.name_any()).await? {
            Some(live) if live.uid() == tenant.uid() && live.finalizers().iter().any(|f| f == labels::FINALIZER) => {}
            _ => return Ok(None),
        }
    }
    let finalizers: Vec<&str> = if present { vec![labels::FINALIZER] } else { vec![] };
    let patch = json!({
        "apiVersion": MLTenant::api_version(&()),
        "kind": MLTenant::kind(&()),
        "metadata": {"name": tenant.name_any(), "finalizers": finalizers},
    });
    let written = api
        .patch(&tenant.name_any(), &kube::api::PatchParams::apply(FIELD_MANAGER), &kube::api::Patch::Apply(patch))
        .await?;
    Ok(written.resource_version())
}

fn has_finalizer(tenant: &MLTenant) -> bool {
    tenant.finalizers().iter().any(|f| f == labels::FINALIZER)
}
