//! The operator's own Kubernetes client: every request is counted
//! (`mltenant_kube_requests_total`), no write leaves a replica that does not hold the leader
//! Lease right now, and no write outlives the term it was sent in: it is abandoned when the
//! term lapses, and the API server is given the same deadline (`timeout`), so a write that
//! passed the fence cannot land long after another replica took over. What the fence stops is
//! a [`NotLeader`] error (`mltenant_fenced_writes_total`), never taken for the API server's
//! refusal.
//!
//! Answers of 429 (Priority and Fairness, a rate limit), 503 and 504 are retried with jittered
//! exponential backoff, respecting the server's `Retry-After`, as kube's own client does; but
//! the retry sits *above* the guard, so every attempt passes the leadership fence again and is
//! counted. (kube's built-in retry, turned off here, re-sends from inside the stack, past any
//! layer added to it: a write refused while leading could be re-sent after the Lease lapsed.)
//! Between the two, every attempt passes the window of requests in flight (`throttle`), which
//! narrows when the server answers 429.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use http::Request;
use kube::client::Body;
use kube::client::retry::RetryPolicy;
use tower::buffer::Buffer;
use tower::retry::Retry;
use tower::{BoxError, Service};

use crate::metrics::Metrics;
use crate::runtime::leader::Leadership;
use crate::runtime::throttle::Windowed;

/// Retries of one request: the first after 100 ms or the server's `Retry-After`, doubling to
/// at most 10 s between attempts, so a refused request fails within about a minute and its
/// reconcile backs off instead (per object, see `reconcile::backoff`).
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(10);
const RETRIES: u32 = 8;

/// Requests waiting for the guard (the retry layer needs a cloneable service below it).
const QUEUE: usize = 1024;

/// Build the client for `config`: kube's stack under [`stack`].
pub fn build(
    mut config: kube::Config,
    leadership: Arc<Leadership>,
    metrics: Arc<Metrics>,
) -> kube::Result<kube::Client> {
    config.default_retry = false;
    let layer = tower::layer::layer_fn(|inner| stack(inner, leadership.clone(), metrics.clone()));
    Ok(kube::client::ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

type Guarded<R> = BoxFuture<'static, Result<R, BoxError>>;
/// The guard behind its queue.
type Queued<R> = Buffer<Request<Body>, Guarded<R>>;

/// Retry over the window of requests in flight over a queue (the layers above need a
/// cloneable service) over the guard over `inner`.
fn stack<S, B>(
    inner: S,
    leadership: Arc<Leadership>,
    metrics: Arc<Metrics>,
) -> Retry<RetryPolicy, Windowed<Queued<S::Response>>>
where
    S: Service<Request<Body>, Response = http::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    let retry = RetryPolicy::new(RETRY_FIRST, RETRY_CAP, RETRIES, true).expect("valid retry bounds");
    let queue = Buffer::new(Guard { inner, leadership, metrics }, QUEUE);
    Retry::new(retry, Windowed { inner: queue, window: Arc::default() })
}

/// A write the leadership fence stopped. Callers tell it from the API server's refusals with
/// [`is_not_leader`]: a replica stepping down has nothing to report about its objects.
#[derive(Debug, thiserror::Error)]
pub enum NotLeader {
    /// Not sent: this replica did not hold the Lease.
    #[error("{0} refused: this replica does not hold the leader Lease")]
    Refused(http::Method),
    /// Sent, but not answered before the term lapsed (the API server's own deadline for it
    /// was the same instant, so it gave up too, or is about to).
    #[error("{0} abandoned: the leader Lease lapsed before the API server answered")]
    Abandoned(http::Method),
}

impl NotLeader {
    /// The `outcome` label of `mltenant_fenced_writes_total`.
    fn outcome(&self) -> &'static str {
        match self {
            NotLeader::Refused(_) => "refused",
            NotLeader::Abandoned(_) => "abandoned",
        }
    }
}

/// Whether `error`, or any error it was caused by, is a [`NotLeader`] (kube's client carries
/// it as the source of `kube::Error::Service`).
pub fn is_not_leader(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.is::<NotLeader>())
}

/// `uri` with the API server's deadline for the request, `left` (a Go duration): it stops
/// working on a request that is still running when this replica's term lapses.
fn with_deadline(uri: &http::Uri, left: Duration) -> http::Uri {
    let Some(path) = uri.path_and_query() else { return uri.clone() };
    let separator = if path.query().is_some() { '&' } else { '?' };
    // At least 1 ms: `0ms` would mean "the server's default", not "none left".
    let bounded = format!("{path}{separator}timeout={}ms", left.as_millis().max(1));
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = bounded.parse().ok();
    http::Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// Counts every request, refuses a write unless this replica holds the Lease right now, and
/// bounds a write it sends by the time left in its term.
pub struct Guard<S> {
    inner: S,
    leadership: Arc<Leadership>,
    metrics: Arc<Metrics>,
}

impl<S, ReqBody, Response> Service<Request<ReqBody>> for Guard<S>
where
    S: Service<Request<ReqBody>, Response = Response>,
    Response: Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let method = request.method().clone();
        if method == http::Method::GET {
            self.metrics.kube_request(&method);
            return self.inner.call(request).map(|result| result.map_err(Into::into)).boxed();
        }
        let Some(lapse) = self.leadership.lapses_at() else {
            return std::future::ready(Err(fenced(&self.metrics, NotLeader::Refused(method)))).boxed();
        };
        *request.uri_mut() = with_deadline(request.uri(), lapse - tokio::time::Instant::now());
        self.metrics.kube_request(&method);
        let (answer, metrics) = (self.inner.call(request), self.metrics.clone());
        async move {
            match tokio::time::timeout_at(lapse, answer).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(fenced(&metrics, NotLeader::Abandoned(method))),
            }
        }
        .boxed()
    }
}

/// Count what the fence `stopped`, as the request's error.
fn fenced(metrics: &Metrics, stopped: NotLeader) -> BoxError {
    metrics.fenced_write(stopped.outcome());
    stopped.into()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{Response, StatusCode};
    use tower::ServiceExt as _;

    use super::*;
    use crate::keys::ring::KeyRing;

    /// A stand-in API server answering with `statuses` in turn (the last one from then on),
    /// each with `Retry-After: 2`; counts what reached it.
    fn api(
        statuses: &[u16],
        seen: Arc<AtomicUsize>,
    ) -> impl Service<Request<Body>, Response = Response<()>, Error = BoxError, Future: Send> + Send + 'static {
        let statuses = Mutex::new(statuses.to_vec());
        tower::service_fn(move |_: Request<Body>| {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut statuses = statuses.lock().unwrap();
            let status = if statuses.len() > 1 { statuses.remove(0) } else { statuses[0] };
            async move {
                let mut response = Response::new(());
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                response.headers_mut().insert(http::header::RETRY_AFTER, "2".parse().unwrap());
                Ok::<_, BoxError>(response)
            }
        })
    }

    fn request(method: http::Method) -> Request<Body> {
        Request::builder().method(method).uri("/api/v1/namespaces").body(Body::from(b"{}".to_vec())).unwrap()
    }

    fn leadership(lease: Duration) -> Arc<Leadership> {
        let config = crate::runtime::leader::Config {
            namespace: "ns".into(),
            lease_name: "l".into(),
            identity: "me".into(),
            lease_duration: lease,
        };
        Arc::new(Leadership::new(&config))
    }

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(Arc::new(KeyRing::default())))
    }

    fn counted(metrics: &Metrics, method: &str) -> String {
        sample(metrics, &format!("mltenant_kube_requests_total{{method=\"{method}\"}}"))
    }

    fn counted_fenced(metrics: &Metrics, outcome: &str) -> String {
        sample(metrics, &format!("mltenant_fenced_writes_total{{outcome=\"{outcome}\"}}"))
    }

    /// The line of `series` in the metrics text.
    fn sample(metrics: &Metrics, series: &str) -> String {
        metrics.render().lines().find(|l| l.starts_with(series)).unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn no_write_without_the_lease() {
        let (leadership, metrics, seen) = (leadership(Duration::from_secs(15)), metrics(), Arc::default());
        let guard =
            Guard { inner: api(&[200], Arc::clone(&seen)), leadership: leadership.clone(), metrics: metrics.clone() };
        let mut guard = tower::util::BoxService::new(guard);
        assert!(guard.ready().await.unwrap().call(request(http::Method::GET)).await.is_ok(), "reads are fine");
        let refused = guard.ready().await.unwrap().call(request(http::Method::PATCH)).await.unwrap_err();
        assert!(refused.to_string().contains("does not hold the leader Lease"), "{refused}");
        assert_eq!(seen.load(Ordering::SeqCst), 1, "the refused write never left");
        // As the reconcile sees it: kube's client carries it as the source of a service error.
        assert!(is_not_leader(&kube::Error::Service(refused)), "told apart from the API server's refusals");
        assert!(counted_fenced(&metrics, "refused").ends_with(" 1"), "{}", counted_fenced(&metrics, "refused"));
        leadership.renewed_now();
        assert!(guard.ready().await.unwrap().call(request(http::Method::PATCH)).await.is_ok());
    }

    #[test]
    fn an_api_servers_refusal_is_not_a_fenced_write() {
        let status = kube::core::Status { code: 503, message: "unavailable".into(), ..Default::default() };
        assert!(!is_not_leader(&kube::Error::Api(status.boxed())));
        assert!(!is_not_leader(&kube::Error::Service("connection refused".into())));
    }

    /// A stand-in API server answering 200 after `delay`; keeps the URI of every request.
    fn slow(
        delay: Duration,
        uris: Arc<Mutex<Vec<String>>>,
    ) -> impl Service<Request<Body>, Response = Response<()>, Error = BoxError, Future: Send> + Send + 'static {
        tower::service_fn(move |request: Request<Body>| {
            uris.lock().unwrap().push(request.uri().to_string());
            async move {
                tokio::time::sleep(delay).await;
                Ok::<_, BoxError>(Response::new(()))
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_still_unanswered_when_the_term_lapses_is_abandoned_and_the_server_told_so() {
        // A 3 s lease: the term ends 2 s after the renewal; the server answers after 5 s.
        let (leadership, metrics, uris) = (leadership(Duration::from_secs(3)), metrics(), Arc::default());
        leadership.renewed_now();
        let guard =
            Guard { inner: slow(Duration::from_secs(5), Arc::clone(&uris)), leadership, metrics: metrics.clone() };
        let mut guard = tower::util::BoxService::new(guard);
        let start = tokio::time::Instant::now();
        let abandoned = guard.ready().await.unwrap().call(request(http::Method::PATCH)).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(2), "abandoned when the term lapsed, not when answered");
        assert!(abandoned.to_string().contains("abandoned: the leader Lease lapsed"), "{abandoned}");
        assert!(is_not_leader(&*abandoned));
        assert!(counted_fenced(&metrics, "abandoned").ends_with(" 1"), "{}", counted_fenced(&metrics, "abandoned"));
        assert_eq!(uris.lock().unwrap()[0], "/api/v1/namespaces?timeout=2000ms", "the API server's own deadline");
        // Reads are not bounded by the term (watches are long-running reads).
        assert!(guard.ready().await.unwrap().call(request(http::Method::GET)).await.is_ok());
        assert_eq!(uris.lock().unwrap()[1], "/api/v1/namespaces");
    }

    #[test]
    fn the_deadline_is_a_go_duration_added_to_the_query() {
        let uri = |text: &str| text.parse::<http::Uri>().unwrap();
        let bounded = with_deadline(&uri("/api/v1/namespaces"), Duration::from_millis(1500));
        assert_eq!(bounded, uri("/api/v1/namespaces?timeout=1500ms"));
        let bounded = with_deadline(&uri("https://h:6443/api/v1/x?fieldManager=m"), Duration::from_micros(10));
        assert_eq!(bounded, uri("https://h:6443/api/v1/x?fieldManager=m&timeout=1ms"), "never 0ms (the default)");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_retried_after_retry_after_and_every_attempt_is_counted() {
        let (leadership, metrics, seen) = (leadership(Duration::from_secs(15)), metrics(), Arc::default());
        leadership.renewed_now();
        let client = stack(api(&[429, 429, 200], Arc::clone(&seen)), leadership, metrics.clone());
        let start = tokio::time::Instant::now();
        let response = client.oneshot(request(http::Method::PATCH)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        assert!(start.elapsed() >= Duration::from_secs(4), "Retry-After (2 s) honoured: {:?}", start.elapsed());
        assert!(counted(&metrics, "PATCH").ends_with(" 3"), "{}", counted(&metrics, "PATCH"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retried_write_is_refused_once_the_lease_lapsed() {
        let (leadership, metrics, seen) = (leadership(Duration::from_secs(1)), metrics(), Arc::default());
        leadership.renewed_now();
        let client = stack(api(&[429, 200], Arc::clone(&seen)), leadership, metrics);
        let refused = client.oneshot(request(http::Method::PUT)).await.unwrap_err();
        assert!(refused.to_string().contains("does not hold the leader Lease"), "{refused}");
        assert_eq!(seen.load(Ordering::SeqCst), 1, "the retry (after the 2 s Retry-After) did not leave");
    }

    /// A stand-in API server with `seats` requests at a time, answering 429 (`Retry-After: 1`)
    /// beyond them, as a Priority and Fairness level without queues does; counts the 429s.
    fn seated(
        seats: usize,
        rejected: Arc<AtomicUsize>,
    ) -> impl Service<Request<Body>, Response = Response<()>, Error = BoxError, Future: Send> + Send + 'static {
        let in_flight = Arc::new(AtomicUsize::new(0));
        tower::service_fn(move |_: Request<Body>| {
            let (in_flight, rejected) = (in_flight.clone(), rejected.clone());
            async move {
                let mut response = Response::new(());
                if in_flight.fetch_add(1, Ordering::SeqCst) >= seats {
                    rejected.fetch_add(1, Ordering::SeqCst);
                    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    response.headers_mut().insert(http::header::RETRY_AFTER, "1".parse().unwrap());
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(response)
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_against_few_seats_narrows_the_window_and_every_request_gets_through() {
        let (leadership, metrics, rejected) = (leadership(Duration::from_secs(3600)), metrics(), Arc::default());
        leadership.renewed_now();
        let client = stack(seated(8, Arc::clone(&rejected)), leadership, metrics);
        let requests = (0..200).map(|_| client.clone().oneshot(request(http::Method::PATCH)));
        let answers = futures::future::join_all(requests).await;
        let failed = answers.iter().filter(|a| a.as_ref().map_or(true, |r| r.status() != StatusCode::OK)).count();
        let rejected = rejected.load(Ordering::SeqCst);
        assert_eq!(failed, 0, "every request got through within its retries ({rejected} answered 429)");
        assert!(rejected < 300, "{rejected} answered 429: more than the first burst (192) and a few");
    }
}
