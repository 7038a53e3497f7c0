//! `mltenant validate` agrees with the API server as users reach it, through kubectl: every
//! manifest of the corpus in `tests/fixtures/validate/` (each file saying why) is given as a
//! file both to `mltenant validate -f` and to the real kubectl (`kubectl create -f`, which reads
//! the YAML itself, as YAML 1.1, and asks for strict field validation). `valid/`: both accept.
//! `invalid/`: both refuse, and validate names every field the server names and repeats the
//! message of every CEL rule the server reports. `operator-only/`: the API server accepts what
//! validate refuses on the operator's behalf, and validate's lines say so.

use std::path::{Path, PathBuf};
use std::process::Output;

use kube::api::{Api, PostParams};
use kube::{Client, CustomResourceExt};
use mltenant_operator::api::{BundleScope, MLTenant, MLTenantSpec, SealedBundle, SealedBundleSpec};
use serde_json::{Value, json};

use crate::harness::*;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/validate");

/// What validate prints on a line of the operator's own checks.
const OPERATOR_CHECK: &str = "Invalid value (the operator's own check; the API server accepts it)";

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
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mltenant"));
    command.arg("validate").args(args).env_remove("KUBECONFIG");
    if let Some(path) = kubeconfig {
        command.env("KUBECONFIG", path);
    }
    command.output().expect("run mltenant validate")
}

/// kubectl's refusal of a manifest: what it printed, the fields it names, the unknown fields
/// it names and the causes' messages.
#[derive(Debug)]
struct Refusal {
    output: String,
    fields: Vec<String>,
    unknown_fields: Vec<String>,
    messages: Vec<String>,
}

/// Read kubectl's error output. An invalid object (422) is printed as
/// `The MLTenant "name" is invalid: FIELD: MESSAGE`, or with one `* FIELD: MESSAGE` line per
/// cause; a strict-decoding refusal (400) names unknown fields in its message; an apiVersion
/// the server does not serve and metadata that does not decode are refused by kubectl itself,
/// before asking the server. Anything else (an internal error, no connection, forbidden) is
/// no verdict on the manifest and fails the test: no corpus case expects one.
fn refusal(file: &Path, stderr: &str) -> Refusal {
    let output = stderr.trim().to_owned();
    let (mut fields, mut unknown_fields, mut messages) = (Vec::new(), Vec::new(), Vec::new());
    if let Some((_, causes)) = output.split_once(" is invalid: ").filter(|_| output.starts_with("The ")) {
        for cause in causes.lines().map(|l| l.trim().trim_start_matches("* ")).filter(|l| !l.is_empty()) {
            let (field, message) = cause.split_once(": ").unwrap_or(("", cause));
            // Causes for the object as a whole name no field.
            if !field.is_empty() && field != "<nil>" {
                fields.push(field.to_owned());
            }
            messages.push(message.to_owned());
        }
    } else if output.starts_with("Error from server (BadRequest): ") {
        for unknown in output.split("unknown field \"").skip(1) {
            unknown_fields.push(unknown.split('"').next().unwrap().to_owned());
        }
    } else if output.starts_with("error: unable to decode ") {
        // kubectl itself refuses what does not decode into object metadata (a label value
        // that YAML 1.1 made a boolean), naming the Go field: `ObjectMeta.metadata.labels`.
        if let Some((_, rest)) = output.split_once("Go struct field ObjectMeta.") {
            fields.push(rest.split_whitespace().next().unwrap().to_owned());
        }
    } else {
        // Only for an apiVersion the server does not serve: the CRDs are installed.
        assert!(
            output.starts_with("error: resource mapping not found for name: ")
                && !output.contains("\"mltenant.io/v1alpha1\""),
            "kubectl could not judge {}: {output}",
            file.display()
        );
    }
    Refusal { output, fields, unknown_fields, messages }
}

/// The API server's verdict on `file` through kubectl: `Ok(())` when it creates the object,
/// else why not. First `kubectl create --dry-run=server`; when that accepts, a real create
/// (deleted at once), because a dry run skips the storage layer, which has checks of its own.
async fn server_verdict(client: &Client, file: &Path) -> Result<(), Refusal> {
    let mut created = Value::Null;
    for dry_run in [true, false] {
        let mut args = vec!["create", "-o", "json", "-f", file.to_str().unwrap()];
        if dry_run {
            args.push("--dry-run=server");
        }
        let out = kubectl_command().args(&args).output().expect("run kubectl");
        if !out.status.success() {
            return Err(refusal(file, &String::from_utf8_lossy(&out.stderr)));
        }
        created = serde_json::from_slice(&out.stdout).expect("kubectl create -o json prints the object");
    }
    // Nothing handles these objects (no test's operator selects them): delete at once, after
    // dropping any finalizer a manifest carries (nobody would remove it).
    let collection = format!(
        "/apis/mltenant.io/v1alpha1/{}",
        if created["kind"] == "MLTenant" { "mltenants" } else { "sealedbundles" }
    );
    let name = created["metadata"]["name"].as_str().expect("a created object has a name");
    if created["metadata"]["finalizers"].is_array() {
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

/// `field` and the fields above it: `spec.a[0].b`, `spec.a[0]`, `spec.a`, `spec`.
fn ancestors(field: &str) -> impl Iterator<Item = &str> {
    let ends = field.match_indices(['.', '[']).map(|(i, _)| i).rev();
    std::iter::once(field).chain(ends.map(|i| &field[..i]))
}

/// The messages of the CRDs' CEL rules (`x-kubernetes-validations`).
fn rule_messages() -> Vec<String> {
    fn walk(value: &Value, messages: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                let rules = map.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten();
                messages.extend(rules.filter_map(|r| r["message"].as_str()).map(str::to_owned));
                map.values().for_each(|v| walk(v, messages));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, messages)),
            _ => {}
        }
    }
    let mut messages = Vec::new();
    for crd in [MLTenant::crd(), SealedBundle::crd()] {
        walk(&serde_json::to_value(crd).unwrap(), &mut messages);
    }
    assert!(messages.len() >= 10, "the CRDs' rule messages: {messages:?}");
    messages
}

#[tokio::test]
async fn validate_gives_the_api_servers_verdict_on_every_corpus_manifest() {
    let client = admin().await;
    let (valid, invalid, operator_only) = (corpus("valid"), corpus("invalid"), corpus("operator-only"));
    assert!(
        valid.len() >= 10 && invalid.len() >= 30 && operator_only.len() >= 3,
        "corpus too small: {} valid, {} invalid, {} operator-only",
        valid.len(),
        invalid.len(),
        operator_only.len()
    );
    let rules = rule_messages();
    let mut disagreements = Vec::new();
    // How many server errors were compared, so that a change in kubectl's output that this
    // test no longer reads cannot make it pass by comparing nothing.
    let (mut fields_compared, mut rule_messages_compared) = (0, 0);
    let cases = valid.iter().map(|f| ("valid", f));
    let cases = cases.chain(invalid.iter().map(|f| ("invalid", f)));
    for (expected, file) in cases.chain(operator_only.iter().map(|f| ("operator-only", f))) {
        let server = server_verdict(&client, file).await;
        let offline = validate(&["-f", file.to_str().unwrap()], None);
        let stderr = String::from_utf8_lossy(&offline.stderr).into_owned();
        let name = file.strip_prefix(CORPUS).unwrap().display().to_string();
        let server_accepts = expected != "invalid";
        let validate_accepts = expected == "valid";
        if server.is_ok() != server_accepts || offline.status.success() != validate_accepts {
            disagreements.push(format!(
                "{name}: expected {expected}; API server (kubectl): {}; validate: {}",
                server.as_ref().err().map_or("valid".to_owned(), |e| format!("invalid ({})", e.output)),
                if offline.status.success() { "valid".to_owned() } else { format!("invalid ({})", stderr.trim()) },
            ));
            continue;
        }
        if !offline.status.success() {
            // One line per problem, each naming the file and the object.
            for line in stderr.lines() {
                assert!(
                    line.starts_with(&format!("error: {} document 1 (", file.display())),
                    "{name}: not a one-line problem naming the manifest: {line}"
                );
            }
        }
        if expected == "operator-only" {
            // The API server took it: every line must say whose check refuses it.
            for line in stderr.lines().filter(|l| !l.contains(OPERATOR_CHECK)) {
                disagreements.push(format!("{name}: not marked as the operator's own check: {line}"));
            }
        }
        if let Err(refusal) = &server {
            // Every field the API server (or kubectl) names is named by validate too (a map
            // field also by one of its keys: `metadata.labels[team]`) ...
            fields_compared += refusal.fields.len() + refusal.unknown_fields.len();
            for field in &refusal.fields {
                if !stderr.lines().any(|l| l.contains(&format!("): {field}: ")) || l.contains(&format!("): {field}[")))
                {
                    disagreements.push(format!("{name}: the API server names {field}, validate does not: {stderr}"));
                }
            }
            // ... as is every unknown field, or the field above it that validate refused first
            // (the server's strict decoder calls `name` in an object given for a list
            // `spec.environments.name`) ...
            for field in &refusal.unknown_fields {
                let mut named = ancestors(field).map(|f| format!("): {f}: "));
                if !named.any(|f| stderr.contains(&f)) {
                    disagreements.push(format!("{name}: the API server names {field}, validate does not: {stderr}"));
                }
            }
            // ... and a CEL rule's error carries the rule's message in both (the same text by
            // construction: validate evaluates the CRD's own rules).
            for message in refusal.messages.iter().filter_map(|m| rules.iter().find(|r| m.contains(r.as_str()))) {
                rule_messages_compared += 1;
                if !stderr.contains(message.as_str()) {
                    disagreements.push(format!("{name}: the API server says {message:?}, validate does not: {stderr}"));
                }
            }
        }
    }
    assert!(disagreements.is_empty(), "validate and the API server disagree:\n{}", disagreements.join("\n"));
    assert!(
        fields_compared >= 30 && rule_messages_compared >= 20,
        "too few server errors compared: {fields_compared} fields, {rule_messages_compared} rule messages"
    );
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

    // What the API server is sent is the manifest as kubectl reads it: `no` is false (valid),
    // an unquoted `yes` label value is true (refused by the server too).
    let no = Path::new(CORPUS).join("valid/tenant-adopt-no.yaml");
    let out = validate(&["--server-dry-run", "-f", no.to_str().unwrap()], Some(&kubeconfig));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yes = Path::new(CORPUS).join("invalid/env-label-yes.yaml");
    let out = validate(&["--server-dry-run", "-f", yes.to_str().unwrap()], Some(&kubeconfig));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.lines().any(|l| l.contains("API server: spec.environments[0].labels.team: ")),
        "the API server is sent the boolean: {stderr}"
    );

    // Without a kubeconfig, --server-dry-run says so in one line.
    let out = validate(&["--server-dry-run", "-f", valid.to_str().unwrap()], Some(Path::new("/nonexistent")));
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end().lines().count(), 1);
}

/// Rule 9 holds for status too: every replica reads the stored status back, so a status writer
/// other than the operator (anyone granted `mltenants/status` or `sealedbundles/status`) must
/// not be able to store what the operator could not read or should not repeat. First a status
/// at every bound is stored, then each value one past its bound is refused, naming its field.
#[tokio::test]
async fn the_api_server_bounds_what_a_status_writer_stores() {
    let client = admin().await;
    let (tenant, bundle) = (unique("status-bounds-t"), unique("status-bounds-b"));
    let tenants = Api::<MLTenant>::all(client.clone());
    let bundles = Api::<SealedBundle>::all(client.clone());
    tenants
        .create(&PostParams::default(), &MLTenant::new(&tenant, MLTenantSpec::with_environments(&["dev"])))
        .await
        .unwrap();
    let data = [("K".to_owned(), "x".to_owned())].into();
    let spec = SealedBundleSpec { tenant: Some(tenant.clone()), ..SealedBundleSpec::new(BundleScope::Tenant, data) };
    bundles.create(&PostParams::default(), &SealedBundle::new(&bundle, spec)).await.unwrap();

    // Written as the operator: the tenant guard lets nobody else write a tenant's status before
    // the operator has recorded what it owns (tests/integration/hostile.rs), and the schema is
    // what is tested here.
    let writer = operator_identity().await;
    let condition = |type_: &str| {
        json!({"type": type_, "status": "True", "reason": "Synced", "message": "m".repeat(32 * 1024),
            "lastTransitionTime": "8999-12-31T23:59:59Z", "observedGeneration": 0})
    };
    let at_bounds_tenant = json!({"observedGeneration": 0, "environmentsReady": "16/16",
        "conditions": (0..16).map(|i| condition(&format!("example.com/C{i}"))).collect::<Vec<_>>(),
        "environments": [{"name": "d".repeat(63), "namespace": "n".repeat(63), "ready": false, "reason": "R".repeat(1024),
            "secrets": [{"name": "s".repeat(253), "bundle": "b".repeat(253), "synced": true,
                "sourceHash": "h".repeat(128), "expiresAt": "1970-01-01T00:00:00Z"}]}]});
    let at_bounds_bundle = json!({"observedGeneration": 0, "keyFingerprint": "f".repeat(128),
        "keyFingerprints": (0..128).map(|_| "f".repeat(128)).collect::<Vec<_>>(),
        "conditions": [condition("Decryptable")]});
    let status = |resource: &str, name: &str, value: &Value| {
        let patch = json!({"status": value});
        http::Request::patch(format!("/apis/mltenant.io/v1alpha1/{resource}/{name}/status"))
            .header("Content-Type", "application/merge-patch+json")
            .body(serde_json::to_vec(&patch).unwrap())
            .unwrap()
    };
    writer
        .request::<Value>(status("mltenants", &tenant, &at_bounds_tenant))
        .await
        .expect("a status at its bounds is stored");
    writer
        .request::<Value>(status("sealedbundles", &bundle, &at_bounds_bundle))
        .await
        .expect("a status at its bounds is stored");

    // (resource, what to change in the status at its bounds, the field the API server names)
    type Change<'a> = Box<dyn Fn(&mut Value) + 'a>;
    let cases: Vec<(&str, Change, &str)> = vec![
        ("mltenants", Box::new(|s| s["observedGeneration"] = json!(-1)), "status.observedGeneration"),
        ("mltenants", Box::new(|s| s["environmentsReady"] = json!("9".repeat(33))), "status.environmentsReady"),
        (
            "mltenants",
            Box::new(|s| s["conditions"].as_array_mut().unwrap().push(condition("example.com/C16"))),
            "status.conditions",
        ),
        (
            "mltenants",
            Box::new(|s| s["conditions"][0]["lastTransitionTime"] = json!("9999-12-31T23:59:59Z")),
            "status.conditions[0].lastTransitionTime",
        ),
        (
            "mltenants",
            Box::new(|s| s["conditions"][0]["lastTransitionTime"] = json!("1969-12-31T23:59:59Z")),
            "status.conditions[0].lastTransitionTime",
        ),
        (
            "mltenants",
            Box::new(|s| s["conditions"][0]["message"] = json!("m".repeat(32 * 1024 + 1))),
            "status.conditions[0].message",
        ),
        ("mltenants", Box::new(|s| s["conditions"][0]["reason"] = json!("")), "status.conditions[0].reason"),
        (
            "mltenants",
            Box::new(|s| s["conditions"][0]["reason"] = json!("not a reason")),
            "status.conditions[0].reason",
        ),
        ("mltenants", Box::new(|s| s["conditions"][0]["status"] = json!("Maybe")), "status.conditions[0].status"),
        ("mltenants", Box::new(|s| s["conditions"][0]["type"] = json!("T".repeat(317))), "status.conditions[0].type"),
        ("mltenants", Box::new(|s| s["environments"][0]["name"] = json!("Not A Label")), "status.environments[0].name"),
        (
            "mltenants",
            Box::new(|s| s["environments"][0]["namespace"] = json!("n".repeat(64))),
            "status.environments[0].namespace",
        ),
        (
            "mltenants",
            Box::new(|s| s["environments"][0]["reason"] = json!("R".repeat(1025))),
            "status.environments[0].reason",
        ),
        (
            "mltenants",
            Box::new(|s| s["environments"][0]["secrets"][0]["bundle"] = json!("a bundle")),
            "status.environments[0].secrets[0].bundle",
        ),
        (
            "mltenants",
            Box::new(|s| s["environments"][0]["secrets"][0]["sourceHash"] = json!("h".repeat(129))),
            "status.environments[0].secrets[0].sourceHash",
        ),
        (
            "mltenants",
            Box::new(|s| s["environments"][0]["secrets"][0]["expiresAt"] = json!("9999-12-31T23:59:59Z")),
            "status.environments[0].secrets[0].expiresAt",
        ),
        ("sealedbundles", Box::new(|s| s["keyFingerprint"] = json!("f".repeat(129))), "status.keyFingerprint"),
        ("sealedbundles", Box::new(|s| s["keyFingerprints"][0] = json!("f".repeat(129))), "status.keyFingerprints[0]"),
        (
            "sealedbundles",
            Box::new(|s| s["keyFingerprints"].as_array_mut().unwrap().push(json!("f"))),
            "status.keyFingerprints",
        ),
        (
            "sealedbundles",
            Box::new(|s| s["conditions"][0]["lastTransitionTime"] = json!("9999-12-31T23:59:59Z")),
            "status.conditions[0].lastTransitionTime",
        ),
        ("sealedbundles", Box::new(|s| s["observedGeneration"] = json!(-1)), "status.observedGeneration"),
    ];
    let mut stored = Vec::new();
    for (resource, change, field) in &cases {
        let (name, mut value) = match *resource {
            "mltenants" => (&tenant, at_bounds_tenant.clone()),
            _ => (&bundle, at_bounds_bundle.clone()),
        };
        change(&mut value);
        match writer.request::<Value>(status(resource, name, &value)).await {
            Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains(&format!("{field}: ")) => {}
            other => stored.push(format!(
                "{resource} {field}: {}",
                match other {
                    Ok(_) => "stored".to_owned(),
                    Err(e) => format!("refused otherwise: {e}"),
                }
            )),
        }
    }
    tenants.delete(&tenant, &Default::default()).await.unwrap();
    bundles.delete(&bundle, &Default::default()).await.unwrap();
    assert!(stored.is_empty(), "status values past their bound, not refused by field:\n{}", stored.join("\n"));
}
