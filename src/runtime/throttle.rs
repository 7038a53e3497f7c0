//! How many requests the operator keeps at the API server at once. A reconcile sends a step's
//! writes together, and 32 reconciles run at once, so a backlog would put up to ~200 requests
//! in flight. At most [`MAX`] go: the server is no faster with more, its requests only queue
//! longer, and each request in flight holds an HTTP/1.1 connection with its buffers
//! (docs/benchmarks.md has the measurements behind the number). A server whose Priority and Fairness level has fewer seats answers most of
//! them 429, and every rejected request comes back after its `Retry-After` with the others, to
//! be rejected again. So the window halves on a 429 and grows back by one request per window's
//! worth of answers that were not 429, up to [`MAX`]. Only a request sent since the last cut
//! can cut again: the other rejections of a burst say nothing new. Requests beyond the window
//! wait here, where waiting costs no retry. Watches (long-running) are not counted.

use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{BoxError, Service, ServiceExt as _};

/// The widest window: twice the reconciles that run at once by default (`--concurrency`), so
/// the server always has work queued while answers travel back.
const MAX: usize = 64;
/// The narrowest: a few requests always go.
const MIN: usize = 4;

/// The shared window: permits for requests in flight, and its size.
pub struct Window {
    permits: Arc<Semaphore>,
    size: Mutex<Size>,
}

struct Size {
    limit: usize,
    /// Permits still to take out of circulation after a cut (they were in use; each is
    /// dropped instead of returned when its request is answered).
    debt: usize,
    /// Answers without a 429 since the window last grew.
    answered: usize,
    /// Cuts so far: a request entered before the latest one cannot cut again.
    cuts: u64,
}

/// A request's place in the window. Given up when dropped, answered or not (a request whose
/// caller went away is dropped unanswered): its permit goes back, or out of circulation while
/// the window owes permits after a cut.
struct Seat {
    permit: Option<OwnedSemaphorePermit>,
    /// The window's cuts when the request entered.
    cuts: u64,
    window: Arc<Window>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut size = self.window.size();
        if size.debt > 0
            && let Some(permit) = self.permit.take()
        {
            size.debt -= 1;
            permit.forget();
        }
    }
}

impl Seat {
    /// The request was answered with `status`: a 429 cuts the window, other answers grow it.
    fn answered(self, status: Option<StatusCode>) {
        let mut size = self.window.size();
        if status == Some(StatusCode::TOO_MANY_REQUESTS) {
            if size.limit > MIN && self.cuts == size.cuts {
                let cut = size.limit - (size.limit / 2).max(MIN);
                size.limit -= cut;
                // Free permits go at once; those in use as their requests are answered.
                size.debt += cut - self.window.permits.forget_permits(cut);
                size.cuts += 1;
                size.answered = 0;
                tracing::info!(in_flight = size.limit, "the API server answered 429: fewer requests in flight");
            }
        } else if size.limit < MAX {
            size.answered += 1;
            if size.answered >= size.limit {
                size.answered = 0;
                size.limit += 1;
                // A permit owed after a cut stays in circulation instead of a new one.
                if size.debt > 0 {
                    size.debt -= 1;
                } else {
                    self.window.permits.add_permits(1);
                }
            }
        }
        // The seat itself is dropped when this returns, and takes the size again (Drop).
        drop(size);
    }
}

impl Default for Window {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(MAX)),
            size: Mutex::new(Size { limit: MAX, debt: 0, answered: 0, cuts: 0 }),
        }
    }
}

impl Window {
    async fn enter(self: &Arc<Self>) -> Seat {
        let permit = self.permits.clone().acquire_owned().await.expect("the window's semaphore is never closed");
        Seat { permit: Some(permit), cuts: self.size().cuts, window: self.clone() }
    }

    fn size(&self) -> std::sync::MutexGuard<'_, Size> {
        self.size.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `inner`, every request but watches passing through `window` first.
#[derive(Clone)]
pub struct Windowed<S> {
    pub inner: S,
    pub window: Arc<Window>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Windowed<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<ResBody>, BoxError>>;

    // Readiness is waited for in the call, once the request is inside the window.
    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (inner, window) = (self.inner.clone(), self.window.clone());
        let watch = request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true"));
        async move {
            if watch {
                return inner.oneshot(request).await;
            }
            let seat = window.enter().await;
            let answer = inner.oneshot(request).await;
            seat.answered(answer.as_ref().ok().map(Response::status));
            answer
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(window: &Arc<Window>, status: StatusCode) {
        window.enter().await.answered(Some(status));
    }

    #[tokio::test]
    async fn the_window_halves_on_429_and_grows_back_by_one_per_window() {
        let window = Arc::new(Window::default());
        answer(&window, StatusCode::OK).await;
        assert_eq!(window.size().limit, MAX, "never wider than MAX");
        answer(&window, StatusCode::TOO_MANY_REQUESTS).await;
        assert_eq!(window.size().limit, MAX / 2);
        assert_eq!(window.permits.available_permits(), MAX / 2, "free permits left at once");
        answer(&window, StatusCode::TOO_MANY_REQUESTS).await;
        assert_eq!(window.size().limit, MAX / 4, "a request sent after a cut cuts again");
        for _ in 0..MAX / 4 {
            answer(&window, StatusCode::CREATED).await;
        }
        assert_eq!(window.size().limit, MAX / 4 + 1);
        assert_eq!(window.permits.available_permits(), MAX / 4 + 1);
    }

    #[tokio::test]
    async fn a_burst_of_rejections_is_one_cut_and_permits_in_use_retire_as_their_requests_end() {
        let window = Arc::new(Window::default());
        let held: Vec<_> = futures::future::join_all((0..MAX).map(|_| window.enter())).await;
        assert_eq!(window.permits.available_permits(), 0);
        let mut held = held.into_iter();
        for seat in held.by_ref().take(10) {
            seat.answered(Some(StatusCode::TOO_MANY_REQUESTS));
        }
        assert_eq!(window.size().limit, MAX / 2, "all sent before the cut: one cut");
        // Requests whose callers went away give their seats up unanswered.
        held.by_ref().take(10).for_each(drop);
        held.for_each(|seat| seat.answered(Some(StatusCode::OK)));
        assert_eq!(window.permits.available_permits(), MAX / 2 + 1, "half retired, one grown back");
        assert_eq!(window.size().limit, MAX / 2 + 1);
    }
}
