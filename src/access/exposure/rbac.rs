//! The RBAC objects of a cluster as exposure needs them, compact: of a role its [`Grants`] (and
//! of a ClusterRole the labels and selectors aggregation reads), of a binding its role and
//! subjects. Each is bounded whatever the object holds (rules fold into a fixed-size summary,
//! subjects and labels are capped), and namespaced objects are kept for the namespaces that
//! matter only, at most [`MAX_PER_NAMESPACE`] of each kind per namespace: a user who may create
//! Roles in their namespace cannot grow the operator's memory past that.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::rbac::v1 as rbac;
use kube::core::{Selector, SelectorExt as _};

use super::identity::Subject;
use super::rules::Grants;

/// Subjects kept per binding; more are counted, not examined.
pub const MAX_SUBJECTS: usize = 64;
/// Roles, and bindings, kept per namespace; past that the namespace is over the limit and what
/// it grants is not known.
pub const MAX_PER_NAMESPACE: usize = 1024;
/// Labels and aggregation selectors kept per ClusterRole.
const MAX_LABELS: usize = 64;
const MAX_SELECTORS: usize = 16;
/// Longest role name kept (RBAC names are path segments, unbounded by RBAC itself).
const MAX_ROLE_NAME: usize = 253;

/// Which role a binding grants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleRef {
    Role(String),
    ClusterRole(String),
}

impl std::fmt::Display for RoleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoleRef::Role(name) => write!(f, "Role {name}"),
            RoleRef::ClusterRole(name) => write!(f, "ClusterRole {name}"),
        }
    }
}

/// A RoleBinding or ClusterRoleBinding, compact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub role: RoleRef,
    pub subjects: Vec<Subject>,
    /// Subjects past [`MAX_SUBJECTS`], not kept.
    pub unlisted: usize,
}

impl Binding {
    /// A RoleBinding (`namespace` its own: a ServiceAccount subject without one is there) or a
    /// ClusterRoleBinding (`None`). A roleRef of a kind RBAC does not know grants nothing.
    pub fn new(
        role_ref: &rbac::RoleRef,
        subjects: Option<&Vec<rbac::Subject>>,
        namespace: Option<&str>,
    ) -> Option<Self> {
        let name = crate::text::fit_name(&role_ref.name, MAX_ROLE_NAME);
        let role = match (role_ref.kind.as_str(), namespace) {
            ("Role", Some(_)) => RoleRef::Role(name),
            ("ClusterRole", _) => RoleRef::ClusterRole(name),
            _ => return None,
        };
        let all = subjects.map_or(&[][..], Vec::as_slice);
        let mut kept: Vec<Subject> =
            all.iter().take(MAX_SUBJECTS).filter_map(|s| Subject::from_rbac(s, namespace)).collect();
        kept.sort();
        kept.dedup();
        Some(Binding { role, subjects: kept, unlisted: all.len().saturating_sub(MAX_SUBJECTS) })
    }
}

/// A ClusterRole, compact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterRole {
    pub grants: Grants,
    labels: BTreeMap<String, String>,
    /// `aggregationRule.clusterRoleSelectors`: the rules of every ClusterRole they match are this
    /// one's too (kube-controller-manager copies them in; read here from the selectors as
    /// well, so a role is known to grant them before the copy is made).
    aggregates: Vec<Selector>,
}

impl ClusterRole {
    pub fn new(role: &rbac::ClusterRole) -> Self {
        let labels =
            role.metadata.labels.iter().flatten().take(MAX_LABELS).map(|(k, v)| (k.clone(), v.clone())).collect();
        let selectors = role.aggregation_rule.iter().flat_map(|a| a.cluster_role_selectors.iter().flatten());
        let aggregates = selectors.take(MAX_SELECTORS).filter_map(|s| Selector::try_from(s.clone()).ok()).collect();
        ClusterRole { grants: Grants::from_rules(role.rules.as_deref().unwrap_or_default()), labels, aggregates }
    }
}

/// A namespace's Roles and RoleBindings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespaced {
    pub roles: Objects<Grants>,
    pub bindings: Objects<Binding>,
}

impl Namespaced {
    /// Keep the Role `name` (`None`: it is gone); whether anything changed.
    pub fn set_role(&mut self, name: &str, grants: Option<Grants>) -> bool {
        self.roles.set(name, grants)
    }

    pub fn set_binding(&mut self, name: &str, binding: Option<Binding>) -> bool {
        self.bindings.set(name, binding)
    }

    pub fn over_limit(&self) -> bool {
        self.roles.over_limit || self.bindings.over_limit
    }
}

/// The bytes of names an object holds, what [`MAX_BYTES_PER_NAMESPACE`] counts.
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for Grants {
    fn weight(&self) -> usize {
        self.names.iter().map(|n| n.len()).sum()
    }
}

impl Weigh for Binding {
    fn weight(&self) -> usize {
        let name = |s: &Subject| match s {
            Subject::ServiceAccount { namespace, name } => namespace.len() + name.len(),
            Subject::User(name) | Subject::Group(name) => name.len(),
        };
        self.subjects.iter().map(name).sum()
    }
}

/// Bytes of names (Secret names of Roles, subjects of bindings) kept per namespace and kind: each
/// object is bounded, this bounds what a namespace's admin can make the operator hold at all.
pub const MAX_BYTES_PER_NAMESPACE: usize = 1024 * 1024;

/// One kind of a namespace's objects, by name, within [`MAX_PER_NAMESPACE`] objects and
/// [`MAX_BYTES_PER_NAMESPACE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Objects<T> {
    pub by_name: HashMap<String, T>,
    bytes: usize,
    /// More objects (or bytes) than kept were seen since they were last listed: what the
    /// namespace grants is not known until a list finds them fewer.
    pub over_limit: bool,
}

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Objects { by_name: HashMap::new(), bytes: 0, over_limit: false }
    }
}

impl<T: PartialEq + Weigh> Objects<T> {
    /// Put or remove `name`, within the limits; whether anything changed.
    pub fn set(&mut self, name: &str, value: Option<T>) -> bool {
        let old = self.by_name.get(name).map_or(0, Weigh::weight);
        match value {
            None => {
                let removed = self.by_name.remove(name).is_some();
                self.bytes -= old;
                removed
            }
            Some(value) if self.by_name.get(name) == Some(&value) => false,
            Some(value)
                if (self.by_name.len() >= MAX_PER_NAMESPACE && !self.by_name.contains_key(name))
                    || self.bytes - old + value.weight() > MAX_BYTES_PER_NAMESPACE =>
            {
                let changed = !self.over_limit;
                self.over_limit = true;
                changed
            }
            Some(value) => {
                self.bytes = self.bytes - old + value.weight();
                self.by_name.insert(name.to_owned(), value);
                true
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn get(&self, name: &str) -> Option<&T> {
        self.by_name.get(name)
    }
}

/// What the cluster's RBAC grants, as far as exposure is concerned.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    pub cluster_roles: HashMap<String, ClusterRole>,
    pub cluster_bindings: HashMap<String, Binding>,
    /// Roles and RoleBindings of the namespaces that matter.
    pub namespaces: HashMap<String, Namespaced>,
}

/// A ClusterRoleBinding whose role grants something that matters, with those grants.
#[derive(Clone, Debug)]
pub struct ClusterGrant {
    pub binding: String,
    /// `ClusterRoleBinding <binding>`, as findings name it.
    pub described: String,
    pub role: RoleRef,
    pub grants: Grants,
    pub subjects: Vec<Subject>,
    pub unlisted: usize,
}

/// What is computed once per version of the RBAC set: each ClusterRole's grants with what it
/// aggregates, and the ClusterRoleBindings that grant anything that matters (every tenant's
/// assessment reads them).
#[derive(Debug, Default)]
pub struct Effective {
    pub cluster_roles: HashMap<String, Grants>,
    pub cluster_grants: Vec<ClusterGrant>,
}

impl Rbac {
    /// The grants of every ClusterRole, aggregation included, and the ClusterRoleBindings
    /// that matter, sorted by name.
    pub fn effective(&self) -> Arc<Effective> {
        let mut cluster_roles = HashMap::with_capacity(self.cluster_roles.len());
        for (name, role) in &self.cluster_roles {
            let mut grants = role.grants.clone();
            for selector in &role.aggregates {
                for other in self.cluster_roles.values().filter(|o| selector.matches(&o.labels)) {
                    grants.union(&other.grants);
                }
            }
            cluster_roles.insert(name.clone(), grants);
        }
        let mut cluster_grants: Vec<ClusterGrant> = self
            .cluster_bindings
            .iter()
            .filter_map(|(name, binding)| {
                let RoleRef::ClusterRole(role) = &binding.role else { return None };
                let grants = cluster_roles.get(role).filter(|g| g.matters())?;
                Some(ClusterGrant {
                    binding: name.clone(),
                    described: format!("ClusterRoleBinding {name}"),
                    role: binding.role.clone(),
                    grants: grants.clone(),
                    subjects: binding.subjects.clone(),
                    unlisted: binding.unlisted,
                })
            })
            .collect();
        cluster_grants.sort_by(|a, b| a.binding.cmp(&b.binding));
        Arc::new(Effective { cluster_roles, cluster_grants })
    }

    /// The grants of the role a binding in `namespace` names.
    pub fn role_grants<'a>(&'a self, effective: &'a Effective, namespace: &str, role: &RoleRef) -> Option<&'a Grants> {
        match role {
            RoleRef::Role(name) => self.namespaces.get(namespace)?.roles.get(name),
            RoleRef::ClusterRole(name) => effective.cluster_roles.get(name),
        }
    }

    /// How many objects are kept, by kind (`mltenant_rbac_objects`).
    pub fn counts(&self) -> [(&'static str, usize); 4] {
        let roles = self.namespaces.values().map(|n| n.roles.len()).sum();
        let bindings = self.namespaces.values().map(|n| n.bindings.len()).sum();
        [
            ("ClusterRole", self.cluster_roles.len()),
            ("ClusterRoleBinding", self.cluster_bindings.len()),
            ("Role", roles),
            ("RoleBinding", bindings),
        ]
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::{AggregationRule, PolicyRule};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::access::exposure::rules::Caps;

    fn subject(kind: &str, name: &str) -> rbac::Subject {
        rbac::Subject { kind: kind.into(), name: name.into(), ..Default::default() }
    }

    fn role_ref(kind: &str, name: &str) -> rbac::RoleRef {
        rbac::RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: kind.into(), name: name.into() }
    }

    fn cluster_role(
        name: &str,
        labels: &[(&str, &str)],
        rules: Vec<PolicyRule>,
        aggregate: Option<(&str, &str)>,
    ) -> rbac::ClusterRole {
        let mut role = rbac::ClusterRole::default();
        role.metadata.name = Some(name.into());
        role.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        role.rules = Some(rules);
        role.aggregation_rule = aggregate.map(|(k, v)| AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some([(k.to_string(), v.to_string())].into()),
                ..Default::default()
            }]),
        });
        role
    }

    fn secrets_get() -> PolicyRule {
        PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_binding_keeps_its_role_and_a_bounded_number_of_subjects() {
        let many: Vec<rbac::Subject> = (0..MAX_SUBJECTS + 10).map(|i| subject("User", &format!("u{i}"))).collect();
        let binding = Binding::new(&role_ref("ClusterRole", "edit"), Some(&many), Some("team")).unwrap();
        assert_eq!((binding.subjects.len(), binding.unlisted), (MAX_SUBJECTS, 10));
        assert_eq!(binding.role, RoleRef::ClusterRole("edit".into()));
        let sa = Binding::new(&role_ref("Role", "r"), Some(&vec![subject("ServiceAccount", "builder")]), Some("team"));
        assert_eq!(sa.unwrap().subjects, vec![Subject::service_account("team", "builder")]);
        assert_eq!(Binding::new(&role_ref("Role", "r"), None, None), None, "a ClusterRoleBinding cannot name a Role");
        assert_eq!(Binding::new(&role_ref("Robot", "r"), None, Some("team")), None);
    }

    #[test]
    fn a_cluster_role_grants_what_it_aggregates() {
        let mut set = Rbac::default();
        let label = ("example.com/aggregate-to-reader", "true");
        for role in [
            cluster_role("reader", &[], vec![], Some(label)),
            cluster_role("peek", &[label], vec![secrets_get()], None),
            cluster_role("unrelated", &[("other", "true")], vec![], None),
        ] {
            set.cluster_roles.insert(role.metadata.name.clone().unwrap(), ClusterRole::new(&role));
        }
        let binding =
            Binding::new(&role_ref("ClusterRole", "reader"), Some(&vec![subject("Group", "g")]), None).unwrap();
        set.cluster_bindings.insert("reader-binding".into(), binding);
        let effective = set.effective();
        assert!(effective.cluster_roles["reader"].caps.contains(Caps::SECRET_GET));
        assert!(!effective.cluster_roles["unrelated"].matters());
        let bindings: Vec<&str> = effective.cluster_grants.iter().map(|g| g.binding.as_str()).collect();
        assert_eq!(bindings, ["reader-binding"]);
    }

    #[test]
    fn a_namespace_keeps_at_most_its_limit_and_says_so() {
        let mut ns = Namespaced::default();
        for i in 0..MAX_PER_NAMESPACE {
            assert!(ns.set_role(&format!("r{i}"), Some(Grants::default())));
        }
        assert!(!ns.set_role("r0", Some(Grants::default())), "the same role again changes nothing");
        assert!(ns.set_role("one-more", Some(Grants::default())));
        assert!(ns.over_limit() && !ns.roles.by_name.contains_key("one-more"));
        assert!(ns.set_role("r0", None), "a deletion is applied");
    }

    #[test]
    fn a_namespace_keeps_at_most_its_bytes_of_names() {
        let mut ns = Namespaced::default();
        let names: Vec<String> = (0..64).map(|i| format!("{i:03}{}", "n".repeat(250))).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let large = Grants::from_rules(&[PolicyRule {
            resource_names: Some(names.iter().map(|n| n.to_string()).collect()),
            ..secrets_get()
        }]);
        assert_eq!(large.weight(), 64 * 253);
        let fit = MAX_BYTES_PER_NAMESPACE / large.weight();
        for i in 0..fit {
            assert!(ns.set_role(&format!("r{i}"), Some(large.clone())));
        }
        assert!(!ns.over_limit());
        assert!(ns.set_role("one-more", Some(large.clone())));
        assert!(ns.over_limit() && ns.roles.len() == fit);
        assert!(ns.set_role("r0", None));
        assert_eq!(ns.roles.bytes, (fit - 1) * large.weight(), "a deletion gives its bytes back");
    }
}
