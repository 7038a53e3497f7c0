//! `make demo`'s example, converged by the operator running in its pods: the platform
//! engineer seals the team's credentials through the service proxy and applies the bundles and
//! examples/financial-ml.yaml; the three namespaces get their Secrets with the sealed values.
//! The tenant stays for the finale (`helm uninstall` must leave its Secrets).

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::cluster::*;
use crate::harness::{admin, wait_condition};

const SEALER: &str = "MLTENANT_TEST_SEALER_KUBECONFIG";
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

#[tokio::test]
async fn the_demo_tenant_converges_from_the_pods() {
    let _pods = shared().await;
    let client = admin().await;
    installed(&client).await;
    let env_file = format!("{EXAMPLES}/credentials/ml-platform.env");
    let platform = ok(
        "seal the ml-platform bundle",
        mltenant(
            SEALER,
            &[
                "seal",
                "--name",
                "financial-ml-platform",
                "--scope",
                "Tenant",
                "--tenant",
                "financial-ml",
                "--from-env-file",
                &env_file,
                "--expires-in",
                "90d",
            ],
            b"",
        ),
    );
    let ghcr = ok(
        "seal the ghcr bundle",
        mltenant(
            SEALER,
            &[
                "seal",
                "--name",
                "ghcr-financial",
                "--scope",
                "Cluster",
                "--tenant-selector",
                "mltenant.io/registry-access=ghcr",
                "--docker-server",
                "ghcr.io",
                "--docker-username",
                "financial-ml-bot",
                "--docker-password-stdin",
                "--expires-in",
                "30d",
            ],
            b"demo-registry-token\n",
        ),
    );
    let manifests = format!("{platform}\n---\n{ghcr}");
    ok("kubectl apply the bundles", kubectl(&["apply", "-f", "-"], manifests.as_bytes()));
    ok("kubectl apply examples/", kubectl(&["apply", "-f", &format!("{EXAMPLES}/financial-ml.yaml")], b""));
    wait_condition(&client, "financial-ml", "Ready", "True", None).await;

    let secret = |ns: &str, name: &str| {
        let api = Api::<Secret>::namespaced(client.clone(), ns);
        let name = name.to_owned();
        async move { api.get_opt(&name).await.unwrap() }
    };
    for ns in ["financial-ml-dev", "financial-ml-staging", "financial-ml"] {
        let platform = secret(ns, "ml-platform").await.unwrap_or_else(|| panic!("{ns}/ml-platform"));
        let data = platform.data.unwrap_or_default();
        assert_eq!(data["AWS_ACCESS_KEY_ID"].0, b"demo-minio-access-key", "{ns}/ml-platform opened");
        let pull = secret(ns, "ghcr").await;
        assert_eq!(pull.is_some(), ns != "financial-ml-staging", "{ns}/ghcr only in dev and production");
    }
    let pull = secret("financial-ml", "ghcr").await.unwrap();
    assert_eq!(pull.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    let config = String::from_utf8(pull.data.unwrap_or_default()[".dockerconfigjson"].0.clone()).unwrap();
    assert!(config.contains("ghcr.io") && config.contains("financial-ml-bot"), "{config}");
}
