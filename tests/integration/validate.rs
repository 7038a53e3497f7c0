//! `mltenant validate` agrees with the API server: every manifest of the corpus in
//! `tests/fixtures/validate/` (`valid/` and `invalid/`, each file saying why) gets the same
//! verdict from the offline check and from a server-side dry-run create with strict field
//! validation (what `kubectl apply` asks for), and the verdict its directory names.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube::Client;
use serde_json::Value;

use crate::harness::*;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/validate");

fn corpus(verdict: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(CORPUS).join(verdict))
        .expect("the corpus directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn validate(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mltenant"));
    command.arg("validate").args(args).env_remove("KUBECONFIG");
    if let Some(path) = kubeconfig {
        command.env("KUBECONFIG", path);
    }
    command.output().expect("run mltenant validate")
}

/// The API server's refusal: its message and the fields its causes name.
struct Refusal {
    message: String,
    fields: Vec<String>,
}

/// The API server's verdict: `Ok(())` when it creates the object, else why not. First a
/// dry-run create; when that accepts, a real create (deleted at once), because a dry run skips
/// the storage layer, which has checks of its own (a `resourceVersion` on create).
async fn server_verdict(client: &Client, document: &Value) -> Result<(), Refusal> {
    let plural = match document["kind"].as_str() {
        Some("MLTenant") => "mltenants",
        Some("SealedBundle") => "sealedbundles",
        other => panic!("the corpus holds only MLTenants and SealedBundles, not {other:?}"),
    };
    let collection = format!("/apis/mltenant.io/v1alpha1/{plural}");
    let mut created = None;
    for query in ["dryRun=All&fieldValidation=Strict", "fieldValidation=Strict"] {
        let request = http::Request::post(format!("{collection}?{query}"))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(document).unwrap())
            .unwrap();
        match client.request::<Value>(request).await {
            Ok(object) => created = Some(object),
            Err(kube::Error::Api(status)) if matches!(status.code, 400 | 422 | 500) => {
                let fields = status.details.iter().flat_map(|d| &d.causes).map(|c| c.field.clone());
                // Causes without a field, or for the object as a whole, name none.
                let fields = fields.filter(|f| !f.is_empty() && f != "<nil>").collect();
                return Err(Refusal { message: format!("{} ({query})", status.message), fields });
            }
            Err(other) => panic!("the API server could not judge the manifest: {other}"),
        }
    }
    // Nothing handles these objects (no test's operator selects them): delete at once, after
    // dropping any finalizer a manifest carries (nobody would remove it).
    let name = created.as_ref().and_then(|o| o["metadata"]["name"].as_str()).expect("a created object has a name");
    if created.as_ref().is_some_and(|o| o["metadata"]["finalizers"].is_array()) {
        let patch = http::Request::patch(format!("{collection}/{name}"))
            .header("Content-Type", "application/merge-patch+json")
            .body(br#"{"metadata":{"finalizers":null}}"#.to_vec())
            .unwrap();
        client.request::<Value>(patch).await.expect("drop the corpus object's finalizers");
    }
    let delete = http::Request::delete(format!("{collection}/{name}")).body(Vec::new()).unwrap();
    client.request::<Value>(delete).await.expect("delete the corpus object");
    Ok(())
}

#[tokio::test]
async fn validate_gives_the_api_servers_verdict_on_every_corpus_manifest() {
    let client = admin().await;
    let (valid, invalid) = (corpus("valid"), corpus("invalid"));
    assert!(
        valid.len() >= 10 && invalid.len() >= 30,
        "corpus too small: {} valid, {} invalid",
        valid.len(),
        invalid.len()
    );
    let mut disagreements = Vec::new();
    for (expected_valid, file) in valid.iter().map(|f| (true, f)).chain(invalid.iter().map(|f| (false, f))) {
        let text = std::fs::read_to_string(file).unwrap();
        let document: Value = serde_yaml::from_str(&text).unwrap();
        let server = server_verdict(&client, &document).await;
        let offline = validate(&["-f", file.to_str().unwrap()], None);
        let stderr = String::from_utf8_lossy(&offline.stderr).into_owned();
        let name = file.strip_prefix(CORPUS).unwrap().display().to_string();
        if server.is_ok() != expected_valid || offline.status.success() != expected_valid {
            disagreements.push(format!(
                "{name}: expected {}; API server: {}; validate: {}",
                if expected_valid { "valid" } else { "invalid" },
                server.as_ref().err().map_or("valid".to_owned(), |e| format!("invalid ({})", e.message)),
                if offline.status.success() { "valid".to_owned() } else { format!("invalid ({})", stderr.trim()) },
            ));
            continue;
        }
        if let Err(refusal) = &server {
            // One line per problem, each naming the file and the object ...
            for line in stderr.lines() {
                assert!(
                    line.starts_with(&format!("error: {} document 1 (", file.display())),
                    "{name}: not a one-line problem naming the manifest: {line}"
                );
            }
            // ... and every field the API server names is named by validate too.
            for field in &refusal.fields {
                if !stderr.lines().any(|l| l.contains(&format!("): {field}: "))) {
                    disagreements.push(format!("{name}: the API server names {field}, validate does not: {stderr}"));
                }
            }
        }
    }
    assert!(disagreements.is_empty(), "validate and the API server disagree:\n{}", disagreements.join("\n"));
}

#[tokio::test]
async fn server_dry_run_reports_the_api_servers_errors_by_field() {
    let kubeconfig = PathBuf::from(std::env::var_os("MLTENANT_TEST_ADMIN_KUBECONFIG").expect("admin kubeconfig"));
    let valid = Path::new(CORPUS).join("valid/tenant-full.yaml");
    let out = validate(&["--server-dry-run", "-f", valid.to_str().unwrap()], Some(&kubeconfig));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid: MLTenant financial-ml");

    let invalid = Path::new(CORPUS).join("invalid/secret-environments-undeclared.yaml");
    let out = validate(&["--server-dry-run", "-f", invalid.to_str().unwrap()], Some(&kubeconfig));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one offline line and one API server line: {stderr}");
    let message = "secrets[].environments must only name environments declared in spec.environments";
    assert!(lines[0].ends_with(&format!("(MLTenant corpus-tenant): spec: Invalid value: {message}")), "{stderr}");
    assert!(
        lines[1].contains("(MLTenant corpus-tenant): API server: spec: ") && lines[1].contains(message),
        "{stderr}"
    );

    // Without a kubeconfig, --server-dry-run says so in one line.
    let out = validate(&["--server-dry-run", "-f", valid.to_str().unwrap()], Some(Path::new("/nonexistent")));
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end().lines().count(), 1);
}
