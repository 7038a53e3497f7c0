//! `metadata` of a manifest, which no CRD schema describes: the API server checks it against
//! its own object-metadata rules (names are DNS subdomains, label and annotation keys are
//! qualified names, label values are short) and refuses unknown fields.

use regex::Regex;
use serde_json::Value;

use super::error::{ErrorKind, FieldError, Path};
use super::schema::type_of;

/// The fields of `ObjectMeta` a manifest may carry.
const FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Total size limit of all annotations, keys and values.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

fn dns_subdomain() -> Regex {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").expect("valid regex")
}

fn qualified_name_part() -> Regex {
    Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("valid regex")
}

/// Why `name` is not a DNS-1123 subdomain, if it is not. A `generateName` prefix may end in `-`.
fn subdomain_problem(name: &str, prefix: bool) -> Option<String> {
    let checked = if prefix && name.ends_with('-') { format!("{}a", &name[..name.len() - 1]) } else { name.to_owned() };
    if checked.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    (!dns_subdomain().is_match(&checked)).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into()
    })
}

/// Why `key` is not a qualified name (`[prefix/]name`), if it is not.
fn qualified_name_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split('/').collect::<Vec<_>>().as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => return Some("a qualified name must be [prefix/]name with at most one '/'".into()),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some("prefix part must be non-empty".into());
        }
        if let Some(problem) = subdomain_problem(prefix, false) {
            return Some(format!("prefix part {problem}"));
        }
    }
    if name.is_empty() || name.len() > 63 || !qualified_name_part().is_match(name) {
        return Some("name part must be at most 63 characters: alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric".into());
    }
    None
}

fn label_value_problem(value: &str) -> Option<String> {
    (value.len() > 63 || !(value.is_empty() || qualified_name_part().is_match(value))).then(|| {
        "a label value must be at most 63 characters, empty or alphanumerics, '-', '_' or '.' starting and ending with an alphanumeric".into()
    })
}

fn string_map<'v>(value: &'v Value, path: &Path, errors: &mut Vec<FieldError>) -> Vec<(&'v String, &'v str)> {
    let Some(map) = value.as_object() else {
        errors.push(FieldError::new(
            path,
            ErrorKind::TypeInvalid,
            format!("must be of type object, not {}", type_of(value)),
        ));
        return Vec::new();
    };
    map.iter()
        .filter_map(|(k, v)| match v.as_str() {
            Some(s) => Some((k, s)),
            None => {
                errors.push(FieldError::new(
                    &path.key(k),
                    ErrorKind::TypeInvalid,
                    format!("must be of type string, not {}", type_of(v)),
                ));
                None
            }
        })
        .collect()
}

/// Check a manifest's `metadata` (absent counts as empty) as the API server does on create.
pub fn check(metadata: Option<&Value>, errors: &mut Vec<FieldError>) {
    let path = Path::root().child("metadata");
    let empty = serde_json::Map::new();
    let map = match metadata {
        None => &empty,
        Some(Value::Object(map)) => map,
        Some(other) => {
            errors.push(FieldError::new(
                &path,
                ErrorKind::TypeInvalid,
                format!("must be of type object, not {}", type_of(other)),
            ));
            return;
        }
    };
    for key in map.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        errors.push(FieldError::new(&path.child(key), ErrorKind::Unknown, String::new()));
    }
    let text = |key: &str| map.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    match (text("name"), text("generateName")) {
        (None, None) => {
            errors.push(FieldError::new(&path.child("name"), ErrorKind::Required, "name or generateName is required"))
        }
        (Some(name), _) => {
            if let Some(problem) = subdomain_problem(name, false) {
                errors.push(FieldError::new(&path.child("name"), ErrorKind::Invalid, format!("{name:?}: {problem}")));
            }
        }
        (None, Some(_)) => {}
    }
    if let Some(prefix) = text("generateName")
        && let Some(problem) = subdomain_problem(prefix, true)
    {
        errors.push(FieldError::new(&path.child("generateName"), ErrorKind::Invalid, format!("{prefix:?}: {problem}")));
    }
    // A `resourceVersion` is not refused: the API server refuses it on create, but kubectl
    // (create, apply, apply --server-side) drops it before creating (measured), so the verdict
    // users get is "valid".
    if let Some(labels) = map.get("labels").filter(|v| !v.is_null()) {
        let labels_path = path.child("labels");
        for (key, value) in string_map(labels, &labels_path, errors) {
            if let Some(problem) = qualified_name_problem(key) {
                errors.push(FieldError::new(&labels_path, ErrorKind::Invalid, format!("{key:?}: {problem}")));
            }
            // Like the server: the error is about the labels, quoting the value.
            if let Some(problem) = label_value_problem(value) {
                errors.push(FieldError::new(&labels_path, ErrorKind::Invalid, format!("{value:?}: {problem}")));
            }
        }
    }
    if let Some(annotations) = map.get("annotations").filter(|v| !v.is_null()) {
        let annotations_path = path.child("annotations");
        let mut total = 0;
        for (key, value) in string_map(annotations, &annotations_path, errors) {
            total += key.len() + value.len();
            if let Some(problem) = qualified_name_problem(&key.to_lowercase()) {
                errors.push(FieldError::new(&annotations_path, ErrorKind::Invalid, format!("{key:?}: {problem}")));
            }
        }
        if total > ANNOTATIONS_MAX_BYTES {
            errors.push(FieldError::new(
                &annotations_path,
                ErrorKind::TooLong,
                format!("may not be more than {ANNOTATIONS_MAX_BYTES} bytes"),
            ));
        }
    }
    if let Some(finalizers) = map.get("finalizers").filter(|v| !v.is_null()) {
        let finalizers_path = path.child("finalizers");
        match finalizers.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(name) => {
                            if let Some(problem) = qualified_name_problem(name) {
                                errors.push(FieldError::new(
                                    &finalizers_path.index(i),
                                    ErrorKind::Invalid,
                                    format!("{name:?}: {problem}"),
                                ));
                            }
                        }
                        None => errors.push(FieldError::new(
                            &finalizers_path.index(i),
                            ErrorKind::TypeInvalid,
                            format!("must be of type string, not {}", type_of(item)),
                        )),
                    }
                }
            }
            None => errors.push(FieldError::new(
                &finalizers_path,
                ErrorKind::TypeInvalid,
                format!("must be of type array, not {}", type_of(finalizers)),
            )),
        }
    }
}

/// Give an object created with only `generateName` the kind of name the API server generates
/// (the prefix and five characters) before it validates, so rules about the name see one.
pub fn generate_name(object: &mut Value) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let has_name = metadata.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    if let (false, Some(prefix)) = (has_name, metadata.get("generateName").and_then(Value::as_str)) {
        let generated = format!("{prefix}x0x0x");
        metadata.insert("name".into(), Value::String(generated));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_label_keys() {
        assert_eq!(subdomain_problem("financial-ml.a", false), None);
        assert!(subdomain_problem("Financial", false).is_some());
        assert_eq!(subdomain_problem("tenant-", true), None);
        assert_eq!(qualified_name_problem("mltenant.io/tenant"), None);
        assert_eq!(qualified_name_problem("team"), None);
        assert!(qualified_name_problem("a/b/c").is_some());
        assert!(qualified_name_problem("Example.COM/x").is_some());
        assert!(qualified_name_problem("-x").is_some());
        assert_eq!(label_value_problem(""), None);
        assert!(label_value_problem(&"a".repeat(64)).is_some());
    }
}
