//! The tenant's status: conditions and per-environment state, written only when it changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::environments::Environment;
use super::namespaces::NamespaceState;
use crate::api::{EnvironmentStatus, MLTenant, MLTenantStatus};
use crate::labels::FIELD_MANAGER;
use crate::reconcile::conditions::{self, Observed};
use crate::reconcile::{Context, Result};

pub const READY: &str = "Ready";
pub const NAMESPACES_READY: &str = "NamespacesReady";

/// Conditions for a tenant whose environments were all worked on.
pub fn observe(outcomes: &[(Environment, NamespaceState)]) -> Vec<Observed> {
    let problem = |pick: fn(&NamespaceState) -> Option<&String>| -> Vec<&str> {
        outcomes.iter().filter_map(|(_, s)| pick(s)).map(String::as_str).collect()
    };
    let conflicts = problem(|s| if let NamespaceState::Conflict(m) = s { Some(m) } else { None });
    let terminating = problem(|s| if let NamespaceState::Terminating(m) = s { Some(m) } else { None });
    let namespaces = if !conflicts.is_empty() {
        Observed::new(NAMESPACES_READY, false, "NamespaceConflict", conflicts.join("; "))
    } else if !terminating.is_empty() {
        Observed::new(NAMESPACES_READY, false, "Terminating", terminating.join("; "))
    } else {
        let names: Vec<&str> = outcomes.iter().map(|(e, _)| e.namespace.as_str()).collect();
        Observed::new(NAMESPACES_READY, true, "Created", format!("namespaces ready: {}", names.join(", ")))
    };
    with_ready(vec![namespaces])
}

/// Conditions for a spec the operator cannot realise (nothing was written).
pub fn invalid(message: &str) -> Vec<Observed> {
    with_ready(vec![Observed::new(NAMESPACES_READY, false, "InvalidSpec", message)])
}

/// Conditions for a tenant whose deletion waits on namespaces still terminating.
pub fn deleting(pending: &[String]) -> Vec<Observed> {
    let message = format!(
        "deletionPolicy Delete: waiting for namespaces to finish terminating: {} (check their remaining finalizers with `kubectl get ns -o yaml`)",
        pending.join(", ")
    );
    with_ready(vec![Observed::new(NAMESPACES_READY, false, "Terminating", message)])
}

/// `Ready` summarises the other conditions: the first one that is not fine gives its reason.
fn with_ready(mut parts: Vec<Observed>) -> Vec<Observed> {
    let ready = match parts.iter().find(|p| !p.ok) {
        Some(bad) => Observed::new(READY, false, bad.reason.clone(), bad.message.clone()),
        None => Observed::new(READY, true, "Ready", "all environments are ready"),
    };
    parts.insert(0, ready);
    parts
}

/// The full status for `tenant` given what this reconcile observed.
pub fn build(
    tenant: &MLTenant,
    observed: &[Observed],
    outcomes: &[(Environment, NamespaceState)],
    now: &Time,
) -> MLTenantStatus {
    let previous = tenant.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let ready = outcomes.iter().filter(|(_, s)| *s == NamespaceState::Ready).count();
    MLTenantStatus {
        environments_ready: Some(format!("{ready}/{}", tenant.spec.environments.len())),
        observed_generation: tenant.metadata.generation,
        conditions: conditions::merge(previous, observed, tenant.metadata.generation, now),
        environments: outcomes
            .iter()
            .map(|(env, state)| EnvironmentStatus {
                name: env.name.clone(),
                namespace: env.namespace.clone(),
                ready: *state == NamespaceState::Ready,
                reason: match state {
                    NamespaceState::Ready => None,
                    NamespaceState::Conflict(_) => Some("NamespaceConflict".into()),
                    NamespaceState::Terminating(_) => Some("Terminating".into()),
                },
            })
            .collect(),
    }
}

/// Write `status` through `/status`, unless it is what the object already has.
pub async fn write(tenant: &MLTenant, status: MLTenantStatus, ctx: &Context) -> Result<()> {
    if tenant.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<MLTenant> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": MLTenant::api_version(&()),
        "kind": MLTenant::kind(&()),
        "status": status,
    });
    api.patch_status(&tenant.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(ns: &str) -> Environment {
        Environment { name: ns.into(), namespace: ns.into(), labels: BTreeMap::new() }
    }

    #[test]
    fn all_ready() {
        let c = observe(&[(env("a"), NamespaceState::Ready), (env("b"), NamespaceState::Ready)]);
        assert_eq!((c[0].type_, c[0].ok, c[0].reason.as_str()), (READY, true, "Ready"));
        assert_eq!((c[1].type_, c[1].ok, c[1].message.as_str()), (NAMESPACES_READY, true, "namespaces ready: a, b"));
    }

    #[test]
    fn conflict_wins_over_terminating_and_drives_ready() {
        let c = observe(&[
            (env("a"), NamespaceState::Terminating("a is terminating".into())),
            (env("b"), NamespaceState::Conflict("b belongs to MLTenant x".into())),
        ]);
        assert_eq!(
            (c[0].ok, c[0].reason.as_str(), c[0].message.as_str()),
            (false, "NamespaceConflict", "b belongs to MLTenant x")
        );
        assert_eq!(c[1].reason, "NamespaceConflict");
    }

    #[test]
    fn deletion_explains_what_it_waits_for() {
        let c = deleting(&["fin-dev".into()]);
        assert_eq!((c[0].ok, c[0].reason.as_str()), (false, "Terminating"));
        assert!(c[0].message.contains("fin-dev"));
    }
}
