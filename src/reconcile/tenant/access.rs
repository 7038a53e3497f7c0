//! Scoped read access to the distributed Secrets: for each `secretReaders` entry and each ready
//! environment, a Role granting `get` on exactly the granted Secrets (by `resourceNames`) and a
//! RoleBinding to the reader's ServiceAccount. Nothing cluster-wide, no `list` or `watch`.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Resource, ResourceExt};

use super::ownership::{self, Claim, Write, owner_reference};
use super::secrets::WantedSecret;
use crate::api::MLTenant;
use crate::api::environments::Environment;
use crate::api::labels;
use crate::reconcile::apply;
use crate::reconcile::context::Context;
use crate::reconcile::index::{Cached, Child};
use crate::reconcile::rejected::Rejected;

/// The Role and RoleBinding for one reader in one namespace, named after the reader.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub role: Role,
    pub binding: RoleBinding,
}

/// The grants `tenant` wants in `env`, given the Secrets of ours that exist there (`present`:
/// written and owned by the operator for this tenant; a wanted Secret whose bundle never opened
/// is not among them). A reader with no granted Secret in this environment gets nothing: a Role
/// with empty `resourceNames` would grant every Secret.
pub fn desired(tenant: &MLTenant, env: &Environment, present: &[&WantedSecret]) -> Vec<Grant> {
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
            name: Some(reader.grant_name()),
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
                name: reader.grant_name(),
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
    present: &[&WantedSecret],
    fresh: &BTreeSet<String>,
    ctx: &Context,
) -> Granted {
    let grants: Vec<Grant> = environments.iter().flat_map(|env| desired(tenant, env, present)).collect();
    // The grants are independent and sent together; within one, the Role goes first (the
    // operator may not `bind`, so a RoleBinding needs its Role to exist).
    let synced = join_all(grants.iter().map(|grant| sync_one(tenant, grant, fresh, ctx))).await;
    let mut granted = Granted::default();
    let mut keep = BTreeSet::new();
    for (grant, synced) in grants.iter().zip(synced) {
        let key = (grant.role.namespace().unwrap_or_default(), grant.role.name_any());
        keep.insert(key.clone());
        match synced {
            Ok(Claim::Foreign(why)) => {
                granted.conflicts.push(format!("Role/RoleBinding {}/{} already exists and {why}", key.0, key.1));
            }
            Ok(_) => granted.grants += 1,
            Err(rejected) => {
                ctx.rejected(tenant, &rejected).await;
                granted.rejected.push(rejected);
            }
        }
    }
    granted.rejected.extend(revoke_except(tenant, &keep, ctx).await);
    granted
}

/// Apply one grant unless its Role or RoleBinding name is taken (then that claim is returned):
/// read, [`decide`], write. A request the API server refused is returned as such, naming
/// the object it was about.
async fn sync_one(
    tenant: &MLTenant,
    grant: &Grant,
    fresh: &BTreeSet<String>,
    ctx: &Context,
) -> std::result::Result<Claim, Rejected> {
    let namespace = grant.role.namespace().unwrap_or_default();
    let name = grant.role.name_any();
    let object = format!("{namespace}/{name}");
    let rejected = |kind: &'static str| {
        let object = &object;
        move |error| Rejected::new(kind, object.clone(), &error)
    };
    let fresh = fresh.contains(&namespace);
    let live_role = ownership::live(ctx, &ctx.roles, &namespace, &name, fresh).await.map_err(rejected("Role"))?;
    let live_binding =
        ownership::live(ctx, &ctx.role_bindings, &namespace, &name, fresh).await.map_err(rejected("RoleBinding"))?;
    let (role, binding) = match decide(tenant, grant, live_role, live_binding) {
        GrantDecision::Conflict(why) => return Ok(Claim::Foreign(why)),
        GrantDecision::Apply { role, binding } => (role, binding),
    };
    if let Some(how) = role
        && let Claim::Foreign(why) = write(ctx, &namespace, &name, &grant.role, how).await.map_err(rejected("Role"))?
    {
        return Ok(Claim::Foreign(why));
    }
    if let Some(how) = binding {
        return write(ctx, &namespace, &name, &grant.binding, how).await.map_err(rejected("RoleBinding"));
    }
    Ok(Claim::Ours)
}

/// What one grant needs.
#[derive(Debug, PartialEq)]
enum GrantDecision {
    /// A Role or RoleBinding of that name is not ours (why): nothing is written.
    Conflict(&'static str),
    /// How to write the Role and the RoleBinding; `None`: already as wanted.
    Apply { role: Option<Write<Role>>, binding: Option<Write<RoleBinding>> },
}

/// Decide from the live Role and RoleBinding of the grant's name (ours or not); no IO.
fn decide(
    tenant: &MLTenant,
    grant: &Grant,
    live_role: Option<Arc<Role>>,
    live_binding: Option<Arc<RoleBinding>>,
) -> GrantDecision {
    let metas = [live_role.as_ref().map(|r| &r.metadata), live_binding.as_ref().map(|b| &b.metadata)];
    let foreign = |meta: &ObjectMeta| match ownership::claim(meta, tenant) {
        Claim::Foreign(why) => Some(why),
        Claim::Ours | Claim::Absent => None,
    };
    if let Some(why) = metas.into_iter().flatten().find_map(foreign) {
        return GrantDecision::Conflict(why);
    }
    let role = match live_role {
        None => Some(Write::Create),
        Some(live)
            if live.rules != grant.role.rules || apply::metadata_differs(&live.metadata, &grant.role.metadata) =>
        {
            Some(Write::Update)
        }
        Some(_) => None,
    };
    let binding = match live_binding {
        None => Some(Write::Create),
        // roleRef is immutable.
        Some(live) if live.role_ref != grant.binding.role_ref => Some(Write::Replace(live)),
        Some(live)
            if live.subjects != grant.binding.subjects
                || apply::metadata_differs(&live.metadata, &grant.binding.metadata) =>
        {
            Some(Write::Update)
        }
        Some(_) => None,
    };
    GrantDecision::Apply { role, binding }
}

/// Write one Role or RoleBinding of a grant as decided. A create that finds the name
/// taken meanwhile is a conflict like any other name taken.
async fn write<K>(ctx: &Context, namespace: &str, name: &str, desired: &K, how: Write<K>) -> kube::Result<Claim>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if let Write::Replace(live) = &how {
        ownership::delete(ctx, &**live).await?;
    }
    let api = Api::<K>::namespaced(ctx.client.clone(), namespace);
    match apply::apply(&api, name, desired, how.ours()).await {
        Ok(_) => Ok(Claim::Ours),
        Err(error) if !how.ours() && apply::is_conflict(&error) => Ok(Claim::Foreign(ownership::CREATED_MEANWHILE)),
        Err(error) => Err(error),
    }
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
    K: Child + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let mut refused = Vec::new();
    for obj in cached.of(&tenant.name_any()) {
        if ownership::revocable(&*obj, tenant, keep, &ctx.config.protected)
            && let Err(error) = ownership::delete(ctx, &*obj).await
        {
            let rejected =
                Rejected::new(kind, format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()), &error);
            ctx.rejected(tenant, &rejected).await;
            refused.push(rejected);
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::environments;
    use crate::api::{MLTenantSpec, SecretReader, SecretSpec};

    fn tenant(readers: Vec<SecretReader>) -> MLTenant {
        let mut t = MLTenant::new(
            "fin",
            MLTenantSpec {
                secrets: Some(vec![SecretSpec::new("ml-platform", "b")]),
                secret_readers: Some(readers),
                ..MLTenantSpec::with_environments(&["dev"])
            },
        );
        t.metadata.uid = Some("uid".into());
        t
    }

    fn reader(secrets: Option<Vec<&str>>) -> SecretReader {
        let reader = SecretReader::new("argowf", "argo-workflow");
        secrets.map_or(reader.clone(), |s| reader.secrets(&s))
    }

    fn wanted(secret: &str) -> WantedSecret {
        WantedSecret {
            environment: "dev".into(),
            namespace: "fin-dev".into(),
            secret: secret.into(),
            bundle: "b".into(),
        }
    }

    #[test]
    fn get_only_on_the_granted_secrets() {
        let t = tenant(vec![reader(None)]);
        let env = &environments::plan(&t).unwrap()[0];
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
    fn resource_names_are_the_secrets_present_here() {
        let elsewhere = WantedSecret { environment: "prod".into(), namespace: "fin-prod".into(), ..wanted("ghcr") };
        // (reader's secrets, Secrets present, resourceNames; None: no grant at all, since empty
        // resourceNames would grant every Secret)
        let table = [
            (None, vec![wanted("ml-platform"), wanted("ghcr")], Some(vec!["ghcr", "ml-platform"])),
            (Some(vec!["ghcr"]), vec![wanted("ml-platform"), wanted("ghcr")], Some(vec!["ghcr"])),
            (Some(vec!["ghcr", "never-written"]), vec![wanted("ghcr")], Some(vec!["ghcr"])),
            (Some(vec!["ghcr"]), vec![wanted("ml-platform")], None),
            (None, vec![], None),
            (None, vec![elsewhere], None),
        ];
        for (secrets, present, want) in table {
            let t = tenant(vec![reader(secrets.clone())]);
            let env = &environments::plan(&t).unwrap()[0];
            let grants = desired(&t, env, &present.iter().collect::<Vec<_>>());
            let names = grants.first().map(|g| g.role.rules.as_ref().unwrap()[0].resource_names.clone().unwrap());
            let want = want.as_ref().map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(names, want, "reader {secrets:?}, present {present:?}");
        }
    }

    #[test]
    fn decisions() {
        let t = tenant(vec![reader(None)]);
        let env = &environments::plan(&t).unwrap()[0];
        let grant = desired(&t, env, &[&wanted("ml-platform")]).remove(0);
        let role = || Some(Arc::new(grant.role.clone()));
        let binding = || Some(Arc::new(grant.binding.clone()));
        let role_with = |edit: fn(&mut Role)| {
            let mut role = grant.role.clone();
            edit(&mut role);
            Some(Arc::new(role))
        };
        let binding_with = |edit: fn(&mut RoleBinding)| {
            let mut binding = grant.binding.clone();
            edit(&mut binding);
            Some(Arc::new(binding))
        };
        let unmanaged = role_with(|r| r.metadata.labels = None);
        let disowned = role_with(|r| r.metadata.owner_references = None);
        let other_tenant = binding_with(|b| {
            b.metadata.labels.as_mut().unwrap().insert(labels::TENANT.into(), "other".into());
        });
        let renamed = role_with(|r| r.rules.as_mut().unwrap()[0].resource_names = Some(vec!["old".into()]));
        let unstamped = role_with(|r| r.metadata.annotations = None);
        let resubjected = binding_with(|b| b.subjects.as_mut().unwrap()[0].name = "old".into());
        let rebound = binding_with(|b| b.role_ref.name = "old".into());
        let write = |role, binding| GrantDecision::Apply { role, binding };
        let not_ours = "it is not managed by mltenant-operator";
        let table = [
            ("nothing there", None, None, write(Some(Write::Create), Some(Write::Create))),
            ("converged", role(), binding(), write(None, None)),
            ("a Role not managed by the operator", unmanaged.clone(), None, GrantDecision::Conflict(not_ours)),
            (
                "a Role without this tenant's ownerReference",
                disowned,
                binding(),
                GrantDecision::Conflict("it does not carry this MLTenant's ownerReference"),
            ),
            (
                "a RoleBinding of another tenant",
                role(),
                other_tenant.clone(),
                GrantDecision::Conflict("it is managed for another MLTenant"),
            ),
            ("both taken: the Role tells", unmanaged, other_tenant, GrantDecision::Conflict(not_ours)),
            ("other resourceNames", renamed, binding(), write(Some(Write::Update), None)),
            ("drifted Role metadata", unstamped, binding(), write(Some(Write::Update), None)),
            ("the Role deleted", None, binding(), write(Some(Write::Create), None)),
            ("other subjects", role(), resubjected, write(None, Some(Write::Update))),
            (
                "another roleRef is replaced",
                role(),
                rebound.clone(),
                write(None, Some(Write::Replace(rebound.unwrap()))),
            ),
            ("the RoleBinding deleted", role(), None, write(None, Some(Write::Create))),
        ];
        for (row, live_role, live_binding, want) in table {
            assert_eq!(decide(&t, &grant, live_role, live_binding), want, "{row}");
        }
    }
}
