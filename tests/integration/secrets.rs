//! Credential distribution on the real control plane: bundles sealed to the operator's served
//! certificate become Secrets in every environment namespace; rotation propagates; drift is
//! reverted; every kind of bad input leaves the last good Secret in place with a clear reason,
//! an Event and a failure metric.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use mltenant_operator::api::labels;
use mltenant_operator::api::{BundleScope, MLTenant, SealedBundle, SealedBundleSpec, SecretSpec};
use mltenant_operator::crypto::{self, Certificate};
use serde_json::json;

use crate::harness::*;

/// Change a bundle's spec in one update (what committing an edited bundle does).
async fn edit_bundle(client: &Client, name: &str, change: impl Fn(&mut SealedBundleSpec)) {
    edit(&Api::<SealedBundle>::all(client.clone()), name, |b: &mut SealedBundle| change(&mut b.spec)).await;
}

/// Replace a bundle's sealed values (what committing a re-sealed bundle does).
async fn reseal(client: &Client, name: &str, data: BTreeMap<String, String>) {
    edit_bundle(client, name, |spec| spec.encrypted_data = data.clone()).await;
}

async fn secret(client: &Client, namespace: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await.unwrap()
}

fn value(s: &Secret, key: &str) -> Vec<u8> {
    s.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone()).unwrap_or_default()
}

async fn wait_value(client: &Client, namespace: &str, name: &str, key: &str, want: &[u8]) -> Secret {
    wait_for(&format!("Secret {namespace}/{name} key {key} to hold the expected value"), TIMEOUT, || async {
        secret(client, namespace, name).await.filter(|s| value(s, key) == want)
    })
    .await
}

/// A running operator, its served certificate, and a tenant `name` with `envs`.
struct Fixture {
    client: Client,
    op: Operator,
    cert: Certificate,
    name: String,
}

impl Fixture {
    async fn new(prefix: &str) -> Self {
        let client = admin().await;
        let op = Operator::start(&unique("run")).await;
        let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).expect("the operator serves its certificate");
        Fixture { client, op, cert, name: unique(prefix) }
    }

    async fn tenant(&self, envs: &[&str], secrets: Vec<SecretSpec>) -> MLTenant {
        let mut t = tenant(&self.name, &self.op.run_id, envs);
        t.spec.secrets = Some(secrets);
        create_tenant(&self.client, &t).await
    }

    /// Create a Tenant-scope bundle `name` for this fixture's tenant, sealed to the operator.
    async fn tenant_bundle(&self, name: &str, values: &[(&str, &[u8])]) -> SealedBundle {
        let data = sealed(&self.cert, BundleScope::Tenant, &self.name, "", values);
        let b = bundle(name, BundleScope::Tenant, Some(&self.name), None, data);
        create_bundle(&self.client, &b).await;
        b
    }

    fn ns(&self, env: &str) -> String {
        if env == "production" { self.name.clone() } else { format!("{}-{env}", self.name) }
    }
}

#[tokio::test]
async fn bundles_become_secrets_in_every_environment() {
    let f = Fixture::new("dist").await;
    let platform = unique("platform");
    let ghcr = unique("ghcr");
    let data = sealed(
        &f.cert,
        BundleScope::Tenant,
        &f.name,
        "",
        &[("AWS_ACCESS_KEY_ID", b"minio"), ("MLFLOW_TRACKING_URI", b"http://mlflow")],
    );
    let mut platform_bundle = bundle(&platform, BundleScope::Tenant, Some(&f.name), None, data);
    // Whole seconds: the API server stores times at second precision.
    let expires = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 10 * 24 * 3600).unwrap();
    platform_bundle.spec.expires_at = Some(Time(expires));
    platform_bundle.spec.template = Some(mltenant_operator::api::SecretTemplate {
        labels: Some([("team".into(), "fin".into())].into()),
        ..Default::default()
    });
    create_bundle(&f.client, &platform_bundle).await;
    let docker = br#"{"auths":{"ghcr.io":{"auth":"eDp5"}}}"#;
    let mut ghcr_bundle = bundle(
        &ghcr,
        BundleScope::Cluster,
        None,
        None,
        sealed(&f.cert, BundleScope::Cluster, "", "", &[(".dockerconfigjson", docker)]),
    );
    ghcr_bundle.spec.type_ = Some("kubernetes.io/dockerconfigjson".into());
    create_bundle(&f.client, &ghcr_bundle).await;
    let ghcr_spec = SecretSpec::new("ghcr", &ghcr).environments(&["production"]);
    let t = f.tenant(&["dev", "production"], vec![SecretSpec::new("ml-platform", &platform), ghcr_spec]).await;

    wait_condition(&f.client, &f.name, "SecretsSynced", "True", Some("Synced")).await;
    wait_condition(&f.client, &f.name, "Ready", "True", None).await;
    for env in ["dev", "production"] {
        let s = secret(&f.client, &f.ns(env), "ml-platform").await.expect("ml-platform distributed");
        assert_eq!(value(&s, "AWS_ACCESS_KEY_ID"), b"minio");
        assert_eq!(value(&s, "MLFLOW_TRACKING_URI"), b"http://mlflow");
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert_eq!(s.labels().get("team").map(String::as_str), Some("fin"), "template labels");
        assert_eq!(s.labels().get(labels::TENANT), Some(&f.name));
        assert_eq!(s.annotations().get(labels::BUNDLE), Some(&platform));
        assert!(s.annotations()[labels::SOURCE_HASH].starts_with("sha256:"));
        assert_eq!(s.annotations()[labels::EXPIRES_AT], expires.to_string());
        assert_eq!(s.owner_references()[0].uid, t.uid().unwrap());
    }
    let pull = secret(&f.client, &f.ns("production"), "ghcr").await.expect("ghcr in production");
    assert_eq!(pull.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    assert_eq!(value(&pull, ".dockerconfigjson"), docker);
    assert!(secret(&f.client, &f.ns("dev"), "ghcr").await.is_none(), "ghcr is limited to production");

    let message = wait_condition(&f.client, &f.name, "CredentialsExpiring", "True", Some("ExpiresSoon")).await;
    assert!(message.contains(&platform), "{message}");
    let status = Api::<MLTenant>::all(f.client.clone()).get(&f.name).await.unwrap().status.unwrap();
    let dev = status.environments.iter().find(|e| e.name == "dev").unwrap();
    assert_eq!(dev.secrets.len(), 1);
    assert!(dev.secrets[0].synced && dev.secrets[0].source_hash.as_deref().unwrap().starts_with("sha256:"));

    // Expiry series exist for every distributed Secret and go away with the tenant.
    let expiry = "mltenant_credential_expiration_timestamp_seconds";
    assert_eq!(
        f.op.metric(expiry, &[("tenant", &f.name), ("secret", "ml-platform")]).await,
        2.0 * expires.as_second() as f64
    );
    // Deleting the tenant revokes its Secrets. They carry an ownerReference, so the garbage
    // collector would delete them once the tenant is gone: held, the tenant stays, and the
    // operator has to.
    delete_held(&f.client, &f.name).await;
    let distributed = [(f.ns("dev"), "ml-platform"), (f.ns("production"), "ml-platform"), (f.ns("production"), "ghcr")];
    for (namespace, name) in &distributed {
        assert!(secret(&f.client, namespace, name).await.is_none(), "{namespace}/{name} outlived the cleanup");
    }
    let revoked: std::collections::BTreeSet<String> = distributed.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
    let expected: Vec<&str> = revoked.iter().map(String::as_str).collect();
    assert_eq!(wait_event_subjects(&f.client, &f.name, "SecretRemoved", &expected).await, revoked);
    release(&f.client, &f.name).await;
    wait_for("the expiry series to disappear", TIMEOUT, || async {
        (!f.op.metrics().await.contains(&format!("tenant=\"{}\"", f.name))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn resealing_propagates_and_drift_is_reverted() {
    let f = Fixture::new("rotate").await;
    let b = unique("creds");
    f.tenant_bundle(&b, &[("TOKEN", b"one")]).await;
    f.tenant(&["dev", "staging"], vec![SecretSpec::new("ml-platform", &b)]).await;
    for env in ["dev", "staging"] {
        wait_value(&f.client, &f.ns(env), "ml-platform", "TOKEN", b"one").await;
    }

    reseal(&f.client, &b, sealed(&f.cert, BundleScope::Tenant, &f.name, "", &[("TOKEN", b"two")])).await;
    for env in ["dev", "staging"] {
        wait_value(&f.client, &f.ns(env), "ml-platform", "TOKEN", b"two").await;
    }

    let api = Api::<Secret>::namespaced(f.client.clone(), &f.ns("dev"));
    let edit = json!({"data": {"TOKEN": "aGFja2Vk"}});
    api.patch("ml-platform", &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    wait_value(&f.client, &f.ns("dev"), "ml-platform", "TOKEN", b"two").await;
    api.delete("ml-platform", &DeleteParams::default()).await.unwrap();
    wait_value(&f.client, &f.ns("dev"), "ml-platform", "TOKEN", b"two").await;

    // Removing the secret from spec revokes it everywhere (the tenant exists, so no garbage
    // collector is involved: the operator deletes them, and says so).
    update_spec(&f.client, &f.name, |s| s.secrets = None).await;
    wait_for("ml-platform to be revoked", TIMEOUT, || async {
        let gone = secret(&f.client, &f.ns("dev"), "ml-platform").await.is_none()
            && secret(&f.client, &f.ns("staging"), "ml-platform").await.is_none();
        gone.then_some(())
    })
    .await;
    let (dev, staging) = (format!("{}/ml-platform", f.ns("dev")), format!("{}/ml-platform", f.ns("staging")));
    wait_event_subjects(&f.client, &f.name, "SecretRemoved", &[&dev, &staging]).await;
}

#[tokio::test]
async fn a_missing_bundle_is_reported_and_picked_up_when_it_appears() {
    let f = Fixture::new("missing").await;
    let b = unique("later");
    f.tenant(&["dev"], vec![SecretSpec::new("ml-platform", &b)]).await;
    let message = wait_condition(&f.client, &f.name, "SecretsSynced", "False", Some("BundleNotFound")).await;
    assert!(message.contains(&format!("SealedBundle {b} not found")), "{message}");
    assert!(
        f.op.metric("mltenant_decryption_failures_total", &[("bundle", &b), ("reason", "BundleNotFound")]).await >= 1.0
    );

    f.tenant_bundle(&b, &[("K", b"v")]).await;
    wait_value(&f.client, &f.ns("dev"), "ml-platform", "K", b"v").await;
    wait_condition(&f.client, &f.name, "SecretsSynced", "True", None).await;
}

/// The bad-input contract: start from a good Secret, break the bundle with `spoil`, and check
/// the condition reason, that the message names the bundle and `key`, the Event, the metric,
/// and that the last good Secret is untouched.
async fn bad_input(
    prefix: &str,
    reason: &str,
    metric_reason: &str,
    key: &str,
    spoil: impl AsyncFnOnce(&Fixture, &str),
) {
    let f = Fixture::new(prefix).await;
    let b = unique("bundle");
    f.tenant_bundle(&b, &[("A_KEY", b"good-a"), ("B_KEY", b"good-b")]).await;
    f.tenant(&["dev"], vec![SecretSpec::new("ml-platform", &b)]).await;
    let before = wait_value(&f.client, &f.ns("dev"), "ml-platform", "A_KEY", b"good-a").await;

    spoil(&f, &b).await;
    let message = wait_condition(&f.client, &f.name, "SecretsSynced", "False", Some(reason)).await;
    assert!(message.contains(&b) && message.contains(key), "message must name bundle {b} and key {key}: {message}");
    wait_condition(&f.client, &f.name, "Ready", "False", Some(reason)).await;
    assert!(
        f.op.metric(
            "mltenant_decryption_failures_total",
            // The bundle label may be a replacement bundle's; the tenant is unique to this test.
            &[("tenant", &f.name), ("reason", metric_reason)]
        )
        .await
            >= 1.0
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(f.client.clone(), "default")
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        events.items.iter().any(|e| e.reason.as_deref() == Some(reason)
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(f.name.as_str())),
        "no {reason} Event for {}",
        f.name
    );
    let after = secret(&f.client, &f.ns("dev"), "ml-platform").await.expect("the last good Secret stays");
    assert_eq!(after.data, before.data, "the last good Secret was modified");
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version, "the Secret was written");
}

async fn set_value(f: &Fixture, bundle: &str, key: &str, value: &str) {
    let patch = json!({"spec": {"encryptedData": {key: value}}});
    Api::<SealedBundle>::all(f.client.clone())
        .patch(bundle, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn value_not_base64() {
    bad_input("b64", "DecryptionFailed", "InvalidBase64", "B_KEY", async |f, b| {
        set_value(f, b, "B_KEY", "not*base64!").await
    })
    .await;
}

#[tokio::test]
async fn ciphertext_shorter_than_its_length_prefix() {
    // 0x02 0x00 announces a 512-byte RSA part; only three bytes follow.
    bad_input("short", "DecryptionFailed", "Truncated", "B_KEY", async |f, b| {
        set_value(f, b, "B_KEY", "AgABAgM=").await
    })
    .await;
}

#[tokio::test]
async fn ciphertext_shorter_than_two_bytes() {
    bad_input("tiny", "DecryptionFailed", "Truncated", "A_KEY", async |f, b| set_value(f, b, "A_KEY", "AA==").await)
        .await;
}

#[tokio::test]
async fn sealed_with_an_unknown_key() {
    bad_input("unknown-key", "DecryptionFailed", "NoKeyCouldDecrypt", "A_KEY", async |f, b| {
        let stranger = crypto::SealingKey::generate(std::time::Duration::from_secs(3600)).unwrap();
        let value = crypto::encode_base64(&crypto::seal(stranger.certificate(), f.name.as_bytes(), b"x").unwrap());
        set_value(f, b, "A_KEY", &value).await;
    })
    .await;
}

#[tokio::test]
async fn tampered_aes_part() {
    bad_input("tamper", "DecryptionFailed", "Tampered", "A_KEY", async |f, b| {
        let mut raw = crypto::seal(&f.cert, f.name.as_bytes(), b"good-a-but-longer").unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        set_value(f, b, "A_KEY", &crypto::encode_base64(&raw)).await;
    })
    .await;
}

#[tokio::test]
async fn tenant_bundle_of_another_team() {
    bad_input("other-team", "ScopeMismatch", "ScopeMismatch", "sealed for tenant", async |f, b| {
        // Re-point the bundle at another team: even with the ciphertext unchanged, it is refused.
        let patch = json!({"spec": {"tenant": "someone-else"}});
        Api::<SealedBundle>::all(f.client.clone())
            .patch(b, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn environment_bundle_used_in_another_environment() {
    bad_input("other-env", "ScopeMismatch", "ScopeMismatch", "sealed for environment", async |f, b| {
        let data = sealed(&f.cert, BundleScope::Environment, &f.name, "production", &[("A_KEY", b"prod")]);
        let prod_only = bundle(&format!("{b}-prod"), BundleScope::Environment, Some(&f.name), Some("production"), data);
        create_bundle(&f.client, &prod_only).await;
        update_spec(&f.client, &f.name, |s| s.secrets.as_mut().unwrap()[0].bundle = format!("{b}-prod")).await;
    })
    .await;
}

#[tokio::test]
async fn a_value_replayed_from_another_tenant_does_not_open() {
    // The claims say this tenant, but the value was sealed for another: the label comes from
    // the consumer, so it cannot open.
    bad_input("replay", "DecryptionFailed", "NoKeyCouldDecrypt", "B_KEY", async |f, b| {
        let value = sealed(&f.cert, BundleScope::Tenant, "another-team", "", &[("B_KEY", b"theirs")]);
        set_value(f, b, "B_KEY", &value["B_KEY"]).await;
    })
    .await;
}

#[tokio::test]
async fn one_bad_value_among_good_ones_leaves_the_whole_secret() {
    bad_input("one-bad", "DecryptionFailed", "Tampered", "B_KEY", async |f, b| {
        // A_KEY gets a new good value, B_KEY a broken one: nothing of the new content is written.
        let fresh = sealed(&f.cert, BundleScope::Tenant, &f.name, "", &[("A_KEY", b"new-a")]);
        let mut broken = crypto::seal(&f.cert, f.name.as_bytes(), b"new-b").unwrap();
        let last = broken.len() - 1;
        broken[last] ^= 0xff; // in the AES-GCM tag
        let data = BTreeMap::from([
            ("A_KEY".to_string(), fresh["A_KEY"].clone()),
            ("B_KEY".to_string(), crypto::encode_base64(&broken)),
        ]);
        reseal(&f.client, b, data).await;
    })
    .await;
}

/// A dockerconfigjson bundle whose payload is `payload`: type and content change in one
/// commit, as they would in Git.
async fn invalid_docker_payload(prefix: &str, named: &str, payload: &'static [u8]) {
    bad_input(prefix, "InvalidPayload", "InvalidPayload", named, async |f, b| {
        let data = sealed(&f.cert, BundleScope::Tenant, &f.name, "", &[(".dockerconfigjson", payload)]);
        edit_bundle(&f.client, b, |spec| {
            spec.encrypted_data = data.clone();
            spec.type_ = Some("kubernetes.io/dockerconfigjson".into());
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn dockerconfigjson_that_is_not_json() {
    invalid_docker_payload("docker-json", ".dockerconfigjson", b"user:password").await;
}

#[tokio::test]
async fn dockerconfigjson_without_auths() {
    invalid_docker_payload("docker-auths", "auths", br#"{"credsStore":"desktop"}"#).await;
}

#[tokio::test]
async fn cluster_bundle_outside_its_tenant_selector() {
    bad_input("selector", "ScopeMismatch", "ScopeMismatch", "tenantSelector", async |f, b| {
        let data = sealed(&f.cert, BundleScope::Cluster, "", "", &[("A_KEY", b"shared")]);
        let mut shared = bundle(&format!("{b}-shared"), BundleScope::Cluster, None, None, data);
        shared.spec.tenant_selector =
            Some(LabelSelector { match_labels: Some([("tier".into(), "gold".into())].into()), ..Default::default() });
        create_bundle(&f.client, &shared).await;
        update_spec(&f.client, &f.name, |s| s.secrets.as_mut().unwrap()[0].bundle = format!("{b}-shared")).await;
    })
    .await;
}

#[tokio::test]
async fn payload_larger_than_one_mebibyte() {
    bad_input("huge", "DecryptionFailed", "TooLarge", "B_KEY", async |f, b| {
        let huge = crypto::encode_base64(&vec![7u8; crypto::MAX_SEALED_LEN + 1]);
        set_value(f, b, "B_KEY", &huge).await;
    })
    .await;
}

#[tokio::test]
async fn bundle_status_verify_and_rotate() {
    let f = Fixture::new("verify").await;
    let b = unique("checked");
    // Labelled for this test's operator, which reports status only on its own bundles.
    let data = sealed(&f.cert, BundleScope::Tenant, &f.name, "", &[("K", b"v")]);
    let mut good = bundle(&b, BundleScope::Tenant, Some(&f.name), None, data);
    good.metadata.labels = Some([(TEST_LABEL.to_string(), f.op.run_id.clone())].into());
    create_bundle(&f.client, &good).await;

    // The bundle controller reports Decryptable with the opening key's fingerprint.
    let api = Api::<SealedBundle>::all(f.client.clone());
    let status = wait_for("Decryptable=True", TIMEOUT, || async {
        let s = api.get(&b).await.ok()?.status?;
        s.conditions.iter().any(|c| c.type_ == "Decryptable" && c.status == "True").then_some(s)
    })
    .await;
    assert_eq!(status.key_fingerprint.as_deref(), Some(f.cert.fingerprint()));
    wait_for("mltenant_bundle_decryptable = 1", TIMEOUT, || async {
        (f.op.metric("mltenant_bundle_decryptable", &[("bundle", &b)]).await == 1.0).then_some(())
    })
    .await;
    assert!(f.op.metric("mltenant_bundles_by_sealing_key", &[("fingerprint", f.cert.fingerprint())]).await >= 1.0);

    // /v1/verify answers without revealing anything; /v1/rotate re-seals to the newest key
    // (both take the bundle as JSON, with its tenant in the URL, as the CLI sends it).
    let (code, body) = f.op.post_bundle("/v1/verify", &good).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(f.cert.fingerprint()) && !body.contains("\"v\""), "{body}");
    let (code, rotated) = f.op.post_bundle("/v1/rotate", &good).await;
    assert_eq!(code, 200, "{rotated}");
    let rotated: SealedBundle = serde_yaml::from_str(&rotated).unwrap();
    assert_ne!(rotated.spec.encrypted_data["K"], good.spec.encrypted_data["K"], "fresh ciphertext");
    let (code, _) = f.op.post_bundle("/v1/verify", &rotated).await;
    assert_eq!(code, 200);

    let mut tampered = good.clone();
    tampered.spec.encrypted_data.insert("K".into(), "AgABAgM=".into());
    let (code, body) = f.op.post_bundle("/v1/verify", &tampered).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("DecryptionFailed") && body.contains("key K"), "{body}");

    // The bundle itself breaks: status and gauge follow.
    set_value(&f, &b, "K", "AgABAgM=").await;
    wait_for("Decryptable=False", TIMEOUT, || async {
        let s = api.get(&b).await.ok()?.status?;
        s.conditions
            .iter()
            .any(|c| c.type_ == "Decryptable" && c.status == "False" && c.message.contains("key K"))
            .then_some(())
    })
    .await;
    wait_for("mltenant_bundle_decryptable = 0", TIMEOUT, || async {
        (f.op.metric("mltenant_bundle_decryptable", &[("bundle", &b)]).await == 0.0
            && f.op.metrics().await.contains(&format!("mltenant_bundle_decryptable{{bundle=\"{b}\"}} 0")))
        .then_some(())
    })
    .await;

    // The oracle is rate-limited for everyone together.
    let mut limited = false;
    for _ in 0..30 {
        limited |= f.op.post_bundle("/v1/verify", &good).await.0 == 429;
    }
    assert!(limited, "30 immediate verify calls were never rate-limited");
}
