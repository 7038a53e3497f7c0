//! Byte compatibility with kubeseal: values sealed by `kubeseal --raw` against the running
//! operator's served certificate are distributed with exactly the original bytes, for all
//! three scopes.

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mltenant_operator::api::{BundleScope, SecretSpec};

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
        let tenant_name = (*scope != BundleScope::Cluster).then_some(name.as_str());
        let environment = (*scope == BundleScope::Environment).then_some("production");
        let data = BTreeMap::from([("value".to_owned(), kubeseal(&cert, &value, args))]);
        create_bundle(&client, &bundle(&bundle_name, *scope, tenant_name, environment, data)).await;
        secrets.push(SecretSpec {
            environments: environment.map(|e| vec![e.to_owned()]),
            ..SecretSpec::new(format!("from-{suffix}"), bundle_name)
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
