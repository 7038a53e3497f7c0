//! The two custom resources of the `mltenant.io` API group: the source of truth for the CRDs
//! in `crds/` (`mltenant crds` prints them, a test diffs them).

pub mod bounds;
mod bundle;
pub mod conditions;
pub mod environments;
pub mod labels;
pub mod limits;
mod schemas;
mod tenant;

pub use bounds::OutOfBounds;
pub use bundle::{BundleScope, SealedBundle, SealedBundleSpec, SealedBundleStatus, SecretTemplate};
pub use tenant::{
    DeletionPolicy, EnvironmentSpec, EnvironmentStatus, MLTenant, MLTenantSpec, MLTenantStatus, OwnedKind, OwnedObject,
    ReaderStatus, SecretReader, SecretSpec, SecretStatus, ServiceAccountRef,
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

    /// Rule 9: every field of both kinds, spec and status, is bounded by the CRD. Walks the
    /// generated schemas and names each field that is not, with how to bound it.
    #[test]
    fn every_field_is_bounded() {
        use kube::CustomResourceExt;
        use serde_json::Value;

        use super::limits;

        fn has_rule(node: &Value, test: impl Fn(&str) -> bool) -> bool {
            let rules = node.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten();
            rules.filter_map(|r| r.get("rule").and_then(Value::as_str)).any(test)
        }
        fn missing(unbounded: &mut Vec<String>, path: &str, what: &str, fix: &str) {
            unbounded.push(format!("{path}: {what}: {fix}"));
        }
        fn walk(node: &Value, path: &str, unbounded: &mut Vec<String>) {
            let has = |keyword: &str| node.get(keyword).is_some();
            match node.get("type").and_then(Value::as_str) {
                Some("string") => {
                    if !has("maxLength") && !has("enum") {
                        missing(
                            unbounded,
                            path,
                            "a string without maxLength",
                            "add #[schemars(length(max = ...))] with a constant of api::limits (and its pattern if it names an object), or make it an enum",
                        );
                    }
                    if node.get("format").and_then(Value::as_str) == Some("date-time")
                        && !has_rule(node, |r| r == limits::time_range_rule())
                    {
                        missing(
                            unbounded,
                            path,
                            "a date-time without a range",
                            "add limits::time_range_rule() (x_kube validation, or extend(\"x-kubernetes-validations\" = limits::time_range_validations()))",
                        );
                    }
                }
                Some("integer" | "number") => {
                    if !has("minimum") {
                        missing(unbounded, path, "a number without a minimum", "add #[schemars(range(min = ...))]");
                    }
                }
                Some("boolean") => {}
                Some("array") => {
                    if !has("maxItems") {
                        missing(
                            unbounded,
                            path,
                            "a list without maxItems",
                            "add #[schemars(length(max = ...))] with a constant of api::limits",
                        );
                    }
                    match node.get("items") {
                        Some(items) => walk(items, &format!("{path}[]"), unbounded),
                        None => missing(unbounded, path, "a list without an item schema", "give its items a type"),
                    }
                }
                Some("object") => {
                    let properties = node.get("properties").and_then(Value::as_object);
                    let additional = node.get("additionalProperties").filter(|a| a.is_object());
                    for (name, property) in properties.into_iter().flatten() {
                        walk(property, &format!("{path}.{name}"), unbounded);
                    }
                    if let Some(values) = additional {
                        if !has("maxProperties") {
                            missing(
                                unbounded,
                                path,
                                "a map without maxProperties",
                                "add #[schemars(extend(\"maxProperties\" = ...))] with a constant of api::limits",
                            );
                        }
                        if values.get("type").and_then(Value::as_str) == Some("string")
                            && !has_rule(node, |r| r.starts_with(limits::MAP_SIZE_RULE_PREFIX))
                        {
                            missing(
                                unbounded,
                                path,
                                "a map of strings without a total size",
                                "add the rule limits::map_size_rule(...) (keys and values together)",
                            );
                        }
                        walk(values, &format!("{path}[*]"), unbounded);
                    }
                    if properties.is_none() && additional.is_none() {
                        missing(
                            unbounded,
                            path,
                            "an object of any shape",
                            "describe its properties (no preserve-unknown-fields)",
                        );
                    }
                }
                other => missing(unbounded, path, &format!("type {other:?}"), "give the field a type this test knows"),
            }
        }

        let mut unbounded = Vec::new();
        let mut walked = 0;
        for crd in [super::MLTenant::crd(), super::SealedBundle::crd()] {
            let crd = serde_json::to_value(crd).unwrap();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
            for version in crd["spec"]["versions"].as_array().unwrap() {
                let root = &version["schema"]["openAPIV3Schema"]["properties"];
                for top in ["spec", "status"] {
                    assert!(root[top].is_object(), "{kind} has no {top}");
                    walk(&root[top], &format!("{kind} .{top}"), &mut unbounded);
                    walked += 1;
                }
            }
        }
        assert_eq!(walked, 4);
        // The walk finds what it must: each of these misses one bound.
        let mut found = Vec::new();
        let sample = serde_json::json!({"type": "object", "properties": {
            "name": {"type": "string"},
            "list": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "map": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string", "maxLength": 1}},
            "at": {"type": "string", "format": "date-time", "maxLength": 64},
            "count": {"type": "integer"},
        }});
        walk(&sample, "Sample", &mut found);
        let fields: Vec<&str> = found.iter().map(|f| f.split(':').next().unwrap()).collect();
        assert_eq!(fields, ["Sample.at", "Sample.count", "Sample.list", "Sample.map", "Sample.name"], "{found:#?}");
        assert!(
            unbounded.is_empty(),
            "unbounded fields (DESIGN rule 9; bound them in the CRD and at run time):\n{}",
            unbounded.join("\n")
        );
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
