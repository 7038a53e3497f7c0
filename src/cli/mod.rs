//! The platform engineer's side of sealing: `mltenant seal`, `mltenant cert`,
//! `mltenant rotate`, `mltenant validate`. Secrets are read from files or stdin; errors are one
//! line.

pub mod cert;
pub mod keys;
pub mod operator;
pub mod rotate;
pub mod seal;
pub mod validate;

use std::io::Read;
use std::path::Path;

use anyhow::{Context as _, bail};

/// Read `path`, or standard input for `-`.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading standard input")?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Whether `key` is a valid Secret data key.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 253 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// Check `key` for use in a Secret, with the reason when it cannot be.
pub fn check_key(key: &str, origin: &str) -> anyhow::Result<()> {
    if !valid_key(key) {
        bail!("{origin}: {key:?} is not a valid Secret key (letters, digits, '-', '_', '.')");
    }
    Ok(())
}

/// A duration like `30s`, `5m`, `30d` or `90d` (days are 24 hours).
pub fn parse_span(text: &str) -> Result<std::time::Duration, String> {
    let span: jiff::Span = text.parse().map_err(|e| format!("{text:?} is not a duration like 30s, 5m or 30d: {e}"))?;
    let exact = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(|e| format!("{text:?}: {e}"))?;
    std::time::Duration::try_from(exact)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} must be positive"))
}

/// A duration of whole seconds, at least one (`15s`, `1m`): what a Lease's
/// `leaseDurationSeconds` can say. Anything finer would be truncated for standbys while the
/// leader's term is computed from the exact value.
pub fn parse_whole_seconds(text: &str) -> Result<std::time::Duration, String> {
    let duration = parse_span(text)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!("{text:?} is not a whole number of seconds"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_span("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_span("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_span("90d"), Ok(Duration::from_secs(90 * 24 * 3600)));
        assert!(parse_span("0s").unwrap_err().contains("must be positive"));
        assert!(parse_span("soon").unwrap_err().contains("is not a duration"));
    }

    #[test]
    fn whole_seconds() {
        assert_eq!(parse_whole_seconds("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_whole_seconds("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_whole_seconds("1900ms").unwrap_err(), "\"1900ms\" is not a whole number of seconds");
        assert!(parse_whole_seconds("500ms").is_err() && parse_whole_seconds("0s").is_err());
    }

    #[test]
    fn secret_keys() {
        assert!(valid_key("AWS_ACCESS_KEY_ID") && valid_key(".dockerconfigjson") && valid_key("a-b.c"));
        assert!(!valid_key("") && !valid_key("a b") && !valid_key("a/b"));
    }
}
