//! Scoped read access to the distributed Secrets: for each `secretReaders` entry and each ready
//! environment, a Role granting `get` on exactly the granted Secrets (by `resourceNames`) and a
//! RoleBinding to the reader's ServiceAccount. Nothing cluster-wide, no `list` or `watch`.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Resource, ResourceExt};

use super::environments::Environment;
use super::namespaces::owner_reference;
use super::ownership::{self, Claim};
use super::secrets::Wanted;
use crate::api::labels;
use crate::api::{MLTenant, SecretReader};
use crate::reconcile::index::Cached;
use crate::reconcile::rejected::Rejected;
use crate::reconcile::{Context, apply};

/// The Role and RoleBinding for one reader in one namespace, named after the reader.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub role: Role,
    pub binding: RoleBinding,
}

/// `mltenant-reader-<sa namespace>-<sa name>`, shortened with a hash past the name limit.
pub fn grant_name(reader: &SecretReader) -> String {
    let name = format!("mltenant-reader-{}-{}", reader.service_account.namespace, reader.service_account.name);
    crate::text::fit_name(&name, 253)
}

/// The grants `tenant` wants in `env`, given the Secrets of ours that exist there (`present`:
/// written and owned by the operator for this tenant; a wanted Secret whose bundle never opened
/// is not among them). A reader with no granted Secret in this environment gets nothing: a Role
/// with empty `resourceNames` would grant every Secret.
pub fn desired(tenant: &MLTenant, env: &Environment, present: &[&Wanted]) -> Vec<Grant> {
    let here: BTreeSet<&str> =
        present.iter().filter(|w| w.environment == env.name).map(|w| w.secret.as_str()).collect();
    let mut grants = Vec::new();
    for reader in tenant.spec.secret_readers.iter().flatten() {
        let names: Vec<String> = match &reader.secrets {
            Some(listed) => listed.iter().filter(|s| here.contains(s.as_str())).cloned().collect(),
            None => here.iter().map(|s| s.to_string()).collect(),
        };
        if names.is_empty() {
            continue;
        }
        let metadata = ObjectMeta {
            name: Some(grant_name(reader)),
            namespace: Some(env.namespace.clone()),
            labels: Some(labels::managed(&tenant.name_any(), &env.name)),
            owner_references: Some(vec![owner_reference(tenant)]),
            ..Default::default()
        };
        let role = Role {
            metadata: metadata.clone(),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["secrets".into()]),
                resource_names: Some(names),
                verbs: vec!["get".into()],
                ..Default::default()
            }]),
        };
        let binding = RoleBinding {
            metadata,
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: grant_name(reader),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: reader.service_account.name.clone(),
                namespace: Some(reader.service_account.namespace.clone()),
                ..Default::default()
            }]),
        };
        grants.push(Grant { role: apply::stamped(role), binding: apply::stamped(binding) });
    }
    grants
}

/// What `sync` did: how many grants exist, the ones refused because the name is taken, and the
/// requests the API server refused (grants or revocations).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Granted {
    pub grants: usize,
    pub conflicts: Vec<String>,
    pub rejected: Vec<Rejected>,
}

/// Apply every wanted grant and delete the ones no longer wanted. A Role or RoleBinding of the
/// same name that is not ours is never taken over: that grant is reported as a conflict.
/// `fresh`: the namespaces this reconcile created (see `ownership::live`).
pub async fn sync(
    tenant: &MLTenant,
    environments: &[&Environment],
    present: &[&Wanted],
    fresh: &BTreeSet<String>,
    ctx: &Context,
) -> Granted {
    let grants: Vec<Grant> = environments.iter().flat_map(|env| desired(tenant, env, present)).collect();
    let mut granted = Granted::default();
    let mut keep = BTreeSet::new();
    for grant in &grants {
        let key = (grant.role.namespace().unwrap_or_default(), grant.role.name_any());
        keep.insert(key.clone());
        match sync_one(tenant, grant, fresh.contains(&key.0), ctx).await {
            Ok(Claim::Foreign(why)) => {
                granted.conflicts.push(format!("Role/RoleBinding {}/{} already exists and {why}", key.0, key.1));
            }
            Ok(_) => granted.grants += 1,
            Err(error) => {
                let rejected = Rejected::new("Role", format!("{}/{}", key.0, key.1), &error);
                ctx.rejected(tenant, &rejected).await;
                granted.rejected.push(rejected);
            }
        }
    }
    granted.rejected.extend(revoke_except(tenant, &keep, ctx).await);
    granted
}

/// Apply one grant unless its Role or RoleBinding name is taken (then that claim is returned).
async fn sync_one(tenant: &MLTenant, grant: &Grant, fresh: bool, ctx: &Context) -> kube::Result<Claim> {
    let namespace = grant.role.namespace().unwrap_or_default();
    let name = grant.role.name_any();
    let live_role = ownership::live(ctx, &ctx.roles.store, &namespace, &name, fresh).await?;
    let live_binding = ownership::live(ctx, &ctx.role_bindings.store, &namespace, &name, fresh).await?;
    let claims = [live_role.as_ref().map(|r| &r.metadata), live_binding.as_ref().map(|b| &b.metadata)]
        .map(|meta| meta.map_or(Claim::Absent, |m| ownership::claim(m, tenant)));
    if let Some(foreign) = claims.iter().find(|c| matches!(c, Claim::Foreign(_))) {
        return Ok(foreign.clone());
    }
    let [role_ours, binding_ours] = claims.map(|c| c == Claim::Ours);
    if live_role.as_deref().is_none_or(|live| {
        live.rules != grant.role.rules || apply::metadata_differs(&live.metadata, &grant.role.metadata)
    }) {
        let api = Api::<Role>::namespaced(ctx.client.clone(), &namespace);
        ownership::apply(&api, &name, &grant.role, role_ours).await?;
    }
    let binding_differs = |live: &RoleBinding| {
        live.subjects != grant.binding.subjects
            || live.role_ref != grant.binding.role_ref
            || apply::metadata_differs(&live.metadata, &grant.binding.metadata)
    };
    if live_binding.as_deref().is_none_or(binding_differs) {
        let api = Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace);
        if let Some(live) = live_binding.as_deref().filter(|live| live.role_ref != grant.binding.role_ref) {
            // roleRef is immutable.
            ownership::delete(ctx, live).await?;
        }
        ownership::apply(&api, &name, &grant.binding, binding_ours).await?;
    }
    Ok(Claim::Ours)
}

/// Delete the tenant's Roles and RoleBindings except `keep` (namespace, name): only those that
/// are ours, never in a protected namespace. Returns the deletions the API server refused.
pub async fn revoke_except(tenant: &MLTenant, keep: &BTreeSet<(String, String)>, ctx: &Context) -> Vec<Rejected> {
    let mut rejected = delete_unwanted(tenant, "RoleBinding", &ctx.role_bindings, keep, ctx).await;
    rejected.extend(delete_unwanted(tenant, "Role", &ctx.roles, keep, ctx).await);
    rejected
}

async fn delete_unwanted<K>(
    tenant: &MLTenant,
    kind: &'static str,
    cached: &Cached<K>,
    keep: &BTreeSet<(String, String)>,
    ctx: &Context,
) -> Vec<Rejected>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut refused = Vec::new();
    for obj in cached.of(&tenant.name_any()) {
        let key = (obj.namespace().unwrap_or_default(), obj.name_any());
        let ours = ownership::claim(obj.meta(), tenant) == Claim::Ours && !ctx.config.protected.contains(&key.0);
        if ours
            && !keep.contains(&key)
            && let Err(error) = ownership::delete(ctx, &*obj).await
        {
            let rejected = Rejected::new(kind, format!("{}/{}", key.0, key.1), &error);
            ctx.rejected(tenant, &rejected).await;
            refused.push(rejected);
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EnvironmentSpec, MLTenantSpec, SecretSpec, ServiceAccountRef};

    fn tenant(readers: Vec<SecretReader>) -> MLTenant {
        let mut t = MLTenant::new(
            "fin",
            MLTenantSpec {
                environments: vec![EnvironmentSpec { name: "dev".into(), namespace: None, labels: None }],
                secrets: Some(vec![SecretSpec {
                    name: "ml-platform".into(),
                    bundle: "b".into(),
                    environment_bundles: None,
                    environments: None,
                }]),
                secret_readers: Some(readers),
                deletion_policy: None,
                adopt_existing_namespaces: None,
            },
        );
        t.metadata.uid = Some("uid".into());
        t
    }

    fn reader(secrets: Option<Vec<&str>>) -> SecretReader {
        SecretReader {
            service_account: ServiceAccountRef { namespace: "argowf".into(), name: "argo-workflow".into() },
            secrets: secrets.map(|s| s.into_iter().map(Into::into).collect()),
        }
    }

    fn wanted(secret: &str) -> Wanted {
        Wanted { environment: "dev".into(), namespace: "fin-dev".into(), secret: secret.into(), bundle: "b".into() }
    }

    #[test]
    fn get_only_on_the_granted_secrets() {
        let t = tenant(vec![reader(None)]);
        let env = &super::super::environments::plan(&t).unwrap()[0];
        let grants = desired(&t, env, &[&wanted("ml-platform"), &wanted("ghcr")]);
        assert_eq!(grants.len(), 1);
        let rule = &grants[0].role.rules.as_ref().unwrap()[0];
        assert_eq!(rule.verbs, vec!["get"]);
        assert_eq!(rule.resources.as_deref(), Some(&["secrets".to_string()][..]));
        assert_eq!(rule.resource_names.as_deref(), Some(&["ghcr".to_string(), "ml-platform".to_string()][..]));
        let subject = &grants[0].binding.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (subject.kind.as_str(), subject.namespace.as_deref(), subject.name.as_str()),
            ("ServiceAccount", Some("argowf"), "argo-workflow")
        );
        assert_eq!(grants[0].binding.role_ref.name, "mltenant-reader-argowf-argo-workflow");
    }

    #[test]
    fn no_role_without_a_granted_secret_here() {
        let t = tenant(vec![reader(Some(vec!["ghcr"]))]);
        let env = &super::super::environments::plan(&t).unwrap()[0];
        assert!(desired(&t, env, &[&wanted("ml-platform")]).is_empty(), "empty resourceNames would grant every Secret");
        assert!(desired(&t, env, &[]).is_empty(), "nothing written, nothing granted");
    }

    #[test]
    fn long_names_are_shortened() {
        let mut r = reader(None);
        r.service_account.name = "x".repeat(253);
        assert!(grant_name(&r).len() <= 253);
    }

    proptest::proptest! {
        #[test]
        fn grant_names_never_panic_and_fit(namespace in ".{0,70}", name in ".{0,300}") {
            let r = SecretReader { service_account: ServiceAccountRef { namespace, name }, secrets: None };
            proptest::prop_assert!(grant_name(&r).len() <= 253);
        }
    }
}
