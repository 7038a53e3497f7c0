//! The tenant's status: conditions, per-environment state and the inventory (`publish` writes
//! it, only when it changed).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::access::Granted;
use super::inventory::Inventory;
use super::namespaces::NamespaceState;
use super::reads::Readers;
use super::secrets::{self, Distribution, Outcome, Unsynced};
use super::undone::refused_namespaces;
use crate::api::conditions::{ACCESS_GRANTED, CREDENTIALS_EXPIRING, NAMESPACES_READY, READY, SECRETS_SYNCED, reason};
use crate::api::environments::Environment;
use crate::api::{EnvironmentStatus, MLTenant, MLTenantStatus};
use crate::reconcile::observed::{self, Observed};
use crate::reconcile::rejected::Rejected;

/// Credentials expiring within this window make `CredentialsExpiring` True.
pub const EXPIRY_WARNING: jiff::SignedDuration = jiff::SignedDuration::from_hours(14 * 24);

/// Conditions for a tenant whose environments were all worked on.
pub fn observe(
    namespaces: &[(Environment, NamespaceState)],
    kept: &[String],
    unreleased: &[Rejected],
    distribution: &Distribution,
    granted: &Granted,
    now: jiff::Timestamp,
) -> Vec<Observed> {
    let access = if !granted.rejected.is_empty() {
        Observed::new(ACCESS_GRANTED, false, reason::ACCESS_REJECTED, joined(&granted.rejected))
    } else if granted.conflicts.is_empty() {
        Observed::new(
            ACCESS_GRANTED,
            true,
            reason::GRANTED,
            format!("{} Role/RoleBinding pairs grant get on the distributed Secrets to secretReaders", granted.grants),
        )
    } else {
        let message = format!("{}: left untouched, those readers get nothing there", granted.conflicts.join("; "));
        Observed::new(ACCESS_GRANTED, false, reason::ACCESS_CONFLICT, message)
    };
    let mut conditions = with_ready(vec![
        observe_namespaces(namespaces, kept, unreleased),
        observe_secrets(&distribution.outcomes, &distribution.unrevoked),
        access,
    ]);
    conditions.push(observe_expiry(&distribution.outcomes, now));
    conditions
}

fn joined(refused: &[Rejected]) -> String {
    refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn observe_namespaces(
    outcomes: &[(Environment, NamespaceState)],
    kept: &[String],
    unreleased: &[Rejected],
) -> Observed {
    let rejected: Vec<Rejected> = refused_namespaces(outcomes).chain(unreleased).cloned().collect();
    let problem = |pick: fn(&NamespaceState) -> Option<&String>| -> Vec<&str> {
        outcomes.iter().filter_map(|(_, s)| pick(s)).map(String::as_str).collect()
    };
    let protected = problem(|s| if let NamespaceState::Protected(m) = s { Some(m) } else { None });
    let conflicts = problem(|s| if let NamespaceState::Conflict(m) = s { Some(m) } else { None });
    let terminating = problem(|s| if let NamespaceState::Terminating(m) = s { Some(m) } else { None });
    if !protected.is_empty() {
        Observed::new(NAMESPACES_READY, false, reason::PROTECTED_NAMESPACE, protected.join("; "))
    } else if !rejected.is_empty() {
        Observed::new(NAMESPACES_READY, false, reason::NAMESPACE_REJECTED, joined(&rejected))
    } else if !conflicts.is_empty() {
        Observed::new(NAMESPACES_READY, false, reason::NAMESPACE_CONFLICT, conflicts.join("; "))
    } else if !terminating.is_empty() {
        Observed::new(NAMESPACES_READY, false, reason::TERMINATING, terminating.join("; "))
    } else if !kept.is_empty() {
        Observed::new(NAMESPACES_READY, false, reason::POD_SECURITY_KEPT, kept.join("; "))
    } else {
        let names: Vec<&str> = outcomes.iter().map(|(e, _)| e.namespace.as_str()).collect();
        Observed::new(NAMESPACES_READY, true, reason::CREATED, format!("namespaces ready: {}", names.join(", ")))
    }
}

fn observe_secrets(outcomes: &[Outcome], unrevoked: &[Rejected]) -> Observed {
    let failures: Vec<(&Outcome, &Unsynced)> =
        outcomes.iter().filter_map(|o| o.result.as_ref().err().map(|f| (o, f))).collect();
    match failures.first() {
        None if !unrevoked.is_empty() => Observed::new(
            SECRETS_SYNCED,
            false,
            reason::REVOCATION_FAILED,
            format!("Secrets no longer wanted are still there: {}", joined(unrevoked)),
        ),
        None => Observed::new(SECRETS_SYNCED, true, reason::SYNCED, format!("{} Secrets synced", outcomes.len())),
        Some((_, first)) => {
            let messages: Vec<String> =
                failures.iter().map(|(o, f)| format!("{}/{}: {f}", o.wanted.namespace, o.wanted.secret)).collect();
            Observed::new(SECRETS_SYNCED, false, first.reason(), messages.join("; "))
        }
    }
}

fn observe_expiry(outcomes: &[Outcome], now: jiff::Timestamp) -> Observed {
    let soonest = outcomes
        .iter()
        .filter_map(|o| Some((o, o.result.as_ref().ok()?.expires_at.as_ref()?.0)))
        .min_by_key(|(_, at)| *at);
    match soonest {
        Some((o, at)) if at <= now => Observed::new(
            CREDENTIALS_EXPIRING,
            true,
            reason::EXPIRED,
            format!(
                "Secret {}/{} (SealedBundle {}) expired at {at}",
                o.wanted.namespace, o.wanted.secret, o.wanted.bundle
            ),
        ),
        Some((o, at)) if at <= now + EXPIRY_WARNING => Observed::new(
            CREDENTIALS_EXPIRING,
            true,
            reason::EXPIRES_SOON,
            format!(
                "Secret {}/{} (SealedBundle {}) expires at {at}",
                o.wanted.namespace, o.wanted.secret, o.wanted.bundle
            ),
        ),
        _ => Observed::new(CREDENTIALS_EXPIRING, false, reason::NOT_EXPIRING, "no credential expires within 14 days"),
    }
}

/// Conditions for a spec the operator cannot realise (nothing was written).
pub fn invalid(message: &str) -> Vec<Observed> {
    with_ready(vec![Observed::new(NAMESPACES_READY, false, reason::INVALID_SPEC, message)])
}

/// Conditions for a tenant whose deletion waits on namespaces still terminating.
pub fn deleting(pending: &[String]) -> Vec<Observed> {
    let message = format!(
        "deletionPolicy Delete: waiting for namespaces to finish terminating: {} (check their remaining finalizers with `kubectl get ns -o yaml`)",
        pending.join(", ")
    );
    with_ready(vec![Observed::new(NAMESPACES_READY, false, reason::TERMINATING, message)])
}

/// `Ready` summarises the other conditions: the first one that is not fine gives its reason.
fn with_ready(mut parts: Vec<Observed>) -> Vec<Observed> {
    let ready = match parts.iter().find(|p| !p.ok) {
        Some(bad) => Observed::new(READY, false, bad.reason.clone(), bad.message.clone()),
        None => Observed::new(READY, true, reason::READY, "all environments are ready"),
    };
    parts.insert(0, ready);
    parts
}

/// The environments as a reconcile that worked on all of them left them (and, with the audit
/// sink, when each declared reader last read each Secret).
pub struct Worked<'a> {
    pub namespaces: &'a [(Environment, NamespaceState)],
    pub distribution: &'a Distribution,
    pub readers: &'a Readers,
}

/// The status for `tenant` from the conditions observed and its record, for a reconcile that did
/// not work on its environments (an invalid spec, a deletion waiting): none of them is ready.
pub fn build(tenant: &MLTenant, observed: &[Observed], inventory: &Inventory, now: &Time) -> MLTenantStatus {
    let previous = tenant.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    MLTenantStatus {
        environments_ready: Some(format!("0/{}", tenant.spec.environments.len())),
        observed_generation: tenant.metadata.generation,
        conditions: observed::merge(previous, observed, tenant.metadata.generation, now),
        environments: Vec::new(),
        owned: Some(inventory.to_status()),
    }
}

/// The full status of a reconcile that worked on every environment.
pub fn build_worked(
    tenant: &MLTenant,
    observed: &[Observed],
    worked: Worked,
    inventory: &Inventory,
    now: &Time,
) -> MLTenantStatus {
    let ready = worked.namespaces.iter().filter(|(_, s)| *s == NamespaceState::Ready).count();
    let environments = worked
        .namespaces
        .iter()
        .map(|(env, state)| EnvironmentStatus {
            name: env.name.clone(),
            namespace: env.namespace.clone(),
            ready: *state == NamespaceState::Ready,
            reason: state.reason().map(str::to_owned),
            secrets: secrets::statuses(&worked.distribution.outcomes, &env.name)
                .into_iter()
                .map(|mut secret| {
                    let key = (env.namespace.clone(), secret.name.clone());
                    secret.readers = worked.readers.get(&key).cloned().unwrap_or_default();
                    secret
                })
                .collect(),
        })
        .collect();
    MLTenantStatus {
        environments_ready: Some(format!("{ready}/{}", tenant.spec.environments.len())),
        environments,
        ..build(tenant, observed, inventory, now)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::reconcile::tenant::secrets::{Synced, WantedSecret};

    fn env(ns: &str) -> Environment {
        Environment { name: ns.into(), namespace: ns.into(), labels: BTreeMap::new() }
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn outcome(secret: &str, result: Result<Synced, Unsynced>) -> Outcome {
        let wanted = WantedSecret {
            environment: "dev".into(),
            namespace: "t-dev".into(),
            secret: secret.into(),
            bundle: "b".into(),
        };
        let present = result.is_ok();
        Outcome { wanted, result, present }
    }

    fn synced(expires_in_days: Option<i64>) -> Result<Synced, Unsynced> {
        let expires_at = expires_in_days.map(|d| Time(now() + jiff::SignedDuration::from_hours(24 * d)));
        Ok(Synced { source_hash: "sha256:x".into(), expires_at })
    }

    fn observed(
        namespaces: &[(Environment, NamespaceState)],
        outcomes: Vec<Outcome>,
        granted: &Granted,
    ) -> Vec<Observed> {
        observe(namespaces, &[], &[], &Distribution { outcomes, unrevoked: vec![] }, granted, now())
    }

    fn find<'a>(c: &'a [Observed], type_: &str) -> &'a Observed {
        c.iter().find(|o| o.type_ == type_).unwrap()
    }

    /// A reconcile that worked on the environments reports each, with its Secrets and their
    /// readers' last reads; one that did not (invalid spec, deletion) reports none ready.
    #[test]
    fn the_status_reports_every_environment_worked_on() {
        let tenant = MLTenant::new("t", crate::api::MLTenantSpec::with_environments(&["dev", "qa"]));
        let dev = Environment { name: "dev".into(), namespace: "t-dev".into(), labels: BTreeMap::new() };
        let qa = Environment { name: "qa".into(), namespace: "t-qa".into(), labels: BTreeMap::new() };
        let namespaces = [(dev, NamespaceState::Ready), (qa, NamespaceState::Conflict("taken".into()))];
        let failure = crate::unseal::Failure::NotFound { bundle: "b".into() };
        let distribution = Distribution {
            outcomes: vec![outcome("s", synced(None)), outcome("u", Err(Unsynced::Bundle(failure)))],
            unrevoked: vec![],
        };
        let reader = crate::api::ReaderStatus { service_account: "argowf/argo".into(), ..Default::default() };
        let readers: Readers = [(("t-dev".to_string(), "s".to_string()), vec![reader.clone()])].into();
        let observed = vec![Observed::new(READY, false, reason::NAMESPACE_CONFLICT, "taken")];
        let worked = Worked { namespaces: &namespaces, distribution: &distribution, readers: &readers };
        let inventory = Inventory::default();
        let status = build_worked(&tenant, &observed, worked, &inventory, &Time(now()));
        assert_eq!(status.environments_ready.as_deref(), Some("1/2"));
        let shown: Vec<(&str, bool, Option<&str>)> =
            status.environments.iter().map(|e| (e.namespace.as_str(), e.ready, e.reason.as_deref())).collect();
        assert_eq!(shown, [("t-dev", true, None), ("t-qa", false, Some(reason::NAMESPACE_CONFLICT))]);
        let secrets: Vec<(&str, bool, usize)> =
            status.environments[0].secrets.iter().map(|s| (s.name.as_str(), s.synced, s.readers.len())).collect();
        assert_eq!(secrets, [("s", true, 1), ("u", false, 0)]);
        assert_eq!(status.environments[0].secrets[0].readers, [reader]);
        assert_eq!(status.conditions[0].reason, reason::NAMESPACE_CONFLICT);
        assert_eq!(status.owned, Some(inventory.to_status()));

        let none = build(&tenant, &observed, &inventory, &Time(now()));
        assert_eq!((none.environments_ready.as_deref(), none.environments.len()), (Some("0/2"), 0));
        assert_eq!(none.conditions, status.conditions);
    }

    #[test]
    fn all_ready() {
        let c = observed(
            &[(env("a"), NamespaceState::Ready), (env("b"), NamespaceState::Ready)],
            vec![],
            &Granted::default(),
        );
        assert_eq!((c[0].type_, c[0].ok, c[0].reason.as_str()), (READY, true, "Ready"));
        assert_eq!((c[1].type_, c[1].ok, c[1].message.as_str()), (NAMESPACES_READY, true, "namespaces ready: a, b"));
    }

    #[test]
    fn conflict_wins_over_terminating_and_drives_ready() {
        let c = observed(
            &[
                (env("a"), NamespaceState::Terminating("a is terminating".into())),
                (env("b"), NamespaceState::Conflict("b belongs to MLTenant x".into())),
            ],
            vec![],
            &Granted::default(),
        );
        assert_eq!(
            (c[0].ok, c[0].reason.as_str(), c[0].message.as_str()),
            (false, "NamespaceConflict", "b belongs to MLTenant x")
        );
        assert_eq!(c[1].reason, "NamespaceConflict");
    }

    #[test]
    fn a_failing_secret_drives_ready_and_names_bundle_and_key() {
        let failure = crate::unseal::Failure::Decryption {
            bundle: "b".into(),
            key: "AWS_SECRET_ACCESS_KEY".into(),
            error: crate::crypto::OpenError::NoKeyCouldDecrypt,
        };
        let c = observed(
            &[(env("t-dev"), NamespaceState::Ready)],
            vec![outcome("ok", synced(None)), outcome("ml", Err(failure.into()))],
            &Granted::default(),
        );
        let secrets = find(&c, SECRETS_SYNCED);
        assert_eq!((secrets.ok, secrets.reason.as_str()), (false, "DecryptionFailed"));
        assert!(
            secrets.message.starts_with("t-dev/ml: SealedBundle b key AWS_SECRET_ACCESS_KEY: no key could decrypt"),
            "{}",
            secrets.message
        );
        assert_eq!((c[0].type_, c[0].ok, c[0].reason.as_str()), (READY, false, "DecryptionFailed"));
    }

    #[test]
    fn protected_wins_over_conflicts_and_a_secret_conflict_has_its_reason() {
        let c = observed(
            &[
                (env("a"), NamespaceState::Conflict("a belongs to MLTenant x".into())),
                (env("kube-system"), NamespaceState::Protected("namespace kube-system is protected".into())),
            ],
            vec![outcome(
                "ml",
                Err(Unsynced::Conflict {
                    namespace: "t-dev".into(),
                    name: "ml".into(),
                    why: "it is not managed by mltenant-operator",
                }),
            )],
            &Granted {
                grants: 0,
                conflicts: vec![
                    "Role/RoleBinding t-dev/r already exists and it is not managed by mltenant-operator".into(),
                ],
                rejected: vec![],
            },
        );
        assert_eq!((c[0].ok, c[0].reason.as_str()), (false, "ProtectedNamespace"));
        assert_eq!(find(&c, SECRETS_SYNCED).reason, "SecretConflict");
        assert!(find(&c, SECRETS_SYNCED).message.contains("t-dev/ml already exists and it is not managed"));
        assert_eq!(find(&c, ACCESS_GRANTED).reason, "AccessConflict");
    }

    #[test]
    fn expiry_warns_without_affecting_ready() {
        let expiring = |days| {
            find(&observed(&[], vec![outcome("s", synced(days))], &Granted::default()), CREDENTIALS_EXPIRING).clone()
        };
        assert_eq!((expiring(None).ok, expiring(None).reason), (false, "NotExpiring".to_string()));
        assert_eq!((expiring(Some(30)).ok, expiring(Some(30)).reason), (false, "NotExpiring".to_string()));
        assert_eq!((expiring(Some(13)).ok, expiring(Some(13)).reason), (true, "ExpiresSoon".to_string()));
        assert_eq!((expiring(Some(-1)).ok, expiring(Some(-1)).reason), (true, "Expired".to_string()));
        let c = observed(&[], vec![outcome("s", synced(Some(-1)))], &Granted::default());
        assert!(c[0].ok, "an expired credential is a warning, not a failure: {:?}", c[0]);
    }

    #[test]
    fn deletion_explains_what_it_waits_for() {
        let c = deleting(&["fin-dev".into()]);
        assert_eq!((c[0].ok, c[0].reason.as_str()), (false, "Terminating"));
        assert!(c[0].message.contains("fin-dev"));
    }
}
