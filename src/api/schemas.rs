//! The schemas of the Kubernetes types our CRDs embed (`Condition`, `LabelSelector`), with the
//! bounds their generated schemas lack: the same YAML, the same Rust types, but every string,
//! list and map bounded as the rest of the API (see `limits`). Each function is a
//! `#[schemars(schema_with = ...)]` of the field that embeds the type.

use schemars::{Schema, SchemaGenerator};
use serde_json::{Value, json};

use super::limits::{self, *};

/// `status.conditions`: Kubernetes' own bounds on `metav1.Condition` (as its API types declare
/// them), the time range on `lastTransitionTime`, and at most `MAX_CONDITIONS` of them.
pub fn conditions(generator: &mut SchemaGenerator) -> Schema {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    let mut item = generator.subschema_for::<Condition>().to_value();
    let properties = &mut item["properties"];
    extend(&mut properties["type"], json!({"maxLength": CONDITION_TYPE_MAX, "pattern": CONDITION_TYPE_PATTERN}));
    extend(&mut properties["status"], json!({"enum": CONDITION_STATUSES}));
    extend(
        &mut properties["reason"],
        json!({"minLength": 1, "maxLength": CONDITION_REASON_MAX, "pattern": CONDITION_REASON_PATTERN}),
    );
    extend(&mut properties["message"], json!({"maxLength": CONDITION_MESSAGE_MAX}));
    extend(&mut properties["observedGeneration"], json!({"minimum": 0}));
    extend(&mut properties["lastTransitionTime"], time_bounds());
    schema(json!({"type": "array", "items": item, "maxItems": MAX_CONDITIONS}))
}

/// `spec.tenantSelector` (optional): a `LabelSelector` whose labels, expressions and values are
/// bounded and spelled as Kubernetes spells them.
pub fn optional_label_selector(generator: &mut SchemaGenerator) -> Schema {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    let mut selector = generator.subschema_for::<LabelSelector>().to_value();
    let properties = &mut selector["properties"];
    extend(&mut properties["matchLabels"], label_map("tenantSelector.matchLabels", MAX_SELECTOR_LABELS));
    let expressions = &mut properties["matchExpressions"];
    extend(expressions, json!({"maxItems": MAX_SELECTOR_EXPRESSIONS}));
    let requirement = &mut expressions["items"]["properties"];
    extend(
        &mut requirement["key"],
        json!({
            "maxLength": QUALIFIED_NAME_MAX,
            "pattern": QUALIFIED_NAME_PATTERN,
            "x-kubernetes-validations": [{"rule": limits::qualified_prefix_rule(), "message": limits::qualified_prefix_message()}],
        }),
    );
    extend(&mut requirement["operator"], json!({"enum": SELECTOR_OPERATORS}));
    extend(&mut requirement["values"], json!({"maxItems": MAX_SELECTOR_VALUES}));
    extend(&mut requirement["values"]["items"], label_value());
    extend(&mut selector, json!({"nullable": true}));
    schema(selector)
}

/// The bounds of a map of labels (`what` names it in messages): at most `max` entries, keys
/// qualified names, values label values, at most `MAX_MAP_CHARS` in all.
pub fn label_map(what: &str, max: usize) -> Value {
    json!({
        "maxProperties": max,
        "additionalProperties": label_value(),
        "x-kubernetes-validations": [
            {"rule": limits::qualified_keys_rule(false), "message": limits::qualified_keys_message(what)},
            {"rule": limits::map_size_rule(MAX_MAP_CHARS), "message": limits::map_size_message(what, MAX_MAP_CHARS)},
        ],
    })
}

/// A label value's schema.
pub fn label_value() -> Value {
    json!({"type": "string", "maxLength": LABEL_VALUE_MAX, "pattern": LABEL_VALUE_PATTERN})
}

/// The bounds of a `date-time`: its length and its range.
fn time_bounds() -> Value {
    json!({"maxLength": MAX_TIME_CHARS, "x-kubernetes-validations": limits::time_range_validations()})
}

/// Add (or replace) the keywords of `with` in the schema node `node`; a list of rules is
/// appended to the node's own.
fn extend(node: &mut Value, with: Value) {
    let (Some(node), Value::Object(with)) = (node.as_object_mut(), with) else {
        panic!("schema nodes are objects");
    };
    for (keyword, value) in with {
        match (node.get_mut(&keyword), value) {
            (Some(Value::Array(rules)), Value::Array(more)) if keyword == "x-kubernetes-validations" => {
                rules.extend(more)
            }
            (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
            (_, value) => {
                node.insert(keyword, value);
            }
        }
    }
}

fn schema(value: Value) -> Schema {
    Schema::try_from(value).expect("a schema node is an object")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Rules are appended to the node's own; any other keyword is replaced.
    #[test]
    fn extending_appends_rules_and_replaces_the_rest() {
        let mut node = json!({"x-kubernetes-validations": [{"rule": "a"}], "enum": ["x"], "maxLength": 1});
        extend(&mut node, json!({"x-kubernetes-validations": [{"rule": "b"}], "enum": ["y"], "maxLength": 2}));
        let expected =
            json!({"x-kubernetes-validations": [{"rule": "a"}, {"rule": "b"}], "enum": ["y"], "maxLength": 2});
        assert_eq!(node, expected);
    }
}
