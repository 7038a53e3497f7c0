//! The platform engineer's workflow with the real binary: `mltenant seal` against the running
//! operator's certificate, commit (here: create), and the operator distributes the values.
//! Errors are one line with a non-zero exit.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use mltenant_operator::api::{SealedBundle, SecretSpec};
use mltenant_operator::crypto::SealingKey;

use crate::harness::*;

/// Run `mltenant ARGS` with `stdin`.
fn mltenant(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mltenant"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mltenant");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Run `mltenant ARGS`, expecting success; its standard output.
fn ok(args: &[&str], stdin: &[u8]) -> String {
    let out = mltenant(args, stdin);
    assert!(out.status.success(), "mltenant {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Run `mltenant ARGS`, expecting a one-line error; that line.
fn fails(args: &[&str], stdin: &[u8]) -> String {
    let out = mltenant(args, stdin);
    assert!(!out.status.success(), "mltenant {args:?} succeeded");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr}");
    assert!(out.stdout.is_empty(), "printed output on failure");
    stderr
}

async fn data(client: &kube::Client, namespace: &str, name: &str, key: &str) -> Option<Vec<u8>> {
    let s = Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await.unwrap()?;
    s.data?.get(key).map(|v| v.0.clone())
}

#[tokio::test]
async fn seal_commit_and_distribute() {
    let client = admin().await;
    let op = Operator::start(&unique("run")).await;
    let url = format!("http://127.0.0.1:{}", op.port());
    let name = unique("wf");

    // The seed article's variables, from an env file on stdin.
    let env_file = b"# MinIO and MLflow for financial-ml\nAWS_ACCESS_KEY_ID=minio\nAWS_SECRET_ACCESS_KEY=minio123\nMLFLOW_S3_ENDPOINT_URL=http://minio.minio:9000\nRCLONE_CONFIG_S3_TYPE=s3\n";
    let platform = ok(
        &[
            "seal",
            "--name",
            &format!("{name}-platform"),
            "--scope",
            "tenant",
            "--tenant",
            &name,
            "--from-env-file",
            "-",
            "--expires-in",
            "90d",
            "--operator-url",
            &url,
        ],
        env_file,
    );
    // Pull secret, sealed for production only, offline with the certificate from `mltenant cert`.
    let cert_file = std::env::temp_dir().join(format!("{name}.pem"));
    std::fs::write(&cert_file, ok(&["cert", "--operator-url", &url], b"")).unwrap();
    let ghcr = ok(
        &[
            "seal",
            "--name",
            &format!("{name}-ghcr"),
            "--scope",
            "Environment",
            "--tenant",
            &name,
            "--environment",
            "production",
            "--docker-server",
            "ghcr.io",
            "--docker-username",
            "bot",
            "--docker-password-stdin",
            "--cert",
            cert_file.to_str().unwrap(),
        ],
        b"ghp_token\n",
    );
    // Add a key to the committed file.
    let file = std::env::temp_dir().join(format!("{name}-platform.yaml"));
    std::fs::write(&file, &platform).unwrap();
    ok(
        &[
            "seal",
            "--merge-into",
            file.to_str().unwrap(),
            "--from-literal",
            "MLFLOW_TRACKING_URI=http://mlflow",
            "--operator-url",
            &url,
        ],
        b"",
    );
    let merged = std::fs::read_to_string(&file).unwrap();
    assert!(ok(&["validate", "-f", file.to_str().unwrap()], b"").contains("valid: SealedBundle"));

    for yaml in [merged.as_str(), ghcr.as_str()] {
        let bundle: SealedBundle = serde_yaml::from_str(yaml).unwrap();
        Api::<SealedBundle>::all(client.clone()).create(&PostParams::default(), &bundle).await.unwrap();
    }
    let mut t = tenant(&name, &op.run_id, &["dev", "production"]);
    t.spec.secrets = Some(vec![
        SecretSpec::new("ml-platform", format!("{name}-platform")),
        SecretSpec::new("ghcr", format!("{name}-ghcr")).environments(&["production"]),
    ]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "Ready", "True", None).await;

    assert_eq!(
        data(&client, &format!("{name}-dev"), "ml-platform", "AWS_SECRET_ACCESS_KEY").await.unwrap(),
        b"minio123"
    );
    assert_eq!(data(&client, &name, "ml-platform", "MLFLOW_TRACKING_URI").await.unwrap(), b"http://mlflow");
    assert_eq!(data(&client, &name, "ml-platform", "RCLONE_CONFIG_S3_TYPE").await.unwrap(), b"s3");
    let docker: serde_json::Value =
        serde_json::from_slice(&data(&client, &name, "ghcr", ".dockerconfigjson").await.unwrap()).unwrap();
    assert_eq!(docker["auths"]["ghcr.io"]["password"], "ghp_token");
    assert_eq!(docker["auths"]["ghcr.io"]["auth"], "Ym90OmdocF90b2tlbg==");
}

#[test]
fn seal_rejects_bad_input_with_one_line() {
    let dir = std::env::temp_dir().join(unique("cli-errors"));
    std::fs::create_dir_all(&dir).unwrap();
    let seal = |cert: &str, stdin: &[u8]| {
        fails(
            &[
                "seal",
                "--name",
                "b",
                "--scope",
                "Cluster",
                "--tenant-selector",
                "",
                "--from-env-file",
                "-",
                "--cert",
                cert,
            ],
            stdin,
        )
    };

    let missing = dir.join("missing.pem");
    assert!(seal(missing.to_str().unwrap(), b"K=v").contains("cannot read"));

    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    assert!(seal(garbage.to_str().unwrap(), b"K=v").contains("cannot use"));

    let now = jiff::Timestamp::now();
    let old = SealingKey::generate_valid_between(
        now - jiff::SignedDuration::from_hours(48),
        now - jiff::SignedDuration::from_hours(24),
    )
    .unwrap();
    let expired = dir.join("expired.pem");
    std::fs::write(&expired, old.certificate().to_pem()).unwrap();
    assert!(seal(expired.to_str().unwrap(), b"K=v").contains("expired at"));

    let valid = dir.join("valid.pem");
    std::fs::write(&valid, SealingKey::generate(std::time::Duration::from_secs(3600)).unwrap().certificate().to_pem())
        .unwrap();
    assert!(seal(valid.to_str().unwrap(), b"").contains("no values to seal"));
    assert!(seal(valid.to_str().unwrap(), b"# only a comment\n").contains("no values to seal"));
    assert!(seal(valid.to_str().unwrap(), b"not a pair").contains("not KEY=VALUE"));

    let bad_bundle = dir.join("bad.yaml");
    std::fs::write(&bad_bundle, "apiVersion: mltenant.io/v1alpha1\nkind: SealedBundle\nmetadata: {name: b}\nspec: {scope: Tenant, tenant: t, encryptedData: {K: 'not*base64'}}\n").unwrap();
    assert!(
        fails(&["validate", "-f", bad_bundle.to_str().unwrap()], b"")
            .contains("spec.encryptedData[K]: Invalid value (the operator's own check; the API server accepts it): sealed value is not valid base64")
    );
}
