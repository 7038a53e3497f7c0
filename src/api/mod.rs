//! The two custom resources of the `mltenant.io` API group: the source of truth for the CRDs
//! in `crds/` (`mltenant crds` prints them, a test diffs them).

mod bundle;
mod tenant;

pub use bundle::{BundleScope, SealedBundle, SealedBundleSpec, SealedBundleStatus, SecretTemplate};
pub use tenant::{
    DeletionPolicy, EnvironmentSpec, EnvironmentStatus, MLTenant, MLTenantSpec, MLTenantStatus, SecretReader,
    SecretSpec, SecretStatus, ServiceAccountRef,
};

use kube::CustomResourceExt;

/// API group of both kinds.
pub const GROUP: &str = "mltenant.io";

/// Both CRDs as one multi-document YAML stream, exactly as committed under `crds/`.
pub fn crds_yaml() -> String {
    [MLTenant::crd(), SealedBundle::crd()]
        .iter()
        .map(|crd| format!("---\n{}", serde_yaml::to_string(crd).expect("a CRD always serializes")))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_crds_match_the_rust_types() {
        let committed = include_str!("../../crds/mltenant.io.yaml");
        assert!(
            super::crds_yaml() == committed,
            "crds/mltenant.io.yaml is stale: run `make crds` and commit the result"
        );
    }
}
