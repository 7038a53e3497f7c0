//! The two custom resources of the `mltenant.io` API group: the source of truth for the CRDs
//! in `crds/` (`mltenant crds` prints them, a test diffs them).

mod bundle;
pub mod conditions;
pub mod environments;
pub mod labels;
pub mod limits;
mod tenant;

pub use bundle::{BundleScope, SealedBundle, SealedBundleSpec, SealedBundleStatus, SecretTemplate};
pub use tenant::{
    DeletionPolicy, EnvironmentSpec, EnvironmentStatus, MLTenant, MLTenantSpec, MLTenantStatus, OwnedKind, OwnedObject,
    SecretReader, SecretSpec, SecretStatus, ServiceAccountRef,
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
        let committed = [
            ("crds/mltenant.io.yaml", include_str!("../../crds/mltenant.io.yaml")),
            (
                "charts/mltenant-operator/crds/mltenant.io.yaml",
                include_str!("../../charts/mltenant-operator/crds/mltenant.io.yaml"),
            ),
        ];
        for (path, yaml) in committed {
            assert!(super::crds_yaml() == yaml, "{path} is stale: run `make crds` and commit the result");
        }
    }

    #[test]
    fn chart_version_and_app_version_follow_the_crate() {
        let chart: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../charts/mltenant-operator/Chart.yaml")).expect("Chart.yaml parses");
        for field in ["version", "appVersion"] {
            assert_eq!(
                chart[field].as_str(),
                Some(env!("CARGO_PKG_VERSION")),
                "Chart.yaml {field} must equal the crate version in Cargo.toml"
            );
        }
    }
}
