//! Confirming what the RBAC analysis found with SubjectAccessReviews: other authorisers may
//! allow or deny too (a webhook, the Node authoriser), and the compact RBAC form may say more
//! than a rule allows. A finding is reported only if the API server's authorisers, asked as
//! that subject, allow one of its checks. Answers are kept while the RBAC set is unchanged (a
//! steady state asks nothing), in a bounded cache, and reviews in flight are bounded.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::Semaphore;

use super::assess::{Check, Finding};
use super::identity::Subject;

/// Answers kept at most; past that, all of them go.
const MAX_ANSWERS: usize = 16 * 1024;
/// Reviews sent at once.
const REVIEWS_IN_FLIGHT: usize = 8;

/// The outcome of one review, for `mltenant_access_reviews_total{result}`.
pub const ALLOWED: &str = "allowed";
pub const DENIED: &str = "denied";
pub const FAILED: &str = "error";

pub struct Confirmer {
    client: Client,
    answers: Mutex<Answers>,
    slots: Semaphore,
}

#[derive(Default)]
struct Answers {
    /// The version of the RBAC set the answers hold for.
    version: u64,
    allowed: HashMap<(Subject, Check), bool>,
}

impl Confirmer {
    pub fn new(client: Client) -> Self {
        Confirmer { client, answers: Mutex::default(), slots: Semaphore::new(REVIEWS_IN_FLIGHT) }
    }

    /// Whether the API server allows `finding`'s subject one of its checks, with answers reused
    /// while the RBAC set is at `version`; `counted` hears each review sent and its result.
    pub async fn confirm(
        &self,
        finding: &Finding,
        version: u64,
        counted: &(dyn Fn(&'static str) + Sync),
    ) -> kube::Result<bool> {
        for check in &finding.checks {
            let key = (finding.subject.clone(), check.clone());
            let known = {
                let mut answers = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if answers.version != version {
                    *answers = Answers { version, allowed: HashMap::new() };
                }
                answers.allowed.get(&key).copied()
            };
            let allowed = match known {
                Some(allowed) => allowed,
                None => {
                    let answer = self.review(&finding.subject, check).await;
                    counted(match answer {
                        Ok(true) => ALLOWED,
                        Ok(false) => DENIED,
                        Err(_) => FAILED,
                    });
                    let allowed = answer?;
                    let mut answers = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if answers.version == version {
                        if answers.allowed.len() >= MAX_ANSWERS {
                            answers.allowed.clear();
                        }
                        answers.allowed.insert(key, allowed);
                    }
                    allowed
                }
            };
            if allowed {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn review(&self, subject: &Subject, check: &Check) -> kube::Result<bool> {
        let _slot = self.slots.acquire().await.expect("the semaphore is never closed");
        let (user, groups) = subject.review_identity();
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user),
                groups: Some(groups),
                resource_attributes: Some(ResourceAttributes {
                    namespace: check.namespace.clone(),
                    group: Some(check.request.group.to_owned()),
                    resource: Some(check.request.resource.to_owned()),
                    subresource: check.request.subresource.map(str::to_owned),
                    verb: Some(check.request.verb.to_owned()),
                    name: check.name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer =
            Api::<SubjectAccessReview>::all(self.client.clone()).create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed && !s.denied.unwrap_or(false)))
    }
}
