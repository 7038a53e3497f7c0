//! Scoped read access to the distributed Secrets: for each `secretReaders` entry and each ready
//! environment, a Role granting `get` on exactly the granted Secrets (by `resourceNames`) and a
//! RoleBinding to the reader's ServiceAccount. Nothing cluster-wide, no `list` or `watch`.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DeleteParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};

use super::environments::Environment;
use super::namespaces::owner_reference;
use super::secrets::Wanted;
use crate::api::{MLTenant, SecretReader};
use crate::labels;
use crate::reconcile::{Context, Result, apply};

/// The Role and RoleBinding for one reader in one namespace, named after the reader.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub role: Role,
    pub binding: RoleBinding,
}

/// `mltenant-reader-<sa namespace>-<sa name>`, shortened with a hash past the name limit.
pub fn grant_name(reader: &SecretReader) -> String {
    let name = format!("mltenant-reader-{}-{}", reader.service_account.namespace, reader.service_account.name);
    if name.len() <= 253 {
        return name;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    let hex: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &name[..236])
}

/// The grants `tenant` wants in `env`, given the Secrets it distributes there. A reader with no
/// granted Secret in this environment gets nothing: a Role with empty `resourceNames` would
/// grant every Secret.
pub fn desired(tenant: &MLTenant, env: &Environment, distributed: &[Wanted]) -> Vec<Grant> {
    let here: BTreeSet<&str> =
        distributed.iter().filter(|w| w.environment == env.name).map(|w| w.secret.as_str()).collect();
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
        grants.push(Grant { role, binding });
    }
    grants
}

/// Apply every wanted grant and delete the ones no longer wanted; returns how many grants exist.
pub async fn sync(
    tenant: &MLTenant,
    environments: &[&Environment],
    distributed: &[Wanted],
    ctx: &Context,
) -> Result<usize> {
    let grants: Vec<Grant> = environments.iter().flat_map(|env| desired(tenant, env, distributed)).collect();
    for grant in &grants {
        let namespace = grant.role.namespace().unwrap_or_default();
        let name = grant.role.name_any();
        let live_role = ctx.roles.get(&ObjectRef::new(&name).within(&namespace));
        if live_role.as_deref().is_none_or(|live| {
            live.rules != grant.role.rules || apply::metadata_differs(&live.metadata, &grant.role.metadata)
        }) {
            apply::apply(&Api::<Role>::namespaced(ctx.client.clone(), &namespace), &name, &grant.role).await?;
        }
        let live_binding = ctx.role_bindings.get(&ObjectRef::new(&name).within(&namespace));
        let binding_differs = |live: &RoleBinding| {
            live.subjects != grant.binding.subjects
                || live.role_ref != grant.binding.role_ref
                || apply::metadata_differs(&live.metadata, &grant.binding.metadata)
        };
        if live_binding.as_deref().is_none_or(binding_differs) {
            let api = Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace);
            if live_binding.as_deref().is_some_and(|live| live.role_ref != grant.binding.role_ref) {
                // roleRef is immutable.
                api.delete(&name, &DeleteParams::background()).await?;
            }
            apply::apply(&api, &name, &grant.binding).await?;
        }
    }
    let keep: BTreeSet<(String, String)> =
        grants.iter().map(|g| (g.role.namespace().unwrap_or_default(), g.role.name_any())).collect();
    revoke_except(tenant, &keep, ctx).await?;
    Ok(grants.len())
}

/// Delete the tenant's Roles and RoleBindings except `keep` (namespace, name).
pub async fn revoke_except(tenant: &MLTenant, keep: &BTreeSet<(String, String)>, ctx: &Context) -> Result<()> {
    delete_unwanted(tenant, &ctx.role_bindings, keep, ctx).await?;
    delete_unwanted(tenant, &ctx.roles, keep, ctx).await
}

async fn delete_unwanted<K>(
    tenant: &MLTenant,
    store: &Store<K>,
    keep: &BTreeSet<(String, String)>,
    ctx: &Context,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = tenant.name_any();
    for obj in store.state().iter().filter(|o| o.labels().get(labels::TENANT) == Some(&name)) {
        let key = (obj.namespace().unwrap_or_default(), obj.name_any());
        if keep.contains(&key) {
            continue;
        }
        match Api::<K>::namespaced(ctx.client.clone(), &key.0).delete(&key.1, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
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
        let grants = desired(&t, env, &[wanted("ml-platform"), wanted("ghcr")]);
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
        assert!(desired(&t, env, &[wanted("ml-platform")]).is_empty(), "empty resourceNames would grant every Secret");
    }

    #[test]
    fn long_names_are_shortened() {
        let mut r = reader(None);
        r.service_account.name = "x".repeat(253);
        assert!(grant_name(&r).len() <= 253);
    }
}
