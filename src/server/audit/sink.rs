//! `POST /audit`: authenticate the poster from the handshake and the request head, then read a
//! bounded body, then count its events (on a blocking thread: parsing a batch is CPU work).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::Semaphore;

use super::Terms;
use super::events::{self, Tally};
use super::tls;
use crate::access::exposure::identity::Expected;
use crate::metrics::Metrics;
use crate::server::http::connections::PeerCertificate;
use crate::server::http::{Limited, read_limited};

/// Largest body taken: the API server's default batch of 400 events at the Metadata level is
/// well under a megabyte.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Bodies read at once (at most this many times [`MAX_BODY`] in memory); a post beyond them is
/// answered 429, which the API server retries.
const BODIES_AT_ONCE: usize = 4;
/// Time to send a body once its head is in.
const BODY_READ: Duration = Duration::from_secs(30);
/// Events of one list counted at most; the rest are dropped and counted as such.
const MAX_EVENTS: usize = 4096;

/// Outcomes of a post: the `outcome` label of `mltenant_audit_batches_total`.
const OUTCOMES: [&str; 7] = ["accepted", "unauthenticated", "too_large", "busy", "slow", "malformed", "standby"];

pub struct Sink {
    terms: Terms,
    expected: Arc<Expected>,
    metrics: Arc<Metrics>,
    client_names: BTreeSet<String>,
    /// SHA-256 of the bearer token (the token itself is not kept).
    token: Option<[u8; 32]>,
    bodies: Semaphore,
}

impl Sink {
    pub fn new(
        terms: Terms,
        expected: Expected,
        metrics: Arc<Metrics>,
        client_names: Vec<String>,
        token: Option<[u8; 32]>,
    ) -> Arc<Self> {
        for outcome in OUTCOMES {
            metrics.audit_batches(outcome, 0);
        }
        for outcome in Tally::OUTCOMES {
            metrics.audit_events(outcome, 0);
        }
        Arc::new(Sink {
            terms,
            expected: Arc::new(expected),
            metrics,
            client_names: client_names.into_iter().collect(),
            token,
            bodies: Semaphore::new(BODIES_AT_ONCE),
        })
    }

    /// Whether the poster is the API server: a verified client certificate with a configured
    /// name, or the configured bearer token.
    fn authenticated(&self, peer: Option<&PeerCertificate>, headers: &HeaderMap) -> bool {
        let certified = peer.is_some_and(|p| tls::names(&p.0).iter().any(|n| self.client_names.contains(n)));
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|token| crate::text::sha256(&[token.trim().as_bytes()]));
        // Digests are compared, so the time a comparison takes says nothing about the token.
        let tokened = matches!((self.token, bearer), (Some(expected), Some(given)) if expected == given);
        certified || tokened
    }
}

pub fn router(sink: Arc<Sink>) -> Router {
    Router::new().route("/audit", post(receive)).with_state(sink)
}

async fn receive(
    State(sink): State<Arc<Sink>>,
    peer: Option<axum::Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let refuse = |outcome: &'static str, status: StatusCode, message: &'static str| {
        sink.metrics.audit_batches(outcome, 1);
        (status, message).into_response()
    };
    if !sink.authenticated(peer.as_ref().map(|p| &p.0), &headers) {
        return refuse("unauthenticated", StatusCode::UNAUTHORIZED, "only the API server may post audit events");
    }
    let Some(usage) = sink.terms.borrow().clone() else {
        // A standby: the API server retries after a second, on a new connection (maybe the
        // leader's, through the Service).
        let mut response = refuse("standby", StatusCode::SERVICE_UNAVAILABLE, "not leading: retry");
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        return response;
    };
    let Ok(_reading) = sink.bodies.try_acquire() else {
        let mut response = refuse("busy", StatusCode::TOO_MANY_REQUESTS, "busy: retry");
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    };
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let read = tokio::time::timeout(BODY_READ, read_limited(body, announced, MAX_BODY, |_| Ok::<(), ()>(()))).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(Limited::TooLarge)) => return refuse("too_large", StatusCode::PAYLOAD_TOO_LARGE, "larger than 4 MiB"),
        Ok(Err(_)) => return refuse("slow", StatusCode::BAD_REQUEST, "the body could not be read"),
        Err(_) => return refuse("slow", StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time"),
    };
    let expected = sink.expected.clone();
    let counted = tokio::task::spawn_blocking(move || events::count(&bytes, MAX_EVENTS, &expected, &usage)).await;
    match counted {
        Ok(Ok(tally)) => {
            for (outcome, count) in Tally::OUTCOMES.iter().zip(tally.counts()) {
                sink.metrics.audit_events(outcome, count);
            }
            sink.metrics.audit_batches("accepted", 1);
            StatusCode::OK.into_response()
        }
        _ => refuse("malformed", StatusCode::BAD_REQUEST, "not an audit.k8s.io/v1 EventList"),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;
    use crate::access::usage::Usage;

    fn post(token: &str) -> Request<Body> {
        let list = br#"{"kind": "EventList", "items": []}"#.to_vec();
        Request::post("/audit").header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::from(list)).unwrap()
    }

    #[tokio::test]
    async fn a_standby_asks_the_api_server_to_retry_elsewhere_and_a_leader_counts() {
        let (terms, term) = tokio::sync::watch::channel(None);
        let metrics = Arc::new(Metrics::new(Default::default()));
        let token = crate::text::sha256(&[b"t0ken"]);
        let router = router(Sink::new(term, Expected::default(), metrics, vec![], Some(token)));
        let answer = router.clone().oneshot(post("wrong")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "the poster is checked first");
        let answer = router.clone().oneshot(post("t0ken")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()[header::RETRY_AFTER], "1");
        assert_eq!(answer.headers()[header::CONNECTION], "close", "the retry may reach another replica");
        let _term = crate::server::audit::Term::start(&terms, Some(Arc::new(Usage::new(Duration::from_secs(60)))));
        assert_eq!(router.oneshot(post("t0ken")).await.unwrap().status(), StatusCode::OK);
    }
}
