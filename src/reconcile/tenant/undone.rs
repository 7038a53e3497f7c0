//! What the steps of a tenant's reconcile left undone, whatever the shape of their results:
//! requests the API server refused (reported where they happened; the reconcile fails once its
//! status is written, so the controller retries it with backoff) and work that waits on a
//! change no watch reports (the tenant is looked at again soon).

use super::access::Granted;
use super::isolation::Isolation;
use super::namespaces::NamespaceState;
use super::secrets::{Distribution, Unsynced};
use crate::api::environments::Environment;
use crate::reconcile::error::{Error, Result};
use crate::reconcile::rejected::Rejected;

/// What one step left undone (`Sync`: the steps' results are held across the status write).
pub trait Undone: Sync {
    /// The requests the API server refused.
    fn refused(&self) -> Vec<&Rejected>;

    /// Whether the step waits on a change no watch reports: a namespace labelled for adoption
    /// or done terminating, a user's Secret removed, RBAC still being listed.
    fn pending(&self) -> bool {
        false
    }
}

/// Every step together.
impl Undone for [&dyn Undone] {
    fn refused(&self) -> Vec<&Rejected> {
        self.iter().flat_map(|step| step.refused()).collect()
    }

    fn pending(&self) -> bool {
        self.iter().any(|step| step.pending())
    }
}

/// The namespaces of the environments in spec.
impl Undone for Vec<(Environment, NamespaceState)> {
    fn refused(&self) -> Vec<&Rejected> {
        refused_namespaces(self).collect()
    }

    fn pending(&self) -> bool {
        self.iter().any(|(_, state)| matches!(state, NamespaceState::Conflict(_) | NamespaceState::Terminating(_)))
    }
}

/// The requests about the namespaces in `states` that the API server refused.
pub fn refused_namespaces(states: &[(Environment, NamespaceState)]) -> impl Iterator<Item = &Rejected> {
    states.iter().filter_map(|(_, state)| if let NamespaceState::Rejected(r) = state { Some(r) } else { None })
}

/// Removals and revocations: what they could not do is all refused.
impl Undone for Vec<Rejected> {
    fn refused(&self) -> Vec<&Rejected> {
        self.iter().collect()
    }
}

impl Undone for Distribution {
    fn refused(&self) -> Vec<&Rejected> {
        let written = self.outcomes.iter().filter_map(|o| match &o.result {
            Err(Unsynced::Rejected(r)) => Some(r),
            _ => None,
        });
        written.chain(&self.unrevoked).collect()
    }

    fn pending(&self) -> bool {
        self.outcomes.iter().any(|o| matches!(o.result, Err(Unsynced::Conflict { .. })))
    }
}

impl Undone for Granted {
    fn refused(&self) -> Vec<&Rejected> {
        self.rejected.iter().collect()
    }
}

impl Undone for Isolation {
    fn refused(&self) -> Vec<&Rejected> {
        Vec::new()
    }

    fn pending(&self) -> bool {
        self.pending
    }
}

/// A reconcile that had requests refused fails (after doing everything else), naming the first
/// refusal and how many there were.
pub fn partial(undone: &(impl Undone + ?Sized)) -> Result<()> {
    let refused = undone.refused();
    match refused.first() {
        None => Ok(()),
        Some(first) => Err(Error::Partial { count: refused.len(), first: first.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::tenant::secrets::{Outcome, WantedSecret};

    fn env(name: &str) -> Environment {
        Environment { name: name.to_owned(), namespace: format!("t-{name}"), labels: Default::default() }
    }

    fn rejected(object: &str) -> Rejected {
        Rejected { kind: "Secret", object: object.to_owned(), reason: "Forbidden", message: "no".to_owned() }
    }

    #[test]
    fn every_step_counts_and_the_first_refusal_is_named() {
        let namespaces = vec![
            (env("dev"), NamespaceState::Ready),
            (env("staging"), NamespaceState::Rejected(rejected("t-staging"))),
        ];
        let unreleased = vec![rejected("t-qa")];
        let distribution = Distribution { outcomes: Vec::new(), unrevoked: vec![rejected("t-dev/old")] };
        let granted = Granted { rejected: vec![rejected("t-dev/reader")], ..Default::default() };
        let steps: [&dyn Undone; 4] = [&namespaces, &unreleased, &distribution, &granted];
        let objects: Vec<&str> = steps[..].refused().iter().map(|r| r.object.as_str()).collect();
        assert_eq!(objects, ["t-staging", "t-qa", "t-dev/old", "t-dev/reader"]);
        assert!(!steps[..].pending());
        match partial(&steps[..]) {
            Err(Error::Partial { count: 4, first }) => assert!(first.contains("t-staging"), "{first}"),
            other => panic!("{other:?}"),
        }
        assert!(partial(&Vec::<Rejected>::new()).is_ok());
    }

    #[test]
    fn conflicts_terminating_namespaces_and_unlisted_rbac_are_pending() {
        for (state, pending) in [
            (NamespaceState::Ready, false),
            (NamespaceState::Protected("p".to_owned()), false),
            (NamespaceState::Conflict("c".to_owned()), true),
            (NamespaceState::Terminating("t".to_owned()), true),
            (NamespaceState::Rejected(rejected("t-dev")), false),
        ] {
            assert_eq!(vec![(env("dev"), state.clone())].pending(), pending, "{state:?}");
        }
        let conflict =
            Unsynced::Conflict { namespace: "t-dev".to_owned(), name: "s".to_owned(), why: "it is not ours" };
        let wanted = WantedSecret {
            environment: "dev".to_owned(),
            namespace: "t-dev".to_owned(),
            secret: "s".to_owned(),
            bundle: "b".to_owned(),
        };
        let outcome = Outcome { wanted: wanted.clone(), result: Err(conflict), present: false };
        let distribution = Distribution { outcomes: vec![outcome], unrevoked: Vec::new() };
        assert!(distribution.pending());
        assert!(distribution.refused().is_empty());
        let written = Outcome { wanted, result: Err(Unsynced::Rejected(rejected("t-dev/s"))), present: true };
        let distribution = Distribution { outcomes: vec![written], unrevoked: Vec::new() };
        assert_eq!(distribution.refused(), [&rejected("t-dev/s")]);
        assert!(!distribution.pending());

        let isolation = |pending| Isolation {
            observed: crate::reconcile::observed::Observed::new("AccessIsolated", true, "Isolated", ""),
            counts: None,
            pending,
        };
        assert_eq!((isolation(true).pending(), isolation(false).pending()), (true, false));
        assert!(isolation(true).refused().is_empty());
    }
}
