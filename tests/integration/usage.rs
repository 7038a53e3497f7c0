//! Who did read: the control plane's API server posts its audit events to the operator's sink
//! (as docs/access.md configures it), and real requests (kubectl with a reader's token, an
//! undeclared ServiceAccount's, the admin's) show up in the counters and in `lastReadAt`. The sink
//! takes posts from the API server's identity only, and a flood of events neither adds series
//! nor grows memory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kube::Api;
use mltenant_operator::api::{MLTenant, SecretReader, SecretSpec};
use serde_json::json;

use crate::harness::operator::{audit_addr, audit_pki};
use crate::harness::*;

/// `kubectl ARGS` as the admin, or with `token` instead; whether it succeeded.
fn kubectl(token: Option<&str>, args: &[&str]) -> bool {
    let mut command = kubectl_command();
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = command.args(args).output().expect("run kubectl");
    output.status.success()
}

/// An operator serving the audit sink, and a tenant of its own (named `prefix`-...) with
/// Secret `ml-platform` in `dev`, read by `readers/pipeline` (`readers` a namespace of its own):
/// (admin client, operator, tenant, readers), once the tenant is Ready.
async fn audited_tenant(prefix: &str) -> (kube::Client, Operator, String, String) {
    let client = admin().await;
    let run = unique("run");
    let name = unique(prefix);
    let op = Operator::start_with_audit(&run, &[]).await;
    let readers = unique("readers");
    create_namespace(&client, &readers, &[]).await;
    let cert = mltenant_operator::crypto::Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let data = sealed(&cert, mltenant_operator::api::BundleScope::Tenant, &name, "", &[("PASSWORD", b"s3cr3t")]);
    let bundle_name = format!("{name}-b");
    create_bundle(&client, &bundle(&bundle_name, mltenant_operator::api::BundleScope::Tenant, Some(&name), None, data))
        .await;
    let mut t = tenant(&name, &run, &["dev"]);
    t.spec.secrets = Some(vec![SecretSpec::new("ml-platform", &bundle_name)]);
    t.spec.secret_readers = Some(vec![SecretReader::new(&readers, "pipeline")]);
    create_tenant(&client, &t).await;
    wait_condition(&client, &name, "Ready", "True", None).await;
    (client, op, name, readers)
}

/// Wait until `metric` with `labels` reaches `at_least`; its value then.
async fn counted(op: &Operator, metric: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
    wait_until(&format!("{metric}{labels:?} >= {at_least}"), TIMEOUT, || async {
        let value = op.metric(metric, labels).await;
        if value >= at_least { Ok(value) } else { Err(value.to_string()) }
    })
    .await
}

#[tokio::test]
async fn real_reads_refusals_and_impersonation_are_counted_and_last_reads_recorded() {
    let (client, op, name, readers) = audited_tenant("usage").await;
    let reader_token = token_for(&client, &readers, "pipeline").await;
    let ns = format!("{name}-dev");
    let reader = format!("{readers}/pipeline");
    let secret = [("tenant", name.as_str()), ("environment", "dev"), ("secret", "ml-platform")];
    let reads: Vec<(&str, &str)> = secret.iter().copied().chain([("reader", reader.as_str())]).collect();
    assert_eq!(op.metric("mltenant_secret_reads_total", &reads).await, 0.0);

    // The declared reader reads three times with its own token: exactly three reads.
    for _ in 0..3 {
        assert!(kubectl(Some(&reader_token), &["get", "secret", "ml-platform", "-n", &ns, "-o", "name"]));
    }
    assert_eq!(counted(&op, "mltenant_secret_reads_total", &reads, 3.0).await, 3.0);
    let api = Api::<MLTenant>::all(client.clone());
    let last_read = wait_for("lastReadAt of the reader in the tenant's status", TIMEOUT, || async {
        let t = api.get(&name).await.ok()?;
        let env = t.status?.environments.into_iter().find(|e| e.name == "dev")?;
        let s = env.secrets.into_iter().find(|s| s.name == "ml-platform")?;
        s.readers.into_iter().find(|r| r.service_account == reader)?.last_read_at
    })
    .await;
    let age = jiff::Timestamp::now().duration_since(last_read.0);
    assert!(age.as_secs() < 120, "lastReadAt is the time of the read: {last_read:?}");

    // An undeclared ServiceAccount is refused: counted as denied, by kind.
    let intruder = token_for(&client, &readers, "intruder").await;
    assert!(!kubectl(Some(&intruder), &["get", "secret", "ml-platform", "-n", &ns]), "RBAC refuses it");
    let denied = [("tenant", name.as_str()), ("environment", "dev"), ("kind", "serviceaccount")];
    assert_eq!(counted(&op, "mltenant_secret_access_denied_total", &denied, 1.0).await, 1.0);

    // The admin lists the namespace's Secrets: a read of each, by kind admin, no name.
    assert!(kubectl(None, &["get", "secrets", "-n", &ns, "-o", "name"]));
    let by_admin: Vec<(&str, &str)> = secret.iter().copied().chain([("kind", "admin")]).collect();
    counted(&op, "mltenant_secret_reads_by_others_total", &by_admin, 1.0).await;

    // The admin reads as the reader: the impersonator is counted apart, and the read is not the
    // reader's own use of its grant.
    let as_reader = format!("system:serviceaccount:{readers}:pipeline");
    assert!(kubectl(None, &["get", "secret", "ml-platform", "-n", &ns, "--as", &as_reader, "-o", "name"]));
    counted(&op, "mltenant_secret_reads_impersonated_total", &by_admin, 1.0).await;
    let as_account: Vec<(&str, &str)> = secret.iter().copied().chain([("kind", "serviceaccount")]).collect();
    counted(&op, "mltenant_secret_reads_by_others_total", &as_account, 1.0).await;
    assert_eq!(op.metric("mltenant_secret_reads_total", &reads).await, 3.0, "the reader's own reads only");
    assert_eq!(op.metric("mltenant_secret_access_denied_total", &denied).await, 1.0);

    // No user name is a label value anywhere.
    let metrics = op.metrics().await;
    for who in ["intruder", "mltenant-admin", "system:serviceaccount"] {
        assert!(!metrics.lines().any(|l| l.starts_with("mltenant_secret") && l.contains(who)), "{who} in {metrics}");
    }
}

/// POST `body` to the sink with curl, with a client certificate (`cert`, `key`) and a bearer
/// token when given: the HTTP status, none when no answer came (a refused handshake).
fn post(body: &Path, client: Option<(&str, &str)>, token: Option<&str>) -> Option<u16> {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", "--cacert", &audit_pki("ca.crt")]);
    if let Some((cert, key)) = client {
        curl.args(["--cert", cert, "--key", key]);
    }
    if let Some(token) = token {
        curl.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    curl.args(["-H", "Content-Type: application/json", "--data-binary", &format!("@{}", body.display())]);
    let output = curl.arg(format!("https://{}/audit", audit_addr())).output().expect("run curl");
    let code: u16 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
    (output.status.success() && code != 0).then_some(code)
}

/// A key and a certificate with common name `cn` for client authentication, signed by the
/// control plane's CA, or self-signed: (certificate, key) paths.
fn client_certificate(dir: &Path, cn: &str, by_cluster_ca: bool) -> (String, String) {
    let (key, cert, csr, ext) =
        (dir.join(format!("{cn}.key")), dir.join(format!("{cn}.crt")), dir.join("c.csr"), dir.join("c.ext"));
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    let run = |args: &[&str]| {
        assert!(Command::new("openssl").args(args).output().unwrap().status.success(), "openssl {args:?}")
    };
    let s = |p: &PathBuf| p.display().to_string();
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={cn}"),
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    let (ca, ca_key, key_path, csr_path, ext_path, cert_path) =
        (audit_pki("ca.crt"), audit_pki("ca.key"), s(&key), s(&csr), s(&ext), s(&cert));
    let mut args = vec!["x509", "-req", "-in", &csr_path, "-days", "1", "-extfile", &ext_path, "-out", &cert_path];
    if by_cluster_ca {
        args.extend(["-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial"]);
    } else {
        args.extend(["-signkey", &key_path]);
    }
    run(&args);
    (s(&cert), s(&key))
}

fn event_list(items: impl Iterator<Item = serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items.collect::<Vec<_>>()}),
    )
    .unwrap()
}

/// The label sets of the operator's `mltenant_secret_*` series (values aside).
fn secret_series(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("mltenant_secret_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[tokio::test]
async fn the_sink_takes_the_api_servers_posts_only_and_a_flood_adds_neither_series_nor_memory() {
    let (client, op, name, _) = audited_tenant("sink").await;
    let ns = format!("{name}-dev");
    let dir = std::env::temp_dir().join(unique("sink-test"));
    std::fs::create_dir_all(&dir).unwrap();
    let token = std::fs::read_to_string(audit_pki("audit-token")).unwrap().trim().to_owned();
    let empty = dir.join("empty.json");
    std::fs::write(&empty, event_list(std::iter::empty())).unwrap();
    wait_for("the audit sink to serve", TIMEOUT, || async {
        (post(&empty, None, Some(&token)) == Some(200)).then_some(())
    })
    .await;

    // Whoever is not the API server is refused before the body is read.
    let batches = |outcome: &'static str| {
        let op = &op;
        async move { op.metric("mltenant_audit_batches_total", &[("outcome", outcome)]).await }
    };
    let refused = batches("unauthenticated").await;
    assert_eq!(post(&empty, None, None), Some(401), "no certificate, no token");
    assert_eq!(post(&empty, None, Some("not-the-token")), Some(401), "another token");
    let intruder = client_certificate(&dir, "intruder", true);
    assert_eq!(post(&empty, Some((&intruder.0, &intruder.1)), None), Some(401), "the cluster CA's, another name");
    assert_eq!(batches("unauthenticated").await, refused + 3.0);
    let handshakes = op.metric("mltenant_audit_connections_closed_total", &[("reason", "tls_handshake")]).await;
    let forged = client_certificate(&dir, "kube-apiserver-audit", false);
    assert_eq!(post(&empty, Some((&forged.0, &forged.1)), None), None, "the API server's name, self-signed");
    let closed = op.metric("mltenant_audit_connections_closed_total", &[("reason", "tls_handshake")]).await;
    assert_eq!(closed, handshakes + 1.0);
    let (apiserver_cert, apiserver_key) = (audit_pki("audit-client.crt"), audit_pki("audit-client.key"));
    assert_eq!(post(&empty, Some((&apiserver_cert, &apiserver_key)), None), Some(200), "the API server's certificate");

    // Bodies the API server would never send.
    let huge = dir.join("huge.json");
    std::fs::write(&huge, vec![b' '; 5 * 1024 * 1024]).unwrap();
    assert_eq!(post(&huge, None, Some(&token)), Some(413));
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, b"{\"items\": [{\"verb\": 7}]}").unwrap();
    assert_eq!(post(&garbage, None, Some(&token)), Some(400));

    // A flood of events naming thousands of users and namespaces, some about our Secret: a
    // batch is counted up to its cap, the rest dropped and counted; no series is added.
    // First every series there is: the tenant assessed, and one read of our Secret by a user,
    // which the counter shows (so that it is seen to move before the flood).
    wait_condition(&client, &name, "AccessIsolated", "True", None).await;
    let read_by = |n: usize, namespace: &str| {
        json!({"stage": "ResponseComplete", "verb": "get", "user": {"username": format!("attacker-{n}"), "groups": [format!("g-{n}")]},
            "objectRef": {"resource": "secrets", "namespace": namespace, "name": "ml-platform"}, "responseStatus": {"code": 200}})
    };
    let one = dir.join("one.json");
    std::fs::write(&one, event_list(std::iter::once(read_by(0, &ns)))).unwrap();
    assert_eq!(post(&one, None, Some(&token)), Some(200));
    let by_users = [("tenant", name.as_str()), ("secret", "ml-platform"), ("kind", "user")];
    let user_reads = counted(&op, "mltenant_secret_reads_by_others_total", &by_users, 1.0).await;
    // The API server's own events keep coming (the harness reads as an admin): the admin's
    // series exists before the set is taken, so only the flood could add one.
    get_secret(&client, &ns, "ml-platform").await.expect("the Secret");
    let by_admins = [("tenant", name.as_str()), ("secret", "ml-platform"), ("kind", "admin")];
    counted(&op, "mltenant_secret_reads_by_others_total", &by_admins, 1.0).await;
    let before = secret_series(&op.metrics().await);
    let rss_before = op.rss_kib().unwrap();
    let dropped = op.metric("mltenant_audit_events_total", &[("outcome", "dropped")]).await;
    const BATCHES: usize = 20;
    const EVENTS: usize = 10_000;
    for batch in 0..BATCHES {
        let events = (0..EVENTS).map(|i| {
            let n = batch * EVENTS + i;
            read_by(n, &if i % 2 == 0 { ns.clone() } else { format!("ns-{n}") })
        });
        let file = dir.join("flood.json");
        std::fs::write(&file, event_list(events)).unwrap();
        assert_eq!(post(&file, None, Some(&token)), Some(200), "batch {batch}");
    }
    let expected_dropped = (BATCHES * (EVENTS - 4096)) as f64;
    assert_eq!(op.metric("mltenant_audit_events_total", &[("outcome", "dropped")]).await, dropped + expected_dropped);
    assert_eq!(
        op.metric("mltenant_secret_reads_by_others_total", &by_users).await,
        user_reads + (BATCHES * 4096 / 2) as f64,
        "each counted read of our Secret, by kind user"
    );
    assert_eq!(secret_series(&op.metrics().await), before, "no series added");
    let grown = op.rss_kib().unwrap().saturating_sub(rss_before);
    eprintln!("audit flood: {BATCHES} batches of {EVENTS} events, RSS {rss_before} KiB before, grown by {grown} KiB");
    assert!(grown < 48 * 1024, "memory grew by {grown} KiB");
    std::fs::remove_dir_all(&dir).unwrap();
}
