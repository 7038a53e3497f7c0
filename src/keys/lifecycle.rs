//! The operator's sealing keys as Secrets: `kubernetes.io/tls` Secrets labelled
//! `mltenant.io/sealing-key=active` in the operator's namespace. Watched (so every replica
//! reloads its key ring when a key is added or removed); the leader creates the first one on
//! start and a new one every renew period. Old keys are kept: they still open what was sealed
//! with them; the newest seals.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::api::labels::{self, ACTIVE, RETIRED, SEALING_KEY};
use crate::api::limits;
use crate::crypto::SealingKey;
use crate::keys::ring::KeyRing;

/// On every key Secret: its deletion waits for the operator, which lets it go only once no
/// SealedBundle in the cluster needs the key (`mltenant keys delete`, or any delete).
pub const FINALIZER: &str = "mltenant.io/sealing-key-protection";

/// How often a key whose deletion waits is looked at again.
const DELETION_CHECK: Duration = Duration::from_secs(3);

/// Whether a key Secret is being deleted and waits for the operator.
fn deletion_pending(store: &Store<Secret>) -> bool {
    store.state().iter().any(|s| {
        s.metadata.deletion_timestamp.is_some() && s.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER)
    })
}

/// How often the renew check runs at most (more often for renew periods under 4 minutes).
const RENEW_CHECK: Duration = Duration::from_secs(60);

/// Where the keys live and how often a new one is made.
#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub renew_period: Duration,
}

/// Keep `ring` in step with the key Secrets until the watch ends. `synced` is raised once the
/// keys were loaded and at least one exists.
///
/// Only while `leading` is true does it create keys; every replica loads them.
pub async fn run(
    client: Client,
    config: Config,
    ring: Arc<KeyRing>,
    synced: Arc<AtomicBool>,
    mut leading: tokio::sync::watch::Receiver<bool>,
) {
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter { controller: labels::MANAGED_BY.to_owned(), instance: None },
    );
    let api: Api<Secret> = Api::namespaced(client, &config.namespace);
    let (store, writer) = reflector::store();
    let selector = format!("{SEALING_KEY} in ({ACTIVE},{RETIRED})");
    let mut events = reflector::reflector(writer, watcher(api.clone(), watcher::Config::default().labels(&selector)))
        .default_backoff()
        .boxed();
    let mut renew = tokio::time::interval(RENEW_CHECK.min(config.renew_period / 4));
    // A slow key generation must not be followed by a burst of catch-up checks.
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A key being deleted waits for the bundles that need it to be re-sealed: looked at again
    // every few seconds while one waits (bundle changes do not pass through this watch).
    let mut pending = tokio::time::interval(DELETION_CHECK);
    pending.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listed = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::InitDone)) => {
                    listed = true;
                    reload(&store, &ring);
                    if *leading.borrow() {
                        ensure_fresh_key(&api, &ring, &config).await;
                        guard_deletions(&api, &store, &ring, &recorder).await;
                    }
                }
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) if listed => {
                    reload(&store, &ring);
                    if *leading.borrow() {
                        guard_deletions(&api, &store, &ring, &recorder).await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => warn!(%error, "watching sealing keys"),
                None => return,
            },
            _ = pending.tick(), if listed && *leading.borrow() && deletion_pending(&store) => {
                guard_deletions(&api, &store, &ring, &recorder).await;
            }
            _ = renew.tick(), if listed && *leading.borrow() => {
                ensure_fresh_key(&api, &ring, &config).await;
                guard_deletions(&api, &store, &ring, &recorder).await;
            }
            Ok(()) = leading.changed(), if listed => {
                if *leading.borrow_and_update() {
                    ensure_fresh_key(&api, &ring, &config).await;
                }
            }
        }
        if listed && !ring.keys().is_empty() {
            synced.store(true, Ordering::Release);
        }
    }
}

/// Rebuild the ring from the cached Secrets: labelled `active`, the key opens; `retired`, it
/// opens nothing. A Secret that does not hold a valid key pair is skipped with a warning naming
/// it (never its content).
fn reload(store: &Store<Secret>, ring: &KeyRing) {
    let (mut active, mut retired) = (Vec::new(), Vec::new());
    for secret in store.state() {
        match parse(&secret) {
            Ok(key) if is_retired(&secret) => retired.push(key),
            Ok(key) => active.push(key),
            Err(error) => warn!(secret = %secret.name_any(), %error, "ignoring invalid sealing key Secret"),
        }
    }
    ring.replace(active, retired);
    let keys = ring.keys();
    info!(
        keys = keys.len(),
        retired = ring.retired().len(),
        newest = keys.first().map_or("none", SealingKey::fingerprint),
        "sealing keys loaded"
    );
}

/// Whether the key Secret is labelled retired.
pub fn is_retired(secret: &Secret) -> bool {
    secret.labels().get(SEALING_KEY).is_some_and(|v| v == RETIRED)
}

fn parse(secret: &Secret) -> Result<SealingKey, String> {
    let field = |name: &str| -> Result<String, String> {
        let bytes = secret.data.as_ref().and_then(|d| d.get(name)).ok_or_else(|| format!("missing {name}"))?;
        String::from_utf8(bytes.0.clone()).map_err(|_| format!("{name} is not text"))
    };
    let cert = field("tls.crt")?;
    let key = zeroize::Zeroizing::new(field("tls.key")?);
    SealingKey::from_pem(&cert, &key).map_err(|e| e.to_string())
}

/// Create a key when there is none or the newest is older than the renew period.
///
/// The Secret is created (POST), not applied: its name is derived from the renew period's
/// time slot, so replicas starting together race for one name and exactly one wins, where an
/// apply would let the loser overwrite the winner's key with its own.
async fn ensure_fresh_key(api: &Api<Secret>, ring: &KeyRing, config: &Config) {
    let now = jiff::Timestamp::now();
    let period = config.renew_period.as_secs().max(1) as i64;
    if let Some(newest) = ring.newest()
        && newest.certificate().not_before().as_second() + period > now.as_second()
    {
        return;
    }
    let name = format!("sealing-key-{}", now.as_second() / period);
    // Valid for two periods: the newest key always has at least a period left when it seals.
    let validity = config.renew_period * 2;
    let key = match tokio::task::spawn_blocking(move || SealingKey::generate(validity)).await {
        Ok(Ok(key)) => key,
        Ok(Err(error)) => return warn!(%error, "could not generate a sealing key"),
        Err(error) => return warn!(%error, "sealing key generation panicked"),
    };
    let pem = match key.to_pem() {
        Ok(pem) => pem,
        Err(error) => return warn!(%error, "could not encode the sealing key"),
    };
    let mut key_labels = labels::managed_by();
    key_labels.insert(SEALING_KEY.to_owned(), ACTIVE.to_owned());
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(key_labels),
            finalizers: Some(vec![FINALIZER.to_owned()]),
            ..Default::default()
        },
        type_: Some(limits::TLS.to_owned()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(pem.cert_pem.into_bytes())),
            ("tls.key".to_owned(), ByteString(pem.key_pem.as_bytes().to_vec())),
        ])),
        ..Default::default()
    };
    match api
        .create(&PostParams { field_manager: Some(labels::FIELD_MANAGER.to_owned()), ..Default::default() }, &secret)
        .await
    {
        Ok(_) => {
            info!(secret = %name, fingerprint = key.fingerprint(), "created a new sealing key");
            // Use it at once: the watch may deliver it only later, and until then the next
            // check would find no fresh key and make another one.
            ring.insert(key);
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            info!(secret = %name, "another replica created this sealing key")
        }
        Err(error) => warn!(secret = %name, %error, "could not store the new sealing key"),
    }
}

/// Keep every key Secret's deletion behind [`FINALIZER`]: add it to keys without it (made by
/// hand, or before this version), and let a key being deleted go once no SealedBundle in the
/// cluster needs it; while one does, the deletion waits and a Warning Event on the Secret says
/// which bundles (`KeyDeletionRefused`). Leader only.
async fn guard_deletions(
    api: &Api<Secret>,
    store: &Store<Secret>,
    ring: &KeyRing,
    recorder: &kube::runtime::events::Recorder,
) {
    use kube::Resource as _;
    for secret in store.state() {
        let finalizers = secret.metadata.finalizers.clone().unwrap_or_default();
        let ours = finalizers.iter().any(|f| f == FINALIZER);
        let deleting = secret.metadata.deletion_timestamp.is_some();
        if !ours && !deleting {
            let mut wanted = finalizers.clone();
            wanted.push(FINALIZER.to_owned());
            set_finalizers(api, &secret, &wanted).await;
            continue;
        }
        if !ours || !deleting {
            continue;
        }
        let Ok(key) = parse(&secret) else {
            // Not a usable key: nothing can need it.
            let rest: Vec<String> = finalizers.iter().filter(|f| *f != FINALIZER).cloned().collect();
            set_finalizers(api, &secret, &rest).await;
            continue;
        };
        let id = crate::crypto::key_id_hex(&key.certificate().key_id());
        match ring.needed_by(key.fingerprint(), &id) {
            Some(needed) if needed.is_empty() => {
                info!(secret = %secret.name_any(), fingerprint = key.fingerprint(), "no bundle needs the sealing key: deleting it");
                let rest: Vec<String> = finalizers.iter().filter(|f| *f != FINALIZER).cloned().collect();
                set_finalizers(api, &secret, &rest).await;
            }
            needed => {
                let why = match &needed {
                    None => "the SealedBundles are not known yet".to_owned(),
                    Some(names) => {
                        let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
                        let more = names.len().saturating_sub(shown.len());
                        format!(
                            "{} SealedBundle(s) still need it: {}{}",
                            names.len(),
                            shown.join(", "),
                            if more > 0 { format!(" and {more} more") } else { String::new() }
                        )
                    }
                };
                let note = format!(
                    "deletion of sealing key {} refused: {why}; re-seal them (mltenant rotate -f DIR --in-place) and it goes",
                    key.fingerprint()
                );
                warn!(secret = %secret.name_any(), "{note}");
                let event = kube::runtime::events::Event {
                    type_: kube::runtime::events::EventType::Warning,
                    reason: "KeyDeletionRefused".into(),
                    note: Some(note),
                    action: "Guard".into(),
                    secondary: None,
                };
                if let Err(error) = recorder.publish(&event, &secret.object_ref(&())).await {
                    warn!(%error, "could not record event");
                }
            }
        }
    }
}

/// Replace the Secret's finalizers, only on the version read (a merge patch carrying the
/// resourceVersion: a 409 otherwise, retried at the next look): the one change the operator
/// makes to a key Secret after creating it.
async fn set_finalizers(api: &Api<Secret>, secret: &Secret, wanted: &[String]) {
    let patch =
        serde_json::json!({"metadata": {"resourceVersion": secret.metadata.resource_version, "finalizers": wanted}});
    let params = kube::api::PatchParams { field_manager: Some(labels::FIELD_MANAGER.to_owned()), ..Default::default() };
    if let Err(error) = api.patch(&secret.name_any(), &params, &kube::api::Patch::Merge(&patch)).await {
        warn!(secret = %secret.name_any(), %error, "could not update the sealing key's finalizers");
    }
}
