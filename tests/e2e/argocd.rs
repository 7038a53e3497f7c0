//! Argo CD (built from its Go module; repo-server and application controller run by the
//! cluster script) syncing tenants from a Git repository served locally (`file://`), with the
//! project's health checks installed in `argocd-cm` as docs/argocd.md says. Two Applications,
//! pruning with foreground and with orphan propagation:
//! sync -> Synced + Healthy; a commit with a tenant whose namespace conflicts and one whose
//! bundle does not open -> Degraded, with our condition's reason in the resource's health;
//! the fix -> Healthy; a tenant removed from Git -> pruned, its credentials revoked, its
//! `Retain` namespaces kept.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use serde_json::Value;

use crate::cluster::*;
use mltenant_operator::api::MLTenant;

use crate::harness::{admin, create_namespace, get_namespace, unique, wait_tenant_gone, wait_until};

const SEALER: &str = "MLTENANT_TEST_SEALER_KUBECONFIG";
const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/argocd.md");

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "platform")
        .env("GIT_AUTHOR_EMAIL", "platform@example.com")
        .env("GIT_COMMITTER_NAME", "platform")
        .env("GIT_COMMITTER_EMAIL", "platform@example.com")
        .output()
        .expect("run git");
    ok(&format!("git {args:?}"), out).trim().to_owned()
}

/// The `argocd-cm` block of docs/argocd.md, merged into the ConfigMap as the page says.
fn install_health_checks(dir: &Path) {
    let docs = std::fs::read_to_string(DOCS).unwrap();
    let block = docs.split("<!-- argocd-cm:begin").nth(1).expect("the argocd-cm block in docs/argocd.md");
    let yaml = block.split("```yaml\n").nth(1).and_then(|b| b.split("\n```").next()).expect("its YAML");
    let file = dir.join("argocd-cm-mltenant.yaml");
    std::fs::write(&file, yaml).unwrap();
    let file = file.to_str().unwrap();
    ok(
        "kubectl patch argocd-cm",
        kubectl(&["-n", "argocd", "patch", "configmap", "argocd-cm", "--type", "merge", "--patch-file", file], b""),
    );
}

/// A SealedBundle named `name` holding `API_TOKEN`, sealed for `tenant` through the proxy.
fn sealed(name: &str, tenant: &str) -> String {
    let args = ["seal", "--name", name, "--scope", "Tenant", "--tenant", tenant, "--from-env-file", "-"];
    ok(&format!("seal {name}"), mltenant(SEALER, &args, b"API_TOKEN=gitops-token\n"))
}

fn tenant_yaml(name: &str, environments: &[&str], bundle: &str) -> String {
    let envs: String = environments.iter().map(|e| format!("  - name: {e}\n")).collect();
    format!(
        "apiVersion: mltenant.io/v1alpha1\nkind: MLTenant\nmetadata:\n  name: {name}\nspec:\n  environments:\n{envs}  \
         secrets:\n  - name: api\n    bundle: {bundle}\n  deletionPolicy: Retain\n"
    )
}

struct Repo {
    work: PathBuf,
    url: String,
}

impl Repo {
    fn new(root: &Path) -> Self {
        let bare = root.join("tenants.git");
        let work = root.join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(root, &["init", "--quiet", "--bare", "--initial-branch=main", bare.to_str().unwrap()]);
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Repo { work, url: format!("file://{}", bare.display()) }
    }

    fn write(&self, path: &str, text: &str) {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }

    fn remove(&self, path: &str) {
        std::fs::remove_file(self.work.join(path)).unwrap();
    }

    /// Commit everything and push: the new revision.
    fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        git(&self.work, &["push", "--quiet", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

fn application(name: &str, url: &str, path: &str, propagation: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\nspec:\n  \
         project: default\n  source: {{repoURL: \"{url}\", targetRevision: main, path: {path}}}\n  \
         destination: {{server: \"https://kubernetes.default.svc\"}}\n  syncPolicy:\n    automated: {{prune: true}}\n    \
         syncOptions: [PrunePropagationPolicy={propagation}]\n"
    )
}

async fn get_app(client: &kube::Client, name: &str) -> Value {
    let path = format!("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/{name}");
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    client.request::<Value>(request).await.expect("get the Application")
}

/// A hard refresh: Argo CD reads Git again, skipping the repo-server's revision cache.
fn refresh(name: &str) {
    ok(
        "hard refresh",
        kubectl(
            &["-n", "argocd", "annotate", "--overwrite", "application", name, "argocd.argoproj.io/refresh=hard"],
            b"",
        ),
    );
}

/// Wait until each of `apps` synced `revision` and shows `health`: their statuses. All are
/// refreshed first, so that they sync side by side.
async fn wait_apps(client: &kube::Client, apps: &[&str], revision: &str, health: &str) -> Vec<Value> {
    apps.iter().for_each(|app| refresh(app));
    let mut statuses = Vec::new();
    for app in apps {
        statuses.push(wait_app(client, app, revision, health).await);
    }
    statuses
}

/// Wait until application `name` synced `revision` and shows `health`: its status.
async fn wait_app(client: &kube::Client, name: &str, revision: &str, health: &str) -> Value {
    wait_until(&format!("Application {name} at {revision}: Synced and {health}"), ROLLOUT, || async {
        let app = get_app(client, name).await;
        let status = &app["status"];
        let seen = (
            status["sync"]["revision"].as_str() == Some(revision),
            status["sync"]["status"].as_str() == Some("Synced"),
            status["health"]["status"].as_str() == Some(health),
            status["operationState"]["phase"].as_str(),
        );
        (seen.0 && seen.1 && seen.2).then(|| status.clone()).ok_or(format!(
            "sync {} at {}, health {}, operation {:?}: {}",
            status["sync"]["status"], status["sync"]["revision"], status["health"], seen.3, status["conditions"]
        ))
    })
    .await
}

/// The health Argo CD keeps for resource `kind`/`name` of an Application's status.
fn resource_health(status: &Value, kind: &str, name: &str) -> (String, String) {
    let resource = status["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the Application: {}", status["resources"]));
    let text = |k: &str| resource["health"][k].as_str().unwrap_or_default().to_owned();
    (text("status"), text("message"))
}

/// The reasons of tenant `name`'s conditions that are False.
async fn failing_reasons(client: &kube::Client, name: &str) -> Vec<String> {
    let tenant = Api::<MLTenant>::all(client.clone()).get(name).await.unwrap();
    tenant.status.unwrap_or_default().conditions.into_iter().filter(|c| c.status == "False").map(|c| c.reason).collect()
}

async fn secret(client: &kube::Client, namespace: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await.unwrap()
}

#[tokio::test]
async fn argocd_syncs_tenants_from_git_and_reports_their_health() {
    let _pods = shared().await;
    let client = admin().await;
    installed(&client).await;
    register_logs();
    crate::harness::logs::register("argocd-repo-server", &state().join("logs/argocd-repo-server.log"));
    let root = state().join(unique("git"));
    std::fs::create_dir_all(&root).unwrap();
    install_health_checks(&root);
    let repo = Repo::new(&root);
    let run = unique("gitops");
    let (fg, orphan) = (format!("{run}-fg"), format!("{run}-orphan"));

    // 1. Two tenants, each with its bundle, one per Application.
    repo.write(&format!("foreground/{fg}.yaml"), &tenant_yaml(&fg, &["dev", "prod"], &format!("{fg}-api")));
    repo.write(&format!("foreground/{fg}-api.yaml"), &sealed(&format!("{fg}-api"), &fg));
    repo.write(&format!("orphan/{orphan}.yaml"), &tenant_yaml(&orphan, &["dev"], &format!("{orphan}-api")));
    repo.write(&format!("orphan/{orphan}-api.yaml"), &sealed(&format!("{orphan}-api"), &orphan));
    let revision = repo.commit("two tenants");
    let (app_fg, app_orphan) = (format!("{run}-foreground"), format!("{run}-orphan"));
    let apps = application(&app_fg, &repo.url, "foreground", "foreground")
        + "---\n"
        + &application(&app_orphan, &repo.url, "orphan", "orphan");
    let start = Instant::now();
    ok("kubectl apply the Applications", kubectl(&["apply", "-f", "-"], apps.as_bytes()));
    let status = wait_apps(&client, &[&app_fg, &app_orphan], &revision, "Healthy").await.swap_remove(0);
    println!("e2e: Argo CD synced two tenants from Git to Synced + Healthy in {:.1?}", start.elapsed());
    let (health, message) = resource_health(&status, "MLTenant", &fg);
    assert_eq!(health, "Healthy", "{message}");
    for ns in [format!("{fg}-dev"), format!("{fg}-prod"), format!("{orphan}-dev")] {
        let api = secret(&client, &ns, "api").await.unwrap_or_else(|| panic!("{ns}/api"));
        assert_eq!(api.data.unwrap()["API_TOKEN"].0, b"gitops-token");
    }

    // 2. A tenant whose namespace belongs to someone else, and one whose bundle was sealed for
    // another tenant: Degraded, with the reason the operator gives.
    let (conflict, wrong) = (format!("{run}-conflict"), format!("{run}-wrongkey"));
    create_namespace(&client, &format!("{conflict}-dev"), &[]).await;
    repo.write(&format!("foreground/{conflict}.yaml"), &tenant_yaml(&conflict, &["dev"], &format!("{conflict}-api")));
    repo.write(&format!("foreground/{conflict}-api.yaml"), &sealed(&format!("{conflict}-api"), &conflict));
    repo.write(&format!("orphan/{wrong}.yaml"), &tenant_yaml(&wrong, &["dev"], &format!("{wrong}-api")));
    repo.write(&format!("orphan/{wrong}-api.yaml"), &sealed(&format!("{wrong}-api"), "someone-else"));
    let revision = repo.commit("a conflicting namespace and a bundle sealed for someone else");
    let start = Instant::now();
    let statuses = wait_apps(&client, &[&app_fg, &app_orphan], &revision, "Degraded").await;
    for (status, name) in statuses.iter().zip([&conflict, &wrong]) {
        let (health, message) = resource_health(status, "MLTenant", name);
        assert_eq!(health, "Degraded", "{message}");
        let failing = failing_reasons(&client, name).await;
        assert!(
            failing.iter().any(|reason| message.starts_with(&format!("{reason}: "))),
            "{name}: Argo CD says {message:?}, the tenant's failing conditions are {failing:?}"
        );
        println!("e2e: Argo CD shows {name} Degraded: {message}");
    }
    assert!(failing_reasons(&client, &conflict).await.contains(&"NamespaceConflict".to_owned()));
    println!("e2e: both Applications Degraded {:.1?} after the commit", start.elapsed());

    // 3. The fix: another environment name, the bundle sealed for the right tenant.
    repo.write(
        &format!("foreground/{conflict}.yaml"),
        &tenant_yaml(&conflict, &["develop"], &format!("{conflict}-api")),
    );
    repo.write(&format!("orphan/{wrong}-api.yaml"), &sealed(&format!("{wrong}-api"), &wrong));
    let revision = repo.commit("fix both");
    let start = Instant::now();
    wait_apps(&client, &[&app_fg, &app_orphan], &revision, "Healthy").await;
    println!("e2e: both Applications Healthy {:.1?} after the fix", start.elapsed());
    assert!(get_namespace(&client, &format!("{conflict}-dev")).await.is_some(), "the user's namespace is untouched");

    // 4. Tenants removed from Git: pruned with foreground and with orphan propagation. Their
    // credentials are revoked; their namespaces (Retain) stay.
    repo.remove(&format!("foreground/{fg}.yaml"));
    repo.remove(&format!("orphan/{orphan}.yaml"));
    let revision = repo.commit("remove two tenants");
    let start = Instant::now();
    wait_apps(&client, &[&app_fg, &app_orphan], &revision, "Healthy").await;
    wait_tenant_gone(&client, &fg).await;
    wait_tenant_gone(&client, &orphan).await;
    println!("e2e: pruned with foreground and orphan propagation in {:.1?}", start.elapsed());
    for ns in [format!("{fg}-dev"), format!("{fg}-prod"), format!("{orphan}-dev")] {
        let kept = Api::<Namespace>::all(client.clone()).get_opt(&ns).await.unwrap();
        assert!(kept.is_some_and(|n| n.metadata.deletion_timestamp.is_none()), "Retain: namespace {ns} kept");
        assert!(secret(&client, &ns, "api").await.is_none(), "{ns}/api revoked");
    }
}
