//! Manifests read the way kubectl reads them, so that `validate` and `--server-dry-run` judge
//! the JSON the API server will receive from `kubectl apply -f`.
//!
//! kubectl turns YAML into JSON with sigs.k8s.io/yaml, which resolves plain (unquoted) scalars
//! by go-yaml v2's YAML 1.1 rules (kubectl 1.33: `goyaml.v2/resolve.go` of sigs.k8s.io/yaml
//! v1.4.0). serde_yaml follows YAML 1.2 and keeps `yes` a string, so `labels: {team: yes}`
//! passed `validate` while kubectl sent `true` and the API server refused it, and
//! `adoptExistingNamespaces: no` failed `validate` while kubectl sent `false`. Telling a plain
//! scalar from a quoted one needs the scalar's style, which serde_yaml does not expose;
//! yaml-rust2's event parser gives it, and the JSON values are built here.
//!
//! Plain scalars, as go-yaml v2 resolves them for an `interface{}`:
//! * `~`, `null`, `Null`, `NULL` and the empty scalar are null;
//! * `y`, `yes`, `on`, `true` (each also capitalised or all upper case: `Yes`, `ON`) are true,
//!   `n`, `no`, `off`, `false` (likewise) are false;
//! * numbers: `_` is ignored, then Go's `ParseInt(s, 0, 64)` (so `0x1F`, `0o17`, `0b101` and a
//!   leading `0` for octal: `0755` is 493), then `ParseUint`, then YAML floats (`1e3`, `-.5`,
//!   `08`). Go's JSON encoder writes an integral float without a fraction (`1e3` as `1000`), so
//!   the API server reads an integer there, and so does this reader;
//! * anything else (timestamps included: go-yaml keeps them strings here) is a string.
//!
//! Quoted and block (`|`, `>`) scalars are strings. `!!str` makes a plain scalar a string; a
//! scalar tagged `!!bool`, `!!int`, `!!float` or `!!null` must resolve to that type (an
//! integer is a float too), as go-yaml requires; any other tag leaves the text a string.
//! Mapping keys resolve the same way and become JSON strings (`yes:` is the key `"true"`, `1:`
//! is `"1"`), as sigs.k8s.io/yaml converts them. Anchors and aliases work within a document.
//!
//! Merge keys (`<<: *base`) merge as go-yaml merges them (see [`Reader::merge`]).
//!
//! Refused as kubectl refuses them: `.nan` and `.inf` (no JSON number), null and collection
//! keys. Refused here although kubectl accepts them: a key given twice in one mapping (kubectl
//! silently keeps the last one, measured: the other line is a mistake nobody sees) and
//! non-integral float keys (which Go writes in float32 notation; not worth copying).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Why a document cannot be read: which one (counted from 1) and what is wrong where.
#[derive(Debug, PartialEq)]
pub struct Error {
    pub document: usize,
    pub message: String,
}

/// The documents of `text` as the JSON kubectl would send, `None` for an empty document (kubectl
/// skips those); numbered by position, so an empty document still counts.
pub fn documents(text: &str) -> Result<Vec<Option<Value>>, Error> {
    // kubectl reads a file with a byte-order mark; yaml-rust2's scanner does not skip it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader { parser: Parser::new_from_str(text), anchors: HashMap::new(), document: 0, expanded: 0 };
    let mut documents = Vec::new();
    loop {
        match reader.next()? {
            (Event::StreamStart | Event::DocumentEnd, _) => {}
            (Event::StreamEnd, _) => return Ok(documents),
            (Event::DocumentStart, _) => {
                reader.document += 1;
                reader.anchors.clear();
                reader.expanded = 0;
                let (event, mark) = reader.next()?;
                let value = reader.value(event, mark)?;
                documents.push((!value.is_null()).then_some(value));
            }
            (event, mark) => return Err(reader.error(mark, format!("unexpected {event:?}"))),
        }
    }
}

struct Reader<'a> {
    parser: Parser<std::str::Chars<'a>>,
    /// The values of this document's anchors, by the parser's anchor id, with their weights.
    anchors: HashMap<usize, (Value, usize)>,
    document: usize,
    /// The weight of what this document has expanded to so far, aliases copied (see [`MAX_WEIGHT`]).
    expanded: usize,
}

/// What one node weighs beyond its text: about what it takes in memory once parsed.
const NODE_WEIGHT: usize = 64;

/// The most a document may expand to: its text plus [`NODE_WEIGHT`] per node, each alias
/// counted as a copy of what it names. A few kilobytes of aliases of aliases would otherwise
/// expand to gigabytes (kubectl's YAML library refuses such "excessive aliasing" too).
const MAX_WEIGHT: usize = 64 * 1024 * 1024;

impl Reader<'_> {
    fn next(&mut self) -> Result<(Event, Marker), Error> {
        self.parser.next_token().map_err(|e| Error { document: self.document.max(1), message: e.to_string() })
    }

    fn error(&self, mark: Marker, message: String) -> Error {
        Error {
            document: self.document,
            message: format!("{message} at line {} column {}", mark.line(), mark.col() + 1),
        }
    }

    /// The value that starts with `event`.
    fn value(&mut self, event: Event, mark: Marker) -> Result<Value, Error> {
        let start = self.expanded;
        let weight = match &event {
            Event::Scalar(text, ..) => NODE_WEIGHT + text.len(),
            Event::Alias(id) => self.anchors.get(id).map_or(0, |(_, weight)| *weight),
            _ => NODE_WEIGHT,
        };
        self.expanded = self.expanded.saturating_add(weight);
        if self.expanded > MAX_WEIGHT {
            let limit = MAX_WEIGHT / (1024 * 1024);
            return Err(self.error(mark, format!("the document expands past {limit} MiB (aliases of aliases?)")));
        }
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                (scalar(&text, style, tag.as_ref()).map_err(|e| self.error(mark, e))?, anchor)
            }
            Event::Alias(id) => {
                let value = self.anchors.get(&id).map(|(value, _)| value.clone());
                return value.ok_or_else(|| self.error(mark, "alias of an unknown anchor".into()));
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    match self.next()? {
                        (Event::SequenceEnd, _) => break,
                        (event, mark) => items.push(self.value(event, mark)?),
                    }
                }
                (Value::Array(items), anchor)
            }
            Event::MappingStart(anchor, _) => (Value::Object(self.mapping()?), anchor),
            event => return Err(self.error(mark, format!("unexpected {event:?}"))),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, (value.clone(), self.expanded - start));
        }
        Ok(value)
    }

    /// The rest of a mapping, after its `MappingStart`.
    fn mapping(&mut self) -> Result<Map<String, Value>, Error> {
        let mut map = Map::new();
        let mut explicit = HashSet::new();
        loop {
            let (event, mark) = self.next()?;
            if event == Event::MappingEnd {
                return Ok(map);
            }
            if matches!(&event, Event::Scalar(text, TScalarStyle::Plain, _, None) if text == "<<") {
                self.merge(&mut map, mark)?;
                continue;
            }
            let key = match self.value(event, mark)? {
                Value::String(key) => key,
                Value::Bool(key) => key.to_string(),
                Value::Number(key) if !key.is_f64() => key.to_string(),
                other => return Err(self.error(mark, format!("a mapping key must be a string, not {other}"))),
            };
            let (event, value_mark) = self.next()?;
            let value = self.value(event, value_mark)?;
            if !explicit.insert(key.clone()) {
                let message = format!("key {key:?} is given twice (kubectl would silently keep the last one)");
                return Err(self.error(mark, message));
            }
            map.insert(key, value);
        }
    }

    /// A merge key's value (`<<: *base`, or a list of mappings) merged into `map` as go-yaml v2
    /// merges it: in order with the mapping's own keys, each overwriting what is there (so a
    /// key written before `<<` is overwritten by the merged one, one written after it wins),
    /// and in a list the first mapping wins.
    fn merge(&mut self, map: &mut Map<String, Value>, mark: Marker) -> Result<(), Error> {
        let (event, value_mark) = self.next()?;
        let sources = match self.value(event, value_mark)? {
            Value::Object(source) => vec![Value::Object(source)],
            Value::Array(sources) => sources.into_iter().rev().collect(),
            _ => Vec::new(),
        };
        if sources.is_empty() || !sources.iter().all(Value::is_object) {
            return Err(self.error(mark, "a merge key (<<) takes a mapping or a list of mappings".into()));
        }
        for source in sources {
            map.extend(source.as_object().cloned().into_iter().flatten());
        }
        Ok(())
    }
}

/// The YAML 1.1 core-schema tag (`!!int` ...) a tag names, if it names one.
fn core_tag(tag: &Tag) -> Option<&str> {
    (tag.handle == "tag:yaml.org,2002:").then_some(tag.suffix.as_str())
}

/// A scalar's value: see the module documentation.
fn scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let string = || Ok(Value::String(text.to_owned()));
    let Some(tag) = tag else {
        return if style == TScalarStyle::Plain { resolve(text) } else { string() };
    };
    let wanted = match core_tag(tag) {
        None | Some("str") => return string(),
        Some(wanted) => wanted,
    };
    let value = resolve(text)?;
    let matches = match wanted {
        "bool" => value.is_boolean(),
        "int" => value.is_i64() || value.is_u64(),
        "float" => value.is_number(),
        "null" => value.is_null(),
        _ => return Err(format!("the tag !!{wanted} is not supported")),
    };
    if matches { Ok(value) } else { Err(format!("cannot read {text:?} as !!{wanted}")) }
}

/// A plain scalar resolved as go-yaml v2 resolves it (`resolve.go`), for JSON.
fn resolve(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Ok(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Ok(Value::Bool(false));
        }
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf"
        | "-.INF" => return Err(format!("{text} is a float JSON cannot hold (kubectl refuses it too)")),
        _ => {}
    }
    let number = match text.as_bytes()[0] {
        // go-yaml parses a leading `.` as a float as it is, underscores included (then no float).
        b'.' => float(text),
        b'0'..=b'9' | b'+' | b'-' => {
            let plain = text.replace('_', "");
            int(&plain).or_else(|| float(&plain))
        }
        _ => None,
    };
    Ok(number.unwrap_or_else(|| Value::String(text.to_owned())))
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)` (which takes no sign).
fn int(text: &str) -> Option<Value> {
    let (negative, signed, unsigned) = match text.as_bytes()[0] {
        b'-' => (true, true, &text[1..]),
        b'+' => (false, true, &text[1..]),
        _ => (false, false, text),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits) = if let Some(hex) = lower.strip_prefix("0x") {
        (16, hex)
    } else if let Some(octal) = lower.strip_prefix("0o") {
        (8, octal)
    } else if let Some(binary) = lower.strip_prefix("0b") {
        (2, binary)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    // Rust's from_str_radix takes a sign of its own, Go's does not after a prefix.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        return i64::try_from(-i128::from(magnitude)).ok().map(Value::from);
    }
    match i64::try_from(magnitude) {
        Ok(value) => Some(value.into()),
        Err(_) if !signed => Some(magnitude.into()),
        Err(_) => None,
    }
}

/// A YAML 1.1 float (`[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`), as Go's JSON
/// encoder sends it: integral values within `i64` as integers.
fn float(text: &str) -> Option<Value> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    if !mantissa_ok || !exponent_ok {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    // i64::MAX as f64 rounds up to 2^63, which no longer fits: hence the strict bound.
    if value.fract() == 0.0 && value >= i64::MIN as f64 && value < i64::MAX as f64 {
        return Some((value as i64).into());
    }
    Number::from_f64(value).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn one(text: &str) -> Value {
        let mut documents = documents(text).unwrap();
        assert_eq!(documents.len(), 1, "{text}");
        documents.remove(0).unwrap()
    }

    fn error(text: &str) -> String {
        documents(text).unwrap_err().message
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_1_1_like_kubectl() {
        let text = "{a: yes, b: No, c: ON, d: off, e: y, f: N, g: True, h: ~, i: null, j: , k: NULL, l: yEs}";
        assert_eq!(
            one(text),
            json!({"a": true, "b": false, "c": true, "d": false, "e": true, "f": false, "g": true,
                "h": null, "i": null, "j": null, "k": null, "l": "yEs"})
        );
    }

    #[test]
    fn quoted_block_and_str_tagged_scalars_stay_strings() {
        let text = "a: \"yes\"\nb: 'no'\nc: |\n  on\nd: !!str off\ne: !local y\nf: '0755'\ng: \"\"\n";
        assert_eq!(one(text), json!({"a": "yes", "b": "no", "c": "on\n", "d": "off", "e": "y", "f": "0755", "g": ""}));
    }

    #[test]
    fn numbers_resolve_as_go_parses_them() {
        let text = "[0755, 0x1F, 0o17, 0b101, -0b11, 1_000, +12, -0, 08, 1e3, 1.5, -.5, .5, 1., \
            9223372036854775807, 18446744073709551615, -9223372036854775808, 1e30, \
            0x, 1_2.5, ._5, 1.2.3, 2026-01-01, 12:30, 0x+5, +-1, 1e, 0.5e+2]";
        assert_eq!(
            one(text),
            json!([
                493,
                31,
                15,
                5,
                -3,
                1000,
                12,
                0,
                8,
                1000,
                1.5,
                -0.5,
                0.5,
                1,
                i64::MAX,
                u64::MAX,
                i64::MIN,
                1e30,
                "0x",
                12.5,
                "._5",
                "1.2.3",
                "2026-01-01",
                "12:30",
                "0x+5",
                "+-1",
                "1e",
                50
            ])
        );
    }

    #[test]
    fn keys_resolve_and_become_strings() {
        let text = "{yes: a, 1: b, 0x10: c, \"no\": d, n: e}";
        assert_eq!(one(text), json!({"true": "a", "1": "b", "16": "c", "no": "d", "false": "e"}));
        assert!(error("{~: a}").starts_with("a mapping key must be a string, not null at line 1"));
        assert!(error("{1.5: a}").starts_with("a mapping key must be a string, not 1.5"));
        assert!(error("? [a]\n: b\n").starts_with("a mapping key must be a string"));
    }

    #[test]
    fn tags_must_match_what_the_value_resolves_to() {
        assert_eq!(one("[!!int 3, !!float 3, !!bool yes, !!null ~, !!int '7']"), json!([3, 3, true, null, 7]));
        assert_eq!(error("a: !!int abc"), "cannot read \"abc\" as !!int at line 1 column 10");
        assert!(error("a: !!binary aGk=").starts_with("the tag !!binary is not supported"));
    }

    #[test]
    fn documents_are_numbered_and_empty_ones_skipped() {
        let text = "a: 1\n---\n# only a comment\n---\nb: yes\n...\n";
        assert_eq!(documents(text).unwrap(), [Some(json!({"a": 1})), None, Some(json!({"b": true}))]);
        assert_eq!(documents("").unwrap(), []);
        let bad = documents("a: 1\n---\nb: [1\n").unwrap_err();
        assert_eq!(bad.document, 2, "{bad:?}");
        assert_eq!(documents("\u{feff}a: b\n").unwrap(), [Some(json!({"a": "b"}))]);
    }

    #[test]
    fn anchors_work_within_a_document_only() {
        assert_eq!(one("a: &x {b: yes}\nc: *x\n"), json!({"a": {"b": true}, "c": {"b": true}}));
        let err = documents("a: &x 1\n---\nb: *x\n").unwrap_err();
        assert_eq!(err.document, 2, "{err:?}");
    }

    /// Nine levels of ten aliases each would expand to a billion strings: refused at the limit,
    /// quickly, while a document that names an anchor a few times is read.
    #[test]
    fn aliases_of_aliases_are_refused_past_the_limit() {
        let mut text = String::from("a0: &a0 [\"lol\"]\n");
        for level in 1..10 {
            let aliases = vec![format!("*a{}", level - 1); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{aliases}]\n"));
        }
        let started = std::time::Instant::now();
        let err = documents(&text).unwrap_err();
        assert!(err.message.starts_with("the document expands past 64 MiB"), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
        let few = one("a: &x {b: [1, 2]}\nc: [*x, *x, *x]\n");
        assert_eq!(few["c"][2], json!({"b": [1, 2]}));
    }

    #[test]
    fn merge_keys_merge_in_go_yaml_order() {
        let text = "base: &b {a: 1, b: 2}\nother: &o {b: 3, c: 4}\n\
            after: {a: 0, <<: *b, b: 9}\n\
            list: {<<: [*b, *o]}\n";
        let merged = one(text);
        assert_eq!(merged["after"], json!({"a": 1, "b": 9}), "merged keys overwrite those before <<, later ones win");
        assert_eq!(merged["list"], json!({"a": 1, "b": 2, "c": 4}), "in a list the first mapping wins");
    }

    #[test]
    fn what_json_cannot_hold_or_hides_a_mistake_is_refused() {
        assert!(error("a: .nan").starts_with(".nan is a float JSON cannot hold"));
        assert!(error("a: -.Inf").starts_with("-.Inf is a float JSON cannot hold"));
        assert_eq!(
            error("a: 1\nb: 2\na: 3\n"),
            "key \"a\" is given twice (kubectl would silently keep the last one) at line 3 column 1"
        );
        assert!(error("a: [1, 2]\nb:\n  <<: 3\n").starts_with("a merge key (<<) takes a mapping"));
    }
}
