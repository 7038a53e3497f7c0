//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated offline where the schema puts
//! them: `self` is the value at that node, converted the way the API server converts it
//! (reserved and special property names escaped, `null` properties absent, `date-time` strings
//! as timestamps, the root with only `apiVersion`, `kind`, `metadata.name` and
//! `metadata.generateName`), and `oldSelf` absent, as on create.
//!
//! The rules are the CRD's own, read from the schema; none is copied here. The functions are
//! Kubernetes' CEL libraries as kube's `cel` feature provides them (kube-cel: strings, lists,
//! sets, regex, URLs, IP/CIDR, quantity, semver, format); the walk, the conversion of values
//! and the shape of each error are the API server's, which the validate corpus checks against
//! the real server. What cannot be evaluated (a function or macro the libraries lack, such as
//! the two-variable comprehensions, a transition rule that runs on create, an error of the
//! interpreter itself) is reported as an error, so a new rule never passes unchecked.

use std::collections::HashMap;
use std::sync::Arc;

use kube::core::cel::KubeCelExt as _;
use kube::core::cel::cel::extractors::This;
use kube::core::cel::cel::objects::{Key, Map};
use kube::core::cel::cel::{self, Context, ExecutionError, Program};
use serde_json::Value as Json;

use super::error::{ErrorKind, FieldError, Path};
use super::schema::shown;

/// Keys of one `x-kubernetes-validations` entry.
const RULE_KEYS: &[&str] = &["rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"];

pub struct Rules {
    /// The standard functions and Kubernetes' libraries; each rule runs in a scope of its own.
    functions: Context<'static>,
    programs: HashMap<String, Result<Arc<Program>, String>>,
}

impl Default for Rules {
    fn default() -> Self {
        let mut functions = Context::default().with_all();
        functions.add_function("size", size);
        Self { functions, programs: HashMap::new() }
    }
}

/// CEL's `size`, a string's in code points as the API server counts it (cel 0.13's own counts
/// bytes, so a bound in characters would refuse a value with an accent the server accepts).
fn size(ftx: &cel::FunctionContext, This(this): This<cel::Value>) -> Result<i64, ExecutionError> {
    let size = match this {
        cel::Value::String(s) => s.chars().count(),
        cel::Value::Bytes(b) => b.len(),
        cel::Value::List(l) => l.len(),
        cel::Value::Map(m) => m.map.len(),
        other => return Err(ftx.error(format!("no size of {other:?}"))),
    };
    i64::try_from(size).map_err(|_| ftx.error("size beyond int64"))
}

impl Rules {
    /// Evaluate every rule in `schema` and below it against `value` at `path`, as the API
    /// server walks them: rules of a node only for a non-null value, then the node's items,
    /// map values and properties. `root` marks a resource's root schema.
    pub fn check(&mut self, value: &Json, schema: &Json, path: &Path, root: bool, errors: &mut Vec<FieldError>) {
        if value.is_null() {
            return;
        }
        if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Json::as_array) {
            match to_cel(value, schema, root) {
                Ok(this) => {
                    for rule in rules {
                        self.evaluate(rule, &this, value, schema, path, errors);
                    }
                }
                Err(e) => errors.push(FieldError::new(path, ErrorKind::Invalid, e)),
            }
        }
        match value {
            Json::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, item_schema, &path.index(i), false, errors);
                    }
                }
            }
            Json::Object(map) => {
                let properties = schema.get("properties").and_then(Json::as_object);
                let additional = schema.get("additionalProperties").filter(|a| a.is_object());
                for (key, v) in map {
                    if let Some(sub) = properties.and_then(|p| p.get(key)) {
                        self.check(v, sub, &path.child(key), false, errors);
                    } else if let Some(sub) = additional {
                        self.check(v, sub, &path.key(key), false, errors);
                    }
                }
            }
            _ => {}
        }
    }

    fn compile(&mut self, source: &str) -> Result<Arc<Program>, String> {
        self.programs
            .entry(source.to_owned())
            .or_insert_with(|| {
                Program::compile(source)
                    .map(Arc::new)
                    .map_err(|e| format!("CEL rule {source:?} does not compile here: {e}"))
            })
            .clone()
    }

    fn evaluate(
        &mut self,
        rule: &Json,
        this: &cel::Value,
        value: &Json,
        schema: &Json,
        path: &Path,
        errors: &mut Vec<FieldError>,
    ) {
        let text = |key: &str| rule.get(key).and_then(Json::as_str);
        if let Some(key) = rule.as_object().and_then(|r| r.keys().find(|k| !RULE_KEYS.contains(&k.as_str()))) {
            errors.push(FieldError::unsupported(path, &format!("x-kubernetes-validations key {key:?}")));
            return;
        }
        let Some(source) = text("rule") else {
            errors.push(FieldError::unsupported(path, "an x-kubernetes-validations entry without a rule"));
            return;
        };
        let program = match self.compile(source) {
            Ok(program) => program,
            Err(e) => return errors.push(FieldError::unsupported(path, &e)),
        };
        let references = program.references();
        if references.has_variable("oldSelf") {
            // A transition rule: on create there is no old object and the server skips it,
            // unless it asks to run with an optional oldSelf, which this evaluator lacks.
            if rule.get("optionalOldSelf").and_then(Json::as_bool).unwrap_or(false) {
                errors.push(FieldError::unsupported(path, &format!("rule {source:?} with optionalOldSelf")));
            }
            return;
        }
        // Compiled before the rule's scope borrows the functions.
        let message_program = text("messageExpression").map(|expression| (expression, self.compile(expression)));
        let mut context = self.functions.new_inner_scope();
        context.add_variable_from_value("self", this.clone());
        let failed_path = match text("fieldPath") {
            Some(field_path) => match relative(path, field_path) {
                Some(p) => p,
                None => return errors.push(FieldError::unsupported(path, &format!("fieldPath {field_path:?}"))),
            },
            None => path.clone(),
        };
        match program.execute(&context) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => {
                let message = match message_program {
                    Some((expression, program)) => message(expression, program, &context).unwrap_or_else(|e| {
                        errors.push(FieldError::unsupported(path, &e));
                        String::new()
                    }),
                    None => text("message").map_or_else(|| format!("failed rule: {source}"), str::to_owned),
                };
                let kind = match text("reason") {
                    Some("FieldValueForbidden") => ErrorKind::Forbidden,
                    Some("FieldValueRequired") => ErrorKind::Required,
                    Some("FieldValueDuplicate") => ErrorKind::Duplicate,
                    _ => ErrorKind::Invalid,
                };
                // The server quotes scalars; for an object or a list the message says it all.
                let is_scalar = !matches!(schema.get("type").and_then(Json::as_str), Some("object" | "array"));
                let detail = if kind == ErrorKind::Invalid && is_scalar {
                    format!("{}: {message}", shown(value))
                } else {
                    message
                };
                errors.push(FieldError::new(&failed_path, kind, detail));
            }
            Ok(other) => {
                errors.push(FieldError::unsupported(path, &format!("rule {source:?} gave {other:?}, not a bool")))
            }
            // Data errors the server reports the same way: the rule fails on this object.
            Err(
                e @ (ExecutionError::NoSuchKey(_)
                | ExecutionError::IndexOutOfBounds(_)
                | ExecutionError::DivisionByZero(_)
                | ExecutionError::RemainderByZero(_)
                | ExecutionError::Overflow(..)),
            ) => errors.push(FieldError::new(path, ErrorKind::Invalid, format!("{e} evaluating rule: {source}"))),
            Err(e) => errors.push(FieldError::unsupported(path, &format!("rule {source:?}: {e}"))),
        }
    }
}

/// What a rule's `messageExpression` gives: a string, or why not.
fn message(expression: &str, program: Result<Arc<Program>, String>, context: &Context) -> Result<String, String> {
    match program?.execute(context) {
        Ok(cel::Value::String(s)) => Ok(s.to_string()),
        other => Err(format!("messageExpression {expression:?} gave {other:?}")),
    }
}

/// A rule's `fieldPath` (`.a.b`, `.a['b']`) below the rule's node.
fn relative(base: &Path, field_path: &str) -> Option<Path> {
    let mut path = base.clone();
    let mut rest = field_path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("['") {
            let (key, tail) = after.split_once("']")?;
            path = path.key(key);
            rest = tail;
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            path = path.child(&after[..end]);
            rest = &after[end..];
        } else {
            return None;
        }
    }
    Some(path)
}

/// Names CEL cannot use as identifiers, which Kubernetes escapes as `__name__`.
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A property name as a CEL rule refers to it (Kubernetes' escaping), or `None` when rules
/// cannot refer to it at all.
pub fn escape(name: &str) -> Option<String> {
    let first = name.chars().next()?;
    if first.is_ascii_digit() {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c)) {
        return None;
    }
    let mut escaped = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                escaped.push_str("__underscores__");
            }
            '.' => escaped.push_str("__dot__"),
            '-' => escaped.push_str("__dash__"),
            '/' => escaped.push_str("__slash__"),
            other => escaped.push(other),
        }
    }
    Some(escaped)
}

/// Convert the JSON `value` to the CEL value a rule sees, guided by its `schema`.
pub fn to_cel(value: &Json, schema: &Json, root: bool) -> Result<cel::Value, String> {
    if value.is_null() {
        return Ok(cel::Value::Null);
    }
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Json::as_bool).unwrap_or(false);
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Json::as_bool).unwrap_or(false);
    let ty = schema.get("type").and_then(Json::as_str);
    match (value, ty) {
        (Json::String(s), _) if int_or_string => Ok(cel::Value::String(Arc::new(s.clone()))),
        (Json::Number(n), _) if int_or_string => n.as_i64().map(cel::Value::Int).ok_or("not an integer".into()),
        (Json::Bool(b), Some("boolean")) => Ok(cel::Value::Bool(*b)),
        (Json::Number(n), Some("integer")) => {
            n.as_i64().map(cel::Value::Int).ok_or_else(|| format!("{n} is not an int64"))
        }
        (Json::Number(n), Some("number")) => {
            n.as_f64().map(cel::Value::Float).ok_or_else(|| format!("{n} is not a double"))
        }
        (Json::String(s), Some("string")) => string_to_cel(s, schema.get("format").and_then(Json::as_str)),
        (Json::Array(items), Some("array")) => {
            let item_schema = schema.get("items").ok_or("an array schema without items")?;
            let items = items.iter().map(|i| to_cel(i, item_schema, false)).collect::<Result<Vec<_>, _>>()?;
            Ok(cel::Value::List(Arc::new(items)))
        }
        (Json::Object(map), Some("object")) => {
            let mut entries: HashMap<Key, cel::Value> = HashMap::new();
            if let Some(properties) = schema.get("properties").and_then(Json::as_object) {
                for (key, v) in map {
                    // Null properties read as absent (`has()` is false), as on the server.
                    let (Some(sub), false) = (properties.get(key), v.is_null()) else { continue };
                    if let Some(name) = escape(key) {
                        entries.insert(Key::String(Arc::new(name)), to_cel(v, sub, false)?);
                    }
                }
            } else if let Some(sub) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (key, v) in map {
                    entries.insert(Key::String(Arc::new(key.clone())), to_cel(v, sub, false)?);
                }
            } else if preserve {
                for (key, v) in map {
                    entries.insert(Key::String(Arc::new(key.clone())), untyped(v));
                }
            }
            if root {
                // The server gives a resource's root rules its type and only the name fields of
                // its metadata.
                for key in ["apiVersion", "kind"] {
                    if let Some(Json::String(s)) = map.get(key) {
                        entries.insert(Key::String(Arc::new(key.to_owned())), cel::Value::String(Arc::new(s.clone())));
                    }
                }
                let mut metadata: HashMap<Key, cel::Value> = HashMap::new();
                for key in ["name", "generateName"] {
                    if let Some(Json::String(s)) = map.get("metadata").and_then(|m| m.get(key)) {
                        metadata.insert(Key::String(Arc::new(key.to_owned())), cel::Value::String(Arc::new(s.clone())));
                    }
                }
                entries.insert(Key::String(Arc::new("metadata".to_owned())), cel::Value::Map(Map::from(metadata)));
            }
            Ok(cel::Value::Map(Map::from(entries)))
        }
        _ if preserve => Ok(untyped(value)),
        (other, ty) => {
            Err(format!("a {} where the schema wants {}", super::schema::type_of(other), ty.unwrap_or("any")))
        }
    }
}

fn string_to_cel(s: &str, format: Option<&str>) -> Result<cel::Value, String> {
    match format {
        Some("date-time") => chrono::DateTime::parse_from_rfc3339(s)
            .map(cel::Value::Timestamp)
            .map_err(|e| format!("invalid date-time {s:?}: {e}")),
        Some("date") => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(|d| cel::Value::Timestamp(d.and_time(chrono::NaiveTime::MIN).and_utc().fixed_offset()))
            .map_err(|e| format!("invalid date {s:?}: {e}")),
        Some("byte") => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(|b| cel::Value::Bytes(Arc::new(b)))
                .map_err(|e| format!("invalid base64 {s:?}: {e}"))
        }
        Some("duration") => Err("string format \"duration\" is not supported offline".into()),
        _ => Ok(cel::Value::String(Arc::new(s.to_owned()))),
    }
}

/// A value under `x-kubernetes-preserve-unknown-fields`, by its JSON type alone.
fn untyped(value: &Json) -> cel::Value {
    match value {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => {
            n.as_i64().map_or_else(|| cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)), cel::Value::Int)
        }
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(items) => cel::Value::List(Arc::new(items.iter().map(untyped).collect())),
        Json::Object(map) => cel::Value::Map(Map::from(
            map.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), untyped(v))).collect::<HashMap<_, _>>(),
        )),
    }
}

#[cfg(test)]
mod tests {
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
}
