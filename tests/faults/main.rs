//! The fault suite: the operator on a control plane that breaks under it (kube-apiserver and
//! etcd killed and restarted, the operator SIGKILLed while it creates its sealing key and while
//! it converges 100 tenants, its requests throttled by API Priority and Fairness, SIGTERMed
//! while etcd is frozen), its HTTP port flooded with RSA work and connections. Each test asserts
//! invariants (everything converges, Secrets hold their bundles' plaintext, nothing is
//! duplicated, half-written or orphaned), never timings but those Kubernetes enforces (a pod
//! gone 30 s after SIGTERM, a health probe answered within 1 s); what happened and how long
//! recovery took is printed.
//!
//! The tests kill control-plane components or need the cores to themselves, so they run on a
//! control plane of their own, one at a time: `hack/test-faults.sh` (part of `make test`).

// Shared with the integration tests and the soak, each of which uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../integration/harness/mod.rs"]
mod harness;

mod connections;
mod controlplane;
// Shared with the soak, which uses more of it.
#[allow(dead_code, unused_imports)]
mod fleet;
mod hostile;
mod invariants;
mod operator_crash;
mod outage;
mod shutdown;
mod throttling;
