//! Proving a quiet steady state with the operator's own counters, so that the proof can fail:
//! the write counter must be seen counting (a baseline above zero on the same operator), and
//! "no write" is asserted over reconciles the reconcile counter shows really happened.

use super::{Operator, TIMEOUT, wait_for};

/// Wait until `op` is at rest for `controller`'s objects and return its write count then: a
/// whole reconcile that started after the count was read made no write.
///
/// Right after a tenant turns Ready the reconciles its own writes triggered may still run on
/// caches that have not seen those writes yet, and write again (the same content, a no-op for
/// the API server but a write all the same). This waits for that to pass instead of guessing a
/// time. It assumes `op` handles one object of `controller` (each test's own operator does), so
/// its reconciles run one after the other: of two more counted, the second started after the
/// count was read.
pub async fn wait_at_rest(op: &Operator, controller: &str) -> f64 {
    wait_for(&format!("the operator to reconcile its {controller} without writing"), TIMEOUT, || async {
        let writes = op.writes().await;
        let reconciles = op.successful_reconciles(controller).await;
        wait_for(&format!("two more {controller} reconciles"), TIMEOUT, || async {
            (op.successful_reconciles(controller).await >= reconciles + 2.0).then_some(())
        })
        .await;
        (op.writes().await == writes).then_some(writes)
    })
    .await
}

/// Assert that `resyncs` more reconciles of `controller`'s (converged) object write nothing,
/// after proving that `op`'s write counter counts (it counted the writes of the converge).
pub async fn assert_resyncs_write_nothing(op: &Operator, controller: &str, resyncs: u32) {
    let writes = wait_at_rest(op, controller).await;
    assert!(writes > 0.0, "the operator counted no write while converging: the write counter does not count");
    let reconciles = op.successful_reconciles(controller).await;
    wait_for(&format!("{resyncs} more {controller} resyncs"), TIMEOUT, || async {
        (op.successful_reconciles(controller).await >= reconciles + f64::from(resyncs)).then_some(())
    })
    .await;
    assert_eq!(op.writes().await, writes, "a resync of a converged {controller} wrote to the API server");
}
