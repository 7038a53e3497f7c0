//! Who can read the tenant's distributed Secrets, as a condition (`AccessIsolated`), an Event
//! when it changes, and the metrics `mltenant_secret_unexpected_readers` and
//! `mltenant_secret_indirect_readers` (counts; subjects are named in the condition only).
//! Assessed from the RBAC watches (`reconcile::rbac`) and confirmed with SubjectAccessReviews,
//! on every reconcile: an RBAC change reconciles the tenants it concerns.

use futures::future::join_all;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::secrets::WantedSecret;
use crate::access::exposure::assess::{self, Exposure, Finding, Place, Reach, Wanted};
use crate::access::exposure::identity::Subject;
use crate::api::MLTenant;
use crate::api::conditions::{ACCESS_ISOLATED, reason};
use crate::api::environments::Environment;
use crate::metrics::SecretExposure;
use crate::reconcile::context::Context;
use crate::reconcile::observed::{Observed, stored_message};

/// Reviews one reconcile sends at most; findings past them are reported unconfirmed.
const MAX_REVIEWS: usize = 512;
/// Findings a condition message names at most (the metrics count them all).
const MAX_NAMED: usize = 12;

/// What the assessment found.
#[derive(Debug)]
pub struct Isolation {
    pub observed: Observed,
    /// Counts per Secret for the metrics; `None` when nothing was assessed (the last ones stay).
    pub counts: Option<Vec<SecretExposure>>,
    /// Look again soon: the RBAC of a namespace is still being listed, or a review failed.
    pub pending: bool,
}

/// The tenant's namespaces in `environments`, with the Secrets of ours present there and who
/// is declared to read each.
pub fn places(tenant: &MLTenant, environments: &[&Environment], present: &[&WantedSecret]) -> Vec<Place> {
    environments
        .iter()
        .map(|env| Place {
            environment: env.name.clone(),
            namespace: env.namespace.clone(),
            secrets: present
                .iter()
                .filter(|w| w.environment == env.name)
                .map(|w| Wanted { name: w.secret.clone(), readers: assess::declared_readers(tenant, &w.secret) })
                .collect(),
        })
        .collect()
}

/// Assess `places` and decide the condition.
pub async fn assess(tenant: &MLTenant, places: &[Place], ctx: &Context) -> Isolation {
    let view = &ctx.rbac;
    let readers = places.iter().flat_map(|p| &p.secrets).flat_map(|w| &w.readers);
    let reader_namespaces = readers.filter_map(|r| match r {
        Subject::ServiceAccount { namespace, .. } => Some(namespace.as_str()),
        _ => None,
    });
    // Only where a Secret of ours is does RBAC matter: a tenant without one is isolated at once.
    let with_secrets = places.iter().filter(|p| !p.secrets.is_empty());
    let namespaces: Vec<&str> = with_secrets.map(|p| p.namespace.as_str()).chain(reader_namespaces).collect();
    if let Some(namespace) = view.unknown(namespaces.iter().copied()) {
        let message = format!("the Roles and RoleBindings of namespace {namespace} are being listed");
        return keep_last(tenant, Observed::unknown(ACCESS_ISOLATED, reason::ACCESS_PENDING, message));
    }
    let (exposures, version) = view.with(|rbac, effective, version| {
        (assess::assess(rbac, effective, &view.expected, places, assess::Detail::Reportable), version)
    });
    let mut reviews = 0;
    let mut confirmed = Vec::with_capacity(exposures.len());
    for exposure in exposures {
        let doubtful: Vec<&Finding> = exposure.findings.iter().filter(|f| needs_review(f)).collect();
        let budget = MAX_REVIEWS.saturating_sub(reviews);
        let (reviewed, unreviewed) = doubtful.split_at(doubtful.len().min(budget));
        reviews += reviewed.len();
        let counted = |result: &'static str| ctx.metrics.access_review(result);
        let answers = join_all(reviewed.iter().map(|f| view.confirmer.confirm(f, version, &counted))).await;
        let mut kept: Vec<Finding> = exposure.findings.iter().filter(|f| !needs_review(f)).cloned().collect();
        for (finding, answer) in reviewed.iter().zip(answers) {
            match answer {
                Ok(true) => kept.push((*finding).clone()),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(tenant = %tenant.name_any(), %error, "could not review who can read a Secret");
                    let message = "the API server did not answer a SubjectAccessReview".to_owned();
                    return keep_last(tenant, Observed::unknown(ACCESS_ISOLATED, reason::ACCESS_PENDING, message));
                }
            }
        }
        kept.extend(unreviewed.iter().map(|f| (*f).clone()));
        confirmed.push(Exposure { findings: kept, ..exposure });
    }
    let counts = confirmed
        .iter()
        .map(|e| SecretExposure {
            environment: e.environment.clone(),
            secret: e.secret.clone(),
            unexpected: e.unexpected_count(),
            indirect: e.indirect().count(),
        })
        .collect();
    Isolation { observed: observe(&confirmed), counts: Some(counts), pending: false }
}

/// Findings that need the API server's word: neither declared nor expected.
fn needs_review(finding: &Finding) -> bool {
    matches!(finding.reach, Reach::Unexpected | Reach::Indirect { .. })
}

/// The tenant's last `AccessIsolated` condition, or `otherwise` when it has none, and a look
/// again soon: what is not known yet does not undo what was.
fn keep_last(tenant: &MLTenant, otherwise: Observed) -> Isolation {
    let last = tenant.status.iter().flat_map(|s| &s.conditions).find(|c| c.type_ == ACCESS_ISOLATED);
    let observed = match last {
        Some(c) if c.status == crate::api::conditions::TRUE => {
            Observed::new(ACCESS_ISOLATED, true, &c.reason, &c.message)
        }
        Some(c) if c.status == crate::api::conditions::FALSE => {
            Observed::new(ACCESS_ISOLATED, false, &c.reason, &c.message)
        }
        _ => otherwise,
    };
    Isolation { observed, counts: None, pending: true }
}

/// The condition for what was found.
fn observe(exposures: &[Exposure]) -> Observed {
    if let Some(why) = exposures.iter().find_map(|e| e.unknown.as_ref()) {
        return Observed::unknown(ACCESS_ISOLATED, reason::TOO_MANY_RBAC_OBJECTS, why.clone());
    }
    let named = |pick: fn(&Exposure) -> Vec<String>| -> (usize, String) {
        let all: Vec<String> = exposures
            .iter()
            .flat_map(|e| pick(e).into_iter().map(move |f| format!("Secret {}/{}: {f}", e.namespace, e.secret)))
            .collect();
        let mut message = all.iter().take(MAX_NAMED).cloned().collect::<Vec<_>>().join("; ");
        if all.len() > MAX_NAMED {
            message.push_str(&format!("; and {} more", all.len() - MAX_NAMED));
        }
        (all.len(), message)
    };
    let (unexpected, message) = named(|e| {
        // Bindings too large to examine first: a message names a dozen findings at most, and a
        // binding of thousands must not hide behind them.
        let unlisted = e.unlisted.iter().map(|(binding, n)| format!("{n} more subjects of {binding}, not examined"));
        unlisted.chain(e.unexpected().map(Finding::describe)).collect()
    });
    if unexpected > 0 {
        return Observed::new(
            ACCESS_ISOLATED,
            false,
            reason::UNEXPECTED_READERS,
            format!("neither declared nor expected, can read: {message}"),
        );
    }
    let (indirect, message) = named(|e| e.indirect().map(Finding::describe).collect());
    if indirect > 0 {
        return Observed::new(
            ACCESS_ISOLATED,
            false,
            reason::INDIRECT_READERS,
            format!("neither declared nor expected, can obtain without reading: {message}"),
        );
    }
    let message = match exposures.len() {
        0 => "no Secret is distributed".to_owned(),
        n => format!("only declared readers and expected platform identities can read the {n} distributed Secrets"),
    };
    Observed::new(ACCESS_ISOLATED, true, reason::ISOLATED, message)
}

/// The metrics of what was assessed: set before the status that states it is written, so a
/// scrape after the condition changed never shows the counts from before.
pub fn count(tenant: &MLTenant, isolation: &Isolation, ctx: &Context) {
    if let Some(counts) = &isolation.counts {
        ctx.metrics.exposure(&tenant.name_any(), counts.clone());
    }
}

/// An Event when the condition changes (status, reason, or whom a False one names), but not for
/// a tenant isolated from its first look.
pub async fn report(tenant: &MLTenant, isolation: &Isolation, ctx: &Context) {
    let observed = &isolation.observed;
    let last = tenant.status.iter().flat_map(|s| &s.conditions).find(|c| c.type_ == ACCESS_ISOLATED);
    let changed = last.is_none_or(|c| {
        c.status != observed.status()
            || c.reason != observed.reason
            || (!observed.ok && c.message != stored_message(&observed.message))
    });
    // Isolated from the start (or after a pending look) is no news: an Event per new tenant
    // would be a write each. Findings are, and so is their end.
    let reported =
        last.is_some_and(|c| !(c.status == crate::api::conditions::TRUE || c.reason == reason::ACCESS_PENDING));
    if !changed || (observed.unknown && observed.reason == reason::ACCESS_PENDING) || (observed.ok && !reported) {
        return;
    }
    let type_ = if observed.ok { EventType::Normal } else { EventType::Warning };
    ctx.event_per_note(tenant, type_, &observed.reason, &observed.message).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::exposure::assess::Check;
    use crate::access::exposure::rbac::RoleRef;
    use crate::access::exposure::rules;

    fn finding(reach: Reach, subject: &str) -> Finding {
        Finding {
            subject: Subject::User(subject.into()),
            binding: "RoleBinding fin-dev/x".into(),
            role: RoleRef::ClusterRole("edit".into()),
            reach,
            checks: vec![Check { namespace: None, request: rules::READS[0].1, name: None }],
        }
    }

    fn exposure(findings: Vec<Finding>) -> Exposure {
        Exposure {
            environment: "dev".into(),
            namespace: "fin-dev".into(),
            secret: "ml-platform".into(),
            findings,
            ..Default::default()
        }
    }

    #[test]
    fn the_condition_says_who_and_through_which_binding() {
        let indirect = Reach::Indirect { how: &rules::POD_CREATE, place: "in fin-dev".into() };
        type Row = (&'static str, Vec<Exposure>, &'static str, &'static str, &'static str);
        let rows: Vec<Row> = vec![
            ("nothing distributed", vec![], "True", "Isolated", "no Secret is distributed"),
            (
                "declared and expected only",
                vec![exposure(vec![
                    finding(Reach::Declared, "a"),
                    finding(Reach::Expected(crate::access::exposure::identity::Kind::Admin), "b"),
                ])],
                "True",
                "Isolated",
                "only declared readers and expected platform identities can read the 1 distributed Secrets",
            ),
            (
                "an indirect reader",
                vec![exposure(vec![finding(indirect.clone(), "eve")])],
                "False",
                "IndirectReaders",
                "neither declared nor expected, can obtain without reading: Secret fin-dev/ml-platform: User eve may create pods in fin-dev through RoleBinding fin-dev/x (ClusterRole edit)",
            ),
            (
                "unexpected wins over indirect",
                vec![exposure(vec![finding(indirect, "eve"), finding(Reach::Unexpected, "bob")])],
                "False",
                "UnexpectedReaders",
                "neither declared nor expected, can read: Secret fin-dev/ml-platform: User bob through RoleBinding fin-dev/x (ClusterRole edit)",
            ),
            (
                "too many RBAC objects to know",
                vec![Exposure { unknown: Some("namespace fin-dev holds more".into()), ..exposure(vec![]) }],
                "Unknown",
                "TooManyRBACObjects",
                "namespace fin-dev holds more",
            ),
        ];
        for (why, exposures, status, reason, message) in rows {
            let observed = observe(&exposures);
            assert_eq!(
                (observed.status(), observed.reason.as_str(), observed.message.as_str()),
                (status, reason, message),
                "{why}"
            );
        }
    }

    #[test]
    fn a_message_names_a_bounded_number_of_findings() {
        let many = (0..40).map(|i| finding(Reach::Unexpected, &format!("u{i}"))).collect();
        let observed = observe(&[exposure(many)]);
        assert!(observed.message.ends_with("; and 28 more"), "{}", observed.message);
    }
}
