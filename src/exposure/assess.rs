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
mod tests {
    use k8s_openapi::api::rbac::v1 as k8s;

    use super::*;
    use crate::exposure::identity::{DEFAULT_ADMINS, DEFAULT_CONTROLLERS};
    use crate::exposure::rbac::{Binding, ClusterRole};

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> k8s::PolicyRule {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        k8s::PolicyRule {
            api_groups: Some(owned(groups)),
            resources: Some(owned(resources)),
            verbs: owned(verbs),
            resource_names: (!names.is_empty()).then(|| owned(names)),
            ..Default::default()
        }
    }

    fn subject(kind: &str, name: &str, namespace: Option<&str>) -> k8s::Subject {
        k8s::Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.map(Into::into),
            ..Default::default()
        }
    }

    fn role_ref(kind: &str, name: &str) -> k8s::RoleRef {
        k8s::RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: kind.into(), name: name.into() }
    }

    const NS: &str = "fin-dev";

    /// A cluster with the operator's own grant for argowf/argo-workflow, cluster-admin, and
    /// what `edit` and a few ClusterRoles grant.
    fn cluster() -> Rbac {
        let mut rbac = Rbac::default();
        let mut cluster_role = |name: &str, rules: Vec<k8s::PolicyRule>| {
            let role = k8s::ClusterRole { rules: Some(rules), ..Default::default() };
            rbac.cluster_roles.insert(name.into(), ClusterRole::new(&role));
        };
        cluster_role("cluster-admin", vec![rule(&["*"], &["*"], &["*"], &[])]);
        cluster_role("edit", vec![rule(&[""], &["secrets", "pods"], &["get", "list", "create"], &[])]);
        cluster_role("view", vec![rule(&[""], &["pods", "configmaps"], &["get", "list", "watch"], &[])]);
        let admins = Binding::new(
            &role_ref("ClusterRole", "cluster-admin"),
            Some(&vec![subject("Group", "system:masters", None)]),
            None,
        );
        rbac.cluster_bindings.insert("cluster-admin".into(), admins.unwrap());
        let mut ns = Namespaced::default();
        ns.set_role(
            "mltenant-reader-argowf-argo-workflow",
            Some(Grants::from_rules(&[rule(&[""], &["secrets"], &["get"], &["ml-platform"])])),
        );
        let ours = Binding::new(
            &role_ref("Role", "mltenant-reader-argowf-argo-workflow"),
            Some(&vec![subject("ServiceAccount", "argo-workflow", Some("argowf"))]),
            Some(NS),
        );
        ns.set_binding("mltenant-reader-argowf-argo-workflow", ours);
        rbac.namespaces.insert(NS.into(), ns);
        rbac
    }

    fn expected() -> Expected {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Expected::parse(&owned(DEFAULT_ADMINS), &owned(DEFAULT_CONTROLLERS)).unwrap()
    }

    fn place() -> Place {
        Place {
            environment: "dev".into(),
            namespace: NS.into(),
            secrets: vec![
                Wanted {
                    name: "ml-platform".into(),
                    readers: vec![Subject::service_account("argowf", "argo-workflow")],
                },
                Wanted { name: "ghcr".into(), readers: vec![] },
            ],
        }
    }

    fn run(rbac: &Rbac) -> Vec<Exposure> {
        assess(rbac, &rbac.effective(), &expected(), &[place()], Detail::Everything)
    }

    fn described(exposure: &Exposure, pick: impl Fn(&Finding) -> bool) -> Vec<String> {
        exposure.findings.iter().filter(|f| pick(f)).map(Finding::describe).collect()
    }

    #[test]
    fn a_cluster_of_declared_and_expected_readers_only_is_isolated() {
        let exposures = run(&cluster());
        let ml = &exposures[0];
        assert_eq!(
            described(ml, |f| f.reach == Reach::Declared),
            [
                "ServiceAccount argowf/argo-workflow through RoleBinding fin-dev/mltenant-reader-argowf-argo-workflow (Role mltenant-reader-argowf-argo-workflow)"
            ]
        );
        assert_eq!(described(ml, |f| f.reach == Reach::Expected(Kind::Admin)).len(), 1, "cluster-admin");
        for exposure in &exposures {
            assert_eq!((exposure.unexpected_count(), exposure.indirect().count()), (0, 0), "{exposure:?}");
        }
        assert_eq!(
            exposures[1].findings.iter().filter(|f| f.reach == Reach::Declared).count(),
            0,
            "ghcr has no reader"
        );
    }

    /// Each row adds bindings to `cluster()` and says what the Secret ml-platform of fin-dev
    /// then has: its unexpected readers and its indirect ones, as messages name them.
    #[test]
    fn what_each_grant_exposes() {
        type Edit = fn(&mut Rbac);
        let rows: [(&str, Edit, &[&str], &[&str]); 8] = [
            (
                "edit bound in the namespace to another team's ServiceAccount",
                |rbac| {
                    let b = Binding::new(
                        &role_ref("ClusterRole", "edit"),
                        Some(&vec![subject("ServiceAccount", "bot", Some("other"))]),
                        Some(NS),
                    );
                    rbac.namespaces.get_mut(NS).unwrap().set_binding("team-edit", b);
                },
                &["ServiceAccount other/bot through RoleBinding fin-dev/team-edit (ClusterRole edit)"],
                &[
                    "ServiceAccount other/bot may create pods in fin-dev through RoleBinding fin-dev/team-edit (ClusterRole edit)",
                ],
            ),
            (
                "view plus a custom reader of that Secret",
                |rbac| {
                    let ns = rbac.namespaces.get_mut(NS).unwrap();
                    ns.set_role(
                        "peek",
                        Some(Grants::from_rules(&[rule(&[""], &["secrets"], &["get"], &["ml-platform"])])),
                    );
                    let who = vec![subject("ServiceAccount", "bot", Some("other"))];
                    ns.set_binding("view", Binding::new(&role_ref("ClusterRole", "view"), Some(&who), Some(NS)));
                    ns.set_binding("peek", Binding::new(&role_ref("Role", "peek"), Some(&who), Some(NS)));
                },
                &["ServiceAccount other/bot through RoleBinding fin-dev/peek (Role peek)"],
                &[],
            ),
            (
                "a custom reader of another Secret reads nothing here",
                |rbac| {
                    let ns = rbac.namespaces.get_mut(NS).unwrap();
                    ns.set_role("peek", Some(Grants::from_rules(&[rule(&[""], &["secrets"], &["get"], &["ghcr"])])));
                    let who = vec![subject("User", "eve", None)];
                    ns.set_binding("peek", Binding::new(&role_ref("Role", "peek"), Some(&who), Some(NS)));
                },
                &[],
                &[],
            ),
            (
                "a wildcard ClusterRoleBinding",
                |rbac| {
                    let who = vec![subject("Group", "system:authenticated", None)];
                    let b = Binding::new(&role_ref("ClusterRole", "cluster-admin"), Some(&who), None).unwrap();
                    rbac.cluster_bindings.insert("everyone-admin".into(), b);
                },
                &["Group system:authenticated through ClusterRoleBinding everyone-admin (ClusterRole cluster-admin)"],
                &[
                    "Group system:authenticated may create pods in fin-dev through ClusterRoleBinding everyone-admin (ClusterRole cluster-admin)",
                ],
            ),
            (
                "pods/create in the namespace",
                |rbac| {
                    let ns = rbac.namespaces.get_mut(NS).unwrap();
                    ns.set_role("runner", Some(Grants::from_rules(&[rule(&[""], &["pods"], &["create"], &[])])));
                    let who = vec![subject("User", "eve", None)];
                    ns.set_binding("runner", Binding::new(&role_ref("Role", "runner"), Some(&who), Some(NS)));
                },
                &[],
                &["User eve may create pods in fin-dev through RoleBinding fin-dev/runner (Role runner)"],
            ),
            (
                "tokens of the declared reader",
                |rbac| {
                    let mut ns = Namespaced::default();
                    ns.set_role(
                        "tokens",
                        Some(Grants::from_rules(&[rule(
                            &[""],
                            &["serviceaccounts/token"],
                            &["create"],
                            &["argo-workflow"],
                        )])),
                    );
                    let who = vec![subject("User", "mallory", None)];
                    ns.set_binding("tokens", Binding::new(&role_ref("Role", "tokens"), Some(&who), Some("argowf")));
                    rbac.namespaces.insert("argowf".into(), ns);
                },
                &[],
                &[
                    "User mallory may create tokens of ServiceAccount argowf/argo-workflow through RoleBinding argowf/tokens (Role tokens)",
                ],
            ),
            (
                "impersonation granted cluster-wide",
                |rbac| {
                    let rules = vec![rule(&[""], &["users", "groups"], &["impersonate"], &[])];
                    let role = k8s::ClusterRole { rules: Some(rules), ..Default::default() };
                    rbac.cluster_roles.insert("impersonator".into(), ClusterRole::new(&role));
                    let who = vec![subject("User", "mallory", None)];
                    let b = Binding::new(&role_ref("ClusterRole", "impersonator"), Some(&who), None).unwrap();
                    rbac.cluster_bindings.insert("impersonator".into(), b);
                },
                &[],
                &[
                    "User mallory may impersonate anyone through ClusterRoleBinding impersonator (ClusterRole impersonator)",
                ],
            ),
            (
                "an expected controller with every right is not reported",
                |rbac| {
                    let who = vec![subject("ServiceAccount", "namespace-controller", Some("kube-system"))];
                    let b = Binding::new(&role_ref("ClusterRole", "cluster-admin"), Some(&who), None).unwrap();
                    rbac.cluster_bindings.insert("system:controller:namespace-controller".into(), b);
                },
                &[],
                &[],
            ),
        ];
        for (why, edit, unexpected, indirect) in rows {
            let mut rbac = cluster();
            edit(&mut rbac);
            let exposures = run(&rbac);
            let ml = &exposures[0];
            assert_eq!(described(ml, |f| f.reach == Reach::Unexpected), unexpected, "{why}: unexpected");
            assert_eq!(described(ml, |f| matches!(f.reach, Reach::Indirect { .. })), indirect, "{why}: indirect");
        }
    }

    #[test]
    fn reviews_ask_about_the_secret_where_it_is() {
        let mut rbac = cluster();
        let ns = rbac.namespaces.get_mut(NS).unwrap();
        ns.set_role("peek", Some(Grants::from_rules(&[rule(&[""], &["secrets"], &["get"], &["ml-platform"])])));
        ns.set_binding(
            "peek",
            Binding::new(&role_ref("Role", "peek"), Some(&vec![subject("User", "eve", None)]), Some(NS)),
        );
        let who = vec![subject("User", "bob", None)];
        rbac.cluster_bindings
            .insert("bob-edit".into(), Binding::new(&role_ref("ClusterRole", "edit"), Some(&who), None).unwrap());
        let exposures = run(&rbac);
        let checks: Vec<(String, Option<String>, Option<String>)> = exposures[0]
            .unexpected()
            .map(|f| (f.subject.to_string(), f.checks[0].namespace.clone(), f.checks[0].name.clone()))
            .collect();
        assert_eq!(
            checks,
            [
                ("User eve".to_string(), Some(NS.to_string()), Some("ml-platform".to_string())),
                ("User bob".to_string(), Some(NS.to_string()), Some("ml-platform".to_string())),
            ]
        );
    }

    #[test]
    fn too_many_subjects_or_objects_are_reported_not_hidden() {
        let mut rbac = cluster();
        let many: Vec<k8s::Subject> = (0..100).map(|i| subject("User", &format!("u{i}"), None)).collect();
        let ns = rbac.namespaces.get_mut(NS).unwrap();
        ns.set_binding("crowd", Binding::new(&role_ref("ClusterRole", "edit"), Some(&many), Some(NS)));
        let exposures = run(&rbac);
        assert_eq!(exposures[0].unexpected_count(), 100);
        assert_eq!(exposures[0].unlisted, [("RoleBinding fin-dev/crowd".to_string(), 36)]);
        rbac.namespaces.get_mut(NS).unwrap().roles.over_limit = true;
        assert!(
            run(&rbac)[0]
                .unknown
                .as_deref()
                .unwrap()
                .contains("more Roles or RoleBindings than are examined (1024 of each, 1024 KiB of names)")
        );
    }

    #[test]
    fn declared_readers_are_those_the_spec_names_for_the_secret() {
        let mut spec = crate::api::MLTenantSpec::with_environments(&["dev"]);
        spec.secrets =
            Some(vec![crate::api::SecretSpec::new("ml-platform", "b"), crate::api::SecretSpec::new("ghcr", "g")]);
        spec.secret_readers = Some(vec![
            crate::api::SecretReader::new("argowf", "argo-workflow"),
            crate::api::SecretReader::new("ci", "puller").secrets(&["ghcr"]),
        ]);
        let tenant = MLTenant::new("fin", spec);
        assert_eq!(declared_readers(&tenant, "ml-platform"), [Subject::service_account("argowf", "argo-workflow")]);
        assert_eq!(declared_readers(&tenant, "ghcr").len(), 2);
    }
}
