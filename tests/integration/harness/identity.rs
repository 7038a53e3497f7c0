//! Identities for attackers: a ServiceAccount with exactly the rights a test gives it, a
//! client authenticated with its token, and raw requests for objects the typed client could
//! not hold (a time no time library reads).

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::Value;

use super::kubeconfig_path;

/// A token of ServiceAccount `namespace/name` (created if missing), valid for an hour.
pub async fn token_for(client: &Client, namespace: &str, name: &str) -> String {
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), namespace);
    if accounts.get_opt(name).await.unwrap().is_none() {
        let mut account = ServiceAccount::default();
        account.metadata.name = Some(name.to_owned());
        accounts.create(&PostParams::default(), &account).await.expect("create the ServiceAccount");
    }
    let mut request = TokenRequest::default();
    request.spec.expiration_seconds = Some(3600);
    let issued = accounts.create_token_request(name, &PostParams::default(), &request).await.expect("a token");
    issued.status.expect("an issued token").token
}

/// A client of the test control plane authenticated with `token` only.
pub async fn client_as(token: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path("MLTENANT_TEST_ADMIN_KUBECONFIG")).expect("kubeconfig");
    let mut config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("valid kubeconfig");
    config.auth_info = AuthInfo { token: Some(token.to_owned().into()), ..Default::default() };
    Client::try_from(config).expect("client")
}

/// GET `path` as JSON.
pub async fn get_json(client: &Client, path: &str) -> kube::Result<Value> {
    client.request::<Value>(http::Request::get(path).body(Vec::new()).expect("a request")).await
}

/// Merge-patch `path` with `patch`.
pub async fn merge_patch(client: &Client, path: &str, patch: &Value) -> kube::Result<Value> {
    let request = http::Request::patch(path)
        .header("Content-Type", "application/merge-patch+json")
        .body(serde_json::to_vec(patch).expect("JSON"))
        .expect("a request");
    client.request::<Value>(request).await
}
