//! Reports on MLTenants and SealedBundles the operator cannot read (see `invalid`): a Warning
//! Event and a condition on the object, naming the field, never its value.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource};
use serde_json::json;
use tokio::sync::mpsc;

use super::context::Context;
use super::guard::{Guarded, Unreadable};
use crate::api::conditions::{DECRYPTABLE, FALSE, READY, reason};
use crate::api::{MLTenant, SealedBundle};

/// Write the reports of unreadable MLTenants and SealedBundles (a Warning Event and a condition
/// on the object) until the watches end. Children (namespaces, Secrets, Roles, RoleBindings)
/// are only counted and logged: their tenant's reconcile reports what it cannot do with them.
pub async fn unreadable(mut reports: mpsc::Receiver<(&'static str, Unreadable)>, ctx: Arc<Context>) {
    while let Some((kind, unreadable)) = reports.recv().await {
        let condition = match kind {
            "MLTenant" => READY,
            // Only the bundles this installation reports on (`--bundle-selector`).
            "SealedBundle"
                if ctx.reports_on_labels(unreadable.metadata.labels.as_ref().unwrap_or(&Default::default())) =>
            {
                DECRYPTABLE
            }
            _ => continue,
        };
        let message = format!("{}; fix or replace the object", unreadable.describe(kind));
        let reference = ObjectReference {
            api_version: Some(format!("{}/v1alpha1", crate::api::GROUP)),
            kind: Some(kind.to_owned()),
            name: unreadable.metadata.name.clone(),
            uid: unreadable.metadata.uid.clone(),
            ..Default::default()
        };
        ctx.event_on(reference, None, EventType::Warning, reason::INVALID_OBJECT, &message).await;
        let status = json!({"status": {
            "observedGeneration": unreadable.metadata.generation,
            "conditions": [Condition {
                type_: condition.to_owned(),
                status: FALSE.to_owned(),
                reason: reason::INVALID_OBJECT.to_owned(),
                message: message.clone(),
                observed_generation: unreadable.metadata.generation,
                last_transition_time: Time(jiff::Timestamp::now()),
            }],
        }});
        let name = unreadable.metadata.name.clone().unwrap_or_default();
        // A merge patch of the conditions alone: whatever else the status holds (a tenant's
        // inventory) stays as it is.
        let patched = match kind {
            "MLTenant" => patch_status::<MLTenant>(&ctx, &name, status).await,
            _ => patch_status::<SealedBundle>(&ctx, &name, status).await,
        };
        if let Err(error) = patched {
            tracing::warn!(kind, name, %error, "could not report an object the operator cannot read on it");
        }
    }
}

async fn patch_status<K>(ctx: &Context, name: &str, status: serde_json::Value) -> kube::Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + super::trim::Trim
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<Guarded<K>>::all(ctx.client.clone());
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.map(|_| ())
}
