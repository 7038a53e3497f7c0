//! `mltenant access TENANT`: the quarterly check. For each environment and Secret of the tenant,
//! who can read it (declared readers, expected platform identities, anyone else, and who can
//! obtain it without reading it) and when each declared reader last read it (the tenant's
//! status). It reads RBAC itself, so it works whether the operator runs or not; `--review`
//! confirms what it finds with SubjectAccessReviews, as the operator does.

use std::fmt::Write as _;

use anyhow::Context as _;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::access::exposure::assess::{self, Exposure, Finding, Place, Reach, Wanted};
use crate::access::exposure::confirm::Confirmer;
use crate::access::exposure::identity::{DEFAULT_ADMINS, DEFAULT_CONTROLLERS, Expected, Subject};
use crate::access::exposure::rbac::{self, Binding, Rbac};
use crate::access::exposure::rules::Grants;
use crate::api::MLTenant;
use crate::api::environments::namespace_name;

#[derive(clap::Args)]
pub struct Args {
    /// The MLTenant.
    pub tenant: String,
    /// Identities expected to read every Secret as admins (user:NAME, group:NAME,
    /// serviceaccount:NAMESPACE/NAME; NAME may be *), as the operator's --access-admins.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_ADMINS.iter().map(|s| s.to_string()))]
    pub access_admins: Vec<String>,
    /// Identities expected to read every Secret as controllers, as the operator's
    /// --access-controllers (add the operator's own ServiceAccount if it is not the default).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_CONTROLLERS.iter().map(|s| s.to_string())
        .chain(["serviceaccount:mltenant-system/mltenant-operator".to_owned()]))]
    pub access_controllers: Vec<String>,
    /// Confirm every unexpected or indirect reader with a SubjectAccessReview (needs `create` on
    /// subjectaccessreviews): other authorisers may allow or deny too.
    #[arg(long)]
    pub review: bool,
}

/// The report, and whether the tenant is isolated (nothing unexpected can read).
pub async fn run(args: &Args) -> anyhow::Result<(String, bool)> {
    let expected = Expected::parse(&args.access_admins, &args.access_controllers).map_err(anyhow::Error::msg)?;
    let config = kube::Config::infer().await.context("no Kubernetes configuration (KUBECONFIG or in-cluster)")?;
    let client = Client::try_from(config).context("building the Kubernetes client")?;
    let tenant = Api::<MLTenant>::all(client.clone())
        .get_opt(&args.tenant)
        .await
        .with_context(|| format!("reading MLTenant {}", args.tenant))?
        .with_context(|| format!("MLTenant {} not found", args.tenant))?;
    let places = places(&tenant);
    let mut namespaces: Vec<&str> = places.iter().map(|p| p.namespace.as_str()).collect();
    namespaces.extend(places.iter().flat_map(|p| &p.secrets).flat_map(|w| &w.readers).filter_map(|r| match r {
        Subject::ServiceAccount { namespace, .. } => Some(namespace.as_str()),
        _ => None,
    }));
    namespaces.sort_unstable();
    namespaces.dedup();
    let rbac = read_rbac(&client, &namespaces).await?;
    let mut exposures = assess::assess(&rbac, &rbac.effective(), &expected, &places, assess::Detail::Everything);
    if args.review {
        let confirmer = Confirmer::new(client.clone());
        for exposure in &mut exposures {
            let mut kept = Vec::new();
            for finding in std::mem::take(&mut exposure.findings) {
                let doubtful = matches!(finding.reach, Reach::Unexpected | Reach::Indirect { .. });
                if !doubtful || confirmer.confirm(&finding, 0, &|_| ()).await.context("a SubjectAccessReview")? {
                    kept.push(finding);
                }
            }
            exposure.findings = kept;
        }
    }
    let isolated = exposures.iter().all(|e| e.unexpected_count() == 0 && e.unknown.is_none());
    Ok((report(&tenant, &exposures, args.review), isolated))
}

/// Every environment of the tenant and the Secrets the spec distributes there.
fn places(tenant: &MLTenant) -> Vec<Place> {
    let name = tenant.name_any();
    let secrets = tenant.spec.secrets.iter().flatten();
    tenant
        .spec
        .environments
        .iter()
        .map(|env| Place {
            environment: env.name.clone(),
            namespace: namespace_name(&name, env),
            secrets: secrets
                .clone()
                .filter(|s| s.environments.as_ref().is_none_or(|listed| listed.contains(&env.name)))
                .map(|s| Wanted { name: s.name.clone(), readers: assess::declared_readers(tenant, &s.name) })
                .collect(),
        })
        .collect()
}

/// Every ClusterRole and ClusterRoleBinding, and the Roles and RoleBindings of `namespaces`, in
/// their compact form.
async fn read_rbac(client: &Client, namespaces: &[&str]) -> anyhow::Result<Rbac> {
    let mut rbac = Rbac::default();
    let all = ListParams::default();
    for role in Api::<ClusterRole>::all(client.clone()).list(&all).await.context("listing ClusterRoles")? {
        rbac.cluster_roles.insert(role.name_any(), rbac::ClusterRole::new(&role));
    }
    for b in Api::<ClusterRoleBinding>::all(client.clone()).list(&all).await.context("listing ClusterRoleBindings")? {
        if let Some(binding) = Binding::new(&b.role_ref, b.subjects.as_ref(), None) {
            rbac.cluster_bindings.insert(b.name_any(), binding);
        }
    }
    for ns in namespaces {
        let kept = rbac.namespaces.entry((*ns).to_owned()).or_default();
        let roles = Api::<Role>::namespaced(client.clone(), ns).list(&all).await;
        for role in roles.with_context(|| format!("listing the Roles of {ns}"))? {
            kept.set_role(&role.name_any(), Some(Grants::from_rules(role.rules.as_deref().unwrap_or_default())));
        }
        let bindings = Api::<RoleBinding>::namespaced(client.clone(), ns).list(&all).await;
        for b in bindings.with_context(|| format!("listing the RoleBindings of {ns}"))? {
            kept.set_binding(&b.name_any(), Binding::new(&b.role_ref, b.subjects.as_ref(), Some(ns)));
        }
    }
    Ok(rbac)
}

/// The report, one block per Secret.
fn report(tenant: &MLTenant, exposures: &[Exposure], reviewed: bool) -> String {
    let mut out = format!(
        "MLTenant {} ({})\n",
        tenant.name_any(),
        if reviewed { "RBAC, confirmed with SubjectAccessReviews" } else { "from RBAC alone" }
    );
    let status = tenant.status.as_ref();
    for e in exposures {
        let _ = writeln!(out, "\n{}/{} (environment {})", e.namespace, e.secret, e.environment);
        let recorded = status
            .and_then(|s| s.environments.iter().find(|env| env.name == e.environment))
            .and_then(|env| env.secrets.iter().find(|s| s.name == e.secret));
        for f in &e.findings {
            let (what, extra) = match &f.reach {
                Reach::Declared => ("declared  ", last_read(recorded, &f.subject)),
                Reach::Expected(kind) => ("expected  ", format!(" [{}]", kind.label())),
                Reach::Unexpected => ("UNEXPECTED", String::new()),
                Reach::Indirect { .. } => ("indirect  ", String::new()),
            };
            let _ = writeln!(out, "  {what} {}{extra}", Finding::describe(f));
        }
        for (binding, n) in &e.unlisted {
            let _ = writeln!(out, "  UNEXPECTED {n} more subjects of {binding}, not examined");
        }
        if let Some(why) = &e.unknown {
            let _ = writeln!(out, "  UNKNOWN    {why}");
        }
    }
    out
}

/// When a declared reader last read the Secret, as the tenant's status records it.
fn last_read(recorded: Option<&crate::api::SecretStatus>, subject: &Subject) -> String {
    let Subject::ServiceAccount { namespace, name } = subject else { return String::new() };
    let account = format!("{namespace}/{name}");
    match recorded.and_then(|s| s.readers.iter().find(|r| r.service_account == account)) {
        Some(r) => match (&r.last_read_at, &r.since) {
            (Some(at), _) => format!("; last read {}", at.0),
            (None, Some(since)) => format!("; not read since {} (when recording started)", since.0),
            (None, None) => "; reads not recorded".to_owned(),
        },
        None => "; reads not recorded (no audit sink?)".to_owned(),
    }
}
