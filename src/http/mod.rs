//! The operator's HTTP endpoints: health, readiness, metrics, the sealing certificate (open to
//! anyone who can reach the pod), and `/v1/verify` and `/v1/rotate` (authenticated before their
//! body is read, authorised, rate-limited, their RSA work on the key ring's bounded pool).
//! Connections are bounded by [`connections`].

pub mod connections;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::api::SealedBundle;
use crate::auth::{self, Authorizer, Decision, Permission};
use crate::keyring::KeyRing;
use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// Largest request body `/v1/verify` and `/v1/rotate` take: a bundle is an API object, which
/// etcd caps at 1.5 MiB.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Bodies of `/v1/verify` and `/v1/rotate` read at once (at most this many times `MAX_BODY` in
/// memory); a caller beyond them is told to come back (429).
const BODIES_AT_ONCE: usize = 4;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    keys: Arc<KeyRing>,
    oracle_limit: Arc<RateLimit>,
    bodies: Arc<Semaphore>,
    authorizer: Arc<Authorizer>,
    metrics_auth: bool,
}

/// What the HTTP server serves from.
pub struct Served {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub keys: Arc<KeyRing>,
    pub authorizer: Arc<Authorizer>,
    /// Whether `/metrics` needs an authorised caller too (`--metrics-auth`).
    pub metrics_auth: bool,
}

pub fn router(served: Served) -> Router {
    let state = AppState {
        metrics: served.metrics,
        readiness: served.readiness,
        keys: served.keys,
        oracle_limit: Arc::new(RateLimit::new(5.0, 10.0)),
        bodies: Arc::new(Semaphore::new(BODIES_AT_ONCE)),
        authorizer: served.authorizer,
        metrics_auth: served.metrics_auth,
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/cert.pem", get(cert))
        .route("/v1/verify", post(verify))
        .route("/v1/rotate", post(rotate))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if s.metrics_auth
        && let Err(refusal) = authorize(&s, &headers, Permission::Path("/metrics")).await
    {
        return refusal.into_response();
    }
    s.metrics.render().into_response()
}

/// `POST /v1/verify` with a SealedBundle (YAML or JSON): 200 when every value opens for the
/// consumer the bundle's scope names, 422 with the reason otherwise. Never returns plaintext.
/// Needs `create` on `sealedbundles/verify`.
async fn verify(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let bundle = match admit(&s, &headers, "verify", body).await {
        Ok(bundle) => bundle,
        Err(refusal) => return refusal.into_response(),
    };
    match s.keys.verify(bundle).await {
        Ok(opened) => Json(json!({"decryptable": true, "keyFingerprint": opened.fingerprint})).into_response(),
        Err(failure) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"decryptable": false, "reason": failure.reason(), "message": failure.to_string()})),
        )
            .into_response(),
    }
}

/// `POST /v1/rotate` with a SealedBundle: the same bundle with every value re-sealed to the
/// newest sealing key, as YAML ready to commit. Needs `create` on `sealedbundles/rotate`.
async fn rotate(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let bundle = match admit(&s, &headers, "rotate", body).await {
        Ok(bundle) => bundle,
        Err(refusal) => return refusal.into_response(),
    };
    match s.keys.rotate(bundle).await.map(|b| serde_yaml::to_string(&b)) {
        Ok(Ok(yaml)) => ([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response(),
        Ok(Err(_)) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(error) => (StatusCode::UNPROCESSABLE_ENTITY, error.to_string()).into_response(),
    }
}

/// What both bundle endpoints do first: learn who the caller is (before reading a byte of the
/// body, so an anonymous caller costs neither memory nor parsing), read and parse the body
/// (bounded in size and in how many at once) to know which bundle it asks about, check the
/// caller may `create` `sealedbundles/<subresource>` for it, then take a token from the shared
/// rate limit.
async fn admit(
    s: &AppState,
    headers: &HeaderMap,
    subresource: &'static str,
    body: Body,
) -> Result<SealedBundle, Refusal> {
    let token = auth::bearer_token(headers);
    let anonymous = Permission::Bundle { subresource, name: String::new() };
    let user = s.authorizer.authenticate(token).await.map_err(|decision| refusal(decision, &anonymous))?;
    let _reading = s.bodies.try_acquire().map_err(|_| Refusal::RateLimited)?;
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| Refusal::TooLarge)?;
    let parsed = tokio::task::spawn_blocking(move || serde_yaml::from_slice::<SealedBundle>(&bytes)).await;
    let bundle = parsed
        .map_err(|_| Refusal::BadBody("the body could not be parsed".into()))?
        .map_err(|e| Refusal::BadBody(format!("the body is not a SealedBundle: {e}")))?;
    let permission = Permission::Bundle { subresource, name: bundle.name_any() };
    let decision = s.authorizer.authorize(token.unwrap_or_default(), &user, &permission).await;
    if decision != Decision::Allowed {
        return Err(refusal(decision, &permission));
    }
    if !s.oracle_limit.take() {
        return Err(Refusal::RateLimited);
    }
    Ok(bundle)
}

async fn authorize(s: &AppState, headers: &HeaderMap, permission: Permission) -> Result<(), Refusal> {
    match s.authorizer.check(auth::bearer_token(headers), &permission).await {
        Decision::Allowed => Ok(()),
        refused => Err(refusal(refused, &permission)),
    }
}

/// The answer to a caller the authorizer did not allow to do `permission`.
fn refusal(decision: Decision, permission: &Permission) -> Refusal {
    match decision {
        Decision::Unauthenticated => Refusal::Unauthenticated,
        Decision::Forbidden(user) => Refusal::Forbidden(format!("{user} may not {}", permission.describe())),
        // Not reached with `Allowed`; were it ever, refusing is the safe answer.
        Decision::Unavailable | Decision::Allowed => Refusal::Unavailable,
    }
}

enum Refusal {
    Unauthenticated,
    Forbidden(String),
    Unavailable,
    RateLimited,
    TooLarge,
    BadBody(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token the Kubernetes API server accepts is required",
            )
                .into_response(),
            Refusal::Forbidden(message) => (StatusCode::FORBIDDEN, message).into_response(),
            Refusal::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "cannot check the caller's token now")
                    .into_response()
            }
            Refusal::RateLimited => {
                (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "rate limited").into_response()
            }
            Refusal::TooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY} bytes")).into_response()
            }
            Refusal::BadBody(message) => (StatusCode::BAD_REQUEST, message).into_response(),
        }
    }
}

/// A token bucket shared by every caller of the endpoints that open bundles: they answer
/// whether a ciphertext decrypts, so their rate is bounded for everyone together.
struct RateLimit {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Take a token; false when none is left.
    fn take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = *state;
        let now = Instant::now();
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.burst);
        let allowed = tokens >= 1.0;
        *state = (if allowed { tokens - 1.0 } else { tokens }, now);
        allowed
    }
}

/// The certificate of the newest sealing key: what `mltenant seal` and `kubeseal --cert` seal to.
async fn cert(State(s): State<AppState>) -> Response {
    match s.keys.newest() {
        Some(key) => ([(header::CONTENT_TYPE, "application/x-pem-file")], key.certificate().to_pem()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no sealing key yet").into_response(),
    }
}

/// Ready only once every watch cache has synced: before that, the operator would decide on a
/// partial view of the cluster.
async fn readyz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.readiness.is_ready() { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "caches not synced") }
}

/// Serve `served` on `addr` within the default [`connections::Limits`], until the future is
/// dropped.
pub async fn serve(addr: SocketAddr, served: Served) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz /readyz /metrics /v1/cert.pem /v1/verify /v1/rotate");
    let metrics = served.metrics.clone();
    connections::serve(listener, router(served), connections::Limits::default(), metrics).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_the_burst_then_refuses() {
        let limit = RateLimit::new(0.001, 3.0);
        assert!((0..3).all(|_| limit.take()));
        assert!(!limit.take());
    }
}
