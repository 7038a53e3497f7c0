//! Writing a tenant's status, only when it changed: the whole status after a reconcile
//! (`status::build`), or the last one with a new inventory before creates are sent
//! (`inventory::intend`).

use std::sync::{Mutex, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Resource, ResourceExt};

use crate::api::{MLTenant, MLTenantStatus, OwnedObject};
use crate::reconcile::apply;
use crate::reconcile::context::Context;
use crate::reconcile::guard::Guarded;

/// The resourceVersion of the tenant a reconcile decides on, then of its own last status write:
/// every status write is made only onto that version, so a status decided on an older copy (a
/// reconcile of a replica frozen while it led, and woken after another took over) is refused
/// instead of overwriting the inventory and conditions written since.
#[derive(Debug)]
pub struct Version(Mutex<Option<String>>);

impl Version {
    pub fn new(version: Option<String>) -> Self {
        Version(Mutex::new(version))
    }

    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, version: Option<String>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = version;
    }
}

/// Write `status` through `/status`, unless it is what the object already has.
///
/// Also not when this replica wrote the same status already and the cache has not caught up:
/// the writes of a reconcile trigger the next one (through the children's watches) before the
/// tenant's own watch delivers the new status, and that reconcile must not write it again.
pub async fn write(tenant: &MLTenant, status: MLTenantStatus, version: &Version, ctx: &Context) -> kube::Result<()> {
    if tenant.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let uid = tenant.uid().unwrap_or_default();
    let fingerprint = fingerprint(&status);
    if ctx.written_status(&uid) == Some(fingerprint) {
        return Ok(());
    }
    let api = Api::<Guarded<MLTenant>>::all(ctx.client.clone());
    let written = apply::apply_status(&api, &tenant.name_any(), version.get().as_deref(), &status).await?;
    version.set(written.meta().resource_version.clone());
    ctx.wrote_status(uid, fingerprint);
    Ok(())
}

/// What a status says, without the transition times (a stale copy of the tenant merges its
/// conditions with no previous ones, so its times are new even when nothing changed).
fn fingerprint(status: &MLTenantStatus) -> [u8; 32] {
    let mut timeless = status.clone();
    for condition in &mut timeless.conditions {
        condition.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH);
    }
    let json = serde_json::to_vec(&timeless).expect("a status always serializes");
    crate::text::sha256(&[&json])
}

/// Write the tenant's last status with `owned` in place of its record: what the operator is
/// about to create is on record before the creates are sent.
pub async fn write_owned(
    tenant: &MLTenant,
    owned: Vec<OwnedObject>,
    version: &Version,
    ctx: &Context,
) -> kube::Result<()> {
    let mut status = tenant.status.clone().unwrap_or_default();
    status.owned = Some(owned);
    write(tenant, status, version, ctx).await
}
