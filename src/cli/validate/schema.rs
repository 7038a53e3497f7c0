//! The CRD's structural OpenAPI schema, applied to a manifest the way the API server applies it
//! on create: nulls of non-nullable fields pruned, defaults filled in, then types, `required`,
//! `enum`, `pattern`, lengths, item and property counts, formats, list sets and unknown fields
//! (`kubectl` asks for strict field validation). The schema is read as it is generated from
//! `crate::api`, keyword by keyword: a keyword this walker does not know is reported, never
//! skipped, so a schema change cannot make `validate` silently more lenient than the server.

use std::collections::HashMap;

use regex::Regex;
use serde_json::{Map, Value};

use super::error::{ErrorKind, FieldError, Path};

/// Keywords that only describe (or that the API server only uses elsewhere, like printer
/// hints): nothing to check.
const DESCRIPTIVE: &[&str] = &["description", "title", "example", "externalDocs", "x-kubernetes-map-type"];

/// Keywords checked below (`x-kubernetes-validations` by `super::rules`).
const CHECKED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "nullable",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "format",
    "default",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
];

/// Remove `null`s of fields that are neither nullable nor defaulted, as the API server does
/// before anything else: a `null` for a required field then reads as a missing field.
pub fn prune_nulls(value: &mut Value, schema: Option<&Value>) {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let sub = schema.and_then(|s| field_schema(s, &key));
                let prune = map[&key].is_null() && sub.is_some_and(|s| !nullable(s) && s.get("default").is_none());
                if prune {
                    map.remove(&key);
                } else if let Some(v) = map.get_mut(&key) {
                    prune_nulls(v, sub);
                }
            }
        }
        Value::Array(items) => {
            let sub = schema.and_then(|s| s.get("items"));
            for item in items {
                prune_nulls(item, sub);
            }
        }
        _ => {}
    }
}

/// Fill in the schema's `default`s for absent (or non-nullable `null`) properties.
pub fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in properties {
                    let Some(default) = sub.get("default") else { continue };
                    let missing = map.get(key).is_none_or(|v| v.is_null() && !nullable(sub));
                    if missing {
                        map.insert(key.clone(), default.clone());
                    }
                }
            }
            for (key, v) in map.iter_mut() {
                if let Some(sub) = field_schema(schema, key) {
                    apply_defaults(v, sub);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for item in items {
                    apply_defaults(item, sub);
                }
            }
        }
        _ => {}
    }
}

/// The schema of `key` in an object: its property, else the `additionalProperties` schema.
pub fn field_schema<'s>(schema: &'s Value, key: &str) -> Option<&'s Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

pub fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool).unwrap_or(false)
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// The JSON type of a value, in the schema's words.
pub fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A scalar value as the API server quotes it in an error; objects and arrays by their type.
pub fn shown(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) => type_of(value).to_owned(),
        other => other.to_string(),
    }
}

/// Checks values against schema nodes, compiling each `pattern` once.
#[derive(Default)]
pub struct Checker {
    patterns: HashMap<String, Result<Regex, String>>,
}

impl Checker {
    /// Check `value` at `path` against `schema`, adding what is wrong to `errors`. `known`
    /// lists the properties an object may hold beyond the schema's (the API server adds
    /// `apiVersion`, `kind` and `metadata` to a resource's root).
    pub fn check(&mut self, value: &Value, schema: &Value, path: &Path, known: &[&str], errors: &mut Vec<FieldError>) {
        let Some(keywords) = schema.as_object() else {
            errors.push(FieldError::unsupported(path, "the schema node is not an object"));
            return;
        };
        for keyword in keywords.keys() {
            if !CHECKED.contains(&keyword.as_str()) && !DESCRIPTIVE.contains(&keyword.as_str()) {
                errors.push(FieldError::unsupported(path, &format!("schema keyword {keyword:?}")));
            }
        }
        if value.is_null() {
            if !nullable(schema) {
                let expected = schema.get("type").and_then(Value::as_str).unwrap_or("a value");
                errors.push(FieldError::new(
                    path,
                    ErrorKind::TypeInvalid,
                    format!("must be of type {expected}, not null"),
                ));
            } else if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
                // The server's enum check never matches null, even with null among the values
                // (measured: `deletionPolicy: null` is refused although the field is nullable).
                let list: Vec<String> = allowed.iter().filter(|v| !v.is_null()).map(Value::to_string).collect();
                errors.push(FieldError::new(
                    path,
                    ErrorKind::NotSupported,
                    format!("null: supported values: {}", list.join(", ")),
                ));
            }
            return;
        }
        if flag(schema, "x-kubernetes-int-or-string") {
            if !matches!(type_of(value), "integer" | "string") {
                errors.push(FieldError::new(
                    path,
                    ErrorKind::TypeInvalid,
                    format!("must be an integer or a string, not {}", type_of(value)),
                ));
            }
            return;
        }
        let Some(expected) = schema.get("type").and_then(Value::as_str) else {
            if !flag(schema, "x-kubernetes-preserve-unknown-fields") {
                errors.push(FieldError::unsupported(path, "a schema node without a type"));
            }
            return;
        };
        let actual = type_of(value);
        if actual != expected && !(expected == "number" && actual == "integer") {
            errors.push(FieldError::new(
                path,
                ErrorKind::TypeInvalid,
                format!("must be of type {expected}, not {actual}"),
            ));
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            let list: Vec<String> = allowed.iter().filter(|v| !v.is_null()).map(Value::to_string).collect();
            errors.push(FieldError::new(
                path,
                ErrorKind::NotSupported,
                format!("{}: supported values: {}", shown(value), list.join(", ")),
            ));
        }
        match value {
            Value::String(text) => self.check_string(text, schema, path, errors),
            Value::Number(number) => check_number(number.as_f64().unwrap_or(f64::NAN), value, schema, path, errors),
            Value::Array(items) => self.check_array(items, schema, path, errors),
            Value::Object(map) => self.check_object(map, schema, path, known, errors),
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn check_string(&mut self, text: &str, schema: &Value, path: &Path, errors: &mut Vec<FieldError>) {
        // Lengths count characters (code points), as the API server's validator does.
        let length = text.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            errors.push(FieldError::new(path, ErrorKind::TooLong, format!("may not be more than {max} characters")));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            errors.push(FieldError::new(
                path,
                ErrorKind::Invalid,
                format!("{:?}: should be at least {min} characters long", text),
            ));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let compiled = self
                .patterns
                .entry(pattern.to_owned())
                .or_insert_with(|| Regex::new(pattern).map_err(|e| e.to_string()));
            match compiled {
                // Like the server's (RE2) validator: the pattern must match somewhere in the value.
                Ok(regex) if !regex.is_match(text) => errors.push(FieldError::new(
                    path,
                    ErrorKind::Invalid,
                    format!("{text:?}: should match '{pattern}'"),
                )),
                Ok(_) => {}
                Err(e) => errors.push(FieldError::unsupported(path, &format!("pattern {pattern:?}: {e}"))),
            }
        }
        if let Some(format) = schema.get("format").and_then(Value::as_str) {
            match format {
                "date-time" => {
                    if !is_date_time(text) {
                        // A format is part of the type for the server: a blocking error.
                        errors.push(FieldError::new(
                            path,
                            ErrorKind::TypeInvalid,
                            format!("{text:?}: must be of type date-time (RFC 3339, like 2027-03-01T00:00:00Z)"),
                        ));
                    }
                }
                // Numeric formats on a string, or formats the server does not check either.
                "int32" | "int64" | "float" | "double" | "password" => {}
                other => errors.push(FieldError::unsupported(path, &format!("string format {other:?}"))),
            }
        }
    }

    fn check_array(&mut self, items: &[Value], schema: &Value, path: &Path, errors: &mut Vec<FieldError>) {
        let count = items.len() as u64;
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && count > max
        {
            errors.push(FieldError::new(path, ErrorKind::TooMany, format!("{count}: must have at most {max} items")));
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && count < min
        {
            errors.push(FieldError::new(path, ErrorKind::Invalid, format!("should have at least {min} items")));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(item, item_schema, &path.index(i), &[], errors);
            }
        }
        check_list_type(items, schema, path, errors);
    }

    fn check_object(
        &mut self,
        map: &Map<String, Value>,
        schema: &Value,
        path: &Path,
        known: &[&str],
        errors: &mut Vec<FieldError>,
    ) {
        let count = map.len() as u64;
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && count > max
        {
            errors.push(FieldError::new(path, ErrorKind::TooMany, format!("{count}: must have at most {max} items")));
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && count < min
        {
            errors.push(FieldError::new(path, ErrorKind::Invalid, format!("should have at least {min} properties")));
        }
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if let Some(name) = required.as_str()
                && !map.contains_key(name)
            {
                errors.push(FieldError::new(&path.child(name), ErrorKind::Required, String::new()));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
        for (key, v) in map {
            // The server's schema validator names a map entry like a property
            // (`spec.template.labels.team`); its CEL validator writes `labels[team]`.
            let child = path.child(key);
            if let Some(sub) = properties.and_then(|p| p.get(key)) {
                self.check(v, sub, &child, &[], errors);
            } else if let Some(sub) = additional.filter(|a| a.is_object()) {
                self.check(v, sub, &child, &[], errors);
            } else if !(preserve || known.contains(&key.as_str()) || additional == Some(&Value::Bool(true))) {
                errors.push(FieldError::new(&child, ErrorKind::Unknown, String::new()));
            }
        }
    }
}

fn check_number(number: f64, value: &Value, schema: &Value, path: &Path, errors: &mut Vec<FieldError>) {
    let bound = |name: &str| schema.get(name).and_then(Value::as_f64);
    let exclusive = |name: &str| flag(schema, name);
    if let Some(min) = bound("minimum")
        && (number < min || (exclusive("exclusiveMinimum") && number == min))
    {
        errors.push(FieldError::new(path, ErrorKind::Invalid, format!("{}: should be at least {min}", shown(value))));
    }
    if let Some(max) = bound("maximum")
        && (number > max || (exclusive("exclusiveMaximum") && number == max))
    {
        errors.push(FieldError::new(path, ErrorKind::Invalid, format!("{}: should be at most {max}", shown(value))));
    }
}

/// `x-kubernetes-list-type`: `set` items are unique, `map` items unique by their
/// `x-kubernetes-list-map-keys`.
fn check_list_type(items: &[Value], schema: &Value, path: &Path, errors: &mut Vec<FieldError>) {
    let keys_of = |item: &Value| -> Value {
        match schema.get("x-kubernetes-list-map-keys").and_then(Value::as_array) {
            Some(keys) => Value::Array(
                keys.iter().map(|k| k.as_str().and_then(|k| item.get(k)).cloned().unwrap_or(Value::Null)).collect(),
            ),
            None => item.clone(),
        }
    };
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        None | Some("atomic") => {}
        Some("set" | "map") => {
            let mut seen: Vec<Value> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let key = keys_of(item);
                if seen.contains(&key) {
                    errors.push(FieldError::new(&path.index(i), ErrorKind::Duplicate, shown(&key)));
                } else {
                    seen.push(key);
                }
            }
        }
        Some(other) => errors.push(FieldError::unsupported(path, &format!("x-kubernetes-list-type {other:?}"))),
    }
}

/// RFC 3339 `date-time`, what the API server's validator accepts for that format: a full date,
/// `T` (either case), a time with optional fraction and a `Z` or numeric offset.
pub fn is_date_time(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    let Some((date, time)) = upper.split_once('T') else { return false };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let date_ok = matches!(date.split('-').collect::<Vec<_>>().as_slice(),
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 && digits(y) && digits(m) && digits(d));
    if !date_ok {
        return false;
    }
    let (clock, zone) = match time.find(['Z', '+', '-']) {
        Some(i) => time.split_at(i),
        None => return false,
    };
    let zone_ok = zone == "Z"
        || matches!(zone[1..].split(':').collect::<Vec<_>>().as_slice(),
            [h, m] if h.len() == 2 && m.len() == 2 && digits(h) && digits(m));
    let (hms, fraction) = clock.split_once('.').map_or((clock, None), |(a, b)| (a, Some(b)));
    // Go's parser refuses a leap second (60), which chrono would take.
    let hms_ok = matches!(hms.split(':').collect::<Vec<_>>().as_slice(),
        [h, m, s] if h.len() == 2 && m.len() == 2 && s.len() == 2 && digits(h) && digits(m) && digits(s) && *s < "60");
    // The shape is right; the calendar (month 13, February 30, hour 25) decides the rest. With
    // chrono, whose years go far beyond 9999, not jiff, whose last instant (9999-12-30T22:00:00Z)
    // would make a date-time the server takes, such as 9999-12-31T23:59:59Z, a type error here
    // instead of the range rule's refusal.
    zone_ok && hms_ok && fraction.is_none_or(digits) && chrono::DateTime::parse_from_rfc3339(&upper).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times() {
        for ok in [
            "2027-03-01T00:00:00Z",
            "2027-03-01t00:00:00z",
            "2027-03-01T00:00:00.5+02:00",
            "2027-03-01T23:59:59-01:30",
            "9999-12-31T23:59:59Z",
        ] {
            assert!(is_date_time(ok), "{ok}");
        }
        for bad in [
            "2027-03-01",
            "2027-13-01T00:00:00Z",
            "2027-03-01T00:00:00",
            "tomorrow",
            "2027-03-01 00:00:00Z",
            "2027-02-30T00:00:00Z",
            "2027-03-01T23:59:60Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_schema_keywords_are_reported_not_skipped() {
        let schema = serde_json::json!({"type": "string", "oneOf": [{"pattern": "a"}]});
        let mut errors = Vec::new();
        Checker::default().check(&Value::String("b".into()), &schema, &Path::root().child("x"), &[], &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].kind, ErrorKind::Unsupported);
        assert!(errors[0].to_string().contains("oneOf"), "{}", errors[0]);
    }

    #[test]
    fn nulls_of_non_nullable_fields_are_pruned_so_required_ones_read_as_missing() {
        let schema = serde_json::json!({"type": "object", "required": ["a"], "properties": {
            "a": {"type": "string"}, "b": {"type": "string", "nullable": true}}});
        let mut value = serde_json::json!({"a": null, "b": null});
        prune_nulls(&mut value, Some(&schema));
        assert_eq!(value, serde_json::json!({"b": null}));
        let mut errors = Vec::new();
        Checker::default().check(&value, &schema, &Path::root(), &[], &mut errors);
        assert_eq!(errors.iter().map(ToString::to_string).collect::<Vec<_>>(), ["a: Required value"]);
    }
}
