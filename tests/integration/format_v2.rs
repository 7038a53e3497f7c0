//! Sealing format v2 and the key lifecycle against the real control plane: one bundle for
//! several clusters (operators with keys of their own), tampering refused with the last good
//! Secret kept, restarts that decrypt nothing, bulk re-seal of a directory, and key retirement.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use mltenant_operator::api::{BundleScope, SealedBundle, SecretSpec};
use mltenant_operator::crypto::{self, Certificate, Sealer, SealingKey};

use crate::harness::*;

/// Values sealed in format v2 for every certificate in `certs` (one run).
pub(crate) fn sealed_v2(certs: &[&Certificate], label: &[u8], data: &[(&str, &[u8])]) -> BTreeMap<String, String> {
    let sealer = Sealer::new(certs, label).unwrap();
    data.iter().map(|(k, v)| (k.to_string(), crypto::encode_base64(&sealer.seal(k, v).unwrap()))).collect()
}

pub(crate) async fn served_cert(op: &Operator) -> Certificate {
    Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap()
}

/// A Cluster-scope bundle every tenant may use.
fn cluster_bundle(name: &str, data: BTreeMap<String, String>) -> SealedBundle {
    let mut b = bundle(name, BundleScope::Cluster, None, None, data);
    b.spec.tenant_selector = Some(LabelSelector::default());
    b
}

async fn secret_data(client: &kube::Client, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let s = get_secret(client, namespace, name).await?;
    Some(s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// One bundle, two recipient clusters (operators with keys of their own, in namespaces of their
/// own): both write the Secret; a third operator, whose key the bundle does not name, reports
/// which recipients it has and which key it holds, and writes nothing.
#[tokio::test]
async fn one_bundle_opens_on_every_recipient_cluster_and_a_third_says_what_it_is_missing() {
    let client = admin().await;
    let mut operators = Vec::new();
    for _ in 0..3 {
        operators.push(operator_with_own_keys(&client, &unique("run")).await.0);
    }
    let certs = [served_cert(&operators[0]).await, served_cert(&operators[1]).await, served_cert(&operators[2]).await];
    let name = unique("multi");
    let data = sealed_v2(&[&certs[0], &certs[1]], b"", &[("TOKEN", b"one manifest"), ("USER", b"bot")]);
    let mut shared = cluster_bundle(&name, data);
    // The first cluster reports the bundle's status.
    shared.metadata.labels = Some(BTreeMap::from([(TEST_LABEL.to_owned(), operators[0].run_id.clone())]));
    create_bundle(&client, &shared).await;
    let tenants: Vec<String> = (0..3).map(|i| format!("{name}-t{i}")).collect();
    for (op, tenant_name) in operators.iter().zip(&tenants) {
        let mut t = tenant(tenant_name, &op.run_id, &["dev"]);
        t.spec.secrets = Some(vec![SecretSpec::new("creds", &name)]);
        create_tenant(&client, &t).await;
    }
    for tenant_name in &tenants[..2] {
        wait_condition(&client, tenant_name, "SecretsSynced", "True", None).await;
        let data = secret_data(&client, &format!("{tenant_name}-dev"), "creds").await.expect("the Secret");
        assert_eq!(data["TOKEN"], b"one manifest");
    }
    let message = wait_condition(&client, &tenants[2], "SecretsSynced", "False", Some("DecryptionFailed")).await;
    let id = |c: &Certificate| crypto::key_id_hex(&c.key_id());
    for expected in [id(&certs[0]), id(&certs[1]), format!("this operator holds {}", id(&certs[2]))] {
        assert!(message.contains(&expected), "{expected:?} not in {message}");
    }
    assert!(get_secret(&client, &format!("{}-dev", tenants[2]), "creds").await.is_none(), "nothing written");
    assert!(operators[2].metric("mltenant_decryption_failures_total", &[("reason", "NotARecipient")]).await >= 1.0);
    // The bundle's status says which recipient the reporting cluster is.
    let status = wait_for("the bundle's status", TIMEOUT, || async {
        let b = Api::<SealedBundle>::all(client.clone()).get(&name).await.ok()?;
        let c = b.status?.conditions.into_iter().find(|c| c.type_ == "Decryptable" && c.status == "True")?;
        Some(c.message)
    })
    .await;
    assert!(status.contains(&format!("{} (this cluster)", id(&certs[0]))), "{status}");
    assert!(status.contains(&id(&certs[1])), "{status}");
}

/// A v2 bundle with one byte changed in any part is refused with its reason, the Secret keeps
/// its last good values, and the restored bundle syncs again.
#[tokio::test]
async fn a_tampered_v2_bundle_keeps_the_last_good_secret() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let cert = served_cert(&op).await;
    let name = unique("tamper");
    let label = crypto::label(BundleScope::Tenant, &name, "");
    let good = sealed_v2(&[&cert], &label, &[("A", b"first value"), ("B", b"second value")]);
    create_bundle(&client, &bundle(&name, BundleScope::Tenant, Some(&name), None, good.clone())).await;
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new("creds", &name)]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;
    let namespace = format!("{name}-dev");
    let last_good = secret_data(&client, &namespace, "creds").await.unwrap();

    let raw = crypto::decode_base64(&good["A"]).unwrap();
    let header = crypto::v2::header(&raw).unwrap().len();
    let flipped = |index: usize| {
        let mut bad = raw.clone();
        bad[index] ^= 0x01;
        crypto::encode_base64(&bad)
    };
    let other_scope = sealed_v2(&[&cert], &crypto::label(BundleScope::Tenant, "someone-else", ""), &[("A", b"x")]);
    let api = Api::<SealedBundle>::all(client.clone());
    for (part, value, reason) in [
        ("key id", flipped(5), "NotARecipient"),
        ("wrapped key", flipped(5 + 10 + 40), "UnwrapFailed"),
        ("nonce", flipped(header), "Tampered"),
        ("ciphertext", flipped(header + 12), "Tampered"),
        ("tag", flipped(raw.len() - 1), "Tampered"),
        ("moved to another key name", good["B"].clone(), "Tampered"),
        ("moved from a bundle of another scope", other_scope["A"].clone(), "UnwrapFailed"),
    ] {
        let before = op.metric("mltenant_decryption_failures_total", &[("reason", reason)]).await;
        edit(&api, &name, |b: &mut SealedBundle| {
            b.spec.encrypted_data.insert("A".into(), value.clone());
        })
        .await;
        wait_for(&format!("{part}: refused with {reason}"), TIMEOUT, || async {
            (op.metric("mltenant_decryption_failures_total", &[("reason", reason)]).await > before).then_some(())
        })
        .await;
        let message = wait_condition(&client, &name, "SecretsSynced", "False", None).await;
        assert!(message.contains("key A"), "{part}: {message}");
        assert_eq!(secret_data(&client, &namespace, "creds").await.unwrap(), last_good, "{part}: last good kept");
    }
    edit(&api, &name, |b: &mut SealedBundle| b.spec.encrypted_data = good.clone()).await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;
}

/// A restarted operator (a failover) finds every Secret proven by its `mltenant.io/opened-with`
/// and decrypts nothing: no RSA operation, no write.
#[tokio::test]
async fn a_restart_decrypts_nothing_the_secrets_already_prove() {
    let client = admin().await;
    let run = unique("run");
    let (op, ns) = operator_with_own_keys(&client, &run).await;
    let cert = served_cert(&op).await;
    let name = unique("restart");
    let label = crypto::label(BundleScope::Tenant, &name, "");
    // Not labelled for the test's operator: no bundle status, so only the tenant opens it.
    let values: Vec<(String, Vec<u8>)> = (0..9).map(|i| (format!("K{i}"), format!("value {i}").into_bytes())).collect();
    let pairs: Vec<(&str, &[u8])> = values.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    create_bundle(&client, &bundle(&name, BundleScope::Tenant, Some(&name), None, sealed_v2(&[&cert], &label, &pairs)))
        .await;
    let mut t = tenant(&name, &run, &["dev", "staging", "production"]);
    t.spec.secrets = Some(vec![SecretSpec::new("creds", &name)]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;
    assert_eq!(
        op.metric("mltenant_rsa_operations_total", &[]).await,
        1.0,
        "v2: one RSA operation for 9 values, 3 envs"
    );
    let secret = get_secret(&client, &format!("{name}-dev"), "creds").await.unwrap();
    let proof = secret.metadata.annotations.unwrap_or_default().remove("mltenant.io/opened-with").expect("a proof");
    assert!(proof.starts_with(&format!("v1.{}.", crypto::key_id_hex(&cert.key_id()))), "{proof}");
    op.kill().await;

    let op = Operator::start_with(&run, &["--namespace", &ns]).await;
    wait_for("the tenant reconciled by the new operator", TIMEOUT, || async {
        (op.successful_reconciles("tenant").await >= 1.0).then_some(())
    })
    .await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;
    assert_eq!(op.metric("mltenant_rsa_operations_total", &[]).await, 0.0, "nothing decrypted after the restart");
    assert_eq!(op.metric("mltenant_decryptions_total", &[]).await, 0.0);
    let after = get_secret(&client, &format!("{name}-dev"), "creds").await.unwrap();
    assert_eq!(after.metadata.resource_version, secret.metadata.resource_version, "not written again");

    // A Secret edited by hand proves nothing any more: it is decrypted and reverted.
    let secrets = Api::<Secret>::namespaced(client.clone(), &format!("{name}-staging"));
    let patch = serde_json::json!({"data": {"K0": "ZWRpdGVk"}});
    secrets.patch("creds", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_for("the edit reverted", TIMEOUT, || async {
        let data = secret_data(&client, &format!("{name}-staging"), "creds").await?;
        (data["K0"] == b"value 0").then_some(())
    })
    .await;
    assert_eq!(op.metric("mltenant_rsa_operations_total", &[]).await, 1.0);
}

/// `mltenant rotate -f DIR --in-place` on kubeseal-format and v2 files: only the ciphertexts
/// change, everything else byte for byte, and the new values open with the newest key.
#[tokio::test]
async fn rotate_a_directory_in_place_changes_only_the_ciphertexts() {
    let client = admin().await;
    // A newer key: what the bundles are re-sealed to.
    let (op, _ns, old, newer) = operator_with_newer_key(&client).await;

    let name = unique("rot");
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(dir.join("team/.git")).unwrap();
    let kubeseal_values = sealed(&old, BundleScope::Tenant, &name, "", &[("A", b"kubeseal value")]);
    let v2_values = sealed_v2(&[&old], b"", &[("B", b"v2 value"), ("C", b"another")]);
    let v1_file = format!(
        "# the team's platform credentials\napiVersion: mltenant.io/v1alpha1\nkind: SealedBundle\nmetadata:\n  name: {name}-v1\nspec:\n  scope: Tenant\n  tenant: {name}\n  encryptedData:\n    A: {}   # sealed 2026\n",
        kubeseal_values["A"]
    );
    let v2_file = format!(
        "apiVersion: mltenant.io/v1alpha1\nkind: MLTenant\nmetadata: {{name: {name}}}\nspec: {{environments: [{{name: dev}}]}}\n---\nkind: SealedBundle\napiVersion: mltenant.io/v1alpha1\nmetadata: {{name: {name}-v2}}\nspec:\n  tenantSelector: {{}}\n  scope: Cluster\n  encryptedData:\n    C: \"{}\"\n    B: {}\n",
        v2_values["C"], v2_values["B"]
    );
    std::fs::write(dir.join("team/v1.yaml"), &v1_file).unwrap();
    std::fs::write(dir.join("v2.yml"), &v2_file).unwrap();
    std::fs::write(dir.join("team/.git/ignored.yaml"), "kind: SealedBundle\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();

    let url = format!("http://127.0.0.1:{}", op.port());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mltenant"))
        .args(["rotate", "-f", dir.to_str().unwrap(), "--in-place", "--operator-url", &url])
        .env("KUBECONFIG", kubeconfig_path("MLTENANT_TEST_ADMIN_KUBECONFIG"))
        .output()
        .unwrap();
    assert!(out.status.success(), "rotate: {}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(
        report.contains("v1.yaml") && report.contains("v2.yml") && report.contains("2 of 2 files changed"),
        "{report}"
    );

    for (file, before, values) in [("team/v1.yaml", &v1_file, &kubeseal_values), ("v2.yml", &v2_file, &v2_values)] {
        let after = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut restored = after.clone();
        let parsed: Vec<SealedBundle> = serde_yaml::Deserializer::from_str(&after)
            .filter_map(|d| serde::Deserialize::deserialize(d).ok())
            .filter(|b: &SealedBundle| !b.spec.encrypted_data.is_empty())
            .collect();
        let rotated = &parsed[0];
        for (key, old_value) in values {
            let new_value = &rotated.spec.encrypted_data[key];
            assert_ne!(new_value, old_value, "{file} {key} re-sealed");
            let raw = crypto::decode_base64(new_value).unwrap();
            let was_v2 = crypto::v2::is_ours(&crypto::decode_base64(old_value).unwrap());
            assert_eq!(crypto::v2::is_ours(&raw), was_v2, "{file} {key} keeps its format");
            restored = restored.replace(new_value.as_str(), old_value);
        }
        assert_eq!(&restored, before, "{file}: nothing but the ciphertexts changed");
        let (code, answer) = op.post_bundle("/v1/verify", rotated).await;
        assert_eq!(code, 200, "{answer}");
        assert!(answer.contains(newer.fingerprint()), "{file} opens with the newest key: {answer}");
    }
    assert_eq!(std::fs::read_to_string(dir.join("team/.git/ignored.yaml")).unwrap(), "kind: SealedBundle\n");
}

/// Store `key` as a sealing-key Secret in `namespace`, the way the operator does, in `state`
/// (`active` or `retired`).
pub(crate) async fn add_key(client: &kube::Client, namespace: &str, name: &str, key: &SealingKey, state: &str) {
    let pem = key.to_pem().unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"mltenant.io/sealing-key": state, "app.kubernetes.io/managed-by": "mltenant-operator"}},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": pem.cert_pem, "tls.key": pem.key_pem.as_str()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), namespace).create(&PostParams::default(), &secret).await.unwrap();
}

/// An operator with a key namespace of its own: the namespace, the key it made (its
/// certificate), and a newer key `newer-key` added beside it and served from then on.
pub(crate) async fn operator_with_newer_key(client: &kube::Client) -> (Operator, String, Certificate, SealingKey) {
    let (op, ns) = operator_with_own_keys(client, &unique("run")).await;
    let old = served_cert(&op).await;
    let newer = SealingKey::generate(Duration::from_secs(3600 * 24)).unwrap();
    add_key(client, &ns, "newer-key", &newer, "active").await;
    wait_for("the newer key served", TIMEOUT, || async {
        (served_cert(&op).await.fingerprint() == newer.fingerprint()).then_some(())
    })
    .await;
    (op, ns, old, newer)
}

/// `mltenant keys ARGS --controller-namespace NAMESPACE` as the cluster admin: its output.
fn keys_cli(namespace: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mltenant"))
        .arg("keys")
        .args(args)
        .args(["--controller-namespace", namespace])
        .env("KUBECONFIG", kubeconfig_path("MLTENANT_TEST_ADMIN_KUBECONFIG"))
        .output()
        .unwrap();
    assert!(out.status.success(), "mltenant keys {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Retire a key the tenants still need: they fail with KeyRetired and keep their Secrets;
/// un-retire: they sync again. Delete it while a bundle needs it: refused (held, an Event
/// says why); re-seal the bundle: the key goes.
#[tokio::test]
async fn a_key_is_retired_in_two_steps_and_never_strands_a_credential() {
    let client = admin().await;
    let run = unique("run");
    let (op, ns) = operator_with_own_keys(&client, &run).await;
    let first = served_cert(&op).await;
    let first_secret = sealing_keys(&client, &ns).await[0].metadata.name.clone().unwrap();
    let name = unique("retire");
    let label = crypto::label(BundleScope::Tenant, &name, "");
    let mut b = bundle(&name, BundleScope::Tenant, Some(&name), None, sealed_v2(&[&first], &label, &[("A", b"kept")]));
    b.metadata.labels = Some(BTreeMap::from([(TEST_LABEL.to_owned(), run.clone())]));
    create_bundle(&client, &b).await;
    let mut t = tenant(&name, &run, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new("creds", &name)]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;
    let namespace = format!("{name}-dev");
    let last_good = secret_data(&client, &namespace, "creds").await.unwrap();

    let newer = SealingKey::generate(Duration::from_secs(3600 * 24)).unwrap();
    add_key(&client, &ns, "newer-key", &newer, "active").await;
    let listed = keys_cli(&ns, &[]);
    let row = listed.lines().find(|l| l.starts_with(first.fingerprint())).unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains("\tactive\t") && row.contains(&name), "the key and the bundle that needs it: {row}");
    // Retire: the tenant fails loudly, its Secret keeps its values.
    let said = keys_cli(&ns, &["retire", &crypto::key_id_hex(&first.key_id())]);
    assert!(said.contains("retired"), "{said}");
    let message = wait_condition(&client, &name, "SecretsSynced", "False", Some("KeyRetired")).await;
    assert!(message.contains(first.fingerprint()), "{message}");
    assert_eq!(secret_data(&client, &namespace, "creds").await.unwrap(), last_good);
    wait_for("the retired key named in metrics", TIMEOUT, || async {
        let retired = op.metric("mltenant_sealing_key_retired", &[("fingerprint", first.fingerprint())]).await;
        let needing = op.metric("mltenant_bundles_by_sealing_key", &[("fingerprint", first.fingerprint())]).await;
        (retired == 1.0 && needing == 1.0).then_some(())
    })
    .await;
    let listed = keys_cli(&ns, &[]);
    assert!(listed.lines().any(|l| l.starts_with(first.fingerprint()) && l.contains("\tretired\t")), "{listed}");
    // Un-retire: it syncs again.
    keys_cli(&ns, &["unretire", first.fingerprint()]);
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;

    // Delete while the bundle needs it: held, and an Event says why; the key still opens.
    let keys = Api::<Secret>::namespaced(client.clone(), &ns);
    keys.delete(&first_secret, &DeleteParams::default()).await.unwrap();
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    let note = wait_for("the deletion refused", TIMEOUT, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("KeyDeletionRefused"))?.note
    })
    .await;
    assert!(note.contains(&name), "{note}");
    let held = keys.get(&first_secret).await.expect("the key Secret is held");
    assert!(held.metadata.deletion_timestamp.is_some());

    // Re-seal to the newest key: nothing needs the old one any more, and it goes.
    let current = Api::<SealedBundle>::all(client.clone()).get(&name).await.unwrap();
    let (code, rotated) = op.post_bundle("/v1/rotate", &current).await;
    assert_eq!(code, 200, "{rotated}");
    let rotated: SealedBundle = serde_yaml::from_str(&rotated).unwrap();
    edit(&Api::<SealedBundle>::all(client.clone()), &name, |b: &mut SealedBundle| {
        b.spec.encrypted_data = rotated.spec.encrypted_data.clone();
    })
    .await;
    wait_for("the old key deleted", TIMEOUT, || async {
        keys.get_opt(&first_secret).await.unwrap().is_none().then_some(())
    })
    .await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;
    assert_eq!(secret_data(&client, &namespace, "creds").await.unwrap(), last_good);
}
