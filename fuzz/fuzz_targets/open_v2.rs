//! Feeds arbitrary bytes to the format v2 opener (`crypto::Opener`) with the two TEST-ONLY
//! fixture keys, one active and one retired.
//!
//! Input layout: the first byte picks the scope label (`% 3`: `""`, `"financial-ml"`,
//! `"financial-ml/production"`, the labels of the committed vectors) and, with bit 7 set, the
//! key name `w` instead of `v`; the rest is the raw value (`MLT2` prepended when it does not
//! start with `MLT`, so most inputs exercise the v2 parser, not kubeseal's).
//!
//! Besides "never panics", it checks the outcome against an independent reading of the header:
//! a value whose framing is wrong is refused with exactly the framing's reason before any key
//! is tried; a well-framed value that names neither fixture key is `NotARecipient`, one that
//! names only the retired key is `KeyRetired` naming it; anything that opens names the active
//! key and has the length the format implies.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mltenant_operator::crypto::{self, OpenError, Opener, SealingKey};

static KEYS: LazyLock<[SealingKey; 2]> = LazyLock::new(|| {
    [
        SealingKey::from_pem(
            include_str!("../../tests/fixtures/crypto/sealing-key.crt"),
            include_str!("../../tests/fixtures/crypto/sealing-key.key"),
        )
        .expect("fixture key loads"),
        SealingKey::from_pem(
            include_str!("../../tests/fixtures/crypto/sealing-key-2.crt"),
            include_str!("../../tests/fixtures/crypto/sealing-key-2.key"),
        )
        .expect("second fixture key loads"),
    ]
});

const LABELS: [&[u8]; 3] = [b"", b"financial-ml", b"financial-ml/production"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let label = LABELS[usize::from(mode & 0x7f) % LABELS.len()];
    let name = if mode & 0x80 == 0 { "v" } else { "w" };
    let raw: Vec<u8> = if rest.starts_with(b"MLT") { rest.to_vec() } else { [&b"MLT2"[..], rest].concat() };
    let [active, retired] = &*KEYS;
    let result = Opener::new(std::slice::from_ref(active), std::slice::from_ref(retired), label).open(name, &raw);
    match (framing(&raw), result) {
        (Err(expected), Err(refused)) => assert_eq!(expected, refused.error),
        (Err(expected), Ok(_)) => panic!("opened a value whose framing says {expected:?}"),
        (Ok(ids), Err(refused)) => {
            let names = |key: &SealingKey| ids.contains(&key.certificate().key_id());
            let expected: &[OpenError] = match (names(active), names(retired)) {
                (true, _) => &[OpenError::UnwrapFailed, OpenError::Tampered],
                (false, true) => &[OpenError::KeyRetired],
                (false, false) => &[OpenError::NotARecipient],
            };
            assert!(expected.contains(&refused.error), "{:?} for a header naming {ids:?}", refused.error);
            if refused.error == OpenError::KeyRetired {
                assert_eq!(refused.retired.as_deref(), Some(retired.fingerprint()));
            }
        }
        (Ok(ids), Ok(opened)) => {
            assert!(ids.contains(&active.certificate().key_id()), "opened without naming the active key");
            assert_eq!(opened.fingerprint, active.fingerprint());
            let header = crypto::v2::header(&raw).expect("it parsed").len();
            assert_eq!(opened.plaintext.len(), raw.len() - header - 12 - 16);
        }
    }
});

/// The key ids of a well-framed v2 value, or the reason its framing alone gives, read here
/// without the crate's parser.
fn framing(raw: &[u8]) -> Result<Vec<[u8; 8]>, OpenError> {
    if raw.len() > crypto::MAX_SEALED_LEN {
        return Err(OpenError::TooLarge);
    }
    // Every input starts with "MLT" (see above): anything but version 2 is unknown.
    if !raw.starts_with(b"MLT2") {
        return Err(OpenError::UnsupportedVersion);
    }
    let count = usize::from(*raw.get(4).ok_or(OpenError::Truncated)?);
    if count == 0 || count > 16 {
        return Err(OpenError::Malformed);
    }
    let mut at = 5;
    let mut ids: Vec<[u8; 8]> = Vec::new();
    for _ in 0..count {
        let id: [u8; 8] = raw.get(at..at + 8).ok_or(OpenError::Truncated)?.try_into().unwrap();
        let len = raw.get(at + 8..at + 10).ok_or(OpenError::Truncated)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if raw.len() < at + 10 + len {
            return Err(OpenError::Truncated);
        }
        if ids.contains(&id) {
            return Err(OpenError::Malformed);
        }
        ids.push(id);
        at += 10 + len;
    }
    if raw.len() < at + 12 + 16 {
        return Err(OpenError::Truncated);
    }
    Ok(ids)
}
