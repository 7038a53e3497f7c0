//! Format v2, the key lifecycle and the restart proof against hostile users, on the real control
//! plane: each test first shows the API server took what the attacker sent, then that the
//! operator does not act on it.
//!
//! * a bundle author who names a sealing key's id in a v2 header with bytes that wrap nothing,
//!   to hold the key against deletion forever (and have it reported as a retired key in use);
//! * a bundle whose values were sealed to two keys over time: deleting the key only one value
//!   needs must wait too;
//! * `mltenant keys delete` of a key still needed: refused before anything is deleted, with a
//!   non-zero exit;
//! * whoever may edit a tenant's Secrets: a proof replayed from an older value, copied from
//!   another namespace or Secret, or forged, keeps no tampered value;
//! * whoever may create Secrets in a namespace of theirs: Secrets labelled as sealing keys
//!   (active or retired) outside the operator's namespace are never loaded or touched;
//! * `mltenant rotate -f DIR --in-place` on a hostile checkout: symlinks out of it and in loops,
//!   Helm templates that are not YAML, an old ciphertext repeated in a comment, YAML aliases;
//! * `mltenant rotate --format kubeseal` of a bundle other clusters open too: refused, not
//!   converted to the one recipient kubeseal's format can name.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use mltenant_operator::api::{BundleScope, SealedBundle, SecretSpec};
use mltenant_operator::crypto::{self, Certificate, SealingKey};

use crate::format_v2::{add_key, operator_with_newer_key, sealed_v2, served_cert};
use crate::harness::*;

const FINALIZER: &str = "mltenant.io/sealing-key-protection";

/// An operator with a key namespace of its own, its first key (with the deletion guard on it)
/// and a newer key beside it (served from then on).
async fn operator_with_two_keys(client: &kube::Client) -> (Operator, String, Certificate, String, SealingKey) {
    let (op, ns, first, newer) = operator_with_newer_key(client).await;
    let keys = Api::<Secret>::namespaced(client.clone(), &ns);
    let first_secret = sealing_keys(client, &ns).await.into_iter().find_map(|s| {
        let name = s.metadata.name?;
        (name != "newer-key").then_some(name)
    });
    let first_secret = first_secret.expect("the operator's own key");
    wait_for("both keys guarded", TIMEOUT, || async {
        for name in [first_secret.as_str(), "newer-key"] {
            keys.get(name).await.ok()?.metadata.finalizers?.contains(&FINALIZER.to_owned()).then_some(())?;
        }
        Some(())
    })
    .await;
    (op, ns, first, first_secret, newer)
}

/// The Decryptable condition of a bundle's status: (status, reason, message).
async fn decryptable(client: &kube::Client, name: &str) -> Option<(String, String, String)> {
    let b = Api::<SealedBundle>::all(client.clone()).get(name).await.ok()?;
    let c = b.status?.conditions.into_iter().find(|c| c.type_ == "Decryptable")?;
    Some((c.status, c.reason, c.message))
}

fn labelled(mut b: SealedBundle, run: &str) -> SealedBundle {
    b.metadata.labels = Some(BTreeMap::from([(TEST_LABEL.to_owned(), run.to_owned())]));
    b
}

/// `mltenant ARGS` as the cluster admin: (success, stdout, stderr).
fn mltenant(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mltenant"))
        .args(args)
        .env("KUBECONFIG", kubeconfig_path("MLTENANT_TEST_ADMIN_KUBECONFIG"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A v2 value that names `id` as its one recipient, with 512 bytes that wrap nothing.
fn forged_value(id: &crypto::KeyId) -> String {
    let mut raw = b"MLT2".to_vec();
    raw.push(1);
    raw.extend_from_slice(id);
    raw.extend_from_slice(&512u16.to_be_bytes());
    raw.extend_from_slice(&[0x5a; 512]);
    raw.extend_from_slice(&[0u8; 12 + 16]);
    crypto::encode_base64(&raw)
}

/// A bundle author (who may only create SealedBundles) names the old key's id in a v2 header with
/// bytes that wrap nothing. The key is retired, then deleted: the forged bundle is not reported
/// as needing a retired key, and it holds nothing. (It did both: "needs" was the key ids in
/// clear, and a retired key was "needed" by any stanza naming it.)
#[tokio::test]
async fn a_forged_stanza_holds_no_key_against_deletion() {
    let client = admin().await;
    let (op, ns, first, first_secret, _newer) = operator_with_two_keys(&client).await;
    let token =
        service_account_token(&client, "bundle-author", vec![rule("mltenant.io", &["sealedbundles"], &["create"])])
            .await;
    let author = client_as(&token).await;
    let name = unique("forged");
    let mut forged =
        bundle(&name, BundleScope::Cluster, None, None, [("A".to_owned(), forged_value(&first.key_id()))].into());
    forged.spec.tenant_selector = Some(LabelSelector::default());
    let forged = labelled(forged, &op.run_id);
    Api::<SealedBundle>::all(author).create(&PostParams::default(), &forged).await.expect("the author may create it");
    let stored = Api::<SealedBundle>::all(client.clone()).get(&name).await.unwrap();
    assert_eq!(stored.spec.encrypted_data["A"], forged.spec.encrypted_data["A"], "the API server stored the forgery");
    let (_, reason, message) = wait_for("the forged bundle's status", TIMEOUT, || async {
        decryptable(&client, &name).await.filter(|(status, ..)| status == "False")
    })
    .await;
    assert_eq!(reason, "DecryptionFailed", "{message}");

    // Retire the old key: the forgery does not make it a retired key still in use.
    let keys = Api::<Secret>::namespaced(client.clone(), &ns);
    let retire = serde_json::json!({"metadata": {"labels": {"mltenant.io/sealing-key": "retired"}}});
    keys.patch(&first_secret, &PatchParams::default(), &Patch::Merge(&retire)).await.unwrap();
    wait_for("the key retired", TIMEOUT, || async {
        (op.metric("mltenant_sealing_key_retired", &[("fingerprint", first.fingerprint())]).await == 1.0).then_some(())
    })
    .await;
    // Then delete it: nothing needs it, so it goes.
    keys.delete(&first_secret, &DeleteParams::default()).await.unwrap();
    wait_for("the retired key deleted despite the forged stanza", TIMEOUT, || async {
        keys.get_opt(&first_secret).await.unwrap().is_none().then_some(())
    })
    .await;
    let (_, reason, message) = decryptable(&client, &name).await.unwrap();
    assert_ne!(reason, "KeyRetired", "{message}");
    assert!(!message.contains(first.fingerprint()), "{message}");
    assert_eq!(op.metric("mltenant_bundles_by_sealing_key", &[("fingerprint", first.fingerprint())]).await, 0.0);
}

/// A kubeseal-format bundle merged into over time: one value sealed to the old key, one to the
/// newest. Its status used to name only the old key, so a `kubectl delete` of the newest key
/// went through and the value sealed to it could never be opened again.
#[tokio::test]
async fn the_key_one_value_of_a_bundle_needs_is_held_against_deletion() {
    let client = admin().await;
    let (op, ns, first, _, newer) = operator_with_two_keys(&client).await;
    let name = unique("mixed");
    let mut data = sealed(&first, BundleScope::Tenant, &name, "", &[("B", b"sealed to the old key")]);
    data.extend(sealed(newer.certificate(), BundleScope::Tenant, &name, "", &[("A", b"sealed to the newest key")]));
    create_bundle(&client, &labelled(bundle(&name, BundleScope::Tenant, Some(&name), None, data), &op.run_id)).await;
    let mut t = tenant(&name, &op.run_id, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new("creds", &name)]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;
    wait_for("the bundle's status", TIMEOUT, || async {
        decryptable(&client, &name).await.filter(|(status, ..)| status == "True")
    })
    .await;

    let keys = Api::<Secret>::namespaced(client.clone(), &ns);
    keys.delete("newer-key", &DeleteParams::default()).await.unwrap();
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    let note = wait_for("the deletion of the newest key refused", TIMEOUT, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("KeyDeletionRefused")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("newer-key")
            })?
            .note
    })
    .await;
    assert!(note.contains(&name), "{note}");
    assert!(keys.get("newer-key").await.unwrap().metadata.deletion_timestamp.is_some(), "held, not gone");
    let data = get_secret(&client, &format!("{name}-dev"), "creds").await.unwrap().data.unwrap();
    assert_eq!(data["A"].0, b"sealed to the newest key");

    // Once no bundle needs it, it goes.
    Api::<SealedBundle>::all(client.clone()).delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for("the newest key deleted once nothing needs it", TIMEOUT, || async {
        keys.get_opt("newer-key").await.unwrap().is_none().then_some(())
    })
    .await;
}

/// `mltenant keys delete` of a retired key a bundle still needs refuses before deleting
/// anything, in one line and with a non-zero exit (it used to delete, leave the key
/// Terminating behind the operator's finalizer and exit 0); an empty key id matches nothing.
#[tokio::test]
async fn keys_delete_of_a_needed_key_deletes_nothing_and_fails() {
    let client = admin().await;
    let (op, ns, first, first_secret, _newer) = operator_with_two_keys(&client).await;
    let name = unique("needed");
    let label = crypto::label(BundleScope::Tenant, &name, "");
    let b = bundle(&name, BundleScope::Tenant, Some(&name), None, sealed_v2(&[&first], &label, &[("A", b"v")]));
    create_bundle(&client, &labelled(b, &op.run_id)).await;
    wait_for("the bundle's status", TIMEOUT, || async {
        decryptable(&client, &name).await.filter(|(status, ..)| status == "True")
    })
    .await;
    let id = crypto::key_id_hex(&first.key_id());
    let (ok, out, err) = mltenant(&["keys", "retire", &id, "--controller-namespace", &ns]);
    assert!(ok, "{out}{err}");
    wait_for("the bundle failing with KeyRetired", TIMEOUT, || async {
        decryptable(&client, &name).await.filter(|(_, reason, _)| reason == "KeyRetired")
    })
    .await;

    let (ok, out, err) = mltenant(&["keys", "delete", &id, "--controller-namespace", &ns]);
    assert!(!ok, "refused: {out}{err}");
    // The key is every parallel test's: the message names ten bundles at most, then how many more.
    assert!(err.contains(&name) || err.contains(" more"), "names the bundle: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let keys = Api::<Secret>::namespaced(client.clone(), &ns);
    assert!(keys.get(&first_secret).await.unwrap().metadata.deletion_timestamp.is_none(), "nothing deleted");
    for vague in ["", "0"] {
        let (ok, out, err) = mltenant(&["keys", "delete", vague, "--controller-namespace", &ns]);
        assert!(!ok && err.trim().lines().count() == 1, "{vague:?}: {out}{err}");
    }
    assert!(keys.get(&first_secret).await.unwrap().metadata.deletion_timestamp.is_none(), "nothing deleted");
}

/// Whoever may edit the tenant's Secrets tries to have tampered values kept with a proof that is
/// not this Secret's: one replayed from the value before a re-seal, one copied from another
/// namespace's Secret of the same bundle, one copied from another Secret of the namespace, one
/// made up under the operator's key id. Each edit is stored by the API server and reverted.
#[tokio::test]
async fn a_replayed_copied_or_forged_proof_keeps_no_tampered_value() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let cert = served_cert(&op).await;
    let name = unique("proof");
    let label = crypto::label(BundleScope::Tenant, &name, "");
    let other = format!("{name}-other");
    create_bundle(
        &client,
        &bundle(&name, BundleScope::Tenant, Some(&name), None, sealed_v2(&[&cert], &label, &[("A", b"first")])),
    )
    .await;
    create_bundle(
        &client,
        &bundle(&other, BundleScope::Tenant, Some(&name), None, sealed_v2(&[&cert], &label, &[("A", b"other")])),
    )
    .await;
    let mut t = tenant(&name, &op.run_id, &["dev", "staging"]);
    t.spec.secrets = Some(vec![SecretSpec::new("creds", &name), SecretSpec::new("other", &other)]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;
    let staging = format!("{name}-staging");
    let secrets = Api::<Secret>::namespaced(client.clone(), &staging);
    let proof_of = |s: &Secret| s.metadata.annotations.as_ref().unwrap()["mltenant.io/opened-with"].clone();
    let before_reseal = secrets.get("creds").await.unwrap();

    // Re-seal the bundle: the Secrets now hold the second value, with new proofs.
    edit(&Api::<SealedBundle>::all(client.clone()), &name, |b: &mut SealedBundle| {
        b.spec.encrypted_data = sealed_v2(&[&cert], &label, &[("A", b"second")]);
    })
    .await;
    let current = wait_for("the re-sealed value written", TIMEOUT, || async {
        let s = secrets.get("creds").await.ok()?;
        (s.data.as_ref()?["A"].0 == b"second").then_some(s)
    })
    .await;
    let dev_proof = proof_of(&get_secret(&client, &format!("{name}-dev"), "creds").await.unwrap());
    let other_proof = proof_of(&secrets.get("other").await.unwrap());
    let id = crypto::key_id_hex(&cert.key_id());
    let b64 = |v: &[u8]| crypto::encode_base64(v);
    for (attack, value, proof) in [
        ("an older value with its own proof", b"first".as_slice(), proof_of(&before_reseal)),
        ("another namespace's proof", b"tampered".as_slice(), dev_proof),
        ("another Secret's value and proof", b"other".as_slice(), other_proof),
        ("a made-up proof", b"tampered".as_slice(), format!("v1.{id}.{}", "A".repeat(43))),
    ] {
        let patch = serde_json::json!({
            "metadata": {"annotations": {"mltenant.io/opened-with": proof}},
            "data": {"A": b64(value)},
        });
        let stored = secrets.patch("creds", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        assert_eq!(stored.data.unwrap()["A"].0, value, "{attack}: the API server stored it");
        wait_for(&format!("{attack}: reverted"), TIMEOUT, || async {
            let s = secrets.get("creds").await.ok()?;
            (s.data.as_ref()?["A"].0 == b"second" && proof_of(&s) == proof_of(&current)).then_some(())
        })
        .await;
    }
    // Stripped: put back, without a value changing.
    let strip = serde_json::json!({"metadata": {"annotations": {"mltenant.io/opened-with": null}}});
    secrets.patch("creds", &PatchParams::default(), &Patch::Merge(&strip)).await.unwrap();
    wait_for("the proof put back", TIMEOUT, || async {
        let s = secrets.get("creds").await.ok()?;
        (s.metadata.annotations.as_ref()?.get("mltenant.io/opened-with") == Some(&proof_of(&current))).then_some(())
    })
    .await;
}

/// Whoever may create Secrets in a namespace of theirs labels them as sealing keys, one active
/// (a key pair of their own) and one retired: the operator watches its own namespace only, so
/// it never loads, serves, retires or guards them, and what is sealed to the planted key opens
/// nothing.
#[tokio::test]
async fn sealing_key_labels_outside_the_operators_namespace_change_nothing() {
    let client = admin().await;
    let (op, _) = operator_with_own_keys(&client, &unique("run")).await;
    let ours = served_cert(&op).await;
    let name = unique("planted");
    create_namespace(&client, &name, &[]).await;
    let planted = SealingKey::generate(Duration::from_secs(3600 * 24)).unwrap();
    let retired = SealingKey::generate(Duration::from_secs(3600 * 24)).unwrap();
    add_key(&client, &name, "planted", &planted, "active").await;
    add_key(&client, &name, "retired", &retired, "retired").await;

    let label = crypto::label(BundleScope::Tenant, &name, "");
    let data = sealed_v2(&[planted.certificate()], &label, &[("A", b"v")]);
    create_bundle(&client, &labelled(bundle(&name, BundleScope::Tenant, Some(&name), None, data), &op.run_id)).await;
    let (_, _, message) = wait_for("the bundle sealed to the planted key refused", TIMEOUT, || async {
        decryptable(&client, &name).await.filter(|(status, ..)| status == "False")
    })
    .await;
    assert!(message.contains(&crypto::key_id_hex(&planted.certificate().key_id())), "{message}");
    assert_eq!(served_cert(&op).await.fingerprint(), ours.fingerprint(), "the planted key is not served");
    let metrics = op.metrics().await;
    for key in [&planted, &retired] {
        assert!(!metrics.contains(key.fingerprint()), "no series for a planted key");
        let secret = Api::<Secret>::namespaced(client.clone(), &name)
            .get(if key.fingerprint() == planted.fingerprint() { "planted" } else { "retired" })
            .await
            .unwrap();
        assert_eq!(secret.metadata.finalizers, None, "the operator never touched it");
    }
}

/// What `mltenant rotate -f DIR --in-place` is run on may come from anyone with a pull request:
/// a symlink to a file outside the checkout is not written through (it was), a symlink loop and
/// a Helm template that is not YAML do not stop the run (they did), and a value whose old text
/// also stands in a comment is refused rather than the comment rewritten and the value kept
/// (the comment was rewritten and the file reported as rotated). Nothing is written unless
/// every file can be.
#[tokio::test]
async fn rotate_in_place_on_a_hostile_checkout_writes_only_its_own_bundle_values() {
    let client = admin().await;
    let (op, _ns, old, newer) = operator_with_newer_key(&client).await;
    let url = format!("http://127.0.0.1:{}", op.port());
    let name = unique("checkout");
    let manifest = |bundle_name: &str, value: &str| {
        format!(
            "apiVersion: mltenant.io/v1alpha1\nkind: SealedBundle\nmetadata:\n  name: {bundle_name}\nspec:\n  scope: Tenant\n  tenant: {name}\n  encryptedData:\n    A: {value}\n"
        )
    };
    let value = |v: &[u8]| sealed(&old, BundleScope::Tenant, &name, "", &[("A", v)])["A"].clone();
    let base = std::env::temp_dir().join(&name);
    let (checkout, outside) = (base.join("checkout"), base.join("outside"));
    std::fs::create_dir_all(checkout.join("chart/templates")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let outside_text = manifest("outside", &value(b"not part of the checkout"));
    std::fs::write(outside.join("bundle.yaml"), &outside_text).unwrap();
    std::os::unix::fs::symlink(outside.join("bundle.yaml"), checkout.join("linked.yaml")).unwrap();
    std::os::unix::fs::symlink(&outside, checkout.join("linked-dir")).unwrap();
    std::os::unix::fs::symlink(&checkout, checkout.join("loop")).unwrap();
    let template = "{{- if .Values.enabled }}\nkind: SealedBundle\n{{- end }}\n";
    std::fs::write(checkout.join("chart/templates/bundle.yaml"), template).unwrap();
    let own_text = manifest("own", &value(b"ours"));
    std::fs::write(checkout.join("own.yaml"), &own_text).unwrap();
    // A few kilobytes that serde_yaml expanded to gigabytes.
    let list = vec!["x"; 10_000].join(",");
    let bomb = format!("{}x: &a [{list}]\ny: [{}]\n", manifest("bomb", "AgA"), vec!["*a"; 10_000].join(","));
    std::fs::write(checkout.join("bomb.yaml"), &bomb).unwrap();

    let rotate = || mltenant(&["rotate", "-f", checkout.to_str().unwrap(), "--in-place", "--operator-url", &url]);
    let (ok, out, err) = rotate();
    assert!(ok, "{out}{err}");
    assert!(out.contains("own.yaml") && out.contains("1 of 3 files changed"), "{out}");
    assert!(out.contains("linked.yaml") && out.contains("symlink"), "says what it skipped: {out}");
    assert!(out.contains("skipped") && out.contains("bomb.yaml: a YAML alias at line"), "{out}");
    assert_eq!(std::fs::read_to_string(checkout.join("bomb.yaml")).unwrap(), bomb);
    assert_eq!(std::fs::read_to_string(outside.join("bundle.yaml")).unwrap(), outside_text, "not written through");
    assert_eq!(std::fs::read_to_string(checkout.join("chart/templates/bundle.yaml")).unwrap(), template);
    let own: SealedBundle = serde_yaml::from_str(&std::fs::read_to_string(checkout.join("own.yaml")).unwrap()).unwrap();
    let (code, answer) = op.post_bundle("/v1/verify", &own).await;
    assert!(code == 200 && answer.contains(newer.fingerprint()), "{code} {answer}");

    // The old value in a comment, the value itself a double-quoted scalar over two lines.
    let trap_value = value(b"trap");
    let (head, tail) = trap_value.split_at(trap_value.len() / 2);
    let trap =
        format!("# rotated before from: {trap_value}\n{}", manifest("trap", &format!("\"{head}\\\n      {tail}\"")));
    let parsed: SealedBundle = serde_yaml::from_str(&trap).unwrap();
    assert_eq!(parsed.spec.encrypted_data["A"], trap_value, "the file holds the value the operator gets");
    std::fs::write(checkout.join("trap.yaml"), &trap).unwrap();
    let own_before = std::fs::read_to_string(checkout.join("own.yaml")).unwrap();
    let (ok, out, err) = rotate();
    assert!(!ok, "refused: {out}");
    assert!(err.contains("trap.yaml") && err.trim().lines().count() == 1, "{err}");
    assert_eq!(std::fs::read_to_string(checkout.join("trap.yaml")).unwrap(), trap, "the trap untouched");
    assert_eq!(std::fs::read_to_string(checkout.join("own.yaml")).unwrap(), own_before, "nothing written");
    std::fs::remove_dir_all(&base).unwrap();
}

/// `mltenant rotate --format kubeseal` of a v2 bundle another cluster's key opens too: kubeseal's
/// format names one recipient, so the conversion dropped the other cluster without a word and
/// the manifest in Git stopped opening there. Refused in one line naming that cluster's key,
/// the file untouched; with `--format v2` the other cluster's stanza is kept and still opens.
#[tokio::test]
async fn rotating_to_kubeseal_format_never_drops_another_cluster() {
    let client = admin().await;
    let (op, _) = operator_with_own_keys(&client, &unique("run")).await;
    let ours = served_cert(&op).await;
    let other_cluster = SealingKey::generate(Duration::from_secs(3600 * 24)).unwrap();
    let name = unique("two-clusters");
    let label = crypto::label(BundleScope::Tenant, &name, "");
    let data = sealed_v2(&[&ours, other_cluster.certificate()], &label, &[("A", b"v")]);
    let text = format!(
        "apiVersion: mltenant.io/v1alpha1\nkind: SealedBundle\nmetadata:\n  name: {name}\nspec:\n  scope: Tenant\n  tenant: {name}\n  encryptedData:\n    A: {}\n",
        data["A"]
    );
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bundle.yaml");
    std::fs::write(&file, &text).unwrap();
    let url = format!("http://127.0.0.1:{}", op.port());
    let rotate = |extra: &[&str]| {
        let mut args = vec!["rotate", "-f", file.to_str().unwrap(), "--in-place", "--operator-url", &url];
        args.extend_from_slice(extra);
        mltenant(&args)
    };

    let (ok, out, err) = rotate(&["--format", "kubeseal"]);
    assert!(!ok, "refused: {out}");
    let other_id = crypto::key_id_hex(&other_cluster.certificate().key_id());
    assert!(err.contains(&other_id) && err.contains("keep format v2"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "nothing written");

    // `--format v2` (its query beside `?tenant=` used to reach the operator unreadable).
    let (ok, out, err) = rotate(&["--format", "v2"]);
    assert!(ok, "{out}{err}");
    let rotated: SealedBundle = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let raw = crypto::decode_base64(&rotated.spec.encrypted_data["A"]).unwrap();
    let opened = crypto::Opener::new(std::slice::from_ref(&other_cluster), &[], &label).open("A", &raw).unwrap();
    assert_eq!(opened.plaintext.as_slice(), b"v", "the other cluster still opens it");
    std::fs::remove_dir_all(&dir).unwrap();
}
