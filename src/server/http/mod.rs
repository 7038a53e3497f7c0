//! The operator's HTTP endpoints: health, readiness, metrics, the sealing certificate (open to
//! anyone who can reach the pod), and `/v1/verify` and `/v1/rotate` (authenticated and
//! authorised from the request line and headers before their body is read, the body checked
//! for its shape before it is parsed, rate-limited, their RSA work on the key ring's bounded
//! pool). Connections are bounded by [`connections`].

pub mod connections;
pub mod consumer;
pub mod json_shape;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::api::{SealedBundle, SealedBundleSpec};
use crate::keys::ring::KeyRing;
use crate::metrics::Metrics;
use crate::runtime::readiness::Readiness;
use crate::server::auth::{self, Authorizer, Decision, Permission};
use consumer::Consumer;

/// Largest request body `/v1/verify` and `/v1/rotate` take: a bundle is an API object, which
/// etcd caps at 1.5 MiB. JSON decodes to at most its own size, so this caps the decoded size
/// too.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Bodies of `/v1/verify` and `/v1/rotate` read at once (at most this many times `MAX_BODY` in
/// memory); a caller beyond them is told to come back (429).
const BODIES_AT_ONCE: usize = 4;
/// Time to send a body once its headers are in: 2 MiB at 70 KiB/s. A slower caller would hold
/// one of the few body slots.
const BODY_READ: Duration = Duration::from_secs(30);

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

/// `POST /v1/verify?tenant=<name>` (no parameter for a Cluster-scope bundle) with a
/// SealedBundle as JSON: 200 when every value opens for the consumer the bundle's scope names,
/// 422 with the reason otherwise. Never returns plaintext. Needs `create` on `mltenants/verify`
/// for that tenant (see [`admit`]).
async fn verify(State(s): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let bundle = match admit(&s, uri.query(), &headers, "verify", body).await {
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

/// `POST /v1/rotate?tenant=<name>[&format=v2|kubeseal]` with a SealedBundle as JSON: the same
/// bundle with every value re-sealed to the newest sealing key (each in its format, or all
/// converted to `format`), as YAML ready to commit. A v2 value keeps the other clusters'
/// recipients. Needs `create` on `mltenants/rotate` for that tenant.
async fn rotate(State(s): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let (format, query) = match rotate_format(uri.query()) {
        Ok(split) => split,
        Err(message) => return Refusal::BadRequest(message).into_response(),
    };
    let bundle = match admit(&s, query.as_deref(), &headers, "rotate", body).await {
        Ok(bundle) => bundle,
        Err(refusal) => return refusal.into_response(),
    };
    match s.keys.rotate(bundle, format).await.map(|b| serde_yaml::to_string(&b)) {
        Ok(Ok(yaml)) => ([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response(),
        Ok(Err(_)) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(error) => (StatusCode::UNPROCESSABLE_ENTITY, error.to_string()).into_response(),
    }
}

/// What both bundle endpoints do first, each step before anything the next one costs:
/// 1. read the consumer from the query (`?tenant=<name>`, none for Cluster scope; 400);
/// 2. learn who the caller is (TokenReview; 401) and whether they may `create`
///    `mltenants/<subresource>` for that tenant (SubjectAccessReview with the tenant as the
///    name, none for Cluster scope; 403), from the headers alone: a caller without the right
///    gets no byte of the body read;
/// 3. read the body (at most `MAX_BODY`, `BODIES_AT_ONCE` at a time, within `BODY_READ`;
///    413, 429, 408), and 4. check its shape as it arrives, without parsing it (a JSON object,
///    bounded depth and entries; 415, 413);
/// 5. parse what the endpoints need (metadata.name and spec; 400);
/// 6. check the body claims the consumer that was authorised (403): authorisation follows
///    what the ciphertexts can open, never a name in the body (see [`consumer`]);
/// 7. take a token from the shared rate limit (429).
async fn admit(
    s: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    subresource: &'static str,
    body: Body,
) -> Result<SealedBundle, Refusal> {
    let consumer = Consumer::from_query(query).map_err(Refusal::BadRequest)?;
    authorize(s, headers, consumer.permission(subresource)).await?;
    let _reading = s.bodies.try_acquire().map_err(|_| Refusal::RateLimited)?;
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let bytes = match tokio::time::timeout(BODY_READ, read_body(body, announced)).await {
        Ok(read) => read?,
        Err(_) => return Err(Refusal::SlowBody),
    };
    let parsed = tokio::task::spawn_blocking(move || serde_json::from_slice::<Claims>(&bytes)).await;
    let claims = parsed
        .map_err(|_| Refusal::BadRequest("the body could not be parsed".into()))?
        .map_err(|e| Refusal::BadRequest(format!("the body is not a SealedBundle: {e}")))?;
    consumer.check(&claims.spec).map_err(Refusal::Forbidden)?;
    if !s.oracle_limit.take() {
        return Err(Refusal::RateLimited);
    }
    Ok(SealedBundle::new(&claims.metadata.name.unwrap_or_default(), claims.spec))
}

/// `/v1/rotate`'s own query parameter, `format=v2` or `format=kubeseal` (at most once), and the
/// rest of the query (the consumer's).
fn rotate_format(query: Option<&str>) -> Result<(Option<crate::crypto::Format>, Option<String>), String> {
    let mut format = None;
    let mut rest = Vec::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("format=") {
            Some(_) if format.is_some() => return Err("query parameter \"format\" given more than once".into()),
            Some("v2") => format = Some(crate::crypto::Format::V2),
            Some("kubeseal") => format = Some(crate::crypto::Format::Kubeseal),
            Some(_) => return Err("query parameter \"format\" is v2 or kubeseal".into()),
            None => rest.push(pair),
        }
    }
    Ok((format, (!rest.is_empty()).then(|| rest.join("&"))))
}

/// The body, at most [`MAX_BODY`] bytes of a JSON object of the shape [`json_shape`] allows,
/// in one buffer of the announced length (so a body costs its size once, not the chunks and a
/// copy of them). Each chunk is checked as it arrives: a body is refused at the first chunk past
/// a limit (an announced length over the cap before a byte is read, YAML at its first byte),
/// never held whole to find out.
async fn read_body(body: Body, announced: Option<usize>) -> Result<Vec<u8>, Refusal> {
    let refused = |refusal: json_shape::Refusal| match refusal {
        json_shape::Refusal::NotJson => Refusal::NotJson(refusal.to_string()),
        _ => Refusal::TooComplex(refusal.to_string()),
    };
    let mut shape = json_shape::Scanner::default();
    let bytes = read_limited(body, announced, MAX_BODY, |chunk| shape.feed(chunk)).await.map_err(|e| match e {
        Limited::TooLarge => Refusal::TooLarge,
        Limited::Unreadable => Refusal::BadRequest("the body could not be read".into()),
        Limited::Refused(refusal) => refused(refusal),
    })?;
    shape.finish().map_err(refused)?;
    Ok(bytes)
}

/// Why a body was not read whole.
pub enum Limited<E> {
    /// Longer than allowed (announced, or as it arrived).
    TooLarge,
    /// The connection failed while it arrived.
    Unreadable,
    /// `check` refused a chunk.
    Refused(E),
}

/// A request body of at most `max` bytes, in one buffer of the `announced` length, each chunk
/// passed to `check` as it arrives: refused at the first chunk past the limit, or the first
/// `check` refuses, never held whole to find out (an announced length past it: before a byte is
/// read).
pub async fn read_limited<E>(
    body: Body,
    announced: Option<usize>,
    max: usize,
    mut check: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Vec<u8>, Limited<E>> {
    use futures::StreamExt as _;
    if announced.is_some_and(|length| length > max) {
        return Err(Limited::TooLarge);
    }
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0));
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| Limited::Unreadable)?;
        if bytes.len() + chunk.len() > max {
            return Err(Limited::TooLarge);
        }
        check(&chunk).map_err(Limited::Refused)?;
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// What `/v1/verify` and `/v1/rotate` read of a SealedBundle: its name (for messages and the
/// re-sealed bundle) and its spec. Every other field is skipped unread.
#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    metadata: ClaimedMetadata,
    spec: SealedBundleSpec,
}

#[derive(serde::Deserialize, Default)]
struct ClaimedMetadata {
    #[serde(default)]
    name: Option<String>,
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
    SlowBody,
    NotJson(String),
    TooComplex(String),
    BadRequest(String),
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
            Refusal::SlowBody => {
                (StatusCode::REQUEST_TIMEOUT, format!("the body did not arrive within {} s", BODY_READ.as_secs()))
                    .into_response()
            }
            Refusal::NotJson(message) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response(),
            Refusal::TooComplex(message) => (StatusCode::PAYLOAD_TOO_LARGE, message).into_response(),
            Refusal::BadRequest(message) => (StatusCode::BAD_REQUEST, message).into_response(),
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
    let listener = connections::listen(addr)?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz /readyz /metrics /v1/cert.pem /v1/verify /v1/rotate");
    let metrics = served.metrics.clone();
    connections::serve(listener, router(served), connections::Limits::default(), metrics.http_counters(), None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_takes_a_format_and_leaves_the_rest_to_the_consumer() {
        use crate::crypto::Format;
        assert_eq!(rotate_format(None), Ok((None, None)));
        assert_eq!(rotate_format(Some("tenant=a")), Ok((None, Some("tenant=a".into()))));
        assert_eq!(rotate_format(Some("format=v2&tenant=a")), Ok((Some(Format::V2), Some("tenant=a".into()))));
        assert_eq!(rotate_format(Some("format=kubeseal")), Ok((Some(Format::Kubeseal), None)));
        assert!(rotate_format(Some("format=v3")).is_err());
        assert!(rotate_format(Some("format=v2&format=v2")).is_err());
    }

    #[test]
    fn rate_limit_allows_the_burst_then_refuses() {
        let limit = RateLimit::new(0.001, 3.0);
        assert!((0..3).all(|_| limit.take()));
        assert!(!limit.take());
    }
}
