//! `mltenant keys`: the operator's sealing keys and the key lifecycle, with the kubeconfig's
//! identity (a cluster admin's: the keys are Secrets in the operator's namespace).
//!
//! * `mltenant keys` lists every key: fingerprint, key id, created, expires, active or retired,
//!   deletion pending, and the SealedBundles in the cluster that still need it (their status
//!   names it, or their v2 values name its key id).
//! * `mltenant keys retire FINGERPRINT` labels the key Secret `mltenant.io/sealing-key=retired`:
//!   it opens nothing from then on (reversible: `mltenant keys unretire FINGERPRINT`).
//! * `mltenant keys delete FINGERPRINT` deletes a retired key's Secret; the operator holds the
//!   deletion (finalizer) while any bundle still needs the key and says why in an Event.
//!
//! Only `tls.crt` of each Secret is read; the private keys are never printed.

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::api::SealedBundle;
use crate::api::labels::{ACTIVE, RETIRED, SEALING_KEY};
use crate::crypto::{Certificate, key_id_hex};

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
        let matches: Vec<&Listed> = listed
            .iter()
            .filter(|k| k.cert.fingerprint() == fingerprint || key_id_hex(&k.cert.key_id()).starts_with(fingerprint))
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
            ensure!(
                state(&key.secret) == RETIRED,
                "{} is active: retire it first (mltenant keys retire), and delete it once nothing fails",
                key.cert.fingerprint()
            );
            secrets.delete(&key.secret.name_any(), &DeleteParams::default()).await.context("deleting the key")?;
            let needed = needing(&client, &key.cert).await?;
            Ok(if needed.is_empty() {
                format!("deleted {} ({})\n", key.cert.fingerprint(), key.secret.name_any())
            } else {
                format!(
                    "deletion of {} requested but refused by the operator while {} SealedBundle(s) need it: {} (re-seal them with mltenant rotate; the key goes once none does)\n",
                    key.cert.fingerprint(),
                    needed.len(),
                    needed.join(", ")
                )
            })
        }
    }
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

/// The SealedBundles that need `cert`'s key: the operator's rule (`KeyRing::needed_by`).
async fn needing(client: &kube::Client, cert: &Certificate) -> anyhow::Result<Vec<String>> {
    let bundles =
        Api::<SealedBundle>::all(client.clone()).list(&ListParams::default()).await.context("listing SealedBundles")?;
    let id = key_id_hex(&cert.key_id());
    let mut names: Vec<String> = bundles
        .items
        .iter()
        .filter(|b| {
            b.status.as_ref().and_then(|s| s.key_fingerprint.as_deref()) == Some(cert.fingerprint())
                || crate::unseal::recipients(b).iter().any(|r| key_id_hex(r) == id)
        })
        .map(|b| b.name_any())
        .collect();
    names.sort();
    Ok(names)
}

async fn list(client: &kube::Client, listed: &[Listed]) -> anyhow::Result<String> {
    let mut sorted: Vec<&Listed> = listed.iter().collect();
    sorted.sort_by_key(|k| std::cmp::Reverse(k.cert.not_before()));
    let mut out = String::from("FINGERPRINT\tKEY ID\tCREATED\tEXPIRES\tSTATE\tNEEDED BY\n");
    for key in sorted {
        let mut state = state(&key.secret).to_owned();
        if key.secret.metadata.deletion_timestamp.is_some() {
            state.push_str(",deleting");
        }
        let needed = needing(client, &key.cert).await?;
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
