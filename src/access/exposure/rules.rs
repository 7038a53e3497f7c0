//! What a role's rules let its subjects do to a distributed Secret, held compactly: a set of
//! capabilities and the Secret names readable through `resourceNames`. Everything else a rule
//! says is dropped, so a role takes the same few bytes however many rules it has.
//!
//! Direct reads are `get`, `list` and `watch` on `secrets` (`resourceNames` limit `get`, and
//! `list`/`watch` through a `metadata.name` field selector, so a named rule reads that Secret
//! with any of the three). Indirect reads are what obtains a Secret without those verbs:
//! creating pods or workloads where it lives (a pod mounts it), exec into pods there,
//! impersonation, `bind`/`escalate` on roles, and tokens of a reader. Matching follows RBAC's
//! own (`*` for verbs, groups and resources, `*/subresource`); where the compact form is coarser
//! than the rule (too many names, names on an indirect verb), it says more, never less: every
//! subject it finds is confirmed with a SubjectAccessReview before it is reported.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Capabilities, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Caps(u16);

impl Caps {
    /// `get`, `list`, `watch` on every Secret of the namespace (or cluster).
    pub const SECRET_GET: Caps = Caps(1);
    pub const SECRET_LIST: Caps = Caps(1 << 1);
    pub const SECRET_WATCH: Caps = Caps(1 << 2);
    /// Create pods: a pod may mount any Secret of its namespace.
    pub const POD_CREATE: Caps = Caps(1 << 3);
    /// Create or change workloads, whose pod templates may mount any Secret.
    pub const WORKLOAD_WRITE: Caps = Caps(1 << 4);
    /// Exec into or attach to pods (one that mounts the Secret, or runs as a reader).
    pub const POD_EXEC: Caps = Caps(1 << 5);
    /// Impersonate users, groups or ServiceAccounts.
    pub const IMPERSONATE: Caps = Caps(1 << 6);
    /// `bind` or `escalate` roles: grant oneself what the role grants.
    pub const RBAC_ESCALATE: Caps = Caps(1 << 7);
    /// Create tokens of ServiceAccounts (`serviceaccounts/token`).
    pub const TOKEN_CREATE: Caps = Caps(1 << 8);

    pub const NONE: Caps = Caps(0);
    pub const READ: Caps = Caps(Self::SECRET_GET.0 | Self::SECRET_LIST.0 | Self::SECRET_WATCH.0);

    pub fn contains(self, other: Caps) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: Caps) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Caps {
    type Output = Caps;
    fn bitor(self, other: Caps) -> Caps {
        Caps(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for Caps {
    fn bitor_assign(&mut self, other: Caps) {
        self.0 |= other.0;
    }
}

/// Secret names kept per role at most; a role naming more is taken to read every Secret (and
/// each reader it finds so is confirmed by a review of the Secret's own name).
pub const MAX_NAMES: usize = 64;
/// The longest Secret name (a DNS subdomain).
const MAX_SECRET_NAME: usize = 253;

/// What one role (its rules, or a ClusterRole's with what it aggregates) grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    pub caps: Caps,
    /// Secrets readable by name (sorted, distinct), besides `caps`.
    pub names: Vec<Box<str>>,
}

/// One request a SubjectAccessReview asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Request {
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    pub verb: &'static str,
}

const fn request(
    group: &'static str,
    resource: &'static str,
    sub: Option<&'static str>,
    verb: &'static str,
) -> Request {
    Request { group, resource, subresource: sub, verb }
}

/// An indirect way to a Secret: the capability, what it means in a message, and the requests
/// a SubjectAccessReview confirms it with (any one allowed confirms it).
#[derive(Debug, PartialEq, Eq)]
pub struct Indirect {
    pub caps: Caps,
    pub what: &'static str,
    pub requests: &'static [Request],
}

const WORKLOADS: [(&str, &str); 7] = [
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("", "replicationcontrollers"),
];

pub const POD_CREATE: Indirect =
    Indirect { caps: Caps::POD_CREATE, what: "may create pods", requests: &[request("", "pods", None, "create")] };
pub const WORKLOAD_WRITE: Indirect = Indirect {
    caps: Caps::WORKLOAD_WRITE,
    what: "may create or change workloads (Deployments, Jobs, ...)",
    requests: &[
        request("apps", "deployments", None, "create"),
        request("apps", "deployments", None, "patch"),
        request("apps", "statefulsets", None, "create"),
        request("apps", "daemonsets", None, "create"),
        request("apps", "replicasets", None, "create"),
        request("batch", "jobs", None, "create"),
        request("batch", "cronjobs", None, "create"),
        request("", "replicationcontrollers", None, "create"),
    ],
};
pub const POD_EXEC: Indirect = Indirect {
    caps: Caps::POD_EXEC,
    what: "may exec into pods",
    requests: &[request("", "pods", Some("exec"), "create"), request("", "pods", Some("attach"), "create")],
};
pub const IMPERSONATE: Indirect = Indirect {
    caps: Caps::IMPERSONATE,
    what: "may impersonate",
    requests: &[
        request("", "users", None, "impersonate"),
        request("", "groups", None, "impersonate"),
        request("", "serviceaccounts", None, "impersonate"),
    ],
};
pub const RBAC_ESCALATE: Indirect = Indirect {
    caps: Caps::RBAC_ESCALATE,
    what: "may bind or escalate roles",
    requests: &[
        request("rbac.authorization.k8s.io", "roles", None, "bind"),
        request("rbac.authorization.k8s.io", "roles", None, "escalate"),
        request("rbac.authorization.k8s.io", "clusterroles", None, "bind"),
        request("rbac.authorization.k8s.io", "clusterroles", None, "escalate"),
    ],
};
pub const TOKEN_CREATE: Indirect = Indirect {
    caps: Caps::TOKEN_CREATE,
    what: "may create tokens of",
    requests: &[request("", "serviceaccounts", Some("token"), "create")],
};

/// The direct reads, in the order a review asks about them.
pub const READS: [(Caps, Request); 3] = [
    (Caps::SECRET_GET, request("", "secrets", None, "get")),
    (Caps::SECRET_LIST, request("", "secrets", None, "list")),
    (Caps::SECRET_WATCH, request("", "secrets", None, "watch")),
];

impl Grants {
    /// The grants of `rules`.
    pub fn from_rules(rules: &[PolicyRule]) -> Self {
        let mut grants = Grants::default();
        let mut names: Vec<Box<str>> = Vec::new();
        let mut too_many = false;
        for rule in rules {
            let named = rule.resource_names.as_ref().is_some_and(|n| !n.is_empty());
            for (caps, read) in READS {
                if matches(rule, read.group, "secrets", None, read.verb) {
                    match &rule.resource_names {
                        Some(listed) if named => {
                            // A name no Secret can have (longer than a DNS subdomain) reads
                            // nothing of ours: not kept, so a role's names stay small.
                            let listed = listed.iter().filter(|n| n.len() <= MAX_SECRET_NAME);
                            for name in listed {
                                too_many |= names.len() >= 4 * MAX_NAMES;
                                if too_many {
                                    break;
                                }
                                names.push(name.as_str().into());
                            }
                        }
                        _ => grants.caps |= caps,
                    }
                }
            }
            // A create names no object, so a rule with resourceNames never allows one.
            if !named && matches(rule, "", "pods", None, "create") {
                grants.caps |= Caps::POD_CREATE;
            }
            let workload = |verb| WORKLOADS.iter().any(|(group, resource)| matches(rule, group, resource, None, verb));
            if (!named && workload("create")) || workload("update") || workload("patch") {
                grants.caps |= Caps::WORKLOAD_WRITE;
            }
            let exec = ["exec", "attach"].iter().any(|sub| {
                matches(rule, "", "pods", Some(sub), "create") || matches(rule, "", "pods", Some(sub), "get")
            });
            if exec {
                grants.caps |= Caps::POD_EXEC;
            }
            if ["users", "groups", "serviceaccounts"].iter().any(|r| matches(rule, "", r, None, "impersonate")) {
                grants.caps |= Caps::IMPERSONATE;
            }
            let rbac = "rbac.authorization.k8s.io";
            let escalates = ["roles", "clusterroles"]
                .iter()
                .any(|r| matches(rule, rbac, r, None, "bind") || matches(rule, rbac, r, None, "escalate"));
            if escalates {
                grants.caps |= Caps::RBAC_ESCALATE;
            }
            if matches(rule, "", "serviceaccounts", Some("token"), "create") {
                grants.caps |= Caps::TOKEN_CREATE;
            }
        }
        names.sort_unstable();
        names.dedup();
        if too_many || names.len() > MAX_NAMES {
            grants.caps |= Caps::SECRET_GET;
            names.clear();
        }
        grants.names = names;
        grants
    }

    /// Add what `other` grants.
    pub fn union(&mut self, other: &Grants) {
        self.caps |= other.caps;
        if self.caps.contains(Caps::SECRET_GET) {
            self.names.clear();
            return;
        }
        self.names.extend(other.names.iter().cloned());
        self.names.sort_unstable();
        self.names.dedup();
        if self.names.len() > MAX_NAMES {
            self.caps |= Caps::SECRET_GET;
            self.names.clear();
        }
    }

    /// The first request reading Secret `secret` these grants allow (what a review asks).
    pub fn reads(&self, secret: &str) -> Option<Request> {
        let named = self.names.binary_search_by(|n| (**n).cmp(secret)).is_ok();
        READS.iter().find(|(caps, _)| named || self.caps.contains(*caps)).map(|(_, request)| *request)
    }

    /// Whether these grants read any Secret at all, or have any indirect capability.
    pub fn matters(&self) -> bool {
        !self.caps.is_empty() || !self.names.is_empty()
    }
}

/// Whether `rule` allows `verb` on `resource` (with `subresource`) of API group `group`, for
/// some object name: RBAC's matching of groups, resources (`*`, exact, `*/subresource`) and
/// verbs (`*` or exact), names aside.
fn matches(rule: &PolicyRule, group: &str, resource: &str, subresource: Option<&str>, verb: &str) -> bool {
    let verbs = rule.verbs.iter().any(|v| v == "*" || v == verb);
    let groups = rule.api_groups.iter().flatten().any(|g| g == "*" || g == group);
    let combined = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    let resources = rule
        .resources
        .iter()
        .flatten()
        .any(|r| r == "*" || *r == combined || subresource.is_some_and(|sub| r.strip_prefix("*/") == Some(sub)));
    verbs && groups && resources
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(owned(groups)),
            resources: Some(owned(resources)),
            verbs: owned(verbs),
            resource_names: (!names.is_empty()).then(|| owned(names)),
            ..Default::default()
        }
    }

    #[test]
    fn what_each_rule_grants() {
        type Row<'a> = (&'a str, PolicyRule, Caps, &'a [&'a str]);
        let rows: Vec<Row> = vec![
            ("get on every Secret", rule(&[""], &["secrets"], &["get"], &[]), Caps::SECRET_GET, &[]),
            (
                "list and watch",
                rule(&[""], &["secrets"], &["list", "watch"], &[]),
                Caps::SECRET_LIST | Caps::SECRET_WATCH,
                &[],
            ),
            ("get by name", rule(&[""], &["secrets"], &["get"], &["b", "a"]), Caps::NONE, &["a", "b"]),
            ("list by name (a field selector)", rule(&[""], &["secrets"], &["list"], &["a"]), Caps::NONE, &["a"]),
            ("the wrong group", rule(&["apps"], &["secrets"], &["get"], &[]), Caps::NONE, &[]),
            ("create Secrets reads none", rule(&[""], &["secrets"], &["create", "delete"], &[]), Caps::NONE, &[]),
            (
                "every verb, resource and group",
                rule(&["*"], &["*"], &["*"], &[]),
                Caps::READ
                    | Caps::POD_CREATE
                    | Caps::WORKLOAD_WRITE
                    | Caps::POD_EXEC
                    | Caps::IMPERSONATE
                    | Caps::RBAC_ESCALATE
                    | Caps::TOKEN_CREATE,
                &[],
            ),
            ("pods", rule(&[""], &["pods"], &["create"], &[]), Caps::POD_CREATE, &[]),
            ("a create limited by name allows none", rule(&[""], &["pods"], &["create"], &["p"]), Caps::NONE, &[]),
            ("Jobs", rule(&["batch"], &["jobs"], &["create"], &[]), Caps::WORKLOAD_WRITE, &[]),
            ("patching a Deployment", rule(&["apps"], &["deployments"], &["patch"], &["d"]), Caps::WORKLOAD_WRITE, &[]),
            ("exec", rule(&[""], &["pods/exec"], &["create"], &[]), Caps::POD_EXEC, &[]),
            ("*/attach", rule(&[""], &["*/attach"], &["get"], &[]), Caps::POD_EXEC, &[]),
            ("pods alone is not exec", rule(&[""], &["pods"], &["get", "list"], &[]), Caps::NONE, &[]),
            ("impersonate", rule(&[""], &["serviceaccounts"], &["impersonate"], &["a"]), Caps::IMPERSONATE, &[]),
            (
                "bind",
                rule(&["rbac.authorization.k8s.io"], &["clusterroles"], &["bind"], &["admin"]),
                Caps::RBAC_ESCALATE,
                &[],
            ),
            ("tokens", rule(&[""], &["serviceaccounts/token"], &["create"], &["r"]), Caps::TOKEN_CREATE, &[]),
            (
                "view-like reads",
                rule(&["", "apps"], &["pods", "configmaps", "deployments"], &["get", "list"], &[]),
                Caps::NONE,
                &[],
            ),
        ];
        for (why, rule, caps, names) in rows {
            let grants = Grants::from_rules(&[rule]);
            assert_eq!(grants.caps, caps, "{why}");
            let kept: Vec<&str> = grants.names.iter().map(|n| &**n).collect();
            assert_eq!(kept, names, "{why}");
        }
    }

    #[test]
    fn reads_name_the_request_a_review_asks() {
        let named = Grants::from_rules(&[rule(&[""], &["secrets"], &["watch"], &["ml-platform"])]);
        assert_eq!(named.reads("ml-platform").map(|r| r.verb), Some("get"), "a named rule reads with any verb");
        assert_eq!(named.reads("ghcr"), None);
        let list = Grants::from_rules(&[rule(&[""], &["secrets"], &["list"], &[])]);
        assert_eq!(list.reads("anything").map(|r| r.verb), Some("list"));
    }

    #[test]
    fn a_role_naming_too_many_secrets_is_taken_to_read_all() {
        let names: Vec<String> = (0..=MAX_NAMES).map(|i| format!("s{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let grants = Grants::from_rules(&[rule(&[""], &["secrets"], &["get"], &names)]);
        assert!(grants.caps.contains(Caps::SECRET_GET) && grants.names.is_empty());
        // A huge role is as small as any once compacted.
        let rules: Vec<PolicyRule> =
            (0..10_000).map(|i| rule(&[""], &["secrets"], &["get"], &[&format!("n{i}")])).collect();
        let grants = Grants::from_rules(&rules);
        assert!(grants.caps.contains(Caps::SECRET_GET) && grants.names.is_empty());
        // Names no Secret can have are not kept at all.
        let long = "n".repeat(1024 * 1024);
        let grants = Grants::from_rules(&[rule(&[""], &["secrets"], &["get"], &[&long, &long, "ok"])]);
        assert_eq!((grants.caps, grants.names.as_slice()), (Caps::NONE, &["ok".into()][..]));
    }

    #[test]
    fn unions_stay_bounded() {
        let mut grants = Grants::from_rules(&[rule(&[""], &["secrets"], &["get"], &["a"])]);
        for i in 0..MAX_NAMES {
            grants.union(&Grants::from_rules(&[rule(&[""], &["secrets"], &["get"], &[&format!("n{i}")])]));
        }
        assert!(grants.caps.contains(Caps::SECRET_GET) && grants.names.is_empty());
    }
}
