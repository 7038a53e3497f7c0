//! The operator's own Kubernetes client: every request is counted
//! (`mltenant_kube_requests_total`), no write leaves a replica that does not hold the leader
//! Lease right now, and a 429 from the API server (Priority and Fairness, a rate limit) makes
//! every following request wait the `Retry-After` it asked for.
//!
//! kube's own retry of 429/503 answers is turned off for this client: it re-sends a request from
//! inside the stack, past this guard, so a write refused while leading could be re-sent after
//! the lease lapsed, and the re-sends would go uncounted. A refused request fails instead; the
//! reconcile reports it on its object and is retried with backoff.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use tokio::time::{Instant, Sleep};
use tower::{BoxError, Layer, Service};

use crate::leader::Leadership;
use crate::metrics::Metrics;

/// How long to hold back after a 429 without a usable `Retry-After`, and at most.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Build the client for `config` with the guard below.
pub fn build(
    mut config: kube::Config,
    leadership: Arc<Leadership>,
    metrics: Arc<Metrics>,
) -> kube::Result<kube::Client> {
    config.default_retry = false;
    let layer = GuardLayer { leadership, metrics, pause_until: Arc::default() };
    Ok(kube::client::ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

#[derive(Clone)]
struct GuardLayer {
    leadership: Arc<Leadership>,
    metrics: Arc<Metrics>,
    pause_until: Arc<Mutex<Option<Instant>>>,
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, shared: self.clone(), pause: None }
    }
}

pub struct Guard<S> {
    inner: S,
    shared: GuardLayer,
    /// While paused by a 429: the wait before the service is ready again.
    pause: Option<Pin<Box<Sleep>>>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Guard<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<ResBody>, BoxError>>;

    /// Not ready while a 429's `Retry-After` runs: every request queues behind it.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let until = *lock(&self.shared.pause_until);
        if let Some(until) = until.filter(|u| *u > Instant::now()) {
            let pause = self.pause.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
            if pause.deadline() != until {
                pause.as_mut().reset(until);
            }
            std::task::ready!(pause.as_mut().poll(cx));
        }
        self.pause = None;
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = request.method().clone();
        if method != http::Method::GET && !self.shared.leadership.holds() {
            let refused = BoxError::from(format!("{method} refused: this replica does not hold the leader Lease"));
            return std::future::ready(Err(refused)).boxed();
        }
        self.shared.metrics.kube_request(&method);
        let sent = self.inner.call(request);
        let pause_until = self.shared.pause_until.clone();
        async move {
            let response = sent.await.map_err(Into::into)?;
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                let pause = retry_after(response.headers()).unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE);
                let until = Instant::now() + pause;
                let mut pause_until = lock(&pause_until);
                *pause_until = Some(pause_until.map_or(until, |u| u.max(until)));
            }
            Ok(response)
        }
        .boxed()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `Retry-After` in seconds (what the API server sends; HTTP dates are not used by it).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt as _;

    use super::*;
    use crate::keyring::KeyRing;

    /// A guard over a stand-in API server answering every request with `status`.
    type Api = tower::util::BoxService<Request<()>, Response<()>, BoxError>;

    fn guard(leadership: Arc<Leadership>, status: u16) -> Guard<Api> {
        let api = tower::service_fn(move |_: Request<()>| async move {
            let mut response = Response::new(());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            response.headers_mut().insert(http::header::RETRY_AFTER, "2".parse().unwrap());
            Ok::<_, BoxError>(response)
        });
        let metrics = Arc::new(Metrics::new(Arc::new(KeyRing::default())));
        GuardLayer { leadership, metrics, pause_until: Arc::default() }.layer(Api::new(api))
    }

    fn request(method: http::Method) -> Request<()> {
        Request::builder().method(method).uri("/api/v1/namespaces").body(()).unwrap()
    }

    fn leadership() -> Arc<Leadership> {
        let config = crate::leader::Config {
            namespace: "ns".into(),
            lease_name: "l".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
        };
        Arc::new(Leadership::new(&config))
    }

    #[tokio::test]
    async fn no_write_without_the_lease() {
        let leadership = leadership();
        let mut guard = guard(leadership.clone(), 200);
        assert!(guard.ready().await.unwrap().call(request(http::Method::GET)).await.is_ok(), "reads are fine");
        let refused = guard.ready().await.unwrap().call(request(http::Method::PATCH)).await.unwrap_err();
        assert!(refused.to_string().contains("does not hold the leader Lease"), "{refused}");
        leadership.renewed_now();
        assert!(guard.ready().await.unwrap().call(request(http::Method::PATCH)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_back_every_following_request() {
        let mut guard = guard(leadership(), 429);
        let start = Instant::now();
        guard.ready().await.unwrap().call(request(http::Method::GET)).await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        guard.ready().await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(2), "ready after {:?}", start.elapsed());
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(http::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
