//! The e2e tier: the operator as users run it. The image built here (hack/build-image.sh)
//! runs in pods on a real node (kubelet, containerd, runc, the CNI bridge, kube-proxy) of a
//! cluster living in a network namespace of its own, installed with `helm install`; the CLI
//! reaches it through the API server's service proxy; Prometheus scrapes the pods; Argo CD
//! syncs tenants from a local Git repository. Started by `hack/test-e2e.sh` (`make e2e`),
//! which runs these tests inside that namespace: every module but `finale` side by side (those
//! that take pods away one at a time), then `finale` alone.

// Shared with the integration tests, of which this tier uses a part.
#[allow(dead_code, unused_imports)]
#[path = "../integration/harness/mod.rs"]
mod harness;

mod argocd;
mod cli;
mod cluster;
mod demo;
mod finale;
mod handover;
mod install;
mod prometheus;
mod scrape;
