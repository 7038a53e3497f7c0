//! Leader election over a `coordination.k8s.io/v1` Lease: every replica serves `/v1/cert.pem`,
//! `/metrics` and health, but only the holder of the Lease reconciles and creates sealing keys.
//! A replica that cannot renew stops reconciling before its lease can expire, so two replicas
//! never reconcile at once (beyond clock skew between nodes).

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
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

    /// Stop leading when the last successful renewal is older than this: well before the
    /// Lease expires and a standby may take it.
    fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// Keep trying to hold the Lease, publishing on `leading` whether this replica leads.
pub async fn run(client: Client, config: Config, leading: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        match try_hold(&api, &config).await {
            Ok(true) => last_renewal = Some(tokio::time::Instant::now()),
            Ok(false) => last_renewal = None,
            Err(error) => warn!(%error, lease = %config.lease_name, "could not renew the leader Lease"),
        }
        let leads = last_renewal.is_some_and(|at| at.elapsed() < config.renew_deadline());
        if *leading.borrow() != leads {
            info!(identity = %config.identity, leads, "leadership changed");
            leading.send_replace(leads);
        }
        tokio::time::sleep(if leads { config.renew_every() } else { config.renew_every().min(Duration::from_secs(2)) })
            .await;
    }
}

/// Take or renew the Lease if it is free, expired or ours. Writes use the Lease's
/// resourceVersion (a replace, not an apply): compare-and-swap is what makes one holder.
async fn try_hold(api: &Api<Lease>, config: &Config) -> kube::Result<bool> {
    let now = jiff::Timestamp::now();
    let Some(mut lease) = api.get_opt(&config.lease_name).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(config.lease_name.clone()), ..Default::default() },
            spec: Some(spec(config, now, now, 0)),
        };
        return conflict_is_false(api.create(&PostParams::default(), &lease).await);
    };
    let current = lease.spec.clone().unwrap_or_default();
    let ours = current.holder_identity.as_deref() == Some(config.identity.as_str());
    let duration = jiff::SignedDuration::from_secs(i64::from(current.lease_duration_seconds.unwrap_or(0)));
    let expired = current.renew_time.as_ref().is_none_or(|t| t.0 + duration < now);
    if !ours && !expired && current.holder_identity.is_some() {
        return Ok(false);
    }
    let acquired = if ours { current.acquire_time.map_or(now, |t| t.0) } else { now };
    let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!ours);
    lease.spec = Some(spec(config, acquired, now, transitions));
    conflict_is_false(api.replace(&config.lease_name, &PostParams::default(), &lease).await)
}

fn spec(config: &Config, acquired: jiff::Timestamp, renewed: jiff::Timestamp, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.lease_duration.as_secs().max(1) as i32),
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

/// Give up the Lease if this replica holds it, so that a standby takes over at its next retry
/// instead of waiting for the Lease to expire (client-go's ReleaseOnCancel). Only for a replica
/// that has stopped reconciling and renewing. A Lease held by someone else, or a conflicting
/// write (someone else got in first), leaves nothing to release.
pub async fn release(client: Client, config: &Config) {
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
    match released.await {
        Ok(true) => info!(identity = %config.identity, lease = %config.lease_name, "released the leader Lease"),
        Ok(false) => {}
        Err(error) => warn!(%error, lease = %config.lease_name, "could not release the leader Lease"),
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
