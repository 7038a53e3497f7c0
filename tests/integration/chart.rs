//! The Helm chart on the real API server: every value combination that matters renders and
//! applies with server-side dry-run, without a single warning (PodSecurity `restricted` is
//! enforced in the operator's namespace, so a pod template that would violate it warns), and
//! the rendered objects say what the chart promises.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_yaml::Value;

use crate::harness::*;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/mltenant-operator");

/// `helm template RELEASE` of the chart into `namespace` with `--set SET`, CRDs included.
fn render(release: &str, namespace: &str, set: &str) -> String {
    let helm = std::env::var("MLTENANT_TEST_HELM").expect("MLTENANT_TEST_HELM is set by hack/test-integration.sh");
    let mut args = vec!["template", release, CHART, "--namespace", namespace, "--include-crds"];
    if !set.is_empty() {
        args.extend(["--set", set]);
    }
    let out = Command::new(helm).args(&args).output().expect("run helm");
    assert!(out.status.success(), "helm template --set {set}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 manifests")
}

fn objects(manifests: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(manifests)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `Kind/name` of every object, sorted.
fn inventory(objects: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
        .collect();
    names.sort();
    names
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

fn admin_kubeconfig() -> String {
    std::env::var("MLTENANT_TEST_ADMIN_KUBECONFIG").expect("MLTENANT_TEST_ADMIN_KUBECONFIG is set")
}

/// Run a command that must succeed without a warning on stderr: its stdout.
fn quietly(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    succeeded_quietly(&format!("{command:?}"), out)
}

/// `out`'s stdout, failing the test if `what` failed or printed anything on stderr (kubectl
/// and helm print warnings there, e.g. PodSecurity's "would violate").
fn succeeded_quietly(what: &str, out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {stderr}");
    assert!(stderr.trim().is_empty(), "{what} warned: {stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `kubectl apply --server-side --dry-run=server` as cluster admin: must succeed without any
/// warning on stderr. Conflicts with the field manager that installed the operator's RBAC
/// (hack/install.sh) are forced: this checks validity, not ownership.
fn dry_run(manifests: &str) {
    let kubeconfig = admin_kubeconfig();
    let mut child = Command::new("kubectl")
        .args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "--field-manager",
            "mltenant-chart-test",
            "-f",
            "-",
        ])
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl (on PATH from hack/test-integration.sh)");
    child.stdin.take().unwrap().write_all(manifests.as_bytes()).unwrap();
    succeeded_quietly("server-side dry-run", child.wait_with_output().unwrap());
}

/// A namespace enforcing the restricted Pod Security Standard, like deploy/namespace.yaml.
async fn restricted_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .patch(name, &PatchParams::apply("mltenant-chart-test"), &Patch::Apply(ns))
        .await
        .expect("create the namespace");
}

const ALWAYS: [&str; 11] = [
    "ClusterRole/{}",
    "ClusterRoleBinding/{}",
    "CustomResourceDefinition/mltenants.mltenant.io",
    "CustomResourceDefinition/sealedbundles.mltenant.io",
    "Deployment/{}",
    "Role/{}-leader-election",
    "RoleBinding/{}-leader-election",
    "Service/{}",
    "ServiceAccount/{}",
    "NetworkPolicy/{}",
    "PodDisruptionBudget/{}",
];

fn expected(fullname: &str, extra: &[&str], without: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = ALWAYS
        .iter()
        .chain(extra)
        .map(|n| n.replace("{}", fullname))
        .filter(|n| !without.iter().any(|w| n == &w.replace("{}", fullname)))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn every_value_combination_applies_with_server_side_dry_run() {
    let client = admin().await;
    for ns in ["mltenant-system", "monitoring", "mltenant-shard-b"] {
        restricted_namespace(&client, ns).await;
    }
    let defaults = [
        "ConfigMap/{}-dashboard",
        "Role/{}-cert-access",
        "RoleBinding/{}-cert-access",
        "ClusterRole/{}-sealer",
        "ClusterRoleBinding/{}-sealer",
        "Role/{}-sealer-proxy",
        "RoleBinding/{}-sealer-proxy",
        "ValidatingAdmissionPolicy/{}-guard",
        "ValidatingAdmissionPolicyBinding/{}-guard",
        "ValidatingAdmissionPolicy/{}-tenant-guard",
        "ValidatingAdmissionPolicyBinding/{}-tenant-guard",
    ];
    let cases: [(&str, &str, &str, Vec<String>); 4] = [
        ("mltenant-operator", "mltenant-system", "", expected("mltenant-operator", &defaults, &[])),
        (
            "mltenant-operator",
            "mltenant-system",
            "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.namespace=monitoring",
            expected(
                "mltenant-operator",
                &[&defaults[..], &["ServiceMonitor/{}", "PrometheusRule/{}"][..]].concat(),
                &[],
            ),
        ),
        (
            "mltenant-operator",
            "mltenant-system",
            "replicaCount=1,networkPolicy.enabled=false,certAccess.enabled=false,grafanaDashboard.enabled=false,\
             topologySpread.enabled=false,serviceAccount.create=false,serviceAccount.name=platform-operator,\
             sealers.enabled=false,admissionPolicy.enabled=false,tenantGuard.enabled=false",
            expected("mltenant-operator", &[], &["NetworkPolicy/{}", "PodDisruptionBudget/{}", "ServiceAccount/{}"]),
        ),
        (
            "shard-b",
            "mltenant-shard-b",
            "operator.tenantSelector=shard=b,operator.bundleSelector=shard=b,networkPolicy.egress.apiServerCIDRs={10.0.0.1/32},\
             operator.protectedNamespaces={platform-db,openshift-*},operator.metricsAuth=true",
            expected("shard-b-mltenant-operator", &defaults, &[]),
        ),
    ];
    for (release, namespace, set, inventory_expected) in cases {
        let manifests = render(release, namespace, set);
        assert_eq!(inventory(&objects(&manifests)), inventory_expected, "objects rendered with --set {set:?}");
        dry_run(&manifests);
    }

    let minimal = objects(&render(
        "mltenant-operator",
        "mltenant-system",
        "serviceAccount.create=false,serviceAccount.name=platform-operator,topologySpread.enabled=false",
    ));
    let pod = &find(&minimal, "Deployment", "mltenant-operator")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "platform-operator");
    assert!(pod.get("topologySpreadConstraints").is_none());
    let binding = find(&minimal, "ClusterRoleBinding", "mltenant-operator");
    assert_eq!(binding["subjects"][0]["name"], "platform-operator");

    let shard = objects(&render(
        "shard-b",
        "mltenant-shard-b",
        "operator.tenantSelector=shard=b,operator.protectedNamespaces={platform-db,openshift-*},operator.metricsAuth=true",
    ));
    let args =
        &find(&shard, "Deployment", "shard-b-mltenant-operator")["spec"]["template"]["spec"]["containers"][0]["args"];
    let args: Vec<&str> = args.as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--tenant-selector=shard=b"), "{args:?}");
    assert!(args.contains(&"--lease-name=shard-b-mltenant-operator"), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--bundle-selector")), "{args:?}");
    assert!(args.contains(&"--protected-namespaces=platform-db,openshift-*"), "{args:?}");
    assert!(args.contains(&"--metrics-auth"), "{args:?}");
    // The admission policy protects the same namespaces, and matches this release's identity.
    let spec = &find(&shard, "ValidatingAdmissionPolicy", "shard-b-mltenant-operator-guard")["spec"];
    let variables = spec["variables"].as_sequence().unwrap();
    let protected = variables.iter().find(|v| v["name"] == "protected").unwrap()["expression"].as_str().unwrap();
    for needle in [r#""mltenant-shard-b""#, r#""platform-db""#, r#"["kube-","openshift-"]"#] {
        assert!(protected.contains(needle), "{needle} missing from the protected namespaces: {protected}");
    }
    let identity = spec["matchConditions"][0]["expression"].as_str().unwrap();
    assert!(identity.contains("system:serviceaccount:mltenant-shard-b:shard-b-mltenant-operator"), "{identity}");
}

/// `helm install --dry-run=server` (Helm's own install path against the API server) and the
/// kustomize base in deploy/ as `kubectl apply -k` would build it. The Helm release gets its
/// own namespace and name: Helm refuses to take over objects it did not create, such as the
/// ServiceAccount hack/install.sh applied from deploy/.
#[tokio::test]
async fn helm_install_and_the_kustomize_base_apply_with_server_side_dry_run() {
    restricted_namespace(&admin().await, "mltenant-helm").await;
    let helm = std::env::var("MLTENANT_TEST_HELM").expect("MLTENANT_TEST_HELM");
    let install = quietly(
        Command::new(helm)
            .args(["install", "ml", CHART, "--namespace", "mltenant-helm", "--dry-run=server"])
            .env("KUBECONFIG", admin_kubeconfig()),
    );
    assert!(install.contains("STATUS: pending-install"), "{install}");
    let fetch = "mltenant cert --controller-namespace mltenant-helm --controller-service ml-mltenant-operator:http";
    assert!(install.contains(fetch), "NOTES show how to fetch the certificate: {install}");
    let base = quietly(Command::new("kubectl").args(["kustomize", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")]));
    let inventory = inventory(&objects(&base));
    assert!(inventory.contains(&"Namespace/mltenant-system".to_owned()), "{inventory:?}");
    assert!(inventory.contains(&"Deployment/mltenant-operator".to_owned()), "{inventory:?}");
    dry_run(&base);
}

#[test]
fn the_deployment_is_hardened_and_highly_available() {
    let rendered = objects(&render("mltenant-operator", "mltenant-system", ""));
    let deployment = find(&rendered, "Deployment", "mltenant-operator");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], format!("ghcr.io/mltenant/mltenant-operator:{}", env!("CARGO_PKG_VERSION")));
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(container["resources"][kind][resource].is_string(), "resources.{kind}.{resource} missing");
        }
    }
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env: BTreeMap<&str, &str> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?)))
        .collect();
    assert_eq!(env.get("POD_NAME"), Some(&"metadata.name"));
    assert_eq!(env.get("POD_NAMESPACE"), Some(&"metadata.namespace"));
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(&anti["labelSelector"]["matchLabels"], selector);
    assert_eq!(&pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"], selector);
    let pdb = find(&rendered, "PodDisruptionBudget", "mltenant-operator");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    let service = find(&rendered, "Service", "mltenant-operator");
    assert_eq!(service["spec"]["ports"][0]["name"], "http", "the CLI's service proxy uses the port name");
}

#[test]
fn the_prometheus_rule_links_runbooks_and_the_release_job() {
    let set = "prometheusRule.enabled=true,fullnameOverride=ml-ops,prometheusRule.runbookBaseURL=https://runbooks.example/mltenant/";
    let rendered = objects(&render("mltenant-operator", "mltenant-system", set));
    let rules: Vec<&Value> = find(&rendered, "PrometheusRule", "ml-ops")["spec"]["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .collect();
    let shipped: Value =
        serde_yaml::from_str(include_str!("../../charts/mltenant-operator/files/prometheus-rules.yaml")).unwrap();
    assert_eq!(rules.len(), shipped["groups"][0]["rules"].as_sequence().unwrap().len());
    for rule in &rules {
        let alert = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        assert_eq!(url, format!("https://runbooks.example/mltenant#{}", alert.to_lowercase()));
    }
    let down = rules.iter().find(|r| r["alert"] == "MLTenantOperatorDown").expect("MLTenantOperatorDown");
    assert_eq!(down["expr"], "absent(up{job=\"ml-ops\"} == 1)");
    let dashboard = find(&rendered, "ConfigMap", "ml-ops-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value =
        serde_json::from_str(dashboard["data"]["mltenant-operator.json"].as_str().unwrap()).expect("dashboard JSON");
    assert!(json.to_string().contains(r#"up{job=\"ml-ops\"}"#), "the dashboard's up panel follows the job name");
}

/// The cert-access Role lets the sealers' group GET through the service proxy of exactly the
/// operator's http port, and nothing else; it binds nothing to system:authenticated (which GKE
/// refuses since 1.32.2), so an authenticated user outside the group gets nothing.
#[tokio::test]
async fn cert_access_grants_get_through_the_service_proxy_only() {
    let client = admin().await;
    let may = |groups: &'static [&'static str], verb: &str, name: &str| {
        let proxy = ResourceAttributes {
            namespace: Some("mltenant-system".into()),
            verb: Some(verb.into()),
            resource: Some("services".into()),
            subresource: Some("proxy".into()),
            name: Some(name.into()),
            ..Default::default()
        };
        let client = client.clone();
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        async move { allowed(&client, "someone@example.com", &groups, proxy).await }
    };
    // Only the cert-access Role: the sealers' own proxy Role grants POST to the same group.
    let reader: &[&str] = &["mltenant:sealers", "system:authenticated"];
    assert!(may(reader, "get", "mltenant-operator:http").await, "GET /v1/cert.pem through the proxy");
    assert!(!may(reader, "get", "kubernetes:https").await, "another Service");
    let anyone: &[&str] = &["system:authenticated"];
    assert!(!may(anyone, "get", "mltenant-operator:http").await, "an authenticated user outside the group");
    assert!(!may(anyone, "create", "mltenant-operator:http").await, "POST /v1/rotate through the proxy");
    let cert_access = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/cert-access.yaml")).unwrap();
    assert!(!cert_access.contains("system:authenticated"), "deploy/cert-access.yaml binds system:authenticated");
}

/// A non-loopback IPv4 address of this machine: the API server refuses to proxy to loopback.
fn host_address() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
    // Connecting a UDP socket sends nothing; it only picks the source address of the route.
    socket
        .connect("10.255.255.255:9")
        .and_then(|()| socket.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback())
        .expect("the service-proxy test needs a non-loopback IPv4 address with a route")
}

/// `mltenant cert` without `--operator-url` fetches the certificate through the API server's
/// service proxy to the chart's Service, as a member of the sealers' group (whose right to do
/// so is the chart's cert-access Role), and not as another authenticated identity (the
/// operator's own ServiceAccount: its ClusterRole has no services/proxy).
#[tokio::test]
async fn mltenant_cert_reaches_the_operator_through_the_service_proxy() {
    let client = admin().await;
    let ip = host_address().to_string();
    let op = Operator::start_on("0.0.0.0", &unique("run"), &[]).await;
    let service = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/service.yaml")).unwrap();
    let service: k8s_openapi::api::core::v1::Service =
        serde_yaml::from_str(&service).expect("deploy/service.yaml parses");
    let ns = "mltenant-system";
    let apply = PatchParams::apply("mltenant-chart-test").force();
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns)
        .patch("mltenant-operator", &apply, &Patch::Apply(&service))
        .await
        .expect("apply the chart's Service");
    // The proxy only forwards to endpoints that are pods. Nothing runs pods here (no scheduler,
    // no kubelet), so a pod object with the operator's address in its status stands in for it.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "mltenant-operator-proxy-test"},
        "spec": {
            "serviceAccountName": "mltenant-operator",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "operator", "image": "ghcr.io/mltenant/mltenant-operator",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        },
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    pods.patch("mltenant-operator-proxy-test", &apply, &Patch::Apply(&pod)).await.expect("create the pod");
    pods.patch_status("mltenant-operator-proxy-test", &apply, &Patch::Apply(&pod)).await.expect("set its IP");
    let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "mltenant-operator"},
        "subsets": [{
            "addresses": [{"ip": ip, "targetRef": {"kind": "Pod", "name": "mltenant-operator-proxy-test", "namespace": ns}}],
            "ports": [{"name": "http", "port": op.port()}],
        }],
    }))
    .unwrap();
    Api::<Endpoints>::namespaced(client.clone(), ns)
        .patch("mltenant-operator", &apply, &Patch::Apply(&endpoints))
        .await
        .expect("point the Service at the operator");

    let cert = |kubeconfig: &str| {
        Command::new(env!("CARGO_BIN_EXE_mltenant"))
            .arg("cert")
            .env("KUBECONFIG", std::env::var(kubeconfig).unwrap())
            .env_remove("MLTENANT_OPERATOR_URL")
            .output()
            .expect("run mltenant cert")
    };
    let out = cert("MLTENANT_TEST_SEALER_KUBECONFIG");
    assert!(out.status.success(), "mltenant cert: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), op.get("/v1/cert.pem").await.1);
    let outside = cert("MLTENANT_TEST_OPERATOR_KUBECONFIG");
    let stderr = String::from_utf8_lossy(&outside.stderr);
    assert!(!outside.status.success() && stderr.contains("cannot get resource \"services/proxy\""), "{stderr}");

    // `seal --verify` and `rotate` POST through the same proxy as a member of mltenant:sealers
    // (the chart's sealers RBAC); the operator checks the forwarded token itself.
    let run = |kubeconfig: &str, args: &[&str], stdin: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mltenant"))
            .args(args)
            .env("KUBECONFIG", std::env::var(kubeconfig).unwrap())
            .env_remove("MLTENANT_OPERATOR_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mltenant");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let seal =
        ["seal", "--name", "proxied", "--scope", "Tenant", "--tenant", "fin", "--from-env-file", "-", "--verify"];
    let sealed = run("MLTENANT_TEST_SEALER_KUBECONFIG", &seal, b"PASSWORD=s3cr3t\n");
    assert!(sealed.status.success(), "seal --verify: {}", String::from_utf8_lossy(&sealed.stderr));
    let rotated = run("MLTENANT_TEST_SEALER_KUBECONFIG", &["rotate", "-f", "-"], &sealed.stdout);
    assert!(rotated.status.success(), "rotate: {}", String::from_utf8_lossy(&rotated.stderr));
    let before: mltenant_operator::api::SealedBundle = serde_yaml::from_slice(&sealed.stdout).unwrap();
    let after: mltenant_operator::api::SealedBundle = serde_yaml::from_slice(&rotated.stdout).unwrap();
    assert_ne!(before.spec.encrypted_data["PASSWORD"], after.spec.encrypted_data["PASSWORD"], "re-sealed");
    // Without the sealers' right, the API server refuses the proxy POST: one line, non-zero exit.
    // (The certificate given as a file: fetching it through the proxy is refused too.)
    let pem = std::env::temp_dir().join(format!("{}.pem", unique("cert")));
    std::fs::write(&pem, op.get("/v1/cert.pem").await.1).unwrap();
    let offline = [&seal[..], &["--cert", pem.to_str().unwrap()]].concat();
    let refused = run("MLTENANT_TEST_OPERATOR_KUBECONFIG", &offline, b"PASSWORD=s3cr3t\n");
    let _ = std::fs::remove_file(&pem);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.lines().count() == 1, "{stderr}");
    assert!(stderr.contains("cannot create resource \"services/proxy\""), "{stderr}");
}
