use serde_json::json;

use super::*;

fn problems(document: Value) -> Vec<String> {
    check(&document).1.iter().map(ToString::to_string).collect()
}

fn tenant(spec: Value) -> Value {
    json!({"apiVersion": "mltenant.io/v1alpha1", "kind": "MLTenant", "metadata": {"name": "financial-ml"}, "spec": spec})
}

#[test]
fn a_valid_tenant_passes() {
    let t = tenant(json!({"environments": [{"name": "dev"}, {"name": "production", "labels": {"team": "a"}}],
            "secrets": [{"name": "ml-platform", "bundle": "b", "environments": ["dev"]}]}));
    assert_eq!(problems(t), Vec::<String>::new());
}

/// What the old hand-written validate let through, refused here by the CRD's own rules.
#[test]
fn the_crd_rules_apply() {
    let undeclared = tenant(json!({"environments": [{"name": "dev"}],
            "secrets": [{"name": "s", "bundle": "b", "environments": ["dev", "qa"]}]}));
    assert_eq!(
        problems(undeclared),
        ["spec: Invalid value: secrets[].environments must only name environments declared in spec.environments"]
    );
    let reserved = tenant(json!({"environments": [{"name": "dev", "labels": {"mltenant.io/tenant": "x"}}]}));
    assert!(
        problems(reserved)[0]
            .starts_with("spec.environments[0].labels: Invalid value: namespace labels must not use the prefixes")
    );
    let duplicate = tenant(json!({"environments": [{"name": "dev"}],
            "secrets": [{"name": "s", "bundle": "a"}, {"name": "s", "bundle": "b"}]}));
    assert_eq!(problems(duplicate), ["spec.secrets: Invalid value: secret names must be unique"]);
}

#[test]
fn schema_errors_name_the_field_and_stop_the_rules() {
    let t = tenant(json!({"environments": [{"name": "Dev"}, {"name": 3}], "color": "blue"}));
    assert_eq!(
        problems(t),
        [
            "spec.color: unknown field (not in the CRD schema)",
            "spec.environments[0].name: Invalid value: \"Dev\": should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
            "spec.environments[1].name: Invalid type: must be of type string, not integer",
            "Invalid value: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );
}

#[test]
fn bundles_get_the_sealed_format_check_after_the_crd_rules() {
    let bundle = |spec: Value| json!({"apiVersion": "mltenant.io/v1alpha1", "kind": "SealedBundle", "metadata": {"name": "b"}, "spec": spec});
    assert_eq!(
        problems(bundle(json!({"scope": "Tenant", "tenant": "t", "encryptedData": {"K": "not*base64"}}))),
        [
            "spec.encryptedData[K]: Invalid value (the operator's own check; the API server accepts it): sealed value is not valid base64"
        ]
    );
    assert_eq!(
        problems(bundle(json!({"scope": "Cluster", "tenant": "t", "tenantSelector": {}, "encryptedData": {"K": "x"}}))),
        ["spec: Invalid value: tenant is required for Tenant and Environment scope and not allowed for Cluster scope"]
    );
}

/// Rule 9: what the CRD refuses for a bound, the operator refuses at run time (for an
/// object stored under an older CRD), from the same constants, naming the same field; and
/// what sits exactly at a bound passes both.
#[test]
fn the_crd_and_the_operator_hold_the_same_bounds() {
    use crate::api::limits::{MAX_SEALED_VALUE_CHARS, MAX_VALUES};
    let crd_refuses = |doc: &Value| check(doc).1.iter().any(|e| e.kind != ErrorKind::Operator);
    let runtime = |doc: &Value| match doc["kind"].as_str() {
        Some("MLTenant") => serde_json::from_value::<MLTenant>(doc.clone()).unwrap().spec.check_bounds(),
        _ => serde_json::from_value::<SealedBundle>(doc.clone()).unwrap().spec.check_bounds(),
    };
    let with = |base: &Value, pointer: &str, value: Value| {
        let mut doc = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        doc.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{pointer}"))
            .insert(key.into(), value);
        doc
    };
    let t = tenant(json!({"environments": [{"name": "dev", "labels": {}}],
            "secrets": [{"name": "s", "bundle": "b", "environmentBundles": {}, "environments": ["dev"]}],
            "secretReaders": [{"serviceAccount": {"namespace": "argowf", "name": "argo"}, "secrets": ["s"]}]}));
    let b = json!({"apiVersion": "mltenant.io/v1alpha1", "kind": "SealedBundle", "metadata": {"name": "b"},
            "spec": {"scope": "Tenant", "tenant": "t", "template": {"labels": {}, "annotations": {}}, "encryptedData": {"K": "x"}}});
    let c = json!({"apiVersion": "mltenant.io/v1alpha1", "kind": "SealedBundle", "metadata": {"name": "c"},
            "spec": {"scope": "Cluster", "tenantSelector": {"matchLabels": {}, "matchExpressions": []}, "encryptedData": {"K": "x"}}});
    let map = |n: usize, entry: &dyn Fn(usize) -> (String, String)| -> Value {
        Value::Object((0..n).map(entry).map(|(k, v)| (k, Value::String(v))).collect())
    };
    let long_key = |i: usize| format!("{}{i:03}.example.com/{}", "p".repeat(238), "n".repeat(63));
    let envs = |n: usize| {
        let names = std::iter::once("dev".to_owned()).chain((1..n).map(|i| format!("e{i}")));
        json!(names.map(|name| json!({"name": name})).collect::<Vec<_>>())
    };
    let expression = |key: &str, operator: &str, values: usize| json!([{"key": key, "operator": operator, "values": (0..values).map(|i| format!("v{i}")).collect::<Vec<_>>()}]);
    let sealed = |n: usize| "A".repeat(n);
    // (document, the field the run-time check names; None: at a bound, both accept)
    let cases: Vec<(Value, Option<&str>)> = vec![
        (t.clone(), None),
        (with(&t, "/spec/environments", envs(16)), None),
        (with(&t, "/spec/environments", envs(17)), Some("spec.environments")),
        (with(&t, "/spec/secrets/0/environmentBundles", json!({"dev": "a".repeat(253)})), None),
        (
            with(&t, "/spec/secrets/0/environmentBundles", json!({"dev": "a".repeat(254)})),
            Some("spec.secrets[0].environmentBundles"),
        ),
        (
            with(&t, "/spec/secrets/0/environmentBundles", json!({"dev": "my platform bundle"})),
            Some("spec.secrets[0].environmentBundles"),
        ),
        (with(&t, "/spec/secrets/0/environments", json!(["dev env"])), Some("spec.secrets[0].environments[0]")),
        (with(&t, "/spec/secrets/0/environments", json!([])), Some("spec.secrets[0].environments")),
        (with(&t, "/spec/secretReaders/0/secrets", json!(["ML Platform"])), Some("spec.secretReaders[0].secrets[0]")),
        (with(&t, "/spec/environments/0/labels", json!({"team": "v".repeat(63), "empty": ""})), None),
        (with(&t, "/spec/environments/0/labels", json!({"team": "a team"})), Some("spec.environments[0].labels")),
        (with(&t, "/spec/environments/0/labels", json!({"team name": "a"})), Some("spec.environments[0].labels")),
        (with(&t, "/spec/environments/0/labels", map(51, &|i| (long_key(i), "v".into()))), None),
        (
            with(&t, "/spec/environments/0/labels", map(55, &|i| (long_key(i), "v".into()))),
            Some("spec.environments[0].labels"),
        ),
        (
            with(&t, "/spec/environments/0/labels", map(65, &|i| (format!("l{i}"), "v".into()))),
            Some("spec.environments[0].labels"),
        ),
        (b.clone(), None),
        (with(&b, "/spec/tenant", json!("Financial_ML")), Some("spec.tenant")),
        (with(&b, "/spec/expiresAt", json!("8999-12-31T23:59:59Z")), None),
        (with(&b, "/spec/expiresAt", json!("9500-01-01T00:00:00Z")), Some("spec.expiresAt")),
        (with(&b, "/spec/expiresAt", json!("1969-12-31T23:59:59Z")), Some("spec.expiresAt")),
        (with(&b, "/spec/template/annotations", map(4, &|i| (format!("note-{i}"), "x".repeat(4090)))), None),
        (
            with(&b, "/spec/template/annotations", map(5, &|i| (format!("note-{i}"), "x".repeat(3500)))),
            Some("spec.template.annotations"),
        ),
        (with(&b, "/spec/template/annotations", json!({"note": "x".repeat(4097)})), Some("spec.template.annotations")),
        (with(&b, "/spec/template/annotations", json!({"owner team": "x"})), Some("spec.template.annotations")),
        (with(&b, "/spec/template/annotations", json!({"Example.COM/owner": "x"})), None),
        (
            with(&b, "/spec/template/annotations", map(65, &|i| (format!("a{i}"), "x".into()))),
            Some("spec.template.annotations"),
        ),
        (with(&b, "/spec/template/labels", json!({"-team": "x"})), Some("spec.template.labels")),
        (with(&b, "/spec/template/labels", json!({"team": "a b"})), Some("spec.template.labels")),
        (with(&b, "/spec/encryptedData", json!({"K".repeat(254): "x"})), Some("spec.encryptedData")),
        (with(&b, "/spec/encryptedData", json!({"K": sealed(MAX_SEALED_VALUE_CHARS)})), None),
        (with(&b, "/spec/encryptedData", json!({"K": sealed(MAX_SEALED_VALUE_CHARS + 1)})), Some("spec.encryptedData")),
        (
            with(&b, "/spec/encryptedData", map(2, &|i| (format!("K{i}"), sealed(MAX_SEALED_VALUE_CHARS - 1000)))),
            Some("spec.encryptedData"),
        ),
        (with(&b, "/spec/encryptedData", map(MAX_VALUES, &|i| (format!("K{i}"), "x".into()))), None),
        (c.clone(), None),
        (with(&c, "/spec/tenantSelector/matchLabels", map(16, &|i| (format!("tier{i}"), "g".repeat(63)))), None),
        (
            with(&c, "/spec/tenantSelector/matchLabels", map(17, &|i| (format!("tier{i}"), "gold".into()))),
            Some("spec.tenantSelector.matchLabels"),
        ),
        (
            with(&c, "/spec/tenantSelector/matchLabels", json!({"tier": "g".repeat(64)})),
            Some("spec.tenantSelector.matchLabels"),
        ),
        (with(&c, "/spec/tenantSelector/matchExpressions", expression("example.com/tier", "In", 64)), None),
        (
            with(&c, "/spec/tenantSelector/matchExpressions", expression("tier", "In", 65)),
            Some("spec.tenantSelector.matchExpressions[0].values"),
        ),
        (
            with(&c, "/spec/tenantSelector/matchExpressions", expression("tier", "Matches", 1)),
            Some("spec.tenantSelector.matchExpressions[0].operator"),
        ),
        (
            with(&c, "/spec/tenantSelector/matchExpressions", expression(&"a".repeat(318), "Exists", 0)),
            Some("spec.tenantSelector.matchExpressions[0].key"),
        ),
        (
            with(
                &c,
                "/spec/tenantSelector/matchExpressions",
                expression(&format!("{}/x", "a".repeat(254)), "Exists", 0),
            ),
            Some("spec.tenantSelector.matchExpressions[0].key"),
        ),
        (
            with(
                &c,
                "/spec/tenantSelector/matchExpressions",
                json!((0..17).map(|i| json!({"key": format!("k{i}"), "operator": "Exists"})).collect::<Vec<_>>()),
            ),
            Some("spec.tenantSelector.matchExpressions"),
        ),
    ];
    for (doc, field) in &cases {
        let what = |doc: &Value| {
            let text = doc["spec"].to_string();
            crate::text::shorten(&text, 160)
        };
        assert_eq!(crd_refuses(doc), field.is_some(), "the CRD on {}: {:?}", what(doc), check(doc).1);
        match (runtime(doc), field) {
            (Ok(()), None) => {}
            (Err(out), Some(field)) => assert_eq!(out.field, *field, "{}: {out}", what(doc)),
            (got, want) => panic!("the run-time check on {}: {got:?}, expected {want:?}", what(doc)),
        }
    }
}

#[test]
fn kind_api_version_and_metadata() {
    assert_eq!(
        problems(json!({"kind": "Secret"})),
        ["kind: Unsupported value: \"Secret\": supported values: \"MLTenant\", \"SealedBundle\""]
    );
    let mut t = tenant(json!({"environments": [{"name": "dev"}]}));
    t["apiVersion"] = json!("mltenant.io/v1");
    assert_eq!(problems(t), ["apiVersion: Invalid value: must be mltenant.io/v1alpha1"]);
    let mut t = tenant(json!({"environments": [{"name": "dev"}]}));
    t["metadata"] = json!({"name": "Financial", "labels": {"a/b/c": "x"}});
    let found = problems(t);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("metadata.name: Invalid value: \"Financial\""), "{found:?}");
}
