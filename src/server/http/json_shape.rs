//! What a request body must look like before a parser sees it: JSON (an object), no deeper
//! than [`MAX_DEPTH`], with at most [`MAX_ENTRIES`] containers and entries. One linear pass over
//! the bytes, no allocation, so a hostile body costs what it takes to read it and nothing more.
//! JSON has no aliases or references, so once the bytes are capped, so is what parsing them
//! builds: each string decodes to at most its own length, and the counts below bound the
//! per-node overhead.

/// Nesting a SealedBundle needs: metadata's labels, spec's template labels, a tenantSelector's
/// matchExpressions values, all within 5 levels; 32 leaves room for whatever a client adds.
pub const MAX_DEPTH: usize = 32;

/// Containers and their entries (array elements, object members) together: 128 encryptedData
/// values plus the metadata and spec around them need a few hundred.
pub const MAX_ENTRIES: usize = 4096;

/// Why a body is refused before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a JSON object (YAML, say): its first byte that is not whitespace is not `{`.
    NotJson,
    /// Nested deeper than the limit.
    TooDeep(usize),
    /// More containers and entries than the limit.
    TooManyEntries(usize),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotJson => {
                f.write_str("the body is not a JSON object: send the SealedBundle as JSON (mltenant seal --verify and mltenant rotate do)")
            }
            Refusal::TooDeep(limit) => write!(f, "the body nests deeper than {limit} levels"),
            Refusal::TooManyEntries(limit) => write!(
                f,
                "the body holds more than {limit} JSON values and members (a SealedBundle has at most {} values)",
                crate::api::limits::MAX_VALUES
            ),
        }
    }
}

/// Check `body` against [`MAX_DEPTH`] and [`MAX_ENTRIES`].
pub fn check(body: &[u8]) -> Result<(), Refusal> {
    check_with(body, MAX_DEPTH, MAX_ENTRIES)
}

/// Check `body` against the given limits, all of it at once.
pub fn check_with(body: &[u8], max_depth: usize, max_entries: usize) -> Result<(), Refusal> {
    let mut scanner = Scanner::new(max_depth, max_entries);
    scanner.feed(body)?;
    scanner.finish()
}

/// The check, fed a body chunk by chunk as it arrives, so that a body is refused at the first
/// byte past a limit instead of once it is all in memory. Outside strings, every `{` or `[`
/// opens a level and `,` starts another entry: the count is, summed over containers, the number
/// of entries (at least one each), so it bounds both containers and entries. Inside strings
/// only `\` (which escapes the next byte) and the closing `"` matter. Malformed JSON is left to
/// the parser: the pass only promises that what it lets through is bounded.
pub struct Scanner {
    max_depth: usize,
    max_entries: usize,
    started: bool,
    depth: usize,
    entries: usize,
    in_string: bool,
    escaped: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new(MAX_DEPTH, MAX_ENTRIES)
    }
}

impl Scanner {
    pub fn new(max_depth: usize, max_entries: usize) -> Self {
        Scanner { max_depth, max_entries, started: false, depth: 0, entries: 0, in_string: false, escaped: false }
    }

    /// The next bytes of the body.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        let mut bytes = bytes;
        if !self.started {
            let Some(first) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else { return Ok(()) };
            if bytes[first] != b'{' {
                return Err(Refusal::NotJson);
            }
            self.started = true;
            bytes = &bytes[first..];
        }
        for &byte in bytes {
            if self.in_string {
                match byte {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.depth > self.max_depth {
                        return Err(Refusal::TooDeep(self.max_depth));
                    }
                    self.entries += 1;
                }
                b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                b',' => self.entries += 1,
                _ => continue,
            }
            if self.entries > self.max_entries {
                return Err(Refusal::TooManyEntries(self.max_entries));
            }
        }
        Ok(())
    }

    /// The body has ended: one with nothing but whitespace is no JSON object either.
    pub fn finish(&self) -> Result<(), Refusal> {
        if self.started { Ok(()) } else { Err(Refusal::NotJson) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"a":[[...[0]...]]}` with `levels` containers in all.
    fn nested(levels: usize) -> String {
        format!("{{\"a\":{}0{}}}", "[".repeat(levels - 1), "]".repeat(levels - 1))
    }

    /// An object of `members` members (`members` entries, plus the object itself).
    fn members(members: usize) -> String {
        let inner: Vec<String> = (0..members).map(|i| format!("\"k{i}\":{i}")).collect();
        format!("{{{}}}", inner.join(","))
    }

    #[test]
    fn json_objects_only() {
        assert_eq!(check(b" \n{}"), Ok(()));
        for not_json in [&b""[..], b"   ", b"apiVersion: v1\nkind: SealedBundle\n", b"[{}]", b"\"{\"", b"- &a [x]"] {
            assert_eq!(check(not_json), Err(Refusal::NotJson), "{:?}", String::from_utf8_lossy(not_json));
        }
    }

    #[test]
    fn depth_up_to_the_limit_passes_one_more_is_refused() {
        assert_eq!(check_with(nested(8).as_bytes(), 8, 100), Ok(()));
        assert_eq!(check_with(nested(9).as_bytes(), 8, 100), Err(Refusal::TooDeep(8)));
        assert_eq!(check(nested(MAX_DEPTH).as_bytes()), Ok(()));
        assert_eq!(check(nested(MAX_DEPTH + 1).as_bytes()), Err(Refusal::TooDeep(MAX_DEPTH)));
        // Depth is the nesting at one point, not the number of containers seen.
        let siblings = format!("{{\"a\":[{}]}}", ["[[[]]]"; 50].join(","));
        assert_eq!(check_with(siblings.as_bytes(), 5, 1000), Ok(()));
    }

    #[test]
    fn entries_up_to_the_limit_pass_one_more_is_refused() {
        // An object of n members counts n (its members; the object itself is one of them).
        assert_eq!(check_with(members(10).as_bytes(), 4, 10), Ok(()));
        assert_eq!(check_with(members(11).as_bytes(), 4, 10), Err(Refusal::TooManyEntries(10)));
        // Empty containers count one each: the object's member, the array's 8 elements, and
        // the 8 empty objects.
        let empties = format!("{{\"a\":[{}]}}", ["{}"; 8].join(","));
        assert_eq!(check_with(empties.as_bytes(), 4, 1 + 8 + 8), Ok(()));
        assert_eq!(check_with(empties.as_bytes(), 4, 16), Err(Refusal::TooManyEntries(16)));
        assert_eq!(check(members(MAX_ENTRIES).as_bytes()), Ok(()));
        assert_eq!(check(members(MAX_ENTRIES + 1).as_bytes()), Err(Refusal::TooManyEntries(MAX_ENTRIES)));
    }

    #[test]
    fn brackets_commas_and_escaped_quotes_inside_strings_do_not_count() {
        let tricky = r#"{"a\"[{,": "[[[[,,,,{{{{", "b": "\\", "c": "\\\"]]]]", "d": "\u005b"}"#;
        assert!(serde_json::from_str::<serde_json::Value>(tricky).is_ok(), "the sample is JSON");
        // Four members: the object counts 1, each comma 1.
        assert_eq!(check_with(tricky.as_bytes(), 1, 4), Ok(()));
        assert_eq!(check_with(tricky.as_bytes(), 1, 3), Err(Refusal::TooManyEntries(3)));
        // A string that ends in an escaped backslash is closed by the next quote.
        let closed = r#"{"a": "\\", "b": [[]]}"#;
        assert_eq!(check_with(closed.as_bytes(), 2, 10), Err(Refusal::TooDeep(2)));
    }

    #[test]
    fn chunks_split_anywhere_give_the_answer_of_the_whole() {
        let samples: [(&str, usize, usize); 5] = [
            (r#"  {"a\"[{,": "[[[[,,,,{{{{", "b": "\\", "c": "\\\"]]]]", "d": [[1]]}"#, 2, 6),
            (r#"{"a": "\\", "b": [[]]}"#, 2, 10),
            ("{\"a\":[0,1,2,3,4,5,6,7,8,9]}", 4, 10),
            ("{\"a\":[0,1,2,3,4,5,6,7,8,9]}", 4, 11),
            (" \n- &a [x]", 4, 10),
        ];
        let wholes: Vec<_> =
            samples.iter().map(|(s, depth, entries)| check_with(s.as_bytes(), *depth, *entries)).collect();
        assert_eq!(
            wholes,
            [
                Err(Refusal::TooDeep(2)),
                Err(Refusal::TooDeep(2)),
                Err(Refusal::TooManyEntries(10)),
                Ok(()),
                Err(Refusal::NotJson)
            ]
        );
        for (sample, depth, entries) in samples {
            let whole = check_with(sample.as_bytes(), depth, entries);
            for split in 0..=sample.len() {
                let mut scanner = Scanner::new(depth, entries);
                let (head, tail) = sample.as_bytes().split_at(split);
                let chunked = scanner.feed(head).and_then(|()| scanner.feed(tail)).and_then(|()| scanner.finish());
                assert_eq!(chunked, whole, "{sample:?} split at {split}");
            }
        }
        // The refusal comes with the first chunk past the limit, whatever follows.
        let mut scanner = Scanner::new(4, 3);
        assert_eq!(scanner.feed(b"{\"a\":1,\"b\":2,"), Ok(()));
        assert_eq!(scanner.feed(b"\"c\":3,"), Err(Refusal::TooManyEntries(3)));
        assert_eq!(Scanner::default().feed(b"apiVersion: v1"), Err(Refusal::NotJson));
    }

    #[test]
    fn a_sealed_bundle_of_the_largest_size_passes() {
        use crate::api::{BundleScope, SealedBundle, SealedBundleSpec};
        let values = (0..crate::api::limits::MAX_VALUES).map(|i| (format!("K{i}"), "AgB".repeat(300))).collect();
        let mut bundle = SealedBundle::new("b", SealedBundleSpec::new(BundleScope::Cluster, values));
        bundle.metadata.labels = Some((0..64).map(|i| (format!("l{i}"), "v".into())).collect());
        bundle.metadata.annotations = Some((0..64).map(|i| (format!("a{i}"), "v".into())).collect());
        assert_eq!(check(&serde_json::to_vec(&bundle).unwrap()), Ok(()));
    }

    #[test]
    fn the_pass_is_linear_in_the_body() {
        // 2 MiB of unclosed brackets inside a string, then as structure: refused at the limit.
        let mut body = b"{\"a\":\"".to_vec();
        body.extend(std::iter::repeat_n(b'[', 2 << 20));
        body.extend(b"\"}");
        assert_eq!(check(&body), Ok(()));
        let mut deep = b"{\"a\":".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 2 << 20));
        assert_eq!(check(&deep), Err(Refusal::TooDeep(MAX_DEPTH)));
    }
}
