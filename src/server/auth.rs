//! Delegated authentication and authorisation for the HTTP endpoints that cost RSA work or
//! answer about secrets (`/v1/verify`, `/v1/rotate`, and `/metrics` with `--metrics-auth`): the
//! caller's bearer token goes to a TokenReview, the identity it names to a SubjectAccessReview,
//! as kube-rbac-proxy and controller-runtime's metrics filter do. Answers are cached briefly
//! (keyed by a hash of the token, never the token itself) so a busy client does not cost two API
//! calls per request, and reviews in flight are bounded so a flood of made-up tokens cannot turn
//! into a flood on the API server.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::Semaphore;

/// How long an answer is reused (RBAC changes take effect within this).
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Answers kept at most; past that, the expired ones go, and all of them if none has.
const CACHE_ENTRIES: usize = 4096;
/// Reviews sent to the API server at once; more callers wait, up to `REVIEW_WAIT`.
const REVIEWS_IN_FLIGHT: usize = 8;
const REVIEW_WAIT: Duration = Duration::from_secs(5);

/// The header the CLI uses through the API server's service proxy: the API server consumes
/// `Authorization` itself (it authenticates the proxy request and removes the header), so the
/// caller's token travels beside it.
pub const FORWARDED_TOKEN_HEADER: &str = "x-mltenant-authorization";

/// What a request asks to do, in RBAC terms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `create` on `mltenants/<subresource>` in `mltenant.io` (`verify`, `rotate`): have the
    /// operator open ciphertexts that open for `tenant` (scope Tenant or Environment of it), the
    /// tenant being the resource name; `None` for Cluster-scope ciphertexts, which open for any
    /// tenant, so that only a rule without `resourceNames` allows it. Never a name the caller
    /// put in a request body.
    Ciphertexts { subresource: &'static str, tenant: Option<String> },
    /// `get` on a non-resource path such as `/metrics`.
    Path(&'static str),
}

impl Permission {
    /// How RBAC names it, for messages (`create mltenants/verify (mltenant.io) for tenant t`).
    pub fn describe(&self) -> String {
        match self {
            Permission::Ciphertexts { subresource, tenant: Some(tenant) } => {
                format!("create mltenants/{subresource} (mltenant.io) for tenant {tenant}")
            }
            Permission::Ciphertexts { subresource, tenant: None } => format!(
                "create mltenants/{subresource} (mltenant.io) for Cluster-scope bundles (a rule without resourceNames)"
            ),
            Permission::Path(path) => format!("get {path}"),
        }
    }
}

/// The answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No token, or one the API server does not accept.
    Unauthenticated,
    /// Authenticated as the user named, but not allowed.
    Forbidden(String),
    /// The API server could not be asked (or is overloaded): try again.
    Unavailable,
}

pub struct Authorizer {
    client: Client,
    /// Who a token names, by a hash of the token.
    identities: Answers<Identity>,
    /// Whether a token may do a permission, by a hash of both.
    decisions: Answers<Decision>,
    reviews: Semaphore,
}

/// Who a token names: the user a TokenReview returned, or why there is none.
pub type Identity = Result<UserInfo, Decision>;

impl Authorizer {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            identities: Answers::default(),
            decisions: Answers::default(),
            reviews: Semaphore::new(REVIEWS_IN_FLIGHT),
        }
    }

    /// May the holder of `token` do `permission`?
    pub async fn check(&self, token: Option<&str>, permission: &Permission) -> Decision {
        match self.authenticate(token).await {
            Ok(user) => self.authorize(token.unwrap_or_default(), &user, permission).await,
            Err(decision) => decision,
        }
    }

    /// Who holds `token` (a TokenReview). Answers, refusals included, are cached by a hash of
    /// the token.
    pub async fn authenticate(&self, token: Option<&str>) -> Identity {
        let Some(token) = token.filter(|t| !t.is_empty()) else { return Err(Decision::Unauthenticated) };
        let key = crate::text::sha256(&[token.as_bytes()]);
        if let Some(identity) = self.identities.get(&key) {
            return identity;
        }
        let identity = self.reviewed(self.token_review(token)).await?;
        self.identities.put(key, identity.clone());
        identity
    }

    /// May `user`, authenticated by `token`, do `permission` (a SubjectAccessReview)?
    pub async fn authorize(&self, token: &str, user: &UserInfo, permission: &Permission) -> Decision {
        let key = cache_key(token, permission);
        if let Some(decision) = self.decisions.get(&key) {
            return decision;
        }
        match self.reviewed(self.access_review(user, permission)).await {
            Ok(decision) => {
                self.decisions.put(key, decision.clone());
                decision
            }
            Err(unavailable) => unavailable,
        }
    }

    /// Run one review once a slot is free; an API server that cannot answer makes it
    /// `Unavailable`, never allowed.
    async fn reviewed<T>(&self, review: impl Future<Output = kube::Result<T>>) -> Result<T, Decision> {
        let Ok(Ok(_slot)) = tokio::time::timeout(REVIEW_WAIT, self.reviews.acquire()).await else {
            return Err(Decision::Unavailable);
        };
        review.await.map_err(|error| {
            tracing::warn!(%error, "could not review a request's caller");
            Decision::Unavailable
        })
    }

    async fn token_review(&self, token: &str) -> kube::Result<Identity> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_owned()), audiences: None },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone()).create(&PostParams::default(), &review).await?;
        let status = reviewed.status.unwrap_or_default();
        Ok(match (status.authenticated, status.user) {
            (Some(true), Some(user)) => Ok(user),
            _ => Err(Decision::Unauthenticated),
        })
    }

    async fn access_review(&self, user: &UserInfo, permission: &Permission) -> kube::Result<Decision> {
        let (resource_attributes, non_resource_attributes) = match permission {
            Permission::Ciphertexts { subresource, tenant } => (
                Some(ResourceAttributes {
                    group: Some(crate::api::GROUP.to_owned()),
                    resource: Some("mltenants".to_owned()),
                    subresource: Some((*subresource).to_owned()),
                    verb: Some("create".to_owned()),
                    name: tenant.clone(),
                    ..Default::default()
                }),
                None,
            ),
            Permission::Path(path) => {
                (None, Some(NonResourceAttributes { path: Some((*path).to_owned()), verb: Some("get".to_owned()) }))
            }
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                uid: user.uid.clone(),
                groups: user.groups.clone(),
                extra: user.extra.clone(),
                resource_attributes,
                non_resource_attributes,
            },
            ..Default::default()
        };
        let answer =
            Api::<SubjectAccessReview>::all(self.client.clone()).create(&PostParams::default(), &access).await?;
        Ok(if answer.status.is_some_and(|s| s.allowed) {
            Decision::Allowed
        } else {
            Decision::Forbidden(user.username.clone().unwrap_or_default())
        })
    }
}

/// Answers reused for [`CACHE_TTL`], keyed by a hash (never a token), at most
/// [`CACHE_ENTRIES`] of them.
struct Answers<T>(Mutex<HashMap<[u8; 32], (T, Instant)>>);

impl<T> Default for Answers<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: Clone> Answers<T> {
    fn get(&self, key: &[u8; 32]) -> Option<T> {
        let cache = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(key).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(answer, _)| answer.clone())
    }

    fn put(&self, key: [u8; 32], answer: T) {
        let mut cache = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (answer, Instant::now()));
    }
}

/// The user name this client authenticates as (a SelfSubjectReview, which every authenticated
/// identity may send).
pub async fn who_am_i(client: &Client) -> kube::Result<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review =
        Api::<SelfSubjectReview>::all(client.clone()).create(&PostParams::default(), &Default::default()).await?;
    Ok(review.status.and_then(|s| s.user_info?.username).unwrap_or_default())
}

/// SHA-256 over the token and the permission: the cache never holds a token.
fn cache_key(token: &str, permission: &Permission) -> [u8; 32] {
    crate::text::sha256(&[token.as_bytes(), b"\0", format!("{permission:?}").as_bytes()])
}

/// The bearer token of a request: `Authorization: Bearer <token>`, or the same value in
/// [`FORWARDED_TOKEN_HEADER`] (through the API server's service proxy).
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    [http::header::AUTHORIZATION.as_str(), FORWARDED_TOKEN_HEADER]
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .find_map(|value| value.strip_prefix("Bearer ").map(str::trim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_either_header() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(FORWARDED_TOKEN_HEADER, "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(http::header::AUTHORIZATION, "Bearer direct".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("direct"));
        headers.insert(http::header::AUTHORIZATION, "Basic x".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("abc"), "only bearer tokens count");
    }

    #[test]
    fn cache_keys_separate_tokens_and_permissions() {
        let verify = Permission::Ciphertexts { subresource: "verify", tenant: Some("t1".into()) };
        let rotate = Permission::Ciphertexts { subresource: "rotate", tenant: Some("t1".into()) };
        let other = Permission::Ciphertexts { subresource: "verify", tenant: Some("t2".into()) };
        let cluster = Permission::Ciphertexts { subresource: "verify", tenant: None };
        assert_ne!(cache_key("t", &verify), cache_key("t", &rotate));
        assert_ne!(cache_key("t", &verify), cache_key("t", &other));
        assert_ne!(cache_key("t", &verify), cache_key("t", &cluster));
        assert_ne!(cache_key("t", &verify), cache_key("u", &verify));
        assert_eq!(cache_key("t", &verify), cache_key("t", &verify));
    }

    #[test]
    fn permissions_say_what_rbac_must_grant() {
        let tenant = Permission::Ciphertexts { subresource: "verify", tenant: Some("fin".into()) };
        assert_eq!(tenant.describe(), "create mltenants/verify (mltenant.io) for tenant fin");
        let cluster = Permission::Ciphertexts { subresource: "rotate", tenant: None };
        assert_eq!(
            cluster.describe(),
            "create mltenants/rotate (mltenant.io) for Cluster-scope bundles (a rule without resourceNames)"
        );
    }
}
