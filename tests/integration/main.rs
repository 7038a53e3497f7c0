//! Integration tests against the real local control plane (etcd, kube-apiserver with RBAC,
//! kube-controller-manager). Run by `make test`, which starts and stops the control plane.

mod access;
mod chart;
mod cli;
mod controlplane;
mod format_v2;
mod format_v2_hostile;
// Shared with the fault suite and the soak (`#[path]`), each of which uses a part of it.
#[allow(dead_code, unused_imports)]
mod harness;
mod hostile;
mod kubectl;
mod kubeseal;
mod leader;
mod locality;
mod monitoring;
mod sealing_keys;
mod secrets;
mod tenants;
mod trust;
mod validate;
