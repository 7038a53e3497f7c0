//! `cargo bench --bench access`: what "who can read" and "who did read" cost, on one core.
//!
//! RBAC: a cluster of 1,000 tenants with three environments each (3,000 namespaces, each with
//! the operator's reader Role and RoleBinding, a team's `edit` and `view` bindings and a CI
//! Role and binding), the bootstrap-like ClusterRoles and 2,000 ClusterRoleBindings of
//! controllers and users; the resident memory its compact form takes, the time to compute the
//! effective grants once per RBAC change, and the time to assess every tenant's Secrets (what
//! an RBAC change costs the controller, which reconciles them all).
//!
//! Audit: batches of 400 Metadata-level events (the API server's default batch size) about
//! Secrets of those tenants, counted as the sink does; events per second.

use std::time::Instant;

use k8s_openapi::api::rbac::v1 as k8s;
use mltenant_operator::access::exposure::assess::{self, Place, Wanted};
use mltenant_operator::access::exposure::identity::{DEFAULT_ADMINS, DEFAULT_CONTROLLERS, Expected, Subject};
use mltenant_operator::access::exposure::rbac::{Binding, ClusterRole, Namespaced, Rbac};
use mltenant_operator::access::exposure::rules::Grants;
use mltenant_operator::access::usage::{Published, Usage};
use mltenant_operator::server::audit::events;
use serde_json::json;

const TENANTS: usize = 1_000;
const ENVIRONMENTS: [&str; 3] = ["dev", "staging", "production"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> k8s::PolicyRule {
    let mut rule = json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
    if !names.is_empty() {
        rule["resourceNames"] = json!(names);
    }
    serde_json::from_value(rule).unwrap()
}

fn role_ref(kind: &str, name: &str) -> k8s::RoleRef {
    k8s::RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: kind.into(), name: name.into() }
}

fn subject(kind: &str, name: &str, namespace: Option<&str>) -> k8s::Subject {
    k8s::Subject { kind: kind.into(), name: name.into(), namespace: namespace.map(Into::into), ..Default::default() }
}

fn namespace(t: usize, env: &str) -> String {
    if env == "production" { format!("team-{t}") } else { format!("team-{t}-{env}") }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn cluster() -> Rbac {
    let mut rbac = Rbac::default();
    let mut roles = vec![
        ("cluster-admin".to_owned(), vec![rule(&["*"], &["*"], &["*"], &[])]),
        (
            "edit".to_owned(),
            vec![rule(&["", "apps", "batch"], &["secrets", "pods", "deployments", "jobs"], &["*"], &[])],
        ),
        (
            "view".to_owned(),
            vec![rule(&["", "apps"], &["pods", "configmaps", "deployments"], &["get", "list", "watch"], &[])],
        ),
    ];
    for i in 0..200 {
        let rules = (0..10).map(|j| rule(&["example.com"], &[&format!("thing{j}")], &["get", "list"], &[])).collect();
        roles.push((format!("custom-{i}"), rules));
    }
    for (name, rules) in roles {
        rbac.cluster_roles
            .insert(name, ClusterRole::new(&k8s::ClusterRole { rules: Some(rules), ..Default::default() }));
    }
    for i in 0..2_000 {
        let (role, who) = match i % 4 {
            0 => ("cluster-admin", subject("ServiceAccount", &format!("controller-{i}"), Some("kube-system"))),
            1 => ("view", subject("Group", &format!("team-{i}-viewers"), None)),
            2 => ("custom-7", subject("User", &format!("user-{i}@example.com"), None)),
            _ => ("view", subject("ServiceAccount", &format!("monitor-{i}"), Some("monitoring"))),
        };
        let binding = Binding::new(&role_ref("ClusterRole", role), Some(&vec![who]), None).unwrap();
        rbac.cluster_bindings.insert(format!("binding-{i}"), binding);
    }
    for t in 0..TENANTS {
        for env in ENVIRONMENTS {
            let ns = namespace(t, env);
            let mut kept = Namespaced::default();
            let reader = "mltenant-reader-argowf-argo-workflow";
            kept.set_role(
                reader,
                Some(Grants::from_rules(&[rule(&[""], &["secrets"], &["get"], &["ml-platform", "ghcr"])])),
            );
            let argo = vec![subject("ServiceAccount", "argo-workflow", Some("argowf"))];
            kept.set_binding(reader, Binding::new(&role_ref("Role", reader), Some(&argo), Some(&ns)));
            let team = vec![subject("Group", &format!("team-{t}-admins"), None)];
            let admin_role = if env == "dev" { "edit" } else { "view" };
            kept.set_binding("team", Binding::new(&role_ref("ClusterRole", admin_role), Some(&team), Some(&ns)));
            kept.set_binding("team-view", Binding::new(&role_ref("ClusterRole", "view"), Some(&team), Some(&ns)));
            kept.set_role("ci", Some(Grants::from_rules(&[rule(&["apps"], &["deployments"], &["get", "list"], &[])])));
            let ci = vec![subject("ServiceAccount", "ci", Some(&ns))];
            kept.set_binding("ci", Binding::new(&role_ref("Role", "ci"), Some(&ci), Some(&ns)));
            rbac.namespaces.insert(ns, kept);
        }
    }
    rbac
}

fn places(t: usize) -> Vec<Place> {
    let argo = Subject::service_account("argowf", "argo-workflow");
    ENVIRONMENTS
        .iter()
        .map(|env| Place {
            environment: env.to_string(),
            namespace: namespace(t, env),
            secrets: ["ml-platform", "ghcr"]
                .iter()
                .map(|s| Wanted { name: s.to_string(), readers: vec![argo.clone()] })
                .collect(),
        })
        .collect()
}

fn main() {
    let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let expected = Expected::parse(&owned(DEFAULT_ADMINS), &owned(DEFAULT_CONTROLLERS)).unwrap();

    let before = rss_kib();
    let start = Instant::now();
    let rbac = cluster();
    let built = start.elapsed();
    let held = rss_kib().saturating_sub(before);
    let counts = rbac.counts();
    let start = Instant::now();
    let effective = rbac.effective();
    let effective_took = start.elapsed();
    let start = Instant::now();
    let mut findings = 0;
    for t in 0..TENANTS {
        findings += assess::assess(&rbac, &effective, &expected, &places(t), assess::Detail::Reportable)
            .iter()
            .map(|e| e.findings.len())
            .sum::<usize>();
    }
    let assessed = start.elapsed();
    let start = Instant::now();
    let listed = assess::assess(&rbac, &effective, &expected, &places(0), assess::Detail::Everything);
    let one_everything = start.elapsed();
    let listed: usize = listed.iter().map(|e| e.findings.len()).sum();
    println!("RBAC set: {counts:?}");
    println!("  compact form: {held} KiB resident (built in {built:?})");
    println!("  effective grants once per RBAC change: {effective_took:?}");
    println!("  every tenant assessed ({TENANTS} tenants, {} Secrets, {findings} findings): {assessed:?}", TENANTS * 6);
    println!(
        "  one tenant listed with every expected identity (mltenant access): {listed} findings in {one_everything:?}"
    );

    let usage = Usage::new(std::time::Duration::from_secs(3600));
    for t in 0..TENANTS {
        let published = ENVIRONMENTS
            .iter()
            .map(|env| Published {
                namespace: namespace(t, env),
                environment: env.to_string(),
                secrets: ["ml-platform", "ghcr"]
                    .iter()
                    .map(|s| (s.to_string(), vec![("argowf/argo-workflow".to_string(), None, None)]))
                    .collect(),
            })
            .collect();
        usage.publish(&format!("team-{t}"), published, 0);
    }
    const BATCH: usize = 400;
    const BATCHES: usize = 500;
    let batches: Vec<Vec<u8>> = (0..BATCHES)
        .map(|b| {
            let items: Vec<_> = (0..BATCH)
                .map(|i| {
                    let n = b * BATCH + i;
                    let (user, code) = match n % 4 {
                        0 => ("system:serviceaccount:argowf:argo-workflow".to_string(), 200),
                        1 => (format!("user-{n}@example.com"), 403),
                        2 => ("system:kube-controller-manager".to_string(), 200),
                        _ => (format!("system:serviceaccount:ns-{n}:bot"), 200),
                    };
                    json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": format!("{n:032x}"),
                        "stage": "ResponseComplete", "requestURI": format!("/api/v1/namespaces/team-{}/secrets/ml-platform", n % TENANTS),
                        "verb": "get", "user": {"username": user, "uid": "u", "groups": ["system:serviceaccounts", "system:authenticated"]},
                        "sourceIPs": ["10.0.0.1"], "userAgent": "argoexec/v3.5",
                        "objectRef": {"resource": "secrets", "namespace": format!("team-{}", n % (TENANTS * 2)), "name": "ml-platform", "apiVersion": "v1"},
                        "responseStatus": {"metadata": {}, "code": code},
                        "requestReceivedTimestamp": "2026-12-06T10:00:00.000000Z", "stageTimestamp": "2026-12-06T10:00:00.001000Z",
                        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed by RoleBinding"}})
                })
                .collect();
            serde_json::to_vec(&json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})).unwrap()
        })
        .collect();
    let bytes: usize = batches.iter().map(Vec::len).sum();
    let start = Instant::now();
    for body in &batches {
        events::count(body, 4096, &expected, &usage).unwrap();
    }
    let took = start.elapsed();
    let events = (BATCH * BATCHES) as f64;
    println!(
        "audit: {BATCHES} batches of {BATCH} events ({} KiB a batch) counted in {took:?}: {:.0} events/s on one core",
        bytes / BATCHES / 1024,
        events / took.as_secs_f64()
    );
}
