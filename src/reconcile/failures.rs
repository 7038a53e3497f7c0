//! What happens when a reconcile fails: per-object exponential backoff with jitter, a panic
//! caught and turned into a failed reconcile of that one object, panics reported without their
//! message.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::warn;

use super::context::Context;
use super::error::{Error, Result};
use crate::api::conditions::event;

pub fn error_policy(controller: &str, name: &str, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(controller, name, %error, "reconcile failed");
    ctx.metrics.reconcile_failed(controller, error.metric_label());
    let attempt = ctx.failures.failed(&format!("{controller}/{name}"));
    Action::requeue(backoff(attempt, jitter()))
}

/// First retry after about a second, doubling per consecutive failure of the same object, capped
/// at five minutes; `jitter` (0..1) spreads retries of many objects failing together over ±25%.
fn backoff(attempt: u32, jitter: f64) -> Duration {
    const FIRST: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(300);
    let exponential = FIRST.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(CAP);
    exponential.mul_f64(0.75 + jitter / 2.0)
}

fn jitter() -> f64 {
    let mut byte = [0u8; 2];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut byte);
    f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX)
}

/// Run one reconcile, timed and counted, with a panic turned into [`Error::Panic`] plus a
/// Warning Event on the object.
pub async fn guarded<K>(
    controller: &'static str,
    obj: Arc<K>,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action>>,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
{
    let metrics = ctx.metrics.clone();
    let result = metrics.time_reconcile(controller, catching(reconcile)).await;
    if result.is_ok() {
        ctx.failures.succeeded(&format!("{controller}/{}", obj.meta().name.as_deref().unwrap_or_default()));
    }
    if matches!(result, Err(Error::Panic)) {
        let note = "the operator hit a bug reconciling this object; other objects are unaffected, it is retried";
        ctx.event(&*obj, None, EventType::Warning, event::PANIC, note).await;
    }
    result
}

/// `reconcile`'s result, or [`Error::Panic`] if it panicked.
async fn catching(reconcile: impl Future<Output = Result<Action>>) -> Result<Action> {
    std::panic::AssertUnwindSafe(reconcile).catch_unwind().await.unwrap_or(Err(Error::Panic))
}

/// Replace the default panic report (which prints the panic's message, and a message could
/// quote data from a spec) by its location only.
pub fn report_panics_without_their_message() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map_or_else(|| "unknown".to_owned(), ToString::to_string);
        tracing::error!(%location, "panic (message withheld)");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_reconcile_is_a_failed_reconcile() {
        let panicking = async {
            let name = "é".repeat(3);
            let _ = &name[..1]; // inside a multi-byte character
            Ok(Action::await_change())
        };
        assert!(matches!(catching(panicking).await, Err(Error::Panic)));
        assert!(catching(async { Ok(Action::await_change()) }).await.is_ok());
        assert_eq!(Error::Panic.metric_label(), "panic");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        assert_eq!(backoff(1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(4, 0.5), Duration::from_secs(8));
        assert_eq!(backoff(30, 0.5), Duration::from_secs(300));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(750));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(1250));
        assert!((0..100).map(|_| jitter()).all(|j| (0.0..=1.0).contains(&j)));
    }
}
