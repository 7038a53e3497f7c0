//! The SealedBundle controller: reports whether a bundle opens for the consumer its own scope
//! names (`Decryptable`) and which sealing key opens it (`keyFingerprint`: bundles still on an
//! older key need re-sealing). Never writes spec; only `/status`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use crate::api::conditions::{DECRYPTABLE, reason};
use crate::api::{SealedBundle, SealedBundleStatus};
use crate::reconcile::apply;
use crate::reconcile::context::Context;
use crate::reconcile::error::{Error, Result};
use crate::reconcile::guard::Guarded;
use crate::reconcile::observed::{self, Observed};
use crate::unseal;

#[tracing::instrument(skip_all, fields(bundle = %sealed.name_any()))]
pub async fn reconcile(sealed: Arc<SealedBundle>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.reports_on(&sealed) {
        return Ok(Action::await_change());
    }
    if !ctx.caches_synced() || ctx.keys.keys().is_empty() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let opening = ctx.open_all(&sealed, unseal::declared_label(&sealed)).await.map_err(Error::ReadBundle)?;
    let status = build(&sealed, opening.opened.as_ref(), &opening.needs, &Time(jiff::Timestamp::now()));
    if sealed.status.as_ref() != Some(&status) {
        // Onto the version decided on: a replica that woke up after losing the lead writes nothing.
        let api = Api::<Guarded<SealedBundle>>::all(ctx.client.clone());
        apply::apply_status(&api, &sealed.name_any(), sealed.resource_version().as_deref(), &status)
            .await
            .map_err(Error::WriteBundleStatus)?;
    }
    Ok(Action::requeue(ctx.config.resync))
}

/// The status `sealed` gets from opening it for the consumer its scope names, and the keys its
/// values need (`needs`: what holds a key's deletion); no IO.
fn build(
    sealed: &SealedBundle,
    opened: Result<&unseal::Opened, &unseal::Failure>,
    needs: &[Arc<str>],
    now: &Time,
) -> SealedBundleStatus {
    let (observed, fingerprint) = match opened {
        Ok(opened) => {
            let count = sealed.spec.encrypted_data.len();
            let mut message = format!("all {count} values open with sealing key {}", opened.fingerprint);
            // Which of its recipients this cluster is (v2 bundles name theirs by key id).
            let recipients = unseal::cached_recipients(sealed);
            if recipients.len() > 1 {
                let ours = opened.fingerprint.strip_prefix("SHA256:").unwrap_or_default();
                let listed: Vec<String> = recipients
                    .iter()
                    .map(|id| if ours.starts_with(id.as_str()) { format!("{id} (this cluster)") } else { id.clone() })
                    .collect();
                message.push_str(&format!("; recipients: {}", listed.join(", ")));
            }
            (Observed::new(DECRYPTABLE, true, reason::DECRYPTABLE, message), Some(opened.fingerprint.clone()))
        }
        // A bundle that needs a retired key names it: it still needs that key (deletion is
        // refused, `mltenant_bundles_by_sealing_key` counts it for the retired-key alert).
        Err(failure @ unseal::Failure::KeyRetired { fingerprint, .. }) => {
            (Observed::new(DECRYPTABLE, false, failure.reason(), failure.to_string()), Some(fingerprint.clone()))
        }
        Err(failure) => (Observed::new(DECRYPTABLE, false, failure.reason(), failure.to_string()), None),
    };
    let previous = sealed.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let generation = sealed.metadata.generation;
    SealedBundleStatus {
        observed_generation: generation,
        conditions: observed::merge(previous, &[observed], generation, now),
        key_fingerprint: fingerprint,
        key_fingerprints: Some(needs.iter().map(|f| f.to_string()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::conditions::{FALSE, TRUE};
    use crate::api::{BundleScope, SealedBundleSpec};

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn a_bundle_that_opens_names_its_key_and_one_that_fails_says_why() {
        let values = BTreeMap::from([("A".to_string(), "x".to_string()), ("B".to_string(), "y".to_string())]);
        let mut sealed = SealedBundle::new("b", SealedBundleSpec::new(BundleScope::Cluster, values));
        sealed.metadata.generation = Some(3);
        let opened =
            unseal::Opened { data: BTreeMap::new(), fingerprint: "SHA256:ab".into(), keys: vec!["SHA256:ab".into()] };

        let decryptable = build(&sealed, Ok(&opened), &opened.keys, &at(0));
        let condition = &decryptable.conditions[0];
        assert_eq!((condition.type_.as_str(), condition.status.as_str()), (DECRYPTABLE, TRUE));
        assert_eq!(condition.message, "all 2 values open with sealing key SHA256:ab");
        assert_eq!(
            (decryptable.observed_generation, decryptable.key_fingerprint.as_deref()),
            (Some(3), Some("SHA256:ab"))
        );

        // Looked at again later, nothing changed: the same status, so nothing to write.
        sealed.status = Some(decryptable.clone());
        assert_eq!(build(&sealed, Ok(&opened), &opened.keys, &at(60)), decryptable);

        let failure = unseal::Failure::NotFound { bundle: "b".into() };
        let failed = build(&sealed, Err(&failure), &[], &at(60));
        let condition = &failed.conditions[0];
        assert_eq!((condition.status.as_str(), condition.reason.as_str()), (FALSE, failure.reason()));
        assert_eq!(condition.last_transition_time, at(60), "the status changed, so its transition time moves");
        assert_eq!(failed.key_fingerprint, None);
        assert_eq!(decryptable.key_fingerprints, Some(vec!["SHA256:ab".to_owned()]));

        // A bundle that fails still lists every key its other values need.
        let retired =
            unseal::Failure::KeyRetired { bundle: "b".into(), key: "A".into(), fingerprint: "SHA256:cd".into() };
        let needs: Vec<Arc<str>> = vec!["SHA256:ab".into(), "SHA256:cd".into()];
        let failed = build(&sealed, Err(&retired), &needs, &at(60));
        assert_eq!(failed.key_fingerprint.as_deref(), Some("SHA256:cd"));
        assert_eq!(failed.key_fingerprints, Some(vec!["SHA256:ab".to_owned(), "SHA256:cd".to_owned()]));
    }
}
