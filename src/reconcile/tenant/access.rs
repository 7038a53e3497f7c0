//! Scoped read access to the distributed Secrets: for each `secretReaders` entry and each ready
//! environment, a Role granting `get` on exactly the granted Secrets (by `resourceNames`) and a
//! RoleBinding to the reader's ServiceAccount. Nothing cluster-wide, no `list` or `watch`.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Resource, ResourceExt};

use super::inventory::{self, Key, Records};
use super::live;
use super::ownership::{self, Claim, Write, owner_reference};
use super::secrets::WantedSecret;
use crate::api::environments::Environment;
use crate::api::labels;
use crate::api::{MLTenant, OwnedKind};
use crate::reconcile::apply;
use crate::reconcile::context::Context;
use crate::reconcile::guard::Guarded;
use crate::reconcile::rejected::Rejected;
use crate::reconcile::trim::Trim;

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
    records: &Records,
    ctx: &Context,
) -> Granted {
    let grants: Vec<Grant> = environments.iter().flat_map(|env| desired(tenant, env, present)).collect();
    // Read and decide every grant together, put what they create on record, then write them
    // together; within one grant, the Role goes first (the operator may not `bind`, so a
    // RoleBinding needs its Role to exist).
    let decided = join_all(grants.iter().map(|grant| read_and_decide(tenant, grant, fresh, records, ctx))).await;
    let creates: Vec<(Key, bool)> = grants
        .iter()
        .zip(&decided)
        .flat_map(|(grant, decided)| match decided {
            Ok(GrantDecision::Apply { role, binding }) => {
                let (namespace, name) = (grant.role.namespace().unwrap_or_default(), grant.role.name_any());
                let role =
                    role.as_ref().is_some_and(Write::creates).then(|| Key::child(OwnedKind::Role, &namespace, &name));
                let binding = binding
                    .as_ref()
                    .is_some_and(Write::creates)
                    .then(|| Key::child(OwnedKind::RoleBinding, &namespace, &name));
                [role, binding]
            }
            _ => [None, None],
        })
        .flatten()
        .map(|key| (key, false))
        .collect();
    let recorded = inventory::intend(tenant, records, creates, ctx).await;
    let synced = join_all(grants.iter().zip(decided).map(|(grant, decided)| {
        let recorded = &recorded;
        async move {
            let decision = decided?;
            if let (Err(error), GrantDecision::Apply { role, binding }) = (recorded, &decision)
                && (role.as_ref().is_some_and(Write::creates) || binding.as_ref().is_some_and(Write::creates))
            {
                let (namespace, name) = (grant.role.namespace().unwrap_or_default(), grant.role.name_any());
                return Err(Rejected::new("Role", format!("{namespace}/{name}"), error));
            }
            write_grant(grant, decision, records, ctx).await
        }
    }))
    .await;
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
    granted.rejected.extend(revoke_except(tenant, &keep, records, ctx).await);
    granted
}

/// Read the Role and RoleBinding of one grant and [`decide`]. A read the API server refused is
/// returned as such, naming the object it was about.
async fn read_and_decide(
    tenant: &MLTenant,
    grant: &Grant,
    fresh: &BTreeSet<String>,
    records: &Records,
    ctx: &Context,
) -> std::result::Result<GrantDecision, Rejected> {
    let namespace = grant.role.namespace().unwrap_or_default();
    let name = grant.role.name_any();
    let fresh = fresh.contains(&namespace);
    let object = format!("{namespace}/{name}");
    let live_role = live::object(ctx, &ctx.roles, &namespace, &name, fresh)
        .await
        .map_err(|e| Rejected::new("Role", object.clone(), &e))?;
    let live_binding = live::object(ctx, &ctx.role_bindings, &namespace, &name, fresh)
        .await
        .map_err(|e| Rejected::new("RoleBinding", object.clone(), &e))?;
    let claims = records.with(|inventory| {
        let claim = |kind, meta| ownership::claim(meta, tenant, inventory, &Key::child(kind, &namespace, &name));
        [
            claim(OwnedKind::Role, live_role.as_ref().map(|r| &r.metadata)),
            claim(OwnedKind::RoleBinding, live_binding.as_ref().map(|b| &b.metadata)),
        ]
    });
    Ok(decide(grant, claims, live_role, live_binding))
}

/// Write one grant as decided: the Role, then the RoleBinding; a create that finds the name
/// taken meanwhile is a conflict like any other name taken.
async fn write_grant(
    grant: &Grant,
    decision: GrantDecision,
    records: &Records,
    ctx: &Context,
) -> std::result::Result<Claim, Rejected> {
    let namespace = grant.role.namespace().unwrap_or_default();
    let name = grant.role.name_any();
    let object = format!("{namespace}/{name}");
    let (role, binding) = match decision {
        GrantDecision::Conflict(why) => return Ok(Claim::Foreign(why)),
        GrantDecision::Apply { role, binding } => (role, binding),
    };
    if let Some(how) = role {
        let key = Key::child(OwnedKind::Role, &namespace, &name);
        let written = write(ctx, &key, &grant.role, how, records).await;
        if let Claim::Foreign(why) = written.map_err(|e| Rejected::new("Role", object.clone(), &e))? {
            return Ok(Claim::Foreign(why));
        }
    }
    if let Some(how) = binding {
        let key = Key::child(OwnedKind::RoleBinding, &namespace, &name);
        return write(ctx, &key, &grant.binding, how, records)
            .await
            .map_err(|e| Rejected::new("RoleBinding", object, &e));
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

/// Decide from the live Role and RoleBinding of the grant's name and whether each is ours
/// (`claims`: the Role's, the RoleBinding's); no IO.
fn decide(
    grant: &Grant,
    claims: [Claim; 2],
    live_role: Option<Arc<Role>>,
    live_binding: Option<Arc<RoleBinding>>,
) -> GrantDecision {
    if let Some(why) = claims.iter().find_map(|c| if let Claim::Foreign(why) = c { Some(*why) } else { None }) {
        return GrantDecision::Conflict(why);
    }
    let role = match live_role {
        None => Some(Write::Create),
        Some(live) if apply::differs(&*live, &grant.role) => Some(Write::Update),
        Some(_) => None,
    };
    let binding = match live_binding {
        None => Some(Write::Create),
        // roleRef is immutable.
        Some(live) if live.role_ref != grant.binding.role_ref => Some(Write::Replace(live)),
        Some(live) if apply::differs(&*live, &grant.binding) => Some(Write::Update),
        Some(_) => None,
    };
    GrantDecision::Apply { role, binding }
}

/// Write one Role or RoleBinding of a grant as decided, recording what it creates. A create
/// that finds the name taken meanwhile is a conflict like any other name taken.
async fn write<K>(ctx: &Context, key: &Key, desired: &K, how: Write<K>, records: &Records) -> kube::Result<Claim>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Trim
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if let Write::Replace(live) = &how {
        ownership::delete(ctx, &**live).await?;
    }
    let api = Api::<Guarded<K>>::namespaced(ctx.client.clone(), &key.namespace);
    if how.creates() {
        records.sending(key);
    }
    match apply::apply(&api, &key.name, desired, how.ours()).await {
        Ok(written) => {
            if let (true, Some(uid)) = (how.creates(), written.uid.clone()) {
                records.with(|inventory| inventory.record(key.clone(), uid, false));
            }
            Ok(Claim::Ours)
        }
        Err(error) if how.creates() && apply::is_conflict(&error) => {
            records.with(|inventory| inventory.forget(key));
            Ok(Claim::Foreign(ownership::CREATED_MEANWHILE))
        }
        Err(error) => Err(error),
    }
}

/// Delete the tenant's recorded Roles and RoleBindings except `keep` (namespace, name), never in
/// a protected namespace. Returns the deletions the API server refused.
pub async fn revoke_except(
    tenant: &MLTenant,
    keep: &BTreeSet<(String, String)>,
    records: &Records,
    ctx: &Context,
) -> Vec<Rejected> {
    // Bindings first: what they grant goes first.
    let revocable = records.revocable(&[OwnedKind::RoleBinding, OwnedKind::Role], keep, &ctx.config.protected);
    let mut refused = Vec::new();
    for (key, uid) in revocable {
        let deleted = match key.kind {
            OwnedKind::Role => ownership::delete_recorded::<Role>(ctx, &key, &uid).await,
            _ => ownership::delete_recorded::<RoleBinding>(ctx, &key, &uid).await,
        };
        match deleted {
            Ok(()) => records.with(|inventory| inventory.forget(&key)),
            Err(error) => {
                let kind = if key.kind == OwnedKind::Role { "Role" } else { "RoleBinding" };
                let rejected = Rejected::new(kind, format!("{}/{}", key.namespace, key.name), &error);
                ctx.rejected(tenant, &rejected).await;
                refused.push(rejected);
            }
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::environments;
    use crate::api::{MLTenantSpec, SecretReader, SecretSpec};
    use crate::reconcile::trim::as_cached;

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
        // Both live in the environment's namespace, labelled and owned as the tenant's.
        for meta in [&grants[0].role.metadata, &grants[0].binding.metadata] {
            assert_eq!(
                (meta.name.as_deref(), meta.namespace.as_deref()),
                (Some("mltenant-reader-argowf-argo-workflow"), Some("fin-dev"))
            );
            assert_eq!(meta.labels.as_ref(), Some(&labels::managed("fin", "dev")));
            assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "uid");
        }
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
        let role = || Some(Arc::new(as_cached(&grant.role, |_| {})));
        let binding = || Some(Arc::new(as_cached(&grant.binding, |_| {})));
        let role_with = |edit: fn(&mut Role)| Some(Arc::new(as_cached(&grant.role, edit)));
        let binding_with = |edit: fn(&mut RoleBinding)| Some(Arc::new(as_cached(&grant.binding, edit)));
        let renamed = role_with(|r| r.rules.as_mut().unwrap()[0].resource_names = Some(vec!["old".into()]));
        let unstamped = role_with(|r| r.metadata.annotations = None);
        let widened = role_with(|r| r.rules.as_mut().unwrap()[0].verbs.push("list".into()));
        let relabelled = role_with(|r| {
            r.metadata.labels.as_mut().unwrap().insert("someone-else".into(), "x".into());
        });
        let resubjected = binding_with(|b| b.subjects.as_mut().unwrap()[0].name = "old".into());
        let rebound = binding_with(|b| b.role_ref.name = "old".into());
        let write = |role, binding| GrantDecision::Apply { role, binding };
        let (ours, absent) = (Claim::Ours, Claim::Absent);
        let not_ours = Claim::Foreign("it is not managed by mltenant-operator");
        let table = [
            (
                "nothing there",
                [absent.clone(), absent.clone()],
                None,
                None,
                write(Some(Write::Create), Some(Write::Create)),
            ),
            ("converged", [ours.clone(), ours.clone()], role(), binding(), write(None, None)),
            ("a label someone else added", [ours.clone(), ours.clone()], relabelled, binding(), write(None, None)),
            (
                "a Role not ours",
                [not_ours.clone(), absent.clone()],
                role(),
                None,
                GrantDecision::Conflict("it is not managed by mltenant-operator"),
            ),
            (
                "a RoleBinding not ours",
                [ours.clone(), Claim::Foreign(ownership::NOT_CREATED_HERE)],
                role(),
                binding(),
                GrantDecision::Conflict(ownership::NOT_CREATED_HERE),
            ),
            ("other resourceNames", [ours.clone(), ours.clone()], renamed, binding(), write(Some(Write::Update), None)),
            ("a verb added", [ours.clone(), ours.clone()], widened, binding(), write(Some(Write::Update), None)),
            (
                "drifted Role metadata",
                [ours.clone(), ours.clone()],
                unstamped,
                binding(),
                write(Some(Write::Update), None),
            ),
            ("the Role deleted", [absent.clone(), ours.clone()], None, binding(), write(Some(Write::Create), None)),
            ("other subjects", [ours.clone(), ours.clone()], role(), resubjected, write(None, Some(Write::Update))),
            (
                "another roleRef is replaced",
                [ours.clone(), ours.clone()],
                role(),
                rebound.clone(),
                write(None, Some(Write::Replace(rebound.unwrap()))),
            ),
            ("the RoleBinding deleted", [ours.clone(), absent.clone()], role(), None, write(None, Some(Write::Create))),
        ];
        for (row, claims, live_role, live_binding, want) in table {
            assert_eq!(decide(&grant, claims, live_role, live_binding), want, "{row}");
        }
    }
}
