//! The kubectl habits of platform engineers, with the real kubectl built with the control
//! plane: `kubectl explain` describes every field, `kubectl get mlt,sb` shows what matters on
//! a converged and on a failing tenant, and the binary works as the `kubectl mltenant` plugin.

use std::collections::BTreeMap;
use std::process::Output;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use mltenant_operator::api::{BundleScope, SecretSpec};
use mltenant_operator::crypto::{Certificate, SealingKey};
use serde_json::Value;

use crate::harness::*;

/// Run the control plane's kubectl as the admin.
fn kubectl(args: &[&str]) -> Output {
    kubectl_command().args(args).output().expect("run kubectl")
}

fn stdout_of(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The field paths `kubectl explain --recursive` lists under `resource` (e.g. `mltenant.spec`).
fn recursive_fields(resource: &str) -> Vec<String> {
    let text = stdout_of(&["explain", resource, "--recursive"]);
    let mut stack: Vec<String> = Vec::new();
    let mut paths = Vec::new();
    let fields = text.split_once("FIELDS:\n").map(|(_, f)| f).unwrap_or_default();
    for line in fields.lines() {
        let Some((left, _type)) = line.split_once('\t') else { continue };
        let depth = (left.len() - left.trim_start().len()) / 2;
        stack.truncate(depth.saturating_sub(1));
        stack.push(left.trim().to_owned());
        paths.push(stack.join("."));
    }
    paths
}

#[tokio::test]
async fn kubectl_explain_describes_every_field() {
    // The API server publishes a new CRD's OpenAPI (what explain reads) shortly after install.
    wait_until("kubectl explain to know the MLTenant and SealedBundle kinds", TIMEOUT, || async {
        let outputs = [kubectl(&["explain", "mltenant.spec"]), kubectl(&["explain", "sealedbundle.spec"])];
        match outputs.iter().find(|o| !o.status.success()) {
            None => Ok(()),
            Some(failed) => Err(String::from_utf8_lossy(&failed.stderr).into_owned()),
        }
    })
    .await;
    let mut undescribed = Vec::new();
    let mut explained = 0;
    for root in ["mltenant.spec", "mltenant.status", "sealedbundle.spec", "sealedbundle.status"] {
        let fields = recursive_fields(root);
        assert!(fields.len() >= 4, "kubectl explain {root} --recursive lists too few fields: {fields:?}");
        for field in fields {
            let path = format!("{root}.{field}");
            let text = stdout_of(&["explain", &path]);
            let description = text.split_once("DESCRIPTION:\n").map(|(_, d)| d).unwrap_or_default();
            let first = description.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
            if first.is_empty() || first == "<empty>" || first.starts_with("FIELDS:") {
                undescribed.push(path);
            }
            explained += 1;
        }
    }
    assert!(explained >= 40, "only {explained} fields explained");
    assert!(undescribed.is_empty(), "kubectl explain shows no description for: {undescribed:#?}");

    // The CRDs as the API server serves them: every property under spec and status described.
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            let here = format!("{path}.{name}");
            if property["description"].as_str().is_none_or(str::is_empty) {
                missing.push(here.clone());
            }
            walk(property, &here, missing);
        }
        walk_items(schema, path, missing);
    }
    fn walk_items(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if schema["items"].is_object() {
            walk(&schema["items"], &format!("{path}[]"), missing);
        }
    }
    let crds = Api::<CustomResourceDefinition>::all(admin().await);
    let mut missing = Vec::new();
    for name in ["mltenants.mltenant.io", "sealedbundles.mltenant.io"] {
        let crd = serde_json::to_value(crds.get(name).await.unwrap()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for top in ["spec", "status"] {
            walk(&schema["properties"][top], &format!("{name}:{top}"), &mut missing);
        }
    }
    assert!(missing.is_empty(), "served CRD properties without a description: {missing:#?}");
}

/// `kubectl get` tables, by resource: the rows as column name -> value.
fn tables(text: &str) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let mut tables = BTreeMap::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines = block.lines();
        let header = lines.next().unwrap();
        // Column starts, from the header (values may be `<none>`, never wider than padding).
        let starts: Vec<usize> = header
            .char_indices()
            .filter(|(i, c)| *c != ' ' && (*i == 0 || header.as_bytes()[i - 1] == b' '))
            .map(|(i, _)| i)
            .collect();
        let names: Vec<String> = header.split_whitespace().map(str::to_owned).collect();
        let mut rows = Vec::new();
        let mut kind = String::new();
        for line in lines {
            let row: BTreeMap<String, String> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let end = starts.get(i + 1).copied().unwrap_or(line.len()).min(line.len());
                    (name.clone(), line.get(starts[i]..end).unwrap_or_default().trim().to_owned())
                })
                .collect();
            kind = row["NAME"].split('/').next().unwrap_or_default().to_owned();
            rows.push(row);
        }
        tables.insert(kind, rows);
    }
    tables
}

#[tokio::test]
async fn kubectl_get_shows_ready_reason_and_bundle_state_on_converged_and_failing_tenants() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let label = |b: &mut mltenant_operator::api::SealedBundle| {
        b.metadata.labels = Some([(TEST_LABEL.to_string(), op.run_id.clone())].into());
    };

    let good = unique("columns-ok");
    let expires = "2031-01-01T00:00:00Z";
    let mut b = bundle(
        &good,
        BundleScope::Tenant,
        Some(&good),
        None,
        sealed(&cert, BundleScope::Tenant, &good, "", &[("K", b"v")]),
    );
    b.spec.expires_at = Some(Time(expires.parse().unwrap()));
    label(&mut b);
    create_bundle(&client, &b).await;
    let mut t = tenant(&good, &op.run_id, &["dev", "production"]);
    t.spec.secrets = Some(vec![SecretSpec::new("ml-platform", &good)]);
    create_tenant(&client, &t).await;

    let bad = unique("columns-bad");
    let stranger = SealingKey::generate(std::time::Duration::from_secs(3600)).unwrap();
    let mut b = bundle(
        &bad,
        BundleScope::Tenant,
        Some(&bad),
        None,
        sealed(stranger.certificate(), BundleScope::Tenant, &bad, "", &[("K", b"v")]),
    );
    label(&mut b);
    create_bundle(&client, &b).await;
    let mut t = tenant(&bad, &op.run_id, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new("ml-platform", &bad)]);
    create_tenant(&client, &t).await;

    wait_condition(&client, &good, "Ready", "True", None).await;
    wait_condition(&client, &bad, "Ready", "False", Some("DecryptionFailed")).await;
    let selector = format!("{TEST_LABEL}={}", op.run_id);
    let (tenants, bundles) = wait_until("kubectl get mlt,sb to show both bundles' status", TIMEOUT, || async {
        let text = stdout_of(&["get", "mlt,sb", "-l", &selector]);
        let mut t = tables(&text);
        let tenants = t.remove("mltenant.mltenant.io").unwrap_or_default();
        let bundles = t.remove("sealedbundle.mltenant.io").unwrap_or_default();
        let reported = bundles.len() == 2 && bundles.iter().all(|b| !b["DECRYPTABLE"].is_empty());
        if tenants.len() == 2 && reported { Ok((tenants, bundles)) } else { Err(text) }
    })
    .await;
    let row = |rows: &[BTreeMap<String, String>], name: &str, kind: &str| {
        rows.iter()
            .find(|r| r["NAME"] == format!("{kind}/{name}"))
            .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
            .clone()
    };
    let columns =
        |r: &BTreeMap<String, String>, names: &[&str]| names.iter().map(|n| r[*n].clone()).collect::<Vec<_>>();

    let tenant_columns = ["READY", "REASON", "ENVIRONMENTS"];
    assert_eq!(tenants[0].keys().cloned().collect::<Vec<_>>(), ["AGE", "ENVIRONMENTS", "NAME", "READY", "REASON"]);
    assert_eq!(columns(&row(&tenants, &good, "mltenant.mltenant.io"), &tenant_columns), ["True", "Ready", "2/2"]);
    assert_eq!(
        columns(&row(&tenants, &bad, "mltenant.mltenant.io"), &tenant_columns),
        ["False", "DecryptionFailed", "1/1"]
    );
    let bundle_columns = ["SCOPE", "TENANT", "DECRYPTABLE", "REASON", "EXPIRES"];
    assert_eq!(
        columns(&row(&bundles, &good, "sealedbundle.mltenant.io"), &bundle_columns),
        ["Tenant", good.as_str(), "True", "Decryptable", expires]
    );
    assert_eq!(
        columns(&row(&bundles, &bad, "sealedbundle.mltenant.io"), &bundle_columns),
        // No expiresAt: the server prints an empty cell.
        ["Tenant", bad.as_str(), "False", "DecryptionFailed", ""]
    );

    // -o wide adds why a tenant is not Ready, and which key opens a bundle.
    let wide = tables(&stdout_of(&["get", "mlt,sb", "-l", &selector, "-o", "wide"]));
    let message = &row(&wide["mltenant.mltenant.io"], &bad, "mltenant.mltenant.io")["MESSAGE"];
    assert!(message.contains(&bad), "the Ready message names the bundle: {message}");
    let key = &row(&wide["sealedbundle.mltenant.io"], &good, "sealedbundle.mltenant.io")["KEY"];
    assert!(key.starts_with("SHA256:"), "{key}");
}

#[tokio::test]
async fn the_binary_works_as_the_kubectl_mltenant_plugin() {
    // kubectl finds plugins as kubectl-<name> executables on PATH.
    let dir = std::env::temp_dir().join(unique("kubectl-plugin"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mltenant"), dir.join("kubectl-mltenant")).unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let plugin = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = kubectl_command()
            .args(args)
            .env("PATH", &path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };

    let listed = String::from_utf8(plugin(&["plugin", "list"], "").stdout).unwrap();
    assert!(listed.contains("kubectl-mltenant"), "kubectl plugin list: {listed}");

    // Sealing through the plugin, offline with a certificate file, as a platform engineer does.
    let key = SealingKey::generate(std::time::Duration::from_secs(3600)).unwrap();
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, key.certificate().to_pem()).unwrap();
    let out = plugin(
        &[
            "mltenant",
            "seal",
            "--name",
            "plugin-bundle",
            "--scope",
            "tenant",
            "--tenant",
            "financial-ml",
            "--cert",
            cert.to_str().unwrap(),
            "--from-env-file",
            "-",
        ],
        "AWS_ACCESS_KEY_ID=minio\n",
    );
    assert!(out.status.success(), "kubectl mltenant seal: {}", String::from_utf8_lossy(&out.stderr));
    let sealed = String::from_utf8(out.stdout).unwrap();
    assert!(sealed.contains("kind: SealedBundle") && sealed.contains("AWS_ACCESS_KEY_ID:"), "{sealed}");
    assert!(!sealed.contains("minio"), "the plaintext is not in the output");
    let manifest = dir.join("bundle.yaml");
    std::fs::write(&manifest, &sealed).unwrap();
    let out = plugin(&["mltenant", "validate", "-f", manifest.to_str().unwrap()], "");
    assert!(out.status.success(), "kubectl mltenant validate: {}", String::from_utf8_lossy(&out.stderr));

    // Help and usage errors name the command as typed.
    let help = String::from_utf8(plugin(&["mltenant", "seal", "--help"], "").stdout).unwrap();
    assert!(help.contains("Usage: kubectl mltenant seal [OPTIONS]"), "{help}");
    let out = plugin(&["mltenant", "seal", "--bogus"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("Usage: kubectl mltenant seal") && !stderr.contains("Usage: mltenant"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
