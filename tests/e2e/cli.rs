//! The CLI through the API server's service proxy to the installed pods, as users run it: a
//! member of the sealers' group fetches the certificate and seals with `--verify` (a POST the
//! operator authorises itself); a user outside the group cannot reach the proxy (the chart
//! binds nothing to system:authenticated), and seals with the certificate a sealer handed out.

use crate::cluster::*;
use crate::harness::{admin, unique};

const SEALER: &str = "MLTENANT_TEST_SEALER_KUBECONFIG";
const USER: &str = "MLTENANT_E2E_USER_KUBECONFIG";

#[tokio::test]
async fn sealers_reach_the_pods_through_the_service_proxy_and_other_users_seal_offline() {
    let _pods = shared().await;
    let client = admin().await;
    installed(&client).await;

    let pem = ok("mltenant cert as a sealer", mltenant(SEALER, &["cert"], b""));
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    for pod in pods(&client).await.iter().filter(|p| is_ready(p)) {
        let served = pod_get(pod, "/v1/cert.pem").await.expect("the pod serves its certificate").1;
        assert_eq!(served, pem, "{} serves the certificate the proxy returned", name(pod));
    }
    let tenant = unique("sealed");
    let seal = ["seal", "--name", "proxied", "--scope", "Tenant", "--tenant", &tenant, "--from-env-file", "-"];
    let verified =
        ok("seal --verify as a sealer", mltenant(SEALER, &[&seal[..], &["--verify"]].concat(), b"TOKEN=t0k3n\n"));
    assert!(verified.contains("kind: SealedBundle"), "{verified}");

    let fetched = mltenant(USER, &["cert"], b"");
    let refused = String::from_utf8_lossy(&fetched.stderr);
    assert!(!fetched.status.success() && refused.contains("cannot get resource \"services/proxy\""), "{refused}");
    let file = std::env::temp_dir().join(format!("{}.pem", unique("cert")));
    std::fs::write(&file, &pem).unwrap();
    let offline = [&seal[..], &["--cert", file.to_str().unwrap()]].concat();
    let sealed = ok("seal --cert as a plain user", mltenant(USER, &offline, b"TOKEN=t0k3n\n"));
    assert!(sealed.contains("kind: SealedBundle"), "{sealed}");
    let verify = mltenant(USER, &[&offline[..], &["--verify"]].concat(), b"TOKEN=t0k3n\n");
    let refused = String::from_utf8_lossy(&verify.stderr);
    assert!(!verify.status.success() && refused.contains("cannot create resource \"services/proxy\""), "{refused}");
    let _ = std::fs::remove_file(file);
}
