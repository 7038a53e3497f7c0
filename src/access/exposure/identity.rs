//! Who RBAC names and who sends requests: subjects (ServiceAccounts, users, groups), the
//! platform identities an installation expects to read Secrets (cluster admins, controllers),
//! and the closed set of kinds reads are counted by (`admin`, `controller`, `serviceaccount`,
//! `user`), so that no user or subject name ever becomes a metric label.

use std::collections::BTreeSet;
use std::fmt;

/// The user name of a ServiceAccount: `system:serviceaccount:<namespace>:<name>`.
const SERVICE_ACCOUNT_USER: &str = "system:serviceaccount:";
/// The group of every ServiceAccount of a namespace: `system:serviceaccounts:<namespace>`.
const SERVICE_ACCOUNTS_OF: &str = "system:serviceaccounts:";

/// Longest subject name kept as it is. RBAC does not bound user and group names; a longer one
/// is kept shortened with a digest (a review of it says no, so such a subject goes unreported:
/// docs/security.md). 256 holds any ServiceAccount (`namespace:name`) and e-mail address, and
/// keeps a namespace's bindings within [`super::rbac::MAX_PER_NAMESPACE`] x
/// [`super::rbac::MAX_SUBJECTS`] x 256 bytes whoever writes them.
const MAX_NAME: usize = 256;

/// An identity a binding grants to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    ServiceAccount { namespace: String, name: String },
    User(String),
    Group(String),
}

impl Subject {
    /// A binding's subject; a ServiceAccount without a namespace is in the binding's own
    /// (`binding_namespace`, none for a ClusterRoleBinding, where such a subject grants nothing).
    /// Kinds RBAC does not know grant nothing either.
    pub fn from_rbac(subject: &k8s_openapi::api::rbac::v1::Subject, binding_namespace: Option<&str>) -> Option<Self> {
        let name = bounded(&subject.name);
        match subject.kind.as_str() {
            "ServiceAccount" => {
                let namespace = subject.namespace.as_deref().filter(|n| !n.is_empty()).or(binding_namespace)?;
                Some(Subject::ServiceAccount { namespace: bounded(namespace), name })
            }
            "User" => Some(Subject::user(&name)),
            "Group" => Some(Subject::Group(name)),
            _ => None,
        }
    }

    /// The subject a user name is: a ServiceAccount's user name is that account.
    pub fn user(name: &str) -> Self {
        match name.strip_prefix(SERVICE_ACCOUNT_USER).and_then(|rest| rest.split_once(':')) {
            Some((namespace, account)) if !namespace.is_empty() && !account.is_empty() && !account.contains(':') => {
                Subject::ServiceAccount { namespace: namespace.to_owned(), name: account.to_owned() }
            }
            _ => Subject::User(name.to_owned()),
        }
    }

    /// The ServiceAccount `namespace/name`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Subject::ServiceAccount { namespace: namespace.to_owned(), name: name.to_owned() }
    }

    /// How a SubjectAccessReview names this subject: user and groups. A ServiceAccount comes with
    /// the groups the API server gives every one; a group is reviewed alone, as a member who is
    /// nothing else (a user name no identity has).
    pub fn review_identity(&self) -> (String, Vec<String>) {
        match self {
            Subject::ServiceAccount { namespace, name } => (
                format!("{SERVICE_ACCOUNT_USER}{namespace}:{name}"),
                vec![
                    "system:serviceaccounts".to_owned(),
                    format!("{SERVICE_ACCOUNTS_OF}{namespace}"),
                    "system:authenticated".to_owned(),
                ],
            ),
            Subject::User(name) => (name.clone(), vec!["system:authenticated".to_owned()]),
            Subject::Group(group) => ("mltenant:review:group-member".to_owned(), vec![group.clone()]),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::ServiceAccount { namespace, name } => write!(f, "ServiceAccount {namespace}/{name}"),
            Subject::User(name) => write!(f, "User {name}"),
            Subject::Group(name) => write!(f, "Group {name}"),
        }
    }
}

/// `name`, or, past [`MAX_NAME`], its start and a digest of the whole.
fn bounded(name: &str) -> String {
    if name.len() <= MAX_NAME { name.to_owned() } else { crate::text::fit_name(name, MAX_NAME) }
}

/// The kind a read or a refusal is counted by: the `kind` label, a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Admin,
    Controller,
    ServiceAccount,
    User,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Admin, Kind::Controller, Kind::ServiceAccount, Kind::User];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Admin => "admin",
            Kind::Controller => "controller",
            Kind::ServiceAccount => "serviceaccount",
            Kind::User => "user",
        }
    }

    /// Its position in [`Kind::ALL`] (counters are kept in arrays of four).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A set of identities: users, groups and ServiceAccounts (`namespace/*`: every account of the
/// namespace), written `user:NAME`, `group:NAME`, `serviceaccount:NAMESPACE/NAME`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identities {
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
    accounts: BTreeSet<(String, String)>,
}

impl Identities {
    /// Parse entries of the form above; the error names the entry and the forms.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut identities = Identities::default();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let refuse =
                || format!("{entry:?} is not user:NAME, group:NAME or serviceaccount:NAMESPACE/NAME (NAME may be *)");
            let (kind, name) = entry.split_once(':').ok_or_else(refuse)?;
            match kind {
                "user" if !name.is_empty() => identities.add(Subject::user(name)),
                "group" if !name.is_empty() => identities.add(Subject::Group(name.to_owned())),
                "serviceaccount" => match name.split_once('/') {
                    Some((namespace, account)) if !namespace.is_empty() && !account.is_empty() => {
                        identities.add(Subject::service_account(namespace, account));
                    }
                    _ => return Err(refuse()),
                },
                _ => return Err(refuse()),
            }
        }
        Ok(identities)
    }

    pub fn add(&mut self, subject: Subject) {
        match subject {
            Subject::ServiceAccount { namespace, name } => self.accounts.insert((namespace, name)),
            Subject::User(name) => self.users.insert(name),
            Subject::Group(name) => self.groups.insert(name),
        };
    }

    fn has_account(&self, namespace: &str, name: &str) -> bool {
        self.accounts.contains(&(namespace.to_owned(), name.to_owned()))
            || self.accounts.contains(&(namespace.to_owned(), "*".to_owned()))
    }

    /// Whether a binding's `subject` is one of these: named, or a group that stands for them
    /// (`system:serviceaccounts:<ns>` for `<ns>/*`), or a ServiceAccount in a group named here.
    pub fn names(&self, subject: &Subject) -> bool {
        match subject {
            Subject::ServiceAccount { namespace, name } => {
                self.has_account(namespace, name)
                    || self.groups.contains(&format!("{SERVICE_ACCOUNTS_OF}{namespace}"))
                    || self.groups.contains("system:serviceaccounts")
            }
            Subject::User(name) => self.users.contains(name),
            Subject::Group(group) => {
                self.groups.contains(group)
                    || group.strip_prefix(SERVICE_ACCOUNTS_OF).is_some_and(|ns| self.has_account(ns, "*"))
            }
        }
    }

    /// Whether a request sent as `user`, member of `groups`, comes from one of these.
    pub fn includes<'a>(&self, user: &str, groups: impl IntoIterator<Item = &'a str>) -> bool {
        let named = match Subject::user(user) {
            Subject::ServiceAccount { namespace, name } => self.has_account(&namespace, &name),
            _ => self.users.contains(user),
        };
        named || groups.into_iter().any(|g| self.groups.contains(g))
    }
}

/// Cluster admins: members of `system:masters` (who pass every authorisation check).
pub const DEFAULT_ADMINS: &[&str] = &["group:system:masters"];
/// What a Kubernetes control plane reads Secrets with: kube-controller-manager (and its
/// per-controller ServiceAccounts in kube-system), the scheduler, the API server itself and the
/// kubelets (through the Node authoriser).
pub const DEFAULT_CONTROLLERS: &[&str] = &[
    "user:system:kube-controller-manager",
    "user:system:kube-scheduler",
    "user:system:apiserver",
    "serviceaccount:kube-system/*",
    "group:system:nodes",
];

/// The platform identities expected to read the distributed Secrets, besides each Secret's
/// declared readers: what "expected" means is exactly this list (see docs/security.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub admins: Identities,
    pub controllers: Identities,
}

impl Expected {
    pub fn parse(admins: &[String], controllers: &[String]) -> Result<Self, String> {
        Ok(Expected { admins: Identities::parse(admins)?, controllers: Identities::parse(controllers)? })
    }

    /// The kind of an expected subject (an admin or a controller), none for anyone else.
    pub fn kind_of(&self, subject: &Subject) -> Option<Kind> {
        if self.admins.names(subject) {
            Some(Kind::Admin)
        } else if self.controllers.names(subject) {
            Some(Kind::Controller)
        } else {
            None
        }
    }

    /// The kind a request sent as `user` (member of `groups`) is counted by.
    pub fn classify<'a>(&self, user: &str, groups: impl IntoIterator<Item = &'a str> + Clone) -> Kind {
        if self.admins.includes(user, groups.clone()) {
            Kind::Admin
        } else if self.controllers.includes(user, groups) {
            Kind::Controller
        } else if matches!(Subject::user(user), Subject::ServiceAccount { .. }) {
            Kind::ServiceAccount
        } else {
            Kind::User
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| e.to_string()).collect()
    }

    fn expected() -> Expected {
        let admins = strings(DEFAULT_ADMINS);
        let mut controllers = strings(DEFAULT_CONTROLLERS);
        controllers.push("serviceaccount:mltenant-system/mltenant-operator".into());
        Expected::parse(&admins, &controllers).unwrap()
    }

    fn rbac(kind: &str, name: &str, namespace: Option<&str>) -> k8s_openapi::api::rbac::v1::Subject {
        k8s_openapi::api::rbac::v1::Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn subjects_as_rbac_names_them() {
        let sa = Subject::service_account("argowf", "argo-workflow");
        let rows: [(&str, k8s_openapi::api::rbac::v1::Subject, Option<&str>, Option<Subject>); 6] = [
            ("a ServiceAccount", rbac("ServiceAccount", "argo-workflow", Some("argowf")), None, Some(sa.clone())),
            (
                "a ServiceAccount of the binding's namespace",
                rbac("ServiceAccount", "argo-workflow", None),
                Some("argowf"),
                Some(sa.clone()),
            ),
            (
                "a ServiceAccount without a namespace in a ClusterRoleBinding",
                rbac("ServiceAccount", "x", None),
                None,
                None,
            ),
            (
                "a user that is a ServiceAccount",
                rbac("User", "system:serviceaccount:argowf:argo-workflow", None),
                None,
                Some(sa),
            ),
            (
                "a group",
                rbac("Group", "system:authenticated", None),
                None,
                Some(Subject::Group("system:authenticated".into())),
            ),
            ("an unknown kind", rbac("Robot", "r2", None), None, None),
        ];
        for (why, subject, namespace, want) in rows {
            assert_eq!(Subject::from_rbac(&subject, namespace), want, "{why}");
        }
        let huge = Subject::from_rbac(&rbac("User", &"u".repeat(100_000), None), None).unwrap();
        assert!(matches!(&huge, Subject::User(name) if name.len() <= MAX_NAME), "{huge:?}");
    }

    #[test]
    fn who_is_expected() {
        let e = expected();
        let rows: [(Subject, Option<Kind>); 9] = [
            (Subject::Group("system:masters".into()), Some(Kind::Admin)),
            (Subject::User("system:kube-controller-manager".into()), Some(Kind::Controller)),
            (Subject::service_account("kube-system", "namespace-controller"), Some(Kind::Controller)),
            (Subject::Group("system:serviceaccounts:kube-system".into()), Some(Kind::Controller)),
            (Subject::service_account("mltenant-system", "mltenant-operator"), Some(Kind::Controller)),
            (Subject::service_account("mltenant-system", "other"), None),
            (Subject::Group("system:serviceaccounts".into()), None),
            (Subject::Group("system:authenticated".into()), None),
            (Subject::User("alice".into()), None),
        ];
        for (subject, kind) in rows {
            assert_eq!(e.kind_of(&subject), kind, "{subject}");
        }
    }

    #[test]
    fn requests_are_counted_by_kind() {
        let e = expected();
        assert_eq!(e.classify("admin", ["system:masters", "system:authenticated"]), Kind::Admin);
        assert_eq!(e.classify("system:node:n1", ["system:nodes"]), Kind::Controller);
        assert_eq!(e.classify("system:serviceaccount:kube-system:job-controller", []), Kind::Controller);
        assert_eq!(e.classify("system:serviceaccount:argowf:argo-workflow", []), Kind::ServiceAccount);
        assert_eq!(e.classify("alice", ["system:authenticated"]), Kind::User);
        assert_eq!(e.classify("system:anonymous", ["system:unauthenticated"]), Kind::User);
    }

    #[test]
    fn identity_lists_are_parsed_or_refused_in_one_line() {
        let parsed = Identities::parse(&strings(&["group:system:masters", "serviceaccount:ops/*", " ", "user:bob"]));
        let parsed = parsed.unwrap();
        assert!(parsed.names(&Subject::service_account("ops", "anyone")));
        assert!(parsed.names(&Subject::User("bob".into())));
        for bad in ["bob", "team:x", "serviceaccount:ops", "serviceaccount:/x", "user:"] {
            let error = Identities::parse(&strings(&[bad])).unwrap_err();
            assert!(error.contains("is not user:NAME") && !error.contains('\n'), "{error}");
        }
    }
}
