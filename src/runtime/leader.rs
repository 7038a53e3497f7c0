//! Leader election over a `coordination.k8s.io/v1` Lease: every replica serves `/v1/cert.pem`,
//! `/metrics` and health, but only the holder of the Lease reconciles and creates sealing keys.
//!
//! Two replicas must never write at once, whatever the clocks or the scheduler do:
//! * time is only ever measured on this replica's monotonic clock. A standby judges a Lease
//!   expired when it has not seen it change for a whole lease duration (client-go's approach),
//!   never by comparing the holder's `renewTime` with its own wall clock;
//! * the leader counts its lease from the moment it *sent* the renewal that succeeded, and stops
//!   leading a third of a lease duration before that lease could look expired to anyone; each
//!   renewal has a deadline, so a hung request cannot keep it leading;
//! * [`Leadership::lapses_at`] is checked by the client for every write, so even a replica that
//!   was frozen (SIGSTOP, a long GC pause of the node) and resumes with a reconcile half done
//!   sends nothing once its lease is over, before its election loop has even run again; and a
//!   write it does send is abandoned (and bounded at the API server too) when the term lapses;
//! * a renewal that failed or timed out is tried again after the short retry period, not a
//!   third of a lease later, so one lost request does not cost the term (client-go retries
//!   every RetryPeriod until its renew deadline).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name in a cluster).
    pub identity: String,
    /// How long a Lease stays valid without renewal; a standby takes over after that.
    pub lease_duration: Duration,
}

impl Config {
    /// Renew this often while leading.
    fn renew_every(&self) -> Duration {
        self.lease_duration / 3
    }

    /// Try to take the Lease this often while not leading, and renew it this soon after a
    /// renewal that failed.
    fn retry_every(&self) -> Duration {
        self.renew_every().min(Duration::from_secs(2))
    }

    /// How long after sending a successful renewal this replica still leads: well before the
    /// Lease can look expired to a standby (which waits a whole lease duration after it saw
    /// the renewal, itself later than the send).
    fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    /// When to try next after an attempt sent at `sent`: a third of a lease after a successful
    /// renewal, the retry period after anything else (not leading, an error, a timeout).
    fn next_attempt(&self, sent: Instant, renewed: bool) -> Instant {
        sent + if renewed { self.renew_every() } else { self.retry_every() }
    }
}

/// Whether this replica holds the Lease right now, on its own monotonic clock.
#[derive(Debug)]
pub struct Leadership {
    /// When the last successful renewal was sent, while leading.
    renewed: Mutex<Option<Instant>>,
    deadline: Duration,
}

impl Leadership {
    pub fn new(config: &Config) -> Self {
        Self { renewed: Mutex::new(None), deadline: config.renew_deadline() }
    }

    /// True only while the last renewal is recent enough.
    pub fn holds(&self) -> bool {
        self.lapses_at().is_some()
    }

    /// When this replica's term lapses, while it holds the Lease; `None` when it does not. What
    /// every write is gated on, and bounded by: a write answered after this instant could land
    /// while another replica leads.
    pub fn lapses_at(&self) -> Option<Instant> {
        self.expires().filter(|at| *at > Instant::now())
    }

    /// When leadership lapses unless renewed.
    fn expires(&self) -> Option<Instant> {
        self.renewed_at().map(|at| at + self.deadline)
    }

    /// How long an attempt to take or renew the Lease sent at `sent` may take: while leading,
    /// until leadership lapses (a renewal finishing later is worthless); otherwise `retry`,
    /// the time until the next attempt. Never under 100 ms, so a lease about to lapse still
    /// gets one real try.
    fn attempt_budget(&self, sent: Instant, retry: Duration) -> Duration {
        let budget = match self.expires() {
            Some(at) if at > sent => at - sent,
            _ => retry,
        };
        budget.max(Duration::from_millis(100))
    }

    fn renewed_at(&self) -> Option<Instant> {
        *self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leading from now on (as after a successful renewal); for tests of what is gated on it.
    #[cfg(test)]
    pub fn renewed_now(&self) {
        self.set(Some(Instant::now()));
    }

    fn set(&self, renewed: Option<Instant>) {
        *self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = renewed;
    }
}

/// The Lease as this replica last saw it, and when (locally) it last changed.
struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

/// Keep trying to hold the Lease, publishing on `leading` whether this replica leads.
pub async fn run(client: Client, config: Config, leadership: std::sync::Arc<Leadership>, leading: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed: Option<Observed> = None;
    loop {
        let sent = Instant::now();
        let budget = leadership.attempt_budget(sent, config.retry_every());
        let renewed = match tokio::time::timeout(budget, try_hold(&api, &config, &mut observed)).await {
            Ok(Ok(held)) => {
                leadership.set(held.then_some(sent));
                held
            }
            Ok(Err(error)) => {
                warn!(%error, lease = %config.lease_name, "could not renew the leader Lease");
                false
            }
            Err(_) => {
                warn!(lease = %config.lease_name, "renewing the leader Lease timed out");
                false
            }
        };
        publish(&leadership, &leading, &config);
        let next = config.next_attempt(sent, renewed);
        // Step down the moment leadership lapses, even if that comes before the next attempt.
        match leadership.expires().filter(|at| *at < next) {
            Some(lapse) => {
                tokio::time::sleep_until(lapse).await;
                publish(&leadership, &leading, &config);
                tokio::time::sleep_until(next).await;
            }
            None => tokio::time::sleep_until(next).await,
        }
    }
}

fn publish(leadership: &Leadership, leading: &watch::Sender<bool>, config: &Config) {
    let leads = leadership.holds();
    if *leading.borrow() != leads {
        info!(identity = %config.identity, leads, "leadership changed");
        leading.send_replace(leads);
    }
}

/// Take or renew the Lease if it is free, ours, or expired by this replica's own observation.
/// Writes use the Lease's resourceVersion (a replace, not an apply): compare-and-swap is what
/// makes one holder.
async fn try_hold(api: &Api<Lease>, config: &Config, observed: &mut Option<Observed>) -> kube::Result<bool> {
    let now = jiff::Timestamp::now();
    let Some(mut lease) = api.get_opt(&config.lease_name).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(config.lease_name.clone()), ..Default::default() },
            spec: Some(spec(config, now, now, 0)),
        };
        return conflict_is_false(api.create(&PostParams::default(), &lease).await);
    };
    let rv = lease.metadata.resource_version.clone();
    if observed.as_ref().is_none_or(|o| o.resource_version != rv) {
        *observed = Some(Observed { resource_version: rv, at: Instant::now() });
    }
    let current = lease.spec.clone().unwrap_or_default();
    let ours = current.holder_identity.as_deref() == Some(config.identity.as_str());
    let duration = Duration::from_secs(u64::try_from(current.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    let unchanged_for = observed.as_ref().map_or(Duration::ZERO, |o| o.at.elapsed());
    let free = current.holder_identity.is_none();
    if !ours && !free && unchanged_for <= duration {
        return Ok(false);
    }
    let acquired = if ours { current.acquire_time.map_or(now, |t| t.0) } else { now };
    let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!ours);
    lease.spec = Some(spec(config, acquired, now, transitions));
    let held = conflict_is_false(api.replace(&config.lease_name, &PostParams::default(), &lease).await)?;
    if held {
        // Our own write is a change we need not wait out.
        *observed = None;
    }
    Ok(held)
}

fn spec(config: &Config, acquired: jiff::Timestamp, renewed: jiff::Timestamp, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        // Whole seconds: `--lease-duration` takes nothing else (`cli::parse_whole_seconds`), so
        // standbys wait exactly the lease this replica's term is computed from.
        lease_duration_seconds: Some(i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(renewed)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

/// Someone else won the write: not an error, just not leading.
fn conflict_is_false(result: kube::Result<Lease>) -> kube::Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// How long, after SIGTERM, the reconciles in flight may take to finish, and then how long
/// releasing the Lease may take: together well within the 30 s Kubernetes waits before it
/// SIGKILLs a pod (terminationGracePeriodSeconds' default), whatever the API server does. With
/// etcd frozen, every request hangs until the API server gives up on it (a minute): an
/// unbounded shutdown took 37.6 s and was killed.
pub const DRAIN_BUDGET: Duration = Duration::from_secs(15);
pub const RELEASE_BUDGET: Duration = Duration::from_secs(5);

/// Run `work` (the controllers, which stop by themselves once `shutdown` resolves and their
/// reconciles in flight finish) until it returns: true. False if it is still running `budget`
/// after `shutdown`: it is dropped, and whatever it had in flight with it.
pub async fn drain(work: impl Future<Output = ()>, shutdown: impl Future<Output = ()>, budget: Duration) -> bool {
    let deadline = async {
        shutdown.await;
        tokio::time::sleep(budget).await;
    };
    tokio::select! {
        () = work => true,
        () = deadline => false,
    }
}

/// Give up the Lease if this replica holds it, so that a standby takes over at its next retry
/// instead of waiting for the Lease to expire (client-go's ReleaseOnCancel), spending at most
/// `budget` on it (a Lease not released expires on its own). Only for a replica that has
/// stopped reconciling with nothing left in flight: a write dropped unanswered may still land
/// until its term lapses, so a replica that could not drain must leave the Lease to expire. A
/// Lease held by someone else, or a conflicting write (someone else got in first), leaves
/// nothing to release.
pub async fn release(client: Client, config: &Config, budget: Duration) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let released = async {
        let Some(mut lease) = api.get_opt(&config.lease_name).await? else { return Ok(false) };
        let spec = lease.spec.get_or_insert_default();
        if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
            return Ok(false);
        }
        // `try_hold` treats a Lease without holder as free; the resourceVersion makes it a
        // compare-and-swap, as for renewals.
        spec.holder_identity = None;
        conflict_is_false(api.replace(&config.lease_name, &PostParams::default(), &lease).await)
    };
    match tokio::time::timeout(budget, released).await {
        Ok(Ok(true)) => info!(identity = %config.identity, lease = %config.lease_name, "released the leader Lease"),
        Ok(Ok(false)) => {}
        Ok(Err(error)) => warn!(%error, lease = %config.lease_name, "could not release the leader Lease"),
        Err(_) => {
            warn!(lease = %config.lease_name, ?budget, "releasing the leader Lease timed out; it expires on its own")
        }
    }
}

/// Run `work()` whenever this replica leads, and drop it at once when leadership is lost.
/// Returns when `work()` does (it stops by itself on shutdown), or on `shutdown` while not leading.
pub async fn while_leading<F, Fut>(mut leading: watch::Receiver<bool>, shutdown: impl Future<Output = ()>, work: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            led = leading.wait_for(|l| *l) => if led.is_err() { return },
            () = &mut shutdown => return,
        }
        info!("leading: starting the controllers");
        tokio::select! {
            () = work() => return,
            _ = leading.wait_for(|l| !*l) => warn!("lost leadership: stopped reconciling"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            namespace: "ns".into(),
            lease_name: "l".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_lapses_a_third_of_a_lease_before_a_standby_may_take_over() {
        let leadership = Leadership::new(&config());
        assert!(!leadership.holds(), "never renewed");
        leadership.set(Some(Instant::now()));
        assert!(leadership.holds());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(leadership.holds(), "9s after the renewal was sent");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!leadership.holds(), "10s: two thirds of the 15s lease");
        assert_eq!(leadership.lapses_at(), None, "no term to bound writes by once lapsed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_term_lapses_two_thirds_of_a_lease_after_the_renewal_was_sent() {
        let leadership = Leadership::new(&config());
        assert_eq!(leadership.lapses_at(), None, "never renewed");
        let sent = Instant::now();
        leadership.set(Some(sent));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(leadership.lapses_at(), Some(sent + Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_renewal_is_retried_after_the_retry_period_not_a_third_of_a_lease() {
        let (config, sent) = (config(), Instant::now());
        assert_eq!(config.next_attempt(sent, true), sent + Duration::from_secs(5), "renewed: a third of 15s");
        assert_eq!(config.next_attempt(sent, false), sent + Duration::from_secs(2), "failed, timed out or not leading");
        let short = Config { lease_duration: Duration::from_secs(3), ..config };
        assert_eq!(short.next_attempt(sent, false), sent + Duration::from_secs(1), "never later than a renewal");
    }

    #[test]
    fn the_lease_advertises_the_duration_the_term_is_computed_from() {
        let config = Config { lease_duration: Duration::from_secs(4), ..config() };
        let now = jiff::Timestamp::now();
        assert_eq!(spec(&config, now, now, 0).lease_duration_seconds, Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_stops_by_itself_drains_and_hung_work_is_dropped_a_budget_after_shutdown() {
        let budget = Duration::from_secs(15);
        let signal = tokio::time::sleep(Duration::from_secs(100));
        let finishing = tokio::time::sleep(Duration::from_secs(101));
        assert!(drain(finishing, signal, budget).await, "finished a second after the signal");
        let start = Instant::now();
        let signal = tokio::time::sleep(Duration::from_secs(100));
        assert!(!drain(std::future::pending(), signal, budget).await, "hung");
        assert_eq!(start.elapsed(), Duration::from_secs(115), "dropped exactly a budget after the signal");
        let start = Instant::now();
        assert!(!drain(std::future::pending(), std::future::ready(()), budget).await);
        assert_eq!(start.elapsed(), budget, "no signal wait when it came already");
    }

    #[tokio::test(start_paused = true)]
    async fn releasing_the_lease_against_a_hung_api_server_gives_up_after_its_budget() {
        // An API server that accepts every request and never answers (its etcd frozen).
        let hung = tower::service_fn(|_: http::Request<kube::client::Body>| {
            std::future::pending::<Result<http::Response<kube::client::Body>, std::convert::Infallible>>()
        });
        let client = Client::new(hung, "ns");
        let start = Instant::now();
        release(client, &config(), RELEASE_BUDGET).await;
        assert_eq!(start.elapsed(), RELEASE_BUDGET);
        assert!(DRAIN_BUDGET + RELEASE_BUDGET < Duration::from_secs(30), "within Kubernetes' default grace period");
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_gets_the_time_left_while_leading_and_the_retry_interval_once_lapsed() {
        let retry = Duration::from_secs(2);
        let leadership = Leadership::new(&config());
        assert_eq!(leadership.attempt_budget(Instant::now(), retry), retry, "never led");
        leadership.set(Some(Instant::now()));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(leadership.attempt_budget(Instant::now(), retry), Duration::from_secs(6), "leading");
        tokio::time::advance(Duration::from_millis(5_950)).await;
        assert_eq!(leadership.attempt_budget(Instant::now(), retry), Duration::from_millis(100), "about to lapse");
        // A renewal that failed or timed out leaves the old renewal time behind: the next
        // attempts to lead again must not inherit a lapsed deadline (they once got 100 ms each,
        // too little for an API server that just got its etcd back).
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(leadership.attempt_budget(Instant::now(), retry), retry, "lapsed");
    }
}
