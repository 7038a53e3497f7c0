use k8s_openapi::api::rbac::v1 as k8s;

use super::*;
use crate::access::exposure::identity::{DEFAULT_ADMINS, DEFAULT_CONTROLLERS};
use crate::access::exposure::rbac::{Binding, ClusterRole};

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
    k8s::Subject { kind: kind.into(), name: name.into(), namespace: namespace.map(Into::into), ..Default::default() }
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
            Wanted { name: "ml-platform".into(), readers: vec![Subject::service_account("argowf", "argo-workflow")] },
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
    assert_eq!(exposures[1].findings.iter().filter(|f| f.reach == Reach::Declared).count(), 0, "ghcr has no reader");
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
                ns.set_role("peek", Some(Grants::from_rules(&[rule(&[""], &["secrets"], &["get"], &["ml-platform"])])));
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
            &["User mallory may impersonate anyone through ClusterRoleBinding impersonator (ClusterRole impersonator)"],
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
