//! Who RBAC lets read each distributed Secret, and through which binding: pure, from the
//! compact RBAC set (`rbac`), the expected platform identities and each Secret's declared
//! readers. What it finds is what RBAC could allow; a finding that is neither declared nor
//! expected is reported only once a SubjectAccessReview confirmed it (`confirm`).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use super::identity::{Expected, Kind, Subject};
use super::rbac::{Effective, MAX_BYTES_PER_NAMESPACE, MAX_PER_NAMESPACE, Namespaced, Rbac, RoleRef};
use super::rules::{self, Grants, Indirect, Request};
use crate::api::MLTenant;

/// One environment namespace of a tenant and the Secrets the operator wrote there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub environment: String,
    pub namespace: String,
    pub secrets: Vec<Wanted>,
}

/// A distributed Secret and the ServiceAccounts declared to read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    pub readers: Vec<Subject>,
}

/// How a subject reaches a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A declared reader of this Secret.
    Declared,
    /// A platform identity the installation expects (an admin or a controller).
    Expected(Kind),
    /// Anyone else RBAC lets read it.
    Unexpected,
    /// Anyone who may obtain it without reading it: what they may do, and where (`in
    /// <namespace>`, `ServiceAccount <reader>`).
    Indirect { how: &'static Indirect, place: String },
}

impl Reach {
    fn rank(&self) -> u8 {
        match self {
            Reach::Declared | Reach::Expected(_) | Reach::Unexpected => 0,
            Reach::Indirect { .. } => 1,
        }
    }
}

/// A request a SubjectAccessReview asks about for a finding: in `namespace` (none: in every
/// namespace, or for a cluster-scoped resource), of object `name` (none: any).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Check {
    pub namespace: Option<String>,
    pub request: Request,
    pub name: Option<String>,
}

/// A subject that can reach a Secret, the binding that lets it and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub subject: Subject,
    /// `RoleBinding <namespace>/<name>` or `ClusterRoleBinding <name>`.
    pub binding: String,
    pub role: RoleRef,
    pub reach: Reach,
    /// Any one allowed confirms the finding.
    pub checks: Vec<Check>,
}

impl Finding {
    /// `ServiceAccount a/b through RoleBinding ns/x (ClusterRole edit)`, with what it may do for
    /// an indirect one.
    pub fn describe(&self) -> String {
        let how = match &self.reach {
            Reach::Indirect { how, place } => format!(" {} {place}", how.what),
            _ => String::new(),
        };
        format!("{}{how} through {} ({})", self.subject, self.binding, self.role)
    }
}

/// Everything that can reach one Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    pub environment: String,
    pub namespace: String,
    pub secret: String,
    pub findings: Vec<Finding>,
    /// Bindings that grant a read to more subjects than are kept: `(binding, how many more)`,
    /// each of them an unexpected reader that cannot be examined.
    pub unlisted: Vec<(String, usize)>,
    /// Why what RBAC grants here is not fully known, when it is not.
    pub unknown: Option<String>,
}

/// The ServiceAccounts `tenant` declares as readers of Secret `secret`.
pub fn declared_readers(tenant: &MLTenant, secret: &str) -> Vec<Subject> {
    let readers = tenant.spec.secret_readers.iter().flatten();
    readers
        .filter(|r| r.secrets.as_ref().is_none_or(|listed| listed.iter().any(|s| s == secret)))
        .map(|r| Subject::service_account(&r.service_account.namespace, &r.service_account.name))
        .collect()
}

/// What an assessment lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Every finding, expected platform identities included (`mltenant access`).
    Everything,
    /// Only what is reported: declared, unexpected and indirect findings. A cluster where
    /// hundreds of controllers are bound to `cluster-admin` then costs nothing per Secret.
    Reportable,
}

/// Who is expected, each subject looked up once per assessment (the same subjects come back for
/// every Secret of a tenant).
struct Judge<'a> {
    expected: &'a Expected,
    kinds: RefCell<HashMap<Subject, Option<Kind>>>,
    detail: Detail,
}

impl Judge<'_> {
    fn kind_of(&self, subject: &Subject) -> Option<Kind> {
        if let Some(kind) = self.kinds.borrow().get(subject) {
            return *kind;
        }
        let kind = self.expected.kind_of(subject);
        self.kinds.borrow_mut().insert(subject.clone(), kind);
        kind
    }
}

/// Assess every Secret of `places`.
pub fn assess(
    rbac: &Rbac,
    effective: &Effective,
    expected: &Expected,
    places: &[Place],
    detail: Detail,
) -> Vec<Exposure> {
    let judge = Judge { expected, kinds: RefCell::default(), detail };
    let mut exposures = Vec::new();
    for place in places {
        for wanted in &place.secrets {
            exposures.push(exposure(rbac, effective, &judge, place, wanted));
        }
    }
    exposures
}

/// Where a grant comes from: a RoleBinding of a namespace, or a ClusterRoleBinding.
struct Source<'a> {
    binding: std::borrow::Cow<'a, str>,
    role: &'a RoleRef,
    grants: &'a Grants,
    subjects: &'a [Subject],
    unlisted: usize,
    /// The RoleBinding's namespace; none for a ClusterRoleBinding (its grants hold everywhere).
    namespace: Option<&'a str>,
}

/// The RoleBindings of `namespace` whose roles grant something that matters (sorted by name),
/// then every ClusterRoleBinding that does.
fn sources<'a>(rbac: &'a Rbac, effective: &'a Effective, namespace: &'a str) -> Vec<Source<'a>> {
    let mut namespaced: Vec<Source> = rbac
        .namespaces
        .get(namespace)
        .into_iter()
        .flat_map(|ns| &ns.bindings.by_name)
        .filter_map(|(name, binding)| {
            let grants = rbac.role_grants(effective, namespace, &binding.role).filter(|g| g.matters())?;
            Some(Source {
                binding: format!("RoleBinding {namespace}/{name}").into(),
                role: &binding.role,
                grants,
                subjects: &binding.subjects,
                unlisted: binding.unlisted,
                namespace: Some(namespace),
            })
        })
        .collect();
    namespaced.sort_by(|a, b| a.binding.cmp(&b.binding));
    namespaced.extend(effective.cluster_grants.iter().map(|g| Source {
        binding: g.described.as_str().into(),
        role: &g.role,
        grants: &g.grants,
        subjects: &g.subjects,
        unlisted: g.unlisted,
        namespace: None,
    }));
    namespaced
}

fn exposure(rbac: &Rbac, effective: &Effective, judge: &Judge, place: &Place, wanted: &Wanted) -> Exposure {
    let mut exposure = Exposure {
        environment: place.environment.clone(),
        namespace: place.namespace.clone(),
        secret: wanted.name.clone(),
        ..Default::default()
    };
    let over = |ns: &str| rbac.namespaces.get(ns).is_some_and(Namespaced::over_limit);
    let reader_namespaces: BTreeSet<&str> = wanted
        .readers
        .iter()
        .filter_map(|r| if let Subject::ServiceAccount { namespace, .. } = r { Some(namespace.as_str()) } else { None })
        .collect();
    if let Some(ns) =
        std::iter::once(place.namespace.as_str()).chain(reader_namespaces.iter().copied()).find(|ns| over(ns))
    {
        exposure.unknown = Some(format!(
            "namespace {ns} holds more Roles or RoleBindings than are examined ({MAX_PER_NAMESPACE} of each, {} KiB of names): what they grant is not known",
            MAX_BYTES_PER_NAMESPACE / 1024
        ));
    }
    let mut seen: BTreeSet<(Subject, u8)> = BTreeSet::new();
    let mut add = |exposure: &mut Exposure, finding: Finding| {
        if seen.insert((finding.subject.clone(), finding.reach.rank())) {
            exposure.findings.push(finding);
        }
    };
    let namespace = place.namespace.as_str();
    let here = sources(rbac, effective, namespace);

    // Direct reads.
    for source in &here {
        let Some(request) = source.grants.reads(&wanted.name) else { continue };
        // Asked about this Secret, where it is: a rule of every Secret allows that as well as one
        // naming it, and a role the compact form takes to read every Secret (it names too many)
        // may name this one only.
        let check = Check { namespace: Some(namespace.to_owned()), request, name: Some(wanted.name.clone()) };
        for subject in source.subjects {
            let reach = if wanted.readers.contains(subject) {
                Reach::Declared
            } else {
                judge.kind_of(subject).map_or(Reach::Unexpected, Reach::Expected)
            };
            if matches!(reach, Reach::Expected(_)) && judge.detail == Detail::Reportable {
                continue;
            }
            let finding = Finding {
                subject: subject.clone(),
                binding: source.binding.to_string(),
                role: source.role.clone(),
                reach,
                checks: vec![check.clone()],
            };
            add(&mut exposure, finding);
        }
        if source.unlisted > 0 {
            exposure.unlisted.push((source.binding.to_string(), source.unlisted));
        }
    }

    // Indirect ways in this namespace: whoever may run or enter a pod here may mount the Secret.
    let everywhere: Vec<&Source> = here.iter().collect();
    let in_namespace = [&rules::POD_CREATE, &rules::WORKLOAD_WRITE, &rules::POD_EXEC, &rules::RBAC_ESCALATE];
    let target = Target { namespace, account: None, place: format!("in {namespace}") };
    for finding in indirect(&everywhere, &in_namespace, &target, wanted, judge) {
        add(&mut exposure, finding);
    }
    // Impersonating anyone reads anything: only a ClusterRoleBinding can grant it for users.
    let cluster: Vec<&Source> = here.iter().filter(|s| s.namespace.is_none()).collect();
    let target = Target { namespace, account: None, place: "anyone".to_owned() };
    for finding in indirect(&cluster, &[&rules::IMPERSONATE], &target, wanted, judge) {
        add(&mut exposure, finding);
    }
    // Whoever may act as a declared reader: create its tokens, impersonate it, or run or enter
    // pods in its namespace (they may run as it).
    for reader in &wanted.readers {
        let Subject::ServiceAccount { namespace: reader_ns, name } = reader else { continue };
        let theirs = sources(rbac, effective, reader_ns);
        let theirs: Vec<&Source> = theirs.iter().collect();
        let target =
            Target { namespace: reader_ns, account: Some(name), place: format!("ServiceAccount {reader_ns}/{name}") };
        for finding in indirect(&theirs, &[&rules::TOKEN_CREATE, &rules::IMPERSONATE], &target, wanted, judge) {
            add(&mut exposure, finding);
        }
        if reader_ns != namespace {
            let pods = [&rules::POD_CREATE, &rules::WORKLOAD_WRITE, &rules::POD_EXEC];
            let place = format!("in {reader_ns}, where pods may run as reader {reader_ns}/{name}");
            let target = Target { namespace: reader_ns, account: None, place };
            for finding in indirect(&theirs, &pods, &target, wanted, judge) {
                add(&mut exposure, finding);
            }
        }
    }
    exposure
}

/// Where an indirect way leads: the namespace its requests are in, the ServiceAccount it acts
/// as (for tokens and impersonation), and how a message says it.
struct Target<'a> {
    namespace: &'a str,
    account: Option<&'a str>,
    place: String,
}

/// The subjects `sources` give one of `powers` towards `target`, neither declared readers of
/// the Secret nor expected.
fn indirect(
    sources: &[&Source],
    powers: &[&'static Indirect],
    target: &Target,
    wanted: &Wanted,
    judge: &Judge,
) -> Vec<Finding> {
    let cluster_wide = |request: &Request| request.resource == "users" || request.resource == "groups";
    let mut found = Vec::new();
    for source in sources {
        // Declared and expected subjects first: most bindings with such powers are the
        // platform's, and then nothing is built for them.
        let subjects: Vec<&Subject> =
            source.subjects.iter().filter(|s| !wanted.readers.contains(s) && judge.kind_of(s).is_none()).collect();
        if subjects.is_empty() {
            continue;
        }
        for how in powers.iter().copied().filter(|how| source.grants.caps.intersects(how.caps)) {
            let checks: Vec<Check> = how
                .requests
                .iter()
                // Users and groups are cluster-wide: a RoleBinding cannot let anyone
                // impersonate them.
                .filter(|request| source.namespace.is_none() || !cluster_wide(request))
                .map(|request| Check {
                    namespace: (!cluster_wide(request)).then(|| target.namespace.to_owned()),
                    request: *request,
                    name: target.account.filter(|_| request.resource == "serviceaccounts").map(str::to_owned),
                })
                .collect();
            if checks.is_empty() {
                continue;
            }
            for subject in &subjects {
                found.push(Finding {
                    subject: (*subject).clone(),
                    binding: source.binding.to_string(),
                    role: source.role.clone(),
                    reach: Reach::Indirect { how, place: target.place.clone() },
                    checks: checks.clone(),
                });
            }
        }
    }
    found
}

impl Exposure {
    /// Findings that are neither declared nor expected: direct (`Unexpected`) ones.
    pub fn unexpected(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.reach == Reach::Unexpected)
    }

    pub fn indirect(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| matches!(f.reach, Reach::Indirect { .. }))
    }

    /// How many unexpected readers there are: the findings, and the subjects of bindings too
    /// large to examine.
    pub fn unexpected_count(&self) -> usize {
        self.unexpected().count() + self.unlisted.iter().map(|(_, n)| n).sum::<usize>()
    }
}

#[cfg(test)]
mod tests;
