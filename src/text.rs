//! Char-safe shortening of text that comes from specs: object names built from user input and
//! messages that quote it. Slicing a `str` at a byte offset panics inside a multi-byte
//! character, so nothing here slices by bytes without finding a boundary first. And digests:
//! SHA-256 over a sequence of parts, and their hex spelling.

/// `text` cut to at most `max` characters, ending in `...` when it was cut.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let keep = max.saturating_sub(3);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            format!("{}...", &text[..end])
        }
    }
}

/// `name` if it fits in `max` bytes; otherwise its longest prefix that leaves room, cut on a
/// character boundary, then `-` and 16 hex digits of its SHA-256, so distinct long names stay
/// distinct.
pub fn fit_name(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let hex = hex(&sha256(&[name.as_bytes()])[..8]);
    let room = max.saturating_sub(hex.len() + 1);
    let mut end = room.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{hex}", &name[..end])
}

/// SHA-256 over `parts`, one after the other (a caller whose parts could run into each other
/// puts a separator between them).
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        context.update(part);
    }
    context.finish().as_ref().try_into().expect("SHA-256 gives 32 bytes")
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lowercase or uppercase hex text; None for anything else (odd length included).
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn examples() {
        assert_eq!(shorten("abcdef", 6), "abcdef");
        assert_eq!(shorten("abcdefg", 6), "abc...");
        assert_eq!(shorten("ééééééé", 6), "ééé...");
        assert_eq!(fit_name("short", 253), "short");
        let long = "x".repeat(300);
        assert_eq!(fit_name(&long, 253).len(), 253);
        assert_ne!(fit_name(&long, 253), fit_name(&"x".repeat(301), 253));
    }

    proptest! {
        #[test]
        fn shorten_never_panics_and_respects_the_limit(text in any::<String>(), max in 0usize..300) {
            let short = shorten(&text, max);
            prop_assert!(short.chars().count() <= max.max(3));
            if text.chars().count() <= max {
                prop_assert_eq!(short, text);
            }
        }

        #[test]
        fn fit_name_never_panics_and_respects_the_limit(name in any::<String>(), max in 17usize..300) {
            let fitted = fit_name(&name, max);
            prop_assert!(fitted.len() <= max);
            if name.len() <= max {
                prop_assert_eq!(fitted, name);
            }
        }
    }
}
