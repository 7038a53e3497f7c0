//! Credential distribution: for each `spec.secrets` entry and each selected environment, open
//! the SealedBundle for that consumer and server-side apply a Secret of the bundle's type.
//! A failing bundle writes nothing (the last good Secret stays); a Secret no longer wanted is
//! deleted (credentials revoked).

use std::collections::BTreeSet;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::DeleteParams;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::environments::Environment;
use super::namespaces::owner_reference;
use crate::api::{MLTenant, SealedBundle, SecretSpec, SecretStatus};
use crate::bundle::{self, Failure};
use crate::labels;
use crate::reconcile::{Context, Result, apply};

/// One Secret the tenant wants in one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub environment: String,
    pub namespace: String,
    pub secret: String,
    pub bundle: String,
}

/// What happened to one wanted Secret.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub wanted: Wanted,
    pub result: std::result::Result<Synced, Failure>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    pub source_hash: String,
    pub expires_at: Option<Time>,
}

/// The Secrets `tenant` wants in `env`: every `spec.secrets` entry that selects it, with the
/// per-environment bundle override applied.
pub fn wanted(tenant: &MLTenant, env: &Environment) -> Vec<Wanted> {
    let selects = |s: &SecretSpec| s.environments.as_ref().is_none_or(|envs| envs.contains(&env.name));
    tenant
        .spec
        .secrets
        .iter()
        .flatten()
        .filter(|s| selects(s))
        .map(|s| Wanted {
            environment: env.name.clone(),
            namespace: env.namespace.clone(),
            secret: s.name.clone(),
            bundle: s.environment_bundles.as_ref().and_then(|m| m.get(&env.name)).unwrap_or(&s.bundle).clone(),
        })
        .collect()
}

/// The Secret as the operator applies it.
pub fn desired(tenant: &MLTenant, wanted: &Wanted, bundle: &SealedBundle, opened: &bundle::Opened) -> Secret {
    let template = bundle.spec.template.clone().unwrap_or_default();
    let mut secret_labels = template.labels.unwrap_or_default();
    secret_labels.extend(labels::managed(&tenant.name_any(), &wanted.environment));
    let mut annotations = template.annotations.unwrap_or_default();
    annotations.insert(labels::BUNDLE.to_owned(), wanted.bundle.clone());
    annotations.insert(labels::SOURCE_HASH.to_owned(), bundle::source_hash(bundle));
    if let Some(expires) = &bundle.spec.expires_at {
        annotations.insert(labels::EXPIRES_AT.to_owned(), expires.0.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(wanted.secret.clone()),
            namespace: Some(wanted.namespace.clone()),
            labels: Some(secret_labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(tenant)]),
            ..Default::default()
        },
        type_: Some(bundle.spec.type_.clone().unwrap_or_else(|| "Opaque".to_owned())),
        data: Some(opened.data.iter().map(|(k, v)| (k.clone(), ByteString(v.to_vec()))).collect()),
        ..Default::default()
    }
}

/// Whether applying `desired` would change `live`. Keys someone else added to the data are
/// tolerated (server-side apply cannot remove fields it does not own); ours must match.
pub fn differs(live: &Secret, desired: &Secret) -> bool {
    let live_data = live.data.as_ref();
    let want = desired.data.iter().flatten();
    live.type_ != desired.type_
        || !want.clone().all(|(k, v)| live_data.and_then(|d| d.get(k)) == Some(v))
        || !apply::owned_fields(&live.metadata, &["f:data"])
            .iter()
            .all(|k| desired.data.iter().flatten().any(|(d, _)| d == k))
        || apply::metadata_differs(&live.metadata, &desired.metadata)
}

/// Bring every wanted Secret of the ready environments up to date and delete the ones no
/// longer wanted.
pub async fn sync(tenant: &MLTenant, environments: &[&Environment], ctx: &Context) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for env in environments {
        for wanted in wanted(tenant, env) {
            let result = sync_one(tenant, &wanted, ctx).await?;
            outcomes.push(Outcome { wanted, result });
        }
    }
    let keep: BTreeSet<(&str, &str)> =
        outcomes.iter().map(|o| (o.wanted.namespace.as_str(), o.wanted.secret.as_str())).collect();
    for secret in distributed(tenant, ctx) {
        let namespace = secret.namespace().unwrap_or_default();
        if !keep.contains(&(namespace.as_str(), secret.name_any().as_str())) {
            delete(tenant, &secret, ctx).await?;
        }
    }
    Ok(outcomes)
}

/// The Secrets currently distributed for `tenant`, from the label-selected cache.
pub fn distributed(tenant: &MLTenant, ctx: &Context) -> Vec<std::sync::Arc<Secret>> {
    let name = tenant.name_any();
    ctx.secrets.state().into_iter().filter(|s| s.labels().get(labels::TENANT) == Some(&name)).collect()
}

/// Revoke: delete a distributed Secret.
pub async fn delete(tenant: &MLTenant, secret: &Secret, ctx: &Context) -> Result<()> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    match Api::<Secret>::namespaced(ctx.client.clone(), &namespace).delete(&name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    let note = format!("deleted Secret {namespace}/{name} (no longer wanted)");
    ctx.event(tenant, Some(reference(&namespace, &name)), EventType::Normal, "SecretRemoved", &note).await;
    Ok(())
}

async fn sync_one(tenant: &MLTenant, wanted: &Wanted, ctx: &Context) -> Result<std::result::Result<Synced, Failure>> {
    let opened = ctx
        .bundles
        .get(&ObjectRef::new(&wanted.bundle))
        .ok_or_else(|| Failure::NotFound { bundle: wanted.bundle.clone() })
        .and_then(|bundle| {
            let label = bundle::consumer_label(&bundle, &tenant.name_any(), tenant.labels(), &wanted.environment)?;
            let opened = ctx.keys.open(&bundle, &label)?;
            Ok((bundle, opened))
        });
    let (bundle, opened) = match opened {
        Ok(ok) => ok,
        Err(failure) => {
            ctx.metrics.decryption_failed(&tenant.name_any(), failure.bundle(), failure.metric_reason());
            let note = format!("Secret {}/{} not updated: {failure}", wanted.namespace, wanted.secret);
            let related = Some(reference(&wanted.namespace, &wanted.secret));
            ctx.event(tenant, related, EventType::Warning, failure.reason(), &note).await;
            return Ok(Err(failure));
        }
    };
    let desired = desired(tenant, wanted, &bundle, &opened);
    let synced = Synced { source_hash: bundle::source_hash(&bundle), expires_at: bundle.spec.expires_at.clone() };
    let live = ctx.secrets.get(&ObjectRef::new(&wanted.secret).within(&wanted.namespace));
    if live.as_deref().is_some_and(|live| !differs(live, &desired)) {
        return Ok(Ok(synced));
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &wanted.namespace);
    if live.as_deref().is_some_and(|live| live.type_ != desired.type_) {
        // A Secret's type is immutable: replace it.
        api.delete(&wanted.secret, &DeleteParams::background()).await?;
    }
    apply::apply(&api, &wanted.secret, &desired).await?;
    let verb = if live.is_some() { "updated" } else { "created" };
    let note = format!("{verb} Secret {}/{} from SealedBundle {}", wanted.namespace, wanted.secret, wanted.bundle);
    ctx.event(tenant, Some(reference(&wanted.namespace, &wanted.secret)), EventType::Normal, "SecretSynced", &note)
        .await;
    Ok(Ok(synced))
}

fn reference(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The per-environment secret status entries.
pub fn statuses(outcomes: &[Outcome], environment: &str) -> Vec<SecretStatus> {
    outcomes
        .iter()
        .filter(|o| o.wanted.environment == environment)
        .map(|o| match &o.result {
            Ok(synced) => SecretStatus {
                name: o.wanted.secret.clone(),
                bundle: o.wanted.bundle.clone(),
                synced: true,
                reason: None,
                source_hash: Some(synced.source_hash.clone()),
                expires_at: synced.expires_at.clone(),
            },
            Err(failure) => SecretStatus {
                name: o.wanted.secret.clone(),
                bundle: o.wanted.bundle.clone(),
                synced: false,
                reason: Some(failure.reason().to_owned()),
                source_hash: None,
                expires_at: None,
            },
        })
        .collect()
}

/// The bundle names `tenant` references (to map bundle changes to tenants).
pub fn referenced_bundles(tenant: &MLTenant) -> BTreeSet<&str> {
    let specs = tenant.spec.secrets.iter().flatten();
    specs
        .flat_map(|s| {
            std::iter::once(s.bundle.as_str())
                .chain(s.environment_bundles.iter().flat_map(|m| m.values().map(String::as_str)))
        })
        .collect()
}
