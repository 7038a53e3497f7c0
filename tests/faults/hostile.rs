//! Hostile input that needs the control plane to itself: an object stored under an older CRD
//! (the test loosens the shared CRD for a moment), the largest objects a tenant author, a
//! bundle author and a namespace user can create, all at once (a memory budget), and objects
//! whose `managedFields` no typed client reads (they would break the other tests' lists while
//! stored; each test removes them).

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use mltenant_operator::api::labels;
use mltenant_operator::api::{
    BundleScope, EnvironmentSpec, MLTenant, MLTenantSpec, SealedBundle, SecretReader, SecretSpec, SecretTemplate,
};
use mltenant_operator::crypto::Certificate;
use serde_json::json;

use crate::harness::*;

const BUNDLES_CRD: &str = "sealedbundles.mltenant.io";

/// The shared CRD without its range rule on `spec.expiresAt`, as an older version of it had
/// none; put back as shipped when dropped (also when the test fails).
struct LooserCrd;

impl LooserCrd {
    async fn apply(client: &Client) -> Self {
        let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{BUNDLES_CRD}");
        let mut crd = get_json(client, &path).await.expect("the CRD");
        let pointer = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/expiresAt";
        let expires = crd.pointer_mut(pointer).and_then(|v| v.as_object_mut()).expect("expiresAt in the CRD");
        assert!(expires.remove("x-kubernetes-validations").is_some(), "the CRD has a rule on expiresAt");
        let request = http::Request::put(&path)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&crd).unwrap())
            .unwrap();
        client.request::<serde_json::Value>(request).await.expect("loosen the CRD");
        LooserCrd
    }
}

impl Drop for LooserCrd {
    fn drop(&mut self) {
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/mltenant.io.yaml");
        let applied = kubectl_command()
            .args(["apply", "--server-side", "--force-conflicts", "--field-manager", "mltenant-install", "-f", crds])
            .output()
            .expect("run kubectl");
        assert!(applied.status.success(), "putting the CRD back: {}", String::from_utf8_lossy(&applied.stderr));
    }
}

/// A tenant of `run` whose `dev` gets Secret `ml-platform` from `bundle`.
fn consumer(name: &str, run: &str, bundle: &str) -> MLTenant {
    let mut t = tenant(name, run, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new("ml-platform", bundle)]);
    t
}

/// A bundle labelled for `run`'s operator (which reports the status of those only).
async fn reported_bundle(client: &Client, run: &str, cert: &Certificate, name: &str, tenant: &str) {
    let data = sealed(cert, BundleScope::Tenant, tenant, "", &[("PASSWORD", b"s3cr3t")]);
    let mut b = bundle(name, BundleScope::Tenant, Some(tenant), None, data);
    b.metadata.labels = Some(BTreeMap::from([(TEST_LABEL.to_owned(), run.to_owned())]));
    create_bundle(client, &b).await;
}

/// One stored object must never stall a list or a controller. A SealedBundle whose `expiresAt`
/// is `9999-12-31T23:59:59Z` (a valid date-time to the API server, beyond the time library's
/// range) made the whole SealedBundle list fail to decode: every replica stayed "caches not
/// synced". The CRD now bounds the date, so the object is stored as an older CRD let it be
/// stored. A fresh replica must become ready, report the object (condition, Event, metric),
/// keep the consuming tenant's last good Secret, and carry on with everything else.
#[tokio::test]
async fn a_field_stored_under_an_older_crd_is_reported_and_stops_nothing() {
    let client = admin().await;
    let run = unique("run");
    let op = Operator::start(&run).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let name = unique("far");
    let b = format!("{name}-b");
    reported_bundle(&client, &run, &cert, &b, &name).await;
    create_tenant(&client, &consumer(&name, &run, &b)).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    let dev = format!("{name}-dev");
    let written = get_secret(&client, &dev, "ml-platform").await.unwrap();

    let path = format!("/apis/mltenant.io/v1alpha1/sealedbundles/{b}");
    let far = json!({"spec": {"expiresAt": "9999-12-31T23:59:59Z"}});
    // The CRD as shipped refuses the date.
    let refused = merge_patch(&client, &path, &far).await.unwrap_err();
    assert!(refused.to_string().contains("expiresAt"), "{refused}");
    {
        let _looser = LooserCrd::apply(&client).await;
        // The API server takes the loosened CRD within moments.
        wait_for("the loosened CRD to take the date", TIMEOUT, || async {
            merge_patch(&client, &path, &far).await.ok().map(|_| ())
        })
        .await;
    }
    let stored = get_json(&client, &path).await.unwrap();
    assert_eq!(stored["spec"]["expiresAt"], "9999-12-31T23:59:59Z", "stored as an older CRD allowed");

    // A fresh replica, as after a restart (the first hands over the Lease as it stops).
    let log = op.log_path().to_owned();
    op.terminate(TIMEOUT).await;
    let started = Instant::now();
    let fresh = Operator::start(&run).await;
    fresh.wait_leading().await;
    println!(
        "a fresh replica with an unreadable SealedBundle stored led with its caches synced in {:?}",
        started.elapsed()
    );

    // Reported on the object: condition, Event, metric; the field named, never its value.
    let condition = wait_until("the bundle reported", TIMEOUT, || async {
        let status = get_json(&client, &path).await.map_err(|e| e.to_string())?["status"].clone();
        let decryptable = status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Decryptable");
        match decryptable {
            Some(c) if c["reason"] == "InvalidObject" => Ok(c.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let message = condition["message"].as_str().unwrap();
    assert!(message.contains("spec.expiresAt") && !message.contains("9999"), "{message}");
    let events = kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "default")
        .list(&Default::default())
        .await
        .unwrap();
    let reported = events.items.iter().any(|e| {
        e.reason.as_deref() == Some("InvalidObject") && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&b)
    });
    assert!(reported, "no InvalidObject Event on the bundle");
    assert_eq!(fresh.metric("mltenant_invalid_objects", &[("kind", "SealedBundle")]).await, 1.0);
    // The tenant says why and keeps its last good Secret.
    let message = wait_condition(&client, &name, "SecretsSynced", "False", Some("InvalidObject")).await;
    assert!(message.contains("spec.expiresAt"), "{message}");
    let kept = get_secret(&client, &dev, "ml-platform").await.expect("the last good Secret was deleted");
    assert_eq!((kept.data, kept.metadata.resource_version), (written.data, written.metadata.resource_version));
    // Everything else goes on.
    let next = unique("far-next");
    reported_bundle(&client, &run, &cert, &format!("{next}-b"), &next).await;
    create_tenant(&client, &consumer(&next, &run, &format!("{next}-b"))).await;
    wait_condition(&client, &next, "Ready", "True", None).await;

    // Fixed, it is readable again: reported on no more, and the tenant recovers.
    merge_patch(&client, &path, &json!({"spec": {"expiresAt": "2030-01-01T00:00:00Z"}})).await.unwrap();
    wait_condition(&client, &name, "Ready", "True", None).await;
    wait_for("the metric to drop", TIMEOUT, || async {
        (fresh.metric("mltenant_invalid_objects", &[("kind", "SealedBundle")]).await == 0.0).then_some(())
    })
    .await;
    // No log line carries an object's body.
    let ciphertext = stored["spec"]["encryptedData"]["PASSWORD"].as_str().unwrap().to_owned();
    for text in [std::fs::read_to_string(&log).unwrap(), fresh.log()] {
        assert!(!text.contains(&ciphertext), "a log line quotes a ciphertext");
        let longest = text.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 4096, "a log line of {longest} bytes");
    }
}

/// The operator's memory stays within a budget whatever the people around it create: a tenant
/// author the largest MLTenant the API takes (16 environments, 32 Secrets, 16 readers, labels
/// at their bound), a bundle author the largest template, and a namespace user Secrets labelled
/// as the operator's with the largest annotations, in a namespace of theirs and on the tenant's
/// own Secrets. The budget holds for the replica that converged it all, and a fresh replica
/// becomes ready within it.
#[tokio::test]
async fn a_hostile_fleet_stays_within_the_memory_budget() {
    /// What this test holds the operator to (resident memory, debug build). The chart's limit
    /// is 256 MiB; `docs/security.md` has the figures of the release build.
    const BUDGET_KIB: u64 = 160 * 1024;
    let client = admin().await;
    let run = unique("run");
    let op = Operator::start(&run).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let idle = op.rss_kib().unwrap();

    // The bundle author: a Cluster-scope bundle of 128 KiB of values whose template is at its
    // bounds (64 labels, 64 annotations of 16 KiB together).
    let b = unique("fleet-b");
    let value = vec![b'v'; 64 * 1024];
    let values = sealed(&cert, BundleScope::Cluster, "", "", &[("BLOB_A", &value), ("BLOB_B", &value)]);
    let mut bundle_spec = bundle(&b, BundleScope::Cluster, None, None, values);
    let annotation = "a".repeat(16 * 1024 / 64 - 16);
    let label = "l".repeat(63);
    bundle_spec.spec.template = Some(SecretTemplate {
        labels: Some((0..64).map(|i| (format!("example.com/label-{i:02}"), label.clone())).collect()),
        annotations: Some((0..64).map(|i| (format!("example.com/a{i:02}"), annotation.clone())).collect()),
    });
    create_bundle(&client, &bundle_spec).await;
    // The tenant author: every list at its bound, every secret from that bundle.
    let name = unique("fleet");
    let envs: Vec<EnvironmentSpec> = (0..16)
        .map(|i| EnvironmentSpec {
            labels: Some((0..64).map(|j| (format!("example.com/e{j:02}"), "v".repeat(63))).collect()),
            ..EnvironmentSpec::named(&format!("e{i:02}"))
        })
        .collect();
    let mut t = MLTenant::new(&name, MLTenantSpec::new(envs));
    t.metadata.labels = Some(BTreeMap::from([(TEST_LABEL.to_owned(), run.clone())]));
    t.spec.secrets = Some((0..32).map(|i| SecretSpec::new(format!("secret-{i:02}"), &b)).collect());
    t.spec.secret_readers = Some((0..16).map(|i| SecretReader::new("argowf", format!("reader-{i:02}"))).collect());
    create_tenant(&client, &t).await;
    let converging = Instant::now();
    wait_until("the largest tenant to converge", TIMEOUT * 5, || async {
        let tenant = Api::<MLTenant>::all(client.clone()).get(&name).await.map_err(|e| e.to_string())?;
        if is_ready(&tenant) { Ok(()) } else { Err(format!("{:?}", tenant.status.map(|s| s.conditions))) }
    })
    .await;
    let converged = op.rss_kib().unwrap();
    println!("largest tenant (512 Secrets, 512 grants) converged in {:?}", converging.elapsed());

    // The namespace user: Secrets labelled as the tenant's, each with annotations at the API's
    // limit, in a namespace of theirs; and the same annotations on the tenant's Secrets.
    let rules = vec![rule("", &["secrets"], &["create", "patch"])];
    let user = client_as(&service_account_token(&client, "namespace-user", rules).await).await;
    let own = unique("user-ns");
    create_namespace(&client, &own, &[]).await;
    let blob = "x".repeat(240 * 1024);
    for i in 0..200 {
        let mut s = Secret::default();
        s.metadata.name = Some(format!("forged-{i}"));
        s.metadata.labels = Some(labels::managed(&name, "e00"));
        s.metadata.annotations = Some(BTreeMap::from([("example.com/blob".to_string(), blob.clone())]));
        Api::<Secret>::namespaced(user.clone(), &own).create(&PostParams::default(), &s).await.unwrap();
    }
    let reconciles = op.successful_reconciles("tenant").await;
    // (The tenant's Secrets carry 16 KiB of template annotations; the API takes 256 KiB.)
    let smaller = "x".repeat(200 * 1024);
    for i in 0..32 {
        let path = format!("/api/v1/namespaces/{name}-e{:02}/secrets/secret-{i:02}", i % 16);
        merge_patch(&user, &path, &json!({"metadata": {"annotations": {"example.com/blob": smaller}}})).await.unwrap();
    }
    wait_for("the operator to see the last of it", TIMEOUT, || async {
        (op.successful_reconciles("tenant").await > reconciles).then_some(())
    })
    .await;
    let hostile = op.rss_kib().unwrap();
    println!(
        "hostile fleet: RSS idle {idle} KiB, converged {converged} KiB, after 200 x 240 KiB labelled Secrets and 32 x 200 KiB annotations {hostile} KiB (budget {BUDGET_KIB} KiB)"
    );
    assert!(hostile <= BUDGET_KIB, "{hostile} KiB over the budget of {BUDGET_KIB} KiB");
    assert!(
        hostile.saturating_sub(converged) < 16 * 1024,
        "what the namespace user made cost {} KiB",
        hostile - converged
    );

    // A fresh replica with all of it stored becomes ready within the budget.
    op.terminate(TIMEOUT).await;
    let started = Instant::now();
    let fresh = Operator::start(&run).await;
    fresh.wait_leading().await;
    let ready_in = started.elapsed();
    let after_restart = wait_until("the fresh replica to have the tenant Ready", TIMEOUT, || async {
        let tenant = Api::<MLTenant>::all(client.clone()).get(&name).await.map_err(|e| e.to_string())?;
        if is_ready(&tenant) { Ok(fresh.rss_kib().unwrap_or(0)) } else { Err("not ready".into()) }
    })
    .await;
    println!("a fresh replica was ready in {ready_in:?}, RSS {after_restart} KiB");
    assert!(after_restart <= BUDGET_KIB, "a fresh replica took {after_restart} KiB");
    delete_tenant(&client, &name).await;
    wait_tenant_gone(&client, &name).await;
    Api::<SealedBundle>::all(client.clone()).delete(&b, &Default::default()).await.unwrap();
}

/// `managedFields` as anyone allowed to update an object may write them: a time in year 9999,
/// valid to the API server, beyond what the operator's time library reads.
fn far_field_times(api_version: &str) -> serde_json::Value {
    json!({"metadata": {"managedFields": [{
        "manager": "someone", "operation": "Update", "apiVersion": api_version,
        "time": "9999-12-31T23:59:59Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}},
    }]}})
}

/// Objects a test makes unreadable to typed clients (their `managedFields`), removed with
/// kubectl when the test ends, passed or failed: the tests after it list every tenant,
/// namespace or Secret. The tenants lose their finalizer by the operator's identity (the
/// tenant guard lets nobody else remove it), whether or not an operator still runs; the
/// namespaces go with everything in them.
struct Unreadable {
    tenants: Vec<String>,
    bundles: Vec<String>,
    namespaces: Vec<String>,
}

impl Drop for Unreadable {
    fn drop(&mut self) {
        let kubectl = |identity: &str, args: &[&str]| {
            kubectl_command().env("KUBECONFIG", kubeconfig_path(identity)).args(args).output().expect("run kubectl")
        };
        let delete = |resource: &str, names: &[String], wait: bool| {
            let mut args = vec!["delete", resource, "--ignore-not-found", "--timeout=120s"];
            args.extend(names.iter().map(String::as_str));
            args.push(if wait { "--wait=true" } else { "--wait=false" });
            let out = kubectl("MLTENANT_TEST_ADMIN_KUBECONFIG", &args);
            assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        delete("mltenants", &self.tenants, false);
        for tenant in &self.tenants {
            // (Fails when an operator finished the deletion first: nothing left to do.)
            let drop_finalizers = r#"{"metadata":{"finalizers":null}}"#;
            kubectl(
                "MLTENANT_TEST_OPERATOR_KUBECONFIG",
                &["patch", "mltenant", tenant, "--type=merge", "-p", drop_finalizers],
            );
        }
        delete("mltenants", &self.tenants, true);
        delete("sealedbundles", &self.bundles, true);
        delete("namespaces", &self.namespaces, true);
    }
}

/// One stored object must never stall a list or a controller. Anyone who may update an object
/// may set a time in its `managedFields`; year 9999 is a valid date to the API server and
/// beyond the time library's range, which made a whole list fail to decode: every restarted or
/// failed-over replica stayed "caches not synced" and reconciled nothing. Here a bundle author
/// does it to a SealedBundle, someone allowed to update Secrets to the tenant's own Secret and
/// to one labelled as ours elsewhere; a fresh replica must become ready and go on working.
#[tokio::test]
async fn one_unreadable_object_stops_no_replica() {
    let client = admin().await;
    let run = unique("run");
    let name = unique("unread");
    let b = unique("unread-b");
    let second = unique("unread-next");
    let (dev, other) = (format!("{name}-dev"), unique("elsewhere"));
    let _removed = Unreadable {
        tenants: vec![name.clone(), second.clone()],
        bundles: vec![b.clone(), format!("{second}-b")],
        namespaces: vec![dev.clone(), format!("{second}-dev"), other.clone()],
    };
    let (op, cert) = operator_with_bundle(&client, &run, RESYNC_1S, &name, &b).await;
    create_tenant(&client, &tenant_with_secret(&name, &run, &b)).await;
    wait_condition(&client, &name, "Ready", "True", None).await;

    create_namespace(&client, &other, &[]).await;
    let mut labelled = Secret::default();
    labelled.metadata.name = Some("decoy".into());
    labelled.metadata.labels = Some(labels::managed(&name, "dev"));
    Api::<Secret>::namespaced(client.clone(), &other).create(&PostParams::default(), &labelled).await.unwrap();
    let targets = [
        format!("/apis/mltenant.io/v1alpha1/sealedbundles/{b}"),
        format!("/api/v1/namespaces/{dev}/secrets/ml-platform"),
        format!("/api/v1/namespaces/{other}/secrets/decoy"),
    ];
    for (path, api_version) in targets.iter().zip(["mltenant.io/v1alpha1", "v1", "v1"]) {
        merge_patch(&client, path, &far_field_times(api_version)).await.unwrap();
        // The attack is real: the API server keeps the time.
        let stored = get_json(&client, path).await.unwrap();
        assert!(stored["metadata"]["managedFields"].to_string().contains("9999-12-31T23:59:59Z"), "{path}: {stored}");
    }

    // A fresh replica, as after a restart (the first hands over the Lease as it stops).
    let log = op.log_path().to_owned();
    op.terminate(TIMEOUT).await;
    let started = Instant::now();
    let fresh = Operator::start_with(&run, RESYNC_1S).await;
    fresh.wait_leading().await;
    println!("a fresh replica with unreadable times stored led with its caches synced in {:?}", started.elapsed());

    // It works on what it read: a new tenant converges, an edited Secret is put back.
    let data = sealed(&cert, BundleScope::Tenant, &second, "", &[("PASSWORD", b"n3xt")]);
    create_bundle(&client, &bundle(&format!("{second}-b"), BundleScope::Tenant, Some(&second), None, data)).await;
    create_tenant(&client, &tenant_with_secret(&second, &run, &format!("{second}-b"))).await;
    wait_condition(&client, &second, "Ready", "True", None).await;
    merge_patch(&client, &targets[1], &json!({"data": {"PASSWORD": "aGFuZC1lZGl0ZWQ="}})).await.unwrap();
    // (Read as JSON: the test's own typed client cannot read that time either.)
    wait_for("the edited Secret to be put back", TIMEOUT, || async {
        let secret = get_json(&client, &targets[1]).await.ok()?;
        (secret["data"]["PASSWORD"] == "czNjcjN0").then_some(())
    })
    .await;
    assert!(may(&client, ARGO, "get", &dev, Some("ml-platform")).await);

    // No log line carries an object's body (a list of ciphertexts, a Secret's data).
    let sealed_value = get_json(&client, &targets[0]).await.unwrap()["spec"]["encryptedData"]["PASSWORD"].to_string();
    for text in [std::fs::read_to_string(&log).unwrap(), fresh.log()] {
        assert!(!text.contains(sealed_value.trim_matches('"')), "a log line quotes a ciphertext");
        let longest = text.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 4096, "a log line of {longest} bytes");
    }
}

/// A `managedFields` entry whose field set nests `depth` levels: a valid field set to the API
/// server, past the 128 levels serde_json's parser takes.
fn deep_field_entry(api_version: &str, depth: usize) -> serde_json::Value {
    let mut fields = json!({});
    for i in 0..depth {
        fields = json!({ format!("f:k{i}"): fields });
    }
    json!({"metadata": {"managedFields": [{
        "manager": "someone", "operation": "Update", "apiVersion": api_version,
        "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": fields},
    }]}})
}

/// How deep a JSON text nests (no bracket inside its strings).
fn depth_of(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth -= 1,
            _ => {}
        }
    }
    deepest
}

/// One stored object never stalls a list, whatever its nesting: `managedFields` may nest as
/// deep as whoever updates the object likes, and kube's client reads a list with a parser that
/// stops at 128 levels (a security review found a list failing whole before the guard saw its
/// objects). A bundle author, a tenant author, a namespace owner and someone who may create
/// Secrets each nest 200 levels into an object the operator watches; a fresh replica leads with
/// its caches synced and goes on working.
#[tokio::test]
async fn fields_nested_past_the_parsers_depth_stop_no_replica() {
    let client = admin().await;
    let run = unique("run");
    let name = unique("deep");
    let b = format!("{name}-b");
    let (second, own) = (unique("deep-next"), unique("nests"));
    let _removed = Unreadable {
        tenants: vec![name.clone(), second.clone()],
        bundles: vec![b.clone(), format!("{second}-b")],
        namespaces: vec![format!("{name}-dev"), format!("{second}-dev"), own.clone()],
    };
    let (op, cert) = operator_with_bundle(&client, &run, RESYNC_1S, &name, &b).await;
    let attacker = client_as(
        &service_account_token(
            &client,
            "nester",
            vec![
                rule("mltenant.io", &["mltenants", "sealedbundles"], &["create", "patch", "get"]),
                rule("", &["secrets", "namespaces"], &["create", "patch", "get"]),
            ],
        )
        .await,
    )
    .await;
    let tenants = Api::<MLTenant>::all(attacker.clone());
    tenants.create(&PostParams::default(), &tenant_with_secret(&name, &run, &b)).await.unwrap();
    wait_condition(&client, &name, "Ready", "True", None).await;
    create_namespace(&client, &own, &[]).await;
    let mut decoy = Secret::default();
    decoy.metadata.name = Some("decoy".into());
    decoy.metadata.labels = Some(labels::managed(&name, "dev"));
    Api::<Secret>::namespaced(attacker.clone(), &own).create(&PostParams::default(), &decoy).await.unwrap();
    let targets = [
        (format!("/apis/mltenant.io/v1alpha1/sealedbundles/{b}"), "mltenant.io/v1alpha1"),
        (format!("/apis/mltenant.io/v1alpha1/mltenants/{name}"), "mltenant.io/v1alpha1"),
        (format!("/api/v1/namespaces/{name}-dev/secrets/ml-platform"), "v1"),
        (format!("/api/v1/namespaces/{own}/secrets/decoy"), "v1"),
        (format!("/api/v1/namespaces/{own}"), "v1"),
    ];
    for (path, api_version) in &targets {
        let mut patch = deep_field_entry(api_version, 200);
        if path.ends_with(&own) {
            patch["metadata"]["labels"] = json!({labels::MANAGED_BY_KEY: labels::MANAGED_BY, labels::TENANT: name});
        }
        // (Answers read as text: the test's own JSON parser stops at 128 levels too.)
        let request = http::Request::patch(path.as_str())
            .header("Content-Type", "application/merge-patch+json")
            .body(serde_json::to_vec(&patch).unwrap())
            .unwrap();
        attacker.request_text(request).await.unwrap();
        let stored = client.request_text(http::Request::get(path.as_str()).body(Vec::new()).unwrap()).await.unwrap();
        assert!(depth_of(&stored) > 128, "{path}: the API server did not keep the nesting");
    }

    op.terminate(TIMEOUT).await;
    let started = Instant::now();
    let fresh = Operator::start_with(&run, RESYNC_1S).await;
    fresh.wait_leading().await;
    println!(
        "a fresh replica with 200-level managedFields stored led with its caches synced in {:?}",
        started.elapsed()
    );
    let data = sealed(&cert, BundleScope::Tenant, &second, "", &[("PASSWORD", b"n3xt")]);
    create_bundle(&client, &bundle(&format!("{second}-b"), BundleScope::Tenant, Some(&second), None, data)).await;
    create_tenant(&client, &tenant_with_secret(&second, &run, &format!("{second}-b"))).await;
    wait_condition(&client, &second, "Ready", "True", None).await;
    // The tenant's Secret (its managedFields rewritten by the operator's apply since, or not)
    // edited, then put back; read as text, for the same reason.
    let edit = http::Request::patch(targets[2].0.as_str())
        .header("Content-Type", "application/merge-patch+json")
        .body(serde_json::to_vec(&json!({"data": {"PASSWORD": "aGFuZC1lZGl0ZWQ="}})).unwrap())
        .unwrap();
    client.request_text(edit).await.unwrap();
    wait_for("the edited Secret to be put back", TIMEOUT, || async {
        let get = http::Request::get(targets[2].0.as_str()).body(Vec::new()).unwrap();
        client.request_text(get).await.ok()?.contains(r#""PASSWORD":"czNjcjN0""#).then_some(())
    })
    .await;
}
