//! Sealing keys live as kubernetes.io/tls Secrets in the operator's namespace: exactly one is
//! created even by replicas starting together, and a new one appears every renew period.

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use mltenant_operator::crypto::Certificate;

use crate::harness::*;

fn tls_crt(secret: &Secret) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()["tls.crt"].0.clone()).unwrap()
}

#[tokio::test]
async fn two_replicas_starting_together_create_exactly_one_key() {
    let client = admin().await;
    let ns = key_namespace(&client).await;
    let args = ["--namespace", ns.as_str()];
    let (run_a, run_b) = (unique("run"), unique("run"));
    let (a, b) = tokio::join!(Operator::start_with(&run_a, &args), Operator::start_with(&run_b, &args));

    let keys = sealing_keys(&client, &ns).await;
    assert_eq!(keys.len(), 1, "{:?}", keys.iter().map(|k| &k.metadata.name).collect::<Vec<_>>());
    assert_eq!(keys[0].type_.as_deref(), Some("kubernetes.io/tls"));
    let cert = Certificate::from_pem(&tls_crt(&keys[0])).expect("tls.crt is a certificate");
    assert_eq!(cert.key_size_bits(), 4096);
    for op in [&a, &b] {
        let (status, served) = op.get("/v1/cert.pem").await;
        assert_eq!(status, 200);
        assert_eq!(
            Certificate::from_pem(&served).unwrap().fingerprint(),
            cert.fingerprint(),
            "both replicas serve the one key"
        );
    }
    let _ = Api::<Namespace>::all(client).delete(&ns, &Default::default()).await;
}

#[tokio::test]
async fn a_new_key_every_renew_period_and_old_keys_are_kept() {
    let client = admin().await;
    let ns = key_namespace(&client).await;
    let op = Operator::start_with(&unique("run"), &["--namespace", &ns, "--key-renew-period", "6s"]).await;
    let first = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();

    let keys = wait_for("a second sealing key", TIMEOUT, || async {
        let keys = sealing_keys(&client, &ns).await;
        (keys.len() >= 2).then_some(keys)
    })
    .await;
    let certificates = |keys: &[Secret]| -> Vec<Certificate> {
        keys.iter().map(|k| Certificate::from_pem(&tls_crt(k)).unwrap()).collect()
    };
    assert!(certificates(&keys).iter().any(|c| c.fingerprint() == first.fingerprint()), "the first key is kept");
    // Keys keep coming every period: compare with the newest one at each look.
    wait_for("the newest key to be served", TIMEOUT, || async {
        let served = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
        let newest = certificates(&sealing_keys(&client, &ns).await).into_iter().max_by_key(|c| c.not_before())?;
        (served.fingerprint() != first.fingerprint() && served.fingerprint() == newest.fingerprint()).then_some(())
    })
    .await;
    let _ = Api::<Namespace>::all(client).delete(&ns, &Default::default()).await;
}
