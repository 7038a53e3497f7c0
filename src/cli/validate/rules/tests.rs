use serde_json::json;

use super::*;

fn eval(rule: &str, value: Json, schema: Json) -> Vec<String> {
    let schema_with_rule = {
        let mut s = schema;
        s["x-kubernetes-validations"] = json!([{"rule": rule, "message": "no"}]);
        s
    };
    let mut errors = Vec::new();
    Rules::default().check(&value, &schema_with_rule, &Path::root().child("x"), false, &mut errors);
    errors.iter().map(ToString::to_string).collect()
}

fn holds(rule: &str) -> bool {
    let errors = eval(rule, json!("abc"), json!({"type": "string"}));
    assert!(errors.iter().all(|e| e.contains("Invalid value")), "{rule}: {errors:?}");
    errors.is_empty()
}

/// The standard functions and Kubernetes' libraries, each with a result that would differ if
/// it were wrong (the expected values are cel-go's, as the API server gives them).
#[test]
fn cel_functions_evaluate_as_in_kubernetes() {
    let checks = [
        "self == 'abc' && !(self != 'abc')",
        "self == 'x' || -(1) < 0",
        "1 <= 1 && 2 > 1 && 2 >= 2 && 1 + 1 == 2 && 3 - 1 == 2 && 2 * 3 == 6 && 7 / 2 == 3 && 7 % 2 == 1",
        "(size(self) == 3 ? 'y' : 'n') == 'y' && [1, 2][1] == 2 && 'b' in ['a', 'b']",
        "[1, 2, 3].all(x, x > 0) && [1, 2].exists(x, x == 2) && [1, 2, 2].exists_one(x, x == 1)",
        "[1, 2].map(x, x * 2) == [2, 4] && [1, 2, 3].filter(x, x > 1) == [2, 3] && has({'a': 1}.a)",
        "self.matches('^[a-c]+$') && !self.matches('^b') && self.startsWith('ab') && self.endsWith('bc') && self.contains('b')",
        "int('3') == 3 && uint(3) == 3u && double(1) == 1.0 && string(1) == '1'",
        "timestamp('2027-03-01T00:00:00Z') > timestamp('2026-03-01T00:00:00Z')",
        // strings (cel-go ext.Strings)
        "'AbC'.lowerAscii() == 'abc' && self.upperAscii() == 'ABC' && ' a '.trim() == 'a'",
        "'a,b'.split(',') == ['a', 'b'] && ['a', 'b'].join('-') == 'a-b' && self.replace('b', 'x') == 'axc'",
        "self.indexOf('c') == 2 && 'abca'.lastIndexOf('a') == 3 && self.substring(1) == 'bc' && self.charAt(0) == 'a'",
        // lists
        "[1, 2, 3].sum() == 6 && {}.map(k, size(k)).sum() == 0 && {'ab': 'cde', 'f': ''}.map(k, size(k)).sum() == 3",
        "[1, 2, 3].isSorted() && ![2, 1].isSorted() && [3, 1, 2].min() == 1 && [3, 1, 2].max() == 3 && [1, 2, 3].indexOf(2) == 1",
        // sets
        "sets.contains([1, 2, 3], [1, 3]) && !sets.contains([1], [2]) && sets.intersects([1, 2], [2, 5]) && sets.equivalent([1, 2], [2, 1, 1])",
        // quantity
        "quantity('1Gi').isGreaterThan(quantity('1G')) && quantity('500m').compareTo(quantity('0.5')) == 0 && quantity('2k').asInteger() == 2000",
        // IP and CIDR
        "ip('10.0.0.1').family() == 4 && cidr('10.0.0.0/8').containsIP(ip('10.1.2.3')) && !cidr('10.0.0.0/8').containsIP(ip('11.0.0.1')) && isIP('::1') && !isIP('1.2.3')",
        // URLs
        "url('https://example.com:8443/x?y=1').getHost() == 'example.com:8443' && url('https://example.com/p').getScheme() == 'https' && isURL('https://a') && !isURL('no scheme')",
        // semver
        "semver('1.2.3').isLessThan(semver('1.10.0')) && semver('2.0.0').major() == 2 && isSemver('1.2.3') && !isSemver('1.2')",
        // regex
        "'abc123'.find('[0-9]+') == '123' && 'a1b2'.findAll('[0-9]') == ['1', '2']",
    ];
    for rule in checks {
        assert!(holds(rule), "{rule} is false");
    }
    assert!(!holds("self.startsWith('b')"));
    assert!(!holds("quantity('1G').isGreaterThan(quantity('1Gi'))"));
    // Strings are measured in code points, as the server measures them.
    assert!(holds("size('é') == 1 && 'é'.size() == 1 && size(b'ab') == 2 && size({'a': 1}) == 1"));
}

/// The bounds' rules (`api::limits`) at their edges: sizes in characters, key syntax, and
/// the time range (at both ends, and at a date past what jiff can hold).
#[test]
fn the_bounds_rules_evaluate_at_their_edges() {
    use crate::api::limits;
    let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let size = limits::map_size_rule(6);
    assert!(eval(&size, json!({"ab": "cdé", "f": ""}), map.clone()).is_empty(), "2 + 3 + 1 characters");
    assert_eq!(eval(&size, json!({"ab": "cdéxy"}), map.clone()).len(), 1);
    let long_prefix = format!("{}/x", "a".repeat(254));
    for (key, label, annotation) in [
        ("team", true, true),
        ("example.com/team", true, true),
        (&*format!("{}/x", "a".repeat(253)), true, true),
        (&*format!("x/{}", "a".repeat(63)), true, true),
        ("Example.COM/x", false, true),
        (&*long_prefix, false, false),
        (&*format!("x/{}", "a".repeat(64)), false, false),
        ("a b", false, false),
        ("x/y/z", false, false),
        ("-a", false, false),
        ("", false, false),
    ] {
        let judged =
            |lowercase| eval(&limits::qualified_keys_rule(lowercase), json!({key: "v"}), map.clone()).is_empty();
        assert_eq!((judged(false), judged(true)), (label, annotation), "{key}");
    }
    let time = json!({"type": "string", "format": "date-time"});
    for (at, ok) in [
        ("1970-01-01T00:00:00Z", true),
        ("8999-12-31T23:59:59Z", true),
        ("1969-12-31T23:59:59Z", false),
        ("9000-01-01T00:00:00Z", false),
        ("9999-12-31T23:59:59Z", false),
    ] {
        assert_eq!(eval(&limits::time_range_rule(), json!(at), time.clone()).is_empty(), ok, "{at}");
    }
}

#[test]
fn rules_the_evaluator_cannot_run_are_errors_not_passes() {
    let string = json!({"type": "string"});
    let list = json!({"type": "array", "items": {"type": "integer"}});
    for (rule, value, schema) in [
        ("self.all(i, v, v > 0)", json!([1, 2]), list.clone()),
        ("self.exists(i, v, v > 5)", json!([1, 2]), list),
        ("self.frobnicate()", json!("a"), string.clone()),
        ("this does not parse", json!("a"), string.clone()),
        ("self", json!("a"), string.clone()),
    ] {
        let errors = eval(rule, value, schema);
        assert_eq!(errors.len(), 1, "{rule}: {errors:?}");
        assert!(errors[0].contains("cannot be checked offline"), "{rule}: {}", errors[0]);
    }
    // A transition rule does not run on create.
    assert!(eval("self == oldSelf", json!("a"), string).is_empty());
}

#[test]
fn values_are_converted_as_the_api_server_converts_them() {
    let schema = json!({"type": "object", "properties": {
        "namespace": {"type": "string", "nullable": true},
        "a-b": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    }});
    let object = json!({"namespace": null, "a-b": "x", "at": "2027-03-01T00:00:00Z", "labels": {"k/x": "v"}});
    let rule = "!has(self.__namespace__) && self.a__dash__b == 'x' && self.at > timestamp('2027-01-01T00:00:00Z') && 'k/x' in self.labels";
    assert!(eval(rule, object.clone(), schema.clone()).is_empty());
    let errors = eval("self.__namespace__ == 'x'", object, schema);
    assert!(errors[0].contains("No such key"), "{errors:?}");
    assert_eq!(escape("x__y").as_deref(), Some("x__underscores__y"));
    assert_eq!(escape("1x"), None);
}

#[test]
fn field_path_message_expression_and_reason_shape_the_error() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-validations": [
        {"rule": "self.a == 'b'", "messageExpression": "'a is ' + self.a", "fieldPath": ".a", "reason": "FieldValueForbidden"}
    ]});
    let mut errors = Vec::new();
    Rules::default().check(&json!({"a": "c"}), &schema, &Path::root().child("spec"), false, &mut errors);
    assert_eq!(errors.iter().map(ToString::to_string).collect::<Vec<_>>(), ["spec.a: Forbidden: a is c"]);
}
