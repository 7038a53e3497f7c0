//! Feeds arbitrary bytes to the sealed-value parser/opener with the TEST-ONLY fixture key.
//!
//! Input layout: the first byte picks the mode and the OAEP label, the rest is the value.
//! * bit 7 clear: the rest goes to `crypto::open_raw` as raw sealed bytes;
//! * bit 7 set: the rest, if UTF-8, goes to `crypto::open` as base64 text.
//! * `(byte & 0x7f) % 3` picks the label: `""`, `"financial-ml"`, `"financial-ml/production"`
//!   (the labels of the committed kubeseal vectors, so seeds made from them open).
//!
//! Besides "never panics", it checks that the error matches an independent reading of the
//! framing (oversize / truncated / otherwise crypto), and that anything that opens has the
//! length the format implies and names the fixture key.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mltenant_operator::crypto::{self, MAX_SEALED_LEN, OpenError, OpenedValue, SealingKey};

static KEY: LazyLock<SealingKey> = LazyLock::new(|| {
    SealingKey::from_pem(
        include_str!("../../tests/fixtures/crypto/sealing-key.crt"),
        include_str!("../../tests/fixtures/crypto/sealing-key.key"),
    )
    .expect("fixture key loads")
});

const LABELS: [&[u8]; 3] = [b"", b"financial-ml", b"financial-ml/production"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let keys = std::slice::from_ref(&*KEY);
    let label = LABELS[usize::from(mode & 0x7f) % LABELS.len()];
    if mode & 0x80 == 0 {
        check(rest, crypto::open_raw(keys, label, rest));
    } else if let Ok(text) = std::str::from_utf8(rest) {
        let result = crypto::open(keys, label, text);
        if let Err(OpenError::InvalidBase64 | OpenError::TooLarge) = result {
            return;
        }
        // It decoded: the raw bytes must give exactly the same answer.
        let compact: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        let raw = decode(&compact);
        let again = crypto::open_raw(keys, label, &raw);
        assert_eq!(summary(&result), summary(&again), "base64 and raw paths disagree");
        check(&raw, result);
    }
});

/// The error the framing alone implies, if any.
fn framing_error(raw: &[u8]) -> Option<OpenError> {
    if raw.len() > MAX_SEALED_LEN {
        return Some(OpenError::TooLarge);
    }
    if raw.len() < 2 {
        return Some(OpenError::Truncated);
    }
    let rsa_len = usize::from(u16::from_be_bytes([raw[0], raw[1]]));
    if raw.len() - 2 < rsa_len || raw.len() - 2 - rsa_len < 16 {
        return Some(OpenError::Truncated);
    }
    None
}

fn check(raw: &[u8], result: Result<OpenedValue, OpenError>) {
    match (framing_error(raw), result) {
        (Some(expected), Err(got)) => assert_eq!(expected, got),
        (Some(expected), Ok(_)) => panic!("opened a value whose framing says {expected:?}"),
        (None, Err(got)) => {
            assert!(matches!(got, OpenError::NoKeyCouldDecrypt | OpenError::Tampered), "{got:?} for well-framed input")
        }
        (None, Ok(opened)) => {
            let rsa_len = usize::from(u16::from_be_bytes([raw[0], raw[1]]));
            assert_eq!(rsa_len, 512, "only a 512-byte RSA part can open with an RSA-4096 key");
            assert_eq!(opened.plaintext.len(), raw.len() - 2 - rsa_len - 16);
            assert_eq!(opened.fingerprint, KEY.fingerprint());
        }
    }
}

fn summary(r: &Result<OpenedValue, OpenError>) -> Result<Vec<u8>, OpenError> {
    r.as_ref().map(|o| o.plaintext.to_vec()).map_err(|e| *e)
}

/// Minimal standard base64 decoder (padding required), independent of the crate's, used only
/// after the crate has accepted the text.
fn decode(text: &str) -> Vec<u8> {
    fn value(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("crate accepted a non-base64 character {c:#x}"),
        }
    }
    let bytes = text.as_bytes();
    assert!(bytes.len() % 4 == 0, "crate accepted unpadded base64");
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c);
        }
        n <<= 6 * pad as u32;
        let group = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&group[..3 - pad]);
    }
    out
}
