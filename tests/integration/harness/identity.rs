//! Identities for attackers: a ServiceAccount with exactly the rights a test gives it, a
//! client authenticated with its token, and raw requests for objects the typed client could
//! not hold (a time no time library reads).

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::PostParams;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::Value;

use super::{TIMEOUT, allowed, create_namespace, kubeconfig_path, unique, wait_for};

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

/// A ServiceAccount (in a namespace of its own) allowed `rules` cluster-wide, none for no rights
/// at all, and a token for it from the TokenRequest API, as a workload would have. Returns once
/// the API server's authorizer grants the first rule, so that nobody caches an earlier answer.
pub async fn service_account_token(client: &Client, name: &str, rules: Vec<PolicyRule>) -> String {
    let namespace = unique(name);
    create_namespace(client, &namespace, &[]).await;
    let pp = PostParams::default();
    if let Some(first) = rules.first().cloned() {
        let role_name = unique(name);
        let role = ClusterRole {
            metadata: kube::api::ObjectMeta { name: Some(role_name.clone()), ..Default::default() },
            rules: Some(rules),
            ..Default::default()
        };
        Api::<ClusterRole>::all(client.clone()).create(&pp, &role).await.expect("create the ClusterRole");
        let binding = ClusterRoleBinding {
            metadata: kube::api::ObjectMeta { name: Some(role_name.clone()), ..Default::default() },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: role_name,
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.to_owned(),
                namespace: Some(namespace.clone()),
                ..Default::default()
            }]),
        };
        Api::<ClusterRoleBinding>::all(client.clone()).create(&pp, &binding).await.expect("create the binding");
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let groups = [
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_owned(),
        ];
        let (resource, subresource) = first.resources.as_ref().and_then(|r| r.first()).map_or(("", None), |r| {
            r.split_once('/').map_or((r.as_str(), None), |(resource, sub)| (resource, Some(sub.to_owned())))
        });
        let attributes = ResourceAttributes {
            group: first.api_groups.as_ref().and_then(|g| g.first().cloned()),
            resource: Some(resource.to_owned()),
            subresource,
            verb: first.verbs.first().cloned(),
            name: first.resource_names.as_ref().and_then(|n| n.first().cloned()),
            ..Default::default()
        };
        wait_for(&format!("RBAC to grant {user} its first rule"), TIMEOUT, || async {
            allowed(client, &user, &groups, attributes.clone()).await.then_some(())
        })
        .await;
    }
    token_for(client, &namespace, name).await
}

/// A rule of a ClusterRole: `verbs` on `resources` of API group `group`.
pub fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}
