//! Byte compatibility with kubeseal: values sealed by `kubeseal --raw` against the running
//! operator's served certificate are distributed with exactly the original bytes, for all
//! three scopes.

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::PostParams;
use mltenant_operator::api::{BundleScope, SealedBundle, SealedBundleSpec, SecretSpec};

use crate::harness::*;

fn kubeseal(cert: &std::path::Path, value: &std::path::Path, scope_args: &[&str]) -> String {
    let binary =
        std::env::var("MLTENANT_TEST_KUBESEAL").expect("MLTENANT_TEST_KUBESEAL (set by hack/test-integration.sh)");
    let out = Command::new(binary)
        .args(["--raw", "--cert", cert.to_str().unwrap(), &format!("--from-file={}", value.display())])
        .args(scope_args)
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("run kubeseal");
    assert!(out.status.success(), "kubeseal failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn values_sealed_by_kubeseal_are_distributed_byte_for_byte() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let name = unique("kubeseal");
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, op.get("/v1/cert.pem").await.1).unwrap();
    // Binary content, so any re-encoding on the way would show.
    let plaintext: Vec<u8> = (0..=255u8).rev().chain(b"\nend".iter().copied()).collect();
    let value = dir.join("value");
    std::fs::write(&value, &plaintext).unwrap();

    let cases: [(&str, BundleScope, Vec<&str>); 3] = [
        ("cluster", BundleScope::Cluster, vec!["--scope", "cluster-wide"]),
        ("tenant", BundleScope::Tenant, vec!["--scope", "namespace-wide", "--namespace", &name]),
        ("strict", BundleScope::Environment, vec!["--scope", "strict", "--namespace", &name, "--name", "production"]),
    ];
    let mut secrets = Vec::new();
    for (suffix, scope, args) in &cases {
        let bundle_name = format!("{name}-{suffix}");
        let spec = SealedBundleSpec {
            scope: *scope,
            tenant: (*scope != BundleScope::Cluster).then(|| name.clone()),
            environment: (*scope == BundleScope::Environment).then(|| "production".to_owned()),
            tenant_selector: (*scope == BundleScope::Cluster).then(LabelSelector::default),
            type_: None,
            template: None,
            expires_at: None,
            encrypted_data: BTreeMap::from([("value".to_owned(), kubeseal(&cert, &value, args))]),
        };
        Api::<SealedBundle>::all(client.clone())
            .create(&PostParams::default(), &SealedBundle::new(&bundle_name, spec))
            .await
            .unwrap();
        let environments = (*scope == BundleScope::Environment).then(|| vec!["production".to_owned()]);
        secrets.push(SecretSpec {
            name: format!("from-{suffix}"),
            bundle: bundle_name,
            environment_bundles: None,
            environments,
        });
    }
    let mut t = tenant(&name, &op.run_id, &["dev", "production"]);
    t.spec.secrets = Some(secrets);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "SecretsSynced", "True", None).await;

    for (namespace, secret) in [
        (name.clone(), "from-cluster"),
        (name.clone(), "from-tenant"),
        (name.clone(), "from-strict"),
        (format!("{name}-dev"), "from-tenant"),
    ] {
        let s = Api::<Secret>::namespaced(client.clone(), &namespace).get(secret).await.unwrap();
        assert_eq!(s.data.unwrap()["value"].0, plaintext, "{namespace}/{secret}");
    }
}
