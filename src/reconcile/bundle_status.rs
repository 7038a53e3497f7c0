//! The SealedBundle controller: reports whether a bundle opens for the consumer its own scope
//! names (`Decryptable`) and which sealing key opens it (`keyFingerprint`: bundles still on an
//! older key need re-sealing). Never writes spec; only `/status`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use crate::api::conditions::{DECRYPTABLE, reason};
use crate::api::{SealedBundle, SealedBundleStatus};
use crate::reconcile::apply;
use crate::reconcile::conditions::{self, Observed};
use crate::reconcile::context::Context;
use crate::reconcile::error::Result;
use crate::unseal;

#[tracing::instrument(skip_all, fields(bundle = %sealed.name_any()))]
pub async fn reconcile(sealed: Arc<SealedBundle>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.reports_on(&sealed) {
        return Ok(Action::await_change());
    }
    if !ctx.caches_synced() || ctx.keys.keys().is_empty() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let (observed, fingerprint) = match ctx.open(&sealed, unseal::declared_label(&sealed)).await? {
        Ok(opened) => {
            let count = sealed.spec.encrypted_data.len();
            let message = format!("all {count} values open with sealing key {}", opened.fingerprint);
            (Observed::new(DECRYPTABLE, true, reason::DECRYPTABLE, message), Some(opened.fingerprint))
        }
        Err(failure) => (Observed::new(DECRYPTABLE, false, failure.reason(), failure.to_string()), None),
    };
    let previous = sealed.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let generation = sealed.metadata.generation;
    let status = SealedBundleStatus {
        observed_generation: generation,
        conditions: conditions::merge(previous, &[observed], generation, &Time(jiff::Timestamp::now())),
        key_fingerprint: fingerprint,
    };
    if sealed.status.as_ref() != Some(&status) {
        apply::apply_status(&Api::<SealedBundle>::all(ctx.client.clone()), &sealed.name_any(), &status).await?;
    }
    Ok(Action::requeue(ctx.config.resync))
}
