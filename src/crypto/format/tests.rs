use super::*;
use crate::api::BundleScope;
use crate::crypto::label;
use crate::crypto::tests::{fixture_key, shared_key};

fn sealed_b64(key: &SealingKey, label: &[u8], plaintext: &[u8]) -> String {
    encode_base64(&seal(key.certificate(), label, plaintext).expect("seal"))
}

#[test]
fn round_trip_every_scope() {
    let key = shared_key();
    for (scope, tenant, env) in [
        (BundleScope::Cluster, "", ""),
        (BundleScope::Cluster, "financial-ml", "dev"),
        (BundleScope::Tenant, "financial-ml", ""),
        (BundleScope::Environment, "financial-ml", "production"),
    ] {
        let label = label(scope, tenant, env);
        for plaintext in [&b""[..], b"x", b"AKIAIOSFODNN7EXAMPLE", &[0u8, 255, 10, 13][..], &[7u8; 4096][..]] {
            let sealed = sealed_b64(key, &label, plaintext);
            let opened = open(std::slice::from_ref(key), &label, &sealed).expect("opens");
            assert_eq!(&opened.plaintext[..], plaintext, "{scope:?}");
            assert_eq!(opened.fingerprint, key.fingerprint());
        }
    }
}

#[test]
fn layout_matches_the_format() {
    let key = shared_key();
    let sealed = seal(key.certificate(), b"t/e", b"hello").unwrap();
    assert_eq!(u16::from_be_bytes([sealed[0], sealed[1]]), 512, "RSA-4096 ciphertext is 512 bytes");
    assert_eq!(sealed.len(), 2 + 512 + 5 + 16);
    // A fresh session key every time: sealing twice never gives the same bytes.
    assert_ne!(sealed, seal(key.certificate(), b"t/e", b"hello").unwrap());
}

#[test]
fn wrong_label_does_not_open() {
    let key = shared_key();
    let keys = std::slice::from_ref(key);
    let sealed = sealed_b64(key, &label(BundleScope::Environment, "financial-ml", "dev"), b"v");
    for wrong in [
        label(BundleScope::Environment, "financial-ml", "production"),
        label(BundleScope::Environment, "other-team", "dev"),
        label(BundleScope::Tenant, "financial-ml", ""),
        label(BundleScope::Cluster, "", ""),
    ] {
        let err = open(keys, &wrong, &sealed).unwrap_err();
        assert_eq!(err, OpenError::NoKeyCouldDecrypt);
    }
    let tenant_sealed = sealed_b64(key, &label(BundleScope::Tenant, "financial-ml", ""), b"v");
    assert_eq!(
        open(keys, &label(BundleScope::Tenant, "other", ""), &tenant_sealed).unwrap_err(),
        OpenError::NoKeyCouldDecrypt
    );
}

#[test]
fn wrong_key_reports_no_key_could_decrypt() {
    let sealed = sealed_b64(shared_key(), b"", b"v");
    let err = open(std::slice::from_ref(fixture_key()), b"", &sealed).unwrap_err();
    assert_eq!(err, OpenError::NoKeyCouldDecrypt);
    assert!(err.to_string().contains("no key could decrypt"), "{err}");
    assert_eq!(err.reason(), "NoKeyCouldDecrypt");
    assert_eq!(open(&[], b"", &sealed).unwrap_err(), OpenError::NoKeyCouldDecrypt);
}

#[test]
fn several_keys_the_old_one_still_opens() {
    let new = shared_key().clone();
    let old = fixture_key().clone();
    let keys = [new.clone(), old.clone()];
    let by_old = sealed_b64(&old, b"t", b"old secret");
    let by_new = sealed_b64(&new, b"t", b"new secret");
    let opened = open(&keys, b"t", &by_old).unwrap();
    assert_eq!(&opened.plaintext[..], b"old secret");
    assert_eq!(opened.fingerprint, old.fingerprint());
    let opened = open(&keys, b"t", &by_new).unwrap();
    assert_eq!(&opened.plaintext[..], b"new secret");
    assert_eq!(opened.fingerprint, new.fingerprint());
    assert_ne!(old.fingerprint(), new.fingerprint());
}

#[test]
fn tampering_is_detected() {
    let key = shared_key();
    let keys = std::slice::from_ref(key);
    let sealed = seal(key.certificate(), b"t", b"do not touch").unwrap();
    let aes_start = 2 + 512;
    for index in [aes_start, aes_start + 5, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[index] ^= 0x01;
        let err = open_raw(keys, b"t", &bad).unwrap_err();
        assert_eq!(err, OpenError::Tampered, "byte {index}");
        assert_eq!(err.reason(), "Tampered");
    }
    // Appending or removing bytes of the AES part also breaks the tag.
    let mut longer = sealed.clone();
    longer.push(0);
    assert_eq!(open_raw(keys, b"t", &longer).unwrap_err(), OpenError::Tampered);
    assert_eq!(open_raw(keys, b"t", &sealed[..sealed.len() - 1]).unwrap_err(), OpenError::Tampered);
    // A flipped bit in the RSA part is not a tag failure: no key decrypts it any more.
    let mut bad_rsa = sealed.clone();
    bad_rsa[10] ^= 0x01;
    assert_eq!(open_raw(keys, b"t", &bad_rsa).unwrap_err(), OpenError::NoKeyCouldDecrypt);
}

#[test]
fn truncated_inputs() {
    let key = shared_key();
    let keys = std::slice::from_ref(key);
    let sealed = seal(key.certificate(), b"", b"value").unwrap();
    for raw in
        [&[][..], &[0x02][..], &[0x02, 0x00][..], &sealed[..2 + 511], &sealed[..2 + 512], &sealed[..2 + 512 + 15]]
    {
        assert_eq!(open_raw(keys, b"", raw).unwrap_err(), OpenError::Truncated, "len {}", raw.len());
    }
    // Length prefix larger than the rest.
    let mut bad_prefix = sealed.clone();
    bad_prefix[0] = 0xff;
    bad_prefix[1] = 0xff;
    assert_eq!(open_raw(keys, b"", &bad_prefix).unwrap_err(), OpenError::Truncated);
    // Through base64 too: "" and one byte.
    assert_eq!(open(keys, b"", "").unwrap_err(), OpenError::Truncated);
    assert_eq!(open(keys, b"", "AA==").unwrap_err(), OpenError::Truncated);
    assert_eq!(OpenError::Truncated.reason(), "Truncated");
}

#[test]
fn a_shorter_rsa_part_is_not_truncation_but_no_key() {
    // A well-formed value whose RSA part has the wrong size for every key.
    let mut raw = vec![0x00, 0x04, 1, 2, 3, 4];
    raw.extend_from_slice(&[0u8; 16]);
    assert_eq!(open_raw(std::slice::from_ref(shared_key()), b"", &raw).unwrap_err(), OpenError::NoKeyCouldDecrypt);
}

#[test]
fn not_base64() {
    let keys = std::slice::from_ref(shared_key());
    for text in ["not base64!", "AgB=AAAA", "AgBxA", "Ag", "Ag==Ag==", "AgB\u{e9}", "AgBx AAAA"] {
        let err = open(keys, b"", text).unwrap_err();
        assert_eq!(err, OpenError::InvalidBase64, "{text:?}");
        assert_eq!(err.reason(), "InvalidBase64");
    }
}

#[test]
fn line_breaks_are_ignored_like_go() {
    let key = shared_key();
    let sealed = sealed_b64(key, b"", b"wrapped");
    let wrapped: String =
        sealed.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\r\n") + "\n";
    assert_eq!(&open(std::slice::from_ref(key), b"", &wrapped).unwrap().plaintext[..], b"wrapped");
}

#[test]
fn oversize_is_rejected() {
    let key = shared_key();
    let keys = std::slice::from_ref(key);
    // Decoded size just over the limit; checked before any base64 decoding or RSA work.
    let too_big = encode_base64(&vec![0u8; MAX_SEALED_LEN + 1]);
    assert_eq!(open(keys, b"", &too_big).unwrap_err(), OpenError::TooLarge);
    assert_eq!(open(keys, b"", &"A".repeat(MAX_SEALED_LEN * 2)).unwrap_err(), OpenError::TooLarge);
    assert_eq!(open_raw(keys, b"", &vec![0u8; MAX_SEALED_LEN + 1]).unwrap_err(), OpenError::TooLarge);
    assert_eq!(OpenError::TooLarge.reason(), "TooLarge");

    // Exactly at the limit still opens; one byte more cannot be sealed.
    let max_plaintext = MAX_SEALED_LEN - 2 - 512 - 16;
    let sealed = seal(key.certificate(), b"", &vec![1u8; max_plaintext]).unwrap();
    assert_eq!(sealed.len(), MAX_SEALED_LEN);
    assert_eq!(open(keys, b"", &encode_base64(&sealed)).unwrap().plaintext.len(), max_plaintext);
    assert_eq!(seal(key.certificate(), b"", &vec![1u8; max_plaintext + 1]).unwrap_err(), SealError::TooLarge);
}

#[test]
fn errors_and_debug_never_show_secrets() {
    let key = shared_key();
    let opened = open(std::slice::from_ref(key), b"", &sealed_b64(key, b"", b"hunter2-secret")).unwrap();
    let debug = format!("{opened:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
    for err in [
        OpenError::InvalidBase64,
        OpenError::Truncated,
        OpenError::TooLarge,
        OpenError::NoKeyCouldDecrypt,
        OpenError::Tampered,
    ] {
        // Fixed texts: nothing from the input can end up in a message.
        assert!(!err.to_string().is_empty());
        assert!(err.reason().chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
