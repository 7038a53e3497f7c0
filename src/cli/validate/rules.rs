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
mod tests;
