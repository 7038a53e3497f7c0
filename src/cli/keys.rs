//! `mltenant keys`: the operator's sealing keys and the key lifecycle, with the kubeconfig's
//! identity (a cluster admin's: the keys are Secrets in the operator's namespace).
//!
//! * `mltenant keys` lists every key: fingerprint, key id, created, expires, active or retired,
//!   deletion pending, and the SealedBundles in the cluster that still need it (the operator's
//!   rule, `unseal::needs_key`: their status lists it, or, while no status speaks for them as
//!   they are, their v2 values name its key id).
//! * `mltenant keys retire FINGERPRINT` labels the key Secret `mltenant.io/sealing-key=retired`:
//!   it opens nothing from then on (reversible: `mltenant keys unretire FINGERPRINT`).
//! * `mltenant keys delete FINGERPRINT` deletes a retired key's Secret, once no bundle needs it
//!   and the operator's deletion guard (finalizer) is on it; it refuses, deleting nothing, when
//!   a bundle still needs the key, and fails when the operator holds the deletion anyway (it
//!   says why in an Event on the Secret).
//!
//! A key is named by its fingerprint, or at least 8 hex digits of it (the key id is the first
//! 16).
//!
//! Only `tls.crt` of each Secret is read; the private keys are never printed.

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::api::SealedBundle;
use crate::api::labels::{ACTIVE, RETIRED, SEALING_KEY};
use crate::crypto::{Certificate, key_id_hex};
use crate::keys::lifecycle::FINALIZER;

/// Shortest hex prefix of a fingerprint that names a key: 8 digits, 32 bits (a typo or an empty
/// argument must not name the one key there is).
const MIN_PREFIX: usize = 8;

/// How long `delete` waits for the operator to let a key go.
const DELETION_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Namespace of the operator (where its keys live).
    #[arg(long, global = true, default_value = "mltenant-system")]
    pub controller_namespace: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// List the keys and the bundles that need each (the default).
    List,
    /// Retire a key: it opens nothing any more (reversible).
    Retire { fingerprint: String },
    /// Make a retired key open again.
    Unretire { fingerprint: String },
    /// Delete a retired key; held by the operator while any bundle needs it.
    Delete { fingerprint: String },
}

/// One key as listed.
struct Listed {
    secret: Secret,
    cert: Certificate,
}

pub async fn run(args: Args) -> anyhow::Result<String> {
    let client = kube::Client::try_default().await.context("no Kubernetes configuration")?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &args.controller_namespace);
    let selector = format!("{SEALING_KEY} in ({ACTIVE},{RETIRED})");
    let listed: Vec<Listed> = secrets
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("listing the sealing keys in {}", args.controller_namespace))?
        .items
        .into_iter()
        .filter_map(|mut secret| {
            let cert = secret.data.as_ref()?.get("tls.crt")?.0.clone();
            // Only the certificate is kept; the private key's bytes are wiped at once.
            if let Some(mut data) = secret.data.take() {
                for value in data.values_mut() {
                    zeroize::Zeroize::zeroize(&mut value.0);
                }
            }
            let cert = Certificate::from_pem(std::str::from_utf8(&cert).ok()?).ok()?;
            Some(Listed { secret, cert })
        })
        .collect();
    let find = |fingerprint: &str| -> anyhow::Result<&Listed> {
        let hex = prefix(fingerprint)?;
        let matches: Vec<&Listed> = listed
            .iter()
            .filter(|k| k.cert.fingerprint().strip_prefix("SHA256:").is_some_and(|f| f.starts_with(&hex)))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => bail!("no sealing key {fingerprint} in {}", args.controller_namespace),
            _ => bail!("{fingerprint} matches several keys: give the whole fingerprint"),
        }
    };
    match args.action.unwrap_or(Action::List) {
        Action::List => list(&client, &listed).await,
        Action::Retire { fingerprint } => {
            let key = find(&fingerprint)?;
            let active = listed.iter().filter(|k| state(&k.secret) == ACTIVE).count();
            ensure!(
                state(&key.secret) == RETIRED || active > 1,
                "{} is the only active key: retiring it would leave nothing to seal with or open",
                key.cert.fingerprint()
            );
            label(&secrets, key, RETIRED).await?;
            Ok(format!(
                "retired {} ({}): it opens nothing now; bundles that need it fail with reason KeyRetired until re-sealed\n",
                key.cert.fingerprint(),
                key.secret.name_any()
            ))
        }
        Action::Unretire { fingerprint } => {
            let key = find(&fingerprint)?;
            label(&secrets, key, ACTIVE).await?;
            Ok(format!("{} ({}) is active again\n", key.cert.fingerprint(), key.secret.name_any()))
        }
        Action::Delete { fingerprint } => {
            let key = find(&fingerprint)?;
            let (fingerprint, name) = (key.cert.fingerprint(), key.secret.name_any());
            ensure!(
                state(&key.secret) == RETIRED,
                "{fingerprint} is active: retire it first (mltenant keys retire), and delete it once nothing fails"
            );
            // Refused here, before anything is deleted: a deletion the operator then holds
            // leaves the key Terminating until the bundles are re-sealed.
            let needed = needing(&bundles(&client).await?, &key.cert);
            ensure!(
                needed.is_empty(),
                "{fingerprint} is still needed by {} SealedBundle(s): {}; re-seal them (mltenant rotate -f DIR --in-place) first",
                needed.len(),
                shown(&needed)
            );
            // Without the operator's guard the deletion would be final at once, whatever it
            // knows that this listing does not.
            ensure!(
                key.secret.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER),
                "{name} does not carry the operator's deletion guard ({FINALIZER}) yet: is the operator running?"
            );
            secrets.delete(&name, &DeleteParams::default()).await.context("deleting the key")?;
            let deadline = tokio::time::Instant::now() + DELETION_WAIT;
            while secrets.get_opt(&name).await.context("reading the key")?.is_some() {
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "deletion of {fingerprint} requested, but the operator holds it: see kubectl get events -n {} --field-selector involvedObject.name={name}",
                    args.controller_namespace
                );
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Ok(format!("deleted {fingerprint} ({name})\n"))
        }
    }
}

/// The lowercase hex a key is named by on the command line: its fingerprint (`SHA256:...`) or
/// at least [`MIN_PREFIX`] hex digits of it.
fn prefix(named: &str) -> anyhow::Result<String> {
    let hex = named.strip_prefix("SHA256:").unwrap_or(named).to_ascii_lowercase();
    ensure!(
        hex.len() >= MIN_PREFIX && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{named:?} is not a key: give its fingerprint (SHA256:...) or at least {MIN_PREFIX} hex digits of it (mltenant keys lists them)"
    );
    Ok(hex)
}

/// At most ten names, and how many more.
fn shown(names: &[String]) -> String {
    let more = names.len().saturating_sub(10);
    let mut text = names.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

fn state(secret: &Secret) -> &str {
    secret.labels().get(SEALING_KEY).map_or("", String::as_str)
}

async fn label(secrets: &Api<Secret>, key: &Listed, value: &str) -> anyhow::Result<()> {
    let patch = serde_json::json!({"metadata": {"labels": {SEALING_KEY: value}}});
    secrets
        .patch(&key.secret.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("labelling {} {SEALING_KEY}={value}", key.secret.name_any()))?;
    Ok(())
}

/// Every SealedBundle in the cluster.
async fn bundles(client: &kube::Client) -> anyhow::Result<Vec<SealedBundle>> {
    let list = Api::<SealedBundle>::all(client.clone()).list(&ListParams::default()).await;
    Ok(list.context("listing SealedBundles")?.items)
}

/// The SealedBundles that need `cert`'s key: the operator's rule (`unseal::needs_key`), for an
/// operator that reports on every bundle.
fn needing(bundles: &[SealedBundle], cert: &Certificate) -> Vec<String> {
    let id = key_id_hex(&cert.key_id());
    let mut names: Vec<String> = bundles
        .iter()
        .filter(|b| crate::unseal::needs_key(b, cert.fingerprint(), &id, true))
        .map(|b| b.name_any())
        .collect();
    names.sort();
    names
}

async fn list(client: &kube::Client, listed: &[Listed]) -> anyhow::Result<String> {
    let bundles = bundles(client).await?;
    let mut sorted: Vec<&Listed> = listed.iter().collect();
    sorted.sort_by_key(|k| std::cmp::Reverse(k.cert.not_before()));
    let mut out = String::from("FINGERPRINT\tKEY ID\tCREATED\tEXPIRES\tSTATE\tNEEDED BY\n");
    for key in sorted {
        let mut state = state(&key.secret).to_owned();
        if key.secret.metadata.deletion_timestamp.is_some() {
            state.push_str(",deleting");
        }
        let needed = needing(&bundles, &key.cert);
        let needed =
            if needed.is_empty() { "-".to_owned() } else { format!("{} ({})", needed.len(), needed.join(",")) };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{state}\t{needed}\n",
            key.cert.fingerprint(),
            key_id_hex(&key.cert.key_id()),
            key.cert.not_before(),
            key.cert.not_after(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typo, an empty argument or a short prefix names no key (an empty one used to match
    /// every key, the one key there is included).
    #[test]
    fn a_key_is_named_by_eight_hex_digits_at_least() {
        for vague in ["", "0", "abc1234", "SHA256:", "zzzzzzzz", "abcd 1234"] {
            let error = prefix(vague).unwrap_err().to_string();
            assert!(error.contains("at least 8 hex digits") && !error.contains('\n'), "{vague:?}: {error}");
        }
        assert_eq!(prefix("SHA256:ABCDEF0123").unwrap(), "abcdef0123");
        assert_eq!(prefix("abcdef01").unwrap(), "abcdef01");
    }
}
