//! `helm install` of the chart with its defaults and the image built here, on a cluster that
//! refuses bindings to `system:authenticated` as GKE does since 1.32.2: both replicas Ready,
//! one leading, each running as shipped (non-root, read-only root filesystem, no capability),
//! and the sealing key created.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};

use crate::cluster::*;
use crate::harness::{TIMEOUT, admin, wait_for};

#[tokio::test]
async fn the_chart_installs_with_its_defaults_where_bindings_to_system_authenticated_are_refused() {
    let _pods = shared().await;
    let client = admin().await;
    // The threat is real: this cluster refuses such a binding, as GKE's Warden does.
    let probe = kubectl(
        &[
            "create",
            "rolebinding",
            "probe",
            "--clusterrole=view",
            "--group=system:authenticated",
            "-n",
            "default",
            "--dry-run=server",
        ],
        b"",
    );
    let refused = String::from_utf8_lossy(&probe.stderr);
    assert!(!probe.status.success() && refused.contains("denied by rbac-binding-limitation"), "{refused}");

    let took = installed(&client).await;
    if let Some(took) = took {
        println!("e2e: helm install -> both replicas Ready and one leading in {took:.1?}");
    }
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
    let bindings = Api::<RoleBinding>::all(client.clone()).list(&selector).await.unwrap().items;
    let cluster_bindings = Api::<ClusterRoleBinding>::all(client.clone()).list(&selector).await.unwrap().items;
    let subjects: Vec<String> = bindings
        .iter()
        .flat_map(|b| b.subjects.clone().unwrap_or_default())
        .chain(cluster_bindings.iter().flat_map(|b| b.subjects.clone().unwrap_or_default()))
        .map(|s| format!("{}/{}", s.kind, s.name))
        .collect();
    assert!(subjects.contains(&"Group/mltenant:sealers".to_owned()), "{subjects:?}");
    assert!(!subjects.iter().any(|s| s.contains("system:authenticated")), "{subjects:?}");

    // Two Ready replicas, exactly one of which leads, and it holds the Lease.
    let pods: Vec<_> = pods(&client).await.into_iter().filter(is_ready).collect();
    assert_eq!(pods.len(), 2, "both replicas Ready");
    let mut leading = Vec::new();
    for pod in &pods {
        let metrics = pod_get(pod, "/metrics").await.expect("the pod's /metrics").1;
        if crate::harness::operator::parse_metric(&metrics, "mltenant_leader", &[]) == 1.0 {
            leading.push(name(pod));
        }
    }
    let holder = leader(&client).await;
    assert_eq!(leading.len(), 1, "exactly one replica leads: {leading:?}");
    assert_eq!(holder.as_deref(), Some(leading[0].as_str()), "the leader holds the Lease");

    // As shipped, seen from the node: each container's process runs as 65532 with no
    // capability, on a read-only root filesystem.
    let processes = operator_processes();
    for pod in &pods {
        let pid = processes.get(&name(pod)).unwrap_or_else(|| panic!("no process of {} on the node", name(pod)));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_default().trim().to_owned();
        assert!(field("Uid:").split_whitespace().all(|uid| uid == "65532"), "{}: Uid {}", name(pod), field("Uid:"));
        assert!(field("Gid:").split_whitespace().all(|gid| gid == "65532"), "{}: Gid {}", name(pod), field("Gid:"));
        assert_eq!(field("CapEff:"), "0000000000000000", "{}: effective capabilities", name(pod));
        assert_eq!(field("NoNewPrivs:"), "1", "{}: allowPrivilegeEscalation false", name(pod));
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let root = mounts.lines().find(|l| l.split(' ').nth(4) == Some("/")).expect("a root mount");
        assert!(root.split(' ').nth(5).is_some_and(|o| o.split(',').any(|o| o == "ro")), "{}: root {root}", name(pod));
    }

    // The leader created the first sealing key.
    let secrets = Api::<Secret>::namespaced(client.clone(), NAMESPACE);
    let keys = wait_for("a sealing key", TIMEOUT, || async {
        let lp = ListParams::default().labels("mltenant.io/sealing-key=active");
        Some(secrets.list(&lp).await.unwrap().items).filter(|k| !k.is_empty())
    })
    .await;
    assert_eq!(keys.len(), 1, "one sealing key: {:?}", keys.iter().map(|k| k.name_any()).collect::<Vec<_>>());
}
