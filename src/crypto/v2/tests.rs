use super::*;
use crate::crypto::tests::{fixture_key, shared_key};

const LABEL: &[u8] = b"financial-ml";

fn both() -> [&'static SealingKey; 2] {
    [shared_key(), fixture_key()]
}

fn sealed_for(recipients: &[&SealingKey], values: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    let certs: Vec<&Certificate> = recipients.iter().map(|k| k.certificate()).collect();
    let sealer = Sealer::new(&certs, LABEL).unwrap();
    values.iter().map(|(k, v)| (k.to_string(), sealer.seal(k, v).unwrap())).collect()
}

fn open_all(
    keys: &[SealingKey],
    retired: &[SealingKey],
    values: &[(String, Vec<u8>)],
) -> Result<Vec<Vec<u8>>, Refused> {
    let mut opener = Opener::new(keys, retired, LABEL);
    values.iter().map(|(k, raw)| opener.open(k, raw).map(|o| o.plaintext.to_vec())).collect()
}

#[test]
fn every_recipient_opens_every_value_with_one_rsa_operation() {
    let values = sealed_for(&both(), &[("A", b"alpha"), ("B", b""), ("C", &[0u8, 255, 7])]);
    assert!(values.iter().all(|(_, raw)| raw.starts_with(MAGIC)));
    let first = header(&values[0].1).unwrap().to_vec();
    assert!(values.iter().all(|(_, raw)| header(raw) == Some(&first[..])), "one run, one header");
    assert_eq!(first.len(), 4 + 1 + 2 * (8 + 2 + 512));
    for key in both() {
        let mut opener = Opener::new(std::slice::from_ref(key), &[], LABEL);
        let before = crate::crypto::rsa_decryptions();
        let opened: Vec<_> = values.iter().map(|(k, raw)| opener.open(k, raw).unwrap()).collect();
        assert_eq!(opened[0].plaintext.as_slice(), b"alpha");
        assert_eq!(opened[2].plaintext.as_slice(), &[0u8, 255, 7]);
        assert!(opened.iter().all(|o| o.fingerprint == key.fingerprint()));
        assert_eq!(opener.unwrapped.len(), 1, "one data key unwrapped for three values");
        // Other tests run beside this one: at least one, and the memo proves it was one.
        assert!(crate::crypto::rsa_decryptions() > before);
    }
    assert_eq!(
        recipients(&values[0].1),
        vec![shared_key().certificate().key_id(), fixture_key().certificate().key_id()]
    );
}

#[test]
fn only_the_key_a_stanza_names_is_tried() {
    let values = sealed_for(&[fixture_key()], &[("A", b"v")]);
    // The shared key holds no stanza: it is never tried, and the refusal lists who is.
    let refused = open_all(&[shared_key().clone()], &[], &values).unwrap_err();
    assert_eq!(refused.error, OpenError::NotARecipient);
    assert_eq!(refused.recipients, vec![fixture_key().certificate().key_id()]);
    // Behind another key in the ring, the named one opens.
    let opened = open_all(&[shared_key().clone(), fixture_key().clone()], &[], &values).unwrap();
    assert_eq!(opened, vec![b"v".to_vec()]);
}

#[test]
fn a_retired_key_opens_nothing_and_is_named() {
    let values = sealed_for(&[fixture_key()], &[("A", b"v")]);
    let refused = open_all(&[shared_key().clone()], &[fixture_key().clone()], &values).unwrap_err();
    assert_eq!(refused.error, OpenError::KeyRetired);
    assert_eq!(refused.retired.as_deref(), Some(fixture_key().fingerprint()));
    // kubeseal values too: the retired key is found by trying it, its plaintext dropped.
    let old = crate::crypto::seal(fixture_key().certificate(), LABEL, b"v").unwrap();
    let mut opener = Opener::new(std::slice::from_ref(shared_key()), std::slice::from_ref(fixture_key()), LABEL);
    let refused = opener.open("A", &old).unwrap_err();
    assert_eq!((refused.error, refused.retired.as_deref()), (OpenError::KeyRetired, Some(fixture_key().fingerprint())));
    let mut opener = Opener::new(std::slice::from_ref(shared_key()), &[], LABEL);
    assert_eq!(opener.open("A", &old).unwrap_err().error, OpenError::NoKeyCouldDecrypt);
}

/// A key id is public: a stanza naming a retired key with bytes that wrap nothing is not a
/// value that needs the key (it used to say `KeyRetired`, naming the key, which then counted
/// as needed and held against deletion). Values sharing a failing header cost its RSA work
/// once.
#[test]
fn a_forged_stanza_makes_no_retired_key_needed() {
    let genuine = sealed_for(&[fixture_key()], &[("A", b"v")]);
    let mut forged = parse(&genuine[0].1).unwrap().header.to_vec();
    forged[5 + 10..5 + 10 + 512].fill(0x5a);
    forged.extend_from_slice(&[0u8; NONCE_LEN + TAG_LEN]);
    let mut opener = Opener::new(std::slice::from_ref(shared_key()), std::slice::from_ref(fixture_key()), LABEL);
    let refused = opener.open("A", &forged).unwrap_err();
    assert_eq!((refused.error, refused.retired), (OpenError::UnwrapFailed, None));
    assert_eq!(opener.open("B", &forged).unwrap_err().error, OpenError::UnwrapFailed);
    assert_eq!(opener.refused.len(), 1, "one header, tried once");
    // Beside a genuine stanza of the active key, the forged retired one changes nothing.
    let both = sealed_for(&[shared_key(), fixture_key()], &[("A", b"v")]);
    let mut value = both[0].1.clone();
    let second = 5 + 8 + 2 + 512;
    value[second + 10..second + 10 + 512].fill(0x5a);
    let refused = Opener::new(std::slice::from_ref(shared_key()), std::slice::from_ref(fixture_key()), LABEL)
        .open("A", &value)
        .unwrap_err();
    assert_eq!(refused.error, OpenError::Tampered, "the header is authenticated");
    // The genuine one names it.
    let refused = open_all(&[shared_key().clone()], &[fixture_key().clone()], &genuine).unwrap_err();
    assert_eq!(refused.error, OpenError::KeyRetired);
}

/// A header is unwrapped by one key at most: a forged stanza of the first key of ours it
/// names fails it, whatever genuine stanzas of our other keys follow (each used to be tried
/// in turn: a header naming every key of ours cost an RSA operation per key, and a forged
/// active stanza beside a genuine retired one made that retired key needed).
#[test]
fn one_rsa_operation_per_header_whatever_it_names() {
    let [newer, older] = both();
    let genuine = sealed_for(&[newer, older], &[("A", b"v")]);
    let mut forged = genuine[0].1.clone();
    forged[5 + 10..5 + 10 + 512].fill(0x5a);
    let active = [newer.clone(), older.clone()];
    let refused = Opener::new(&active, &[], LABEL).open("A", &forged).unwrap_err();
    assert_eq!(refused.error, OpenError::UnwrapFailed, "the older key's genuine stanza is not tried");
    let refused = Opener::new(&active[..1], &active[1..], LABEL).open("A", &forged).unwrap_err();
    assert_eq!((refused.error, refused.retired), (OpenError::UnwrapFailed, None), "nor a retired key's");
    // Only retired keys named: the first one decides.
    let mut opener = Opener::new(&[], &active, LABEL);
    assert_eq!(opener.open("A", &forged).unwrap_err().error, OpenError::UnwrapFailed);
    let refused = opener.open("A", &genuine[0].1).unwrap_err();
    assert_eq!(refused.retired.as_deref(), Some(newer.fingerprint()));
    assert!(Opener::new(&active[1..], &[], LABEL).open("A", &forged).is_err(), "the header is authenticated");
}

#[test]
fn debug_shows_no_byte_of_a_ciphertext() {
    let values = sealed_for(&[fixture_key()], &[("A", b"v")]);
    let parsed = parse(&values[0].1).unwrap();
    let debug = format!("{parsed:?}");
    let wrapped = format!("{:?}", &parsed.stanzas[0].wrapped[..4]);
    assert!(!debug.contains(&wrapped) && debug.contains("512 bytes"), "{debug}");
    assert!(debug.contains(&crate::text::hex(&fixture_key().certificate().key_id())), "{debug}");
}

/// One byte changed anywhere is refused, each part with its reason.
#[test]
fn every_part_is_tamper_evident() {
    let [ours, other] = both();
    let values = sealed_for(&[ours, other], &[("A", b"the secret value"), ("B", b"another one")]);
    let raw = &values[0].1;
    let parsed = parse(raw).unwrap();
    let header_len = parsed.header.len();
    let first_stanza = 5;
    let second_stanza = first_stanza + 8 + 2 + 512;
    let keys = std::slice::from_ref(ours);
    let refused = |index: usize| {
        let mut bad = raw.clone();
        bad[index] ^= 0x01;
        Opener::new(keys, &[], LABEL).open("A", &bad).unwrap_err().error
    };
    for (part, index, reason) in [
        ("version", 3, OpenError::UnsupportedVersion),
        ("recipient count", 4, OpenError::Truncated),
        ("our key id", first_stanza, OpenError::NotARecipient),
        ("our wrapped key", first_stanza + 10 + 100, OpenError::UnwrapFailed),
        ("the other recipient's id", second_stanza, OpenError::Tampered),
        ("the other recipient's wrapped key", second_stanza + 10 + 7, OpenError::Tampered),
        ("nonce", header_len, OpenError::Tampered),
        ("ciphertext", header_len + 12 + 3, OpenError::Tampered),
        ("tag", raw.len() - 1, OpenError::Tampered),
    ] {
        assert_eq!(refused(index), reason, "{part}");
    }
    // A wrapped key's length that runs past the end.
    let mut bad = raw.clone();
    bad[first_stanza + 8] = 0xff;
    assert_eq!(Opener::new(keys, &[], LABEL).open("A", &bad).unwrap_err().error, OpenError::Truncated);
    // A value moved to another key name of the same bundle.
    assert_eq!(Opener::new(keys, &[], LABEL).open("B", raw).unwrap_err().error, OpenError::Tampered);
    // A value moved to a bundle of another scope: the label does not unwrap the data key.
    assert_eq!(Opener::new(keys, &[], b"other-team").open("A", raw).unwrap_err().error, OpenError::UnwrapFailed);
    // A value moved to a bundle of the same scope opens (kubeseal's scopes behave alike).
    assert!(Opener::new(keys, &[], LABEL).open("A", raw).is_ok());
}

#[test]
fn malformed_headers() {
    let values = sealed_for(&[fixture_key()], &[("A", b"v")]);
    let raw = &values[0].1;
    for (what, bytes, reason) in [
        ("no recipient", [&MAGIC[..], &[0u8]].concat(), OpenError::Malformed),
        ("seventeen recipients", [&MAGIC[..], &[17u8]].concat(), OpenError::Malformed),
        ("nothing after the magic", MAGIC.to_vec(), OpenError::Truncated),
        ("a later version", b"MLT3anything".to_vec(), OpenError::UnsupportedVersion),
        ("no tag", raw[..raw.len() - 17].to_vec(), OpenError::Truncated),
    ] {
        assert_eq!(parse(&bytes).unwrap_err(), reason, "{what}");
    }
    // The same key twice.
    let stanza = &raw[5..5 + 8 + 2 + 512];
    let twice = [&MAGIC[..], &[2u8], stanza, stanza, &raw[5 + stanza.len()..]].concat();
    assert_eq!(parse(&twice).unwrap_err(), OpenError::Malformed);
    assert!(matches!(Sealer::new(&[], LABEL), Err(SealError::Recipients)));
    let same = [fixture_key().certificate(), fixture_key().certificate()];
    assert!(matches!(Sealer::new(&same, LABEL), Err(SealError::Recipients)));
}

#[test]
fn rewrap_replaces_our_stanza_and_keeps_the_others() {
    let [newest, other] = both();
    // Sealed for `other` (this cluster's old key, say) and a foreign cluster's key we never hold.
    let foreign = crate::crypto::SealingKey::from_pem(
        &fixture_key().certificate().to_pem(),
        &fixture_key().to_pem().unwrap().key_pem,
    )
    .unwrap();
    let values = sealed_for(&[other], &[("A", b"v1"), ("B", b"v2")]);
    let mut opener = Opener::new(std::slice::from_ref(other), &[], LABEL);
    let sealer = opener.rewrap(&values[0].1, newest.certificate(), &[other.certificate().key_id()]).unwrap();
    assert_eq!(sealer.recipients(), vec![newest.certificate().key_id()]);
    let resealed = vec![("A".to_string(), sealer.seal("A", b"v1").unwrap())];
    assert_eq!(open_all(std::slice::from_ref(newest), &[], &resealed).unwrap(), vec![b"v1".to_vec()]);
    assert_eq!(open_all(std::slice::from_ref(&foreign), &[], &resealed).unwrap_err().error, OpenError::NotARecipient);
    // With a foreign recipient beside ours, its stanza is kept byte for byte and still opens.
    let two = sealed_for(&[other, newest], &[("A", b"v1")]);
    let mut opener = Opener::new(std::slice::from_ref(newest), &[], LABEL);
    let sealer = opener.rewrap(&two[0].1, newest.certificate(), &[newest.certificate().key_id()]).unwrap();
    let resealed = vec![("A".to_string(), sealer.seal("A", b"v1").unwrap())];
    let kept = parse(&two[0].1).unwrap().stanzas[0];
    assert_eq!(parse(&resealed[0].1).unwrap().stanzas[0], kept, "the other cluster's stanza, verbatim");
    assert_eq!(open_all(std::slice::from_ref(other), &[], &resealed).unwrap(), vec![b"v1".to_vec()]);
}

#[test]
fn debug_never_shows_the_data_key() {
    let sealer = Sealer::new(&[fixture_key().certificate()], LABEL).unwrap();
    let debug = format!("{sealer:?}");
    assert!(debug.contains("redacted") && !debug.contains(&format!("{:?}", &sealer.data_key[..4])), "{debug}");
}

/// Sixteen recipients is the most, kept stanzas included; a value may fill 1 MiB exactly.
#[test]
fn recipients_and_size_are_bounded_exactly() {
    let cert = fixture_key().certificate();
    let wrapped = [7u8; 512];
    let kept: Vec<Stanza> =
        (0..MAX_RECIPIENTS as u8).map(|i| Stanza { key_id: [i; KEY_ID_LEN], wrapped: &wrapped }).collect();
    let data_key = || Zeroizing::new([1u8; SESSION_KEY_LEN]);
    let sealer = Sealer::with_data_key(data_key(), &kept[1..], &[cert], LABEL).unwrap();
    assert_eq!(sealer.recipients().len(), MAX_RECIPIENTS);
    assert!(matches!(Sealer::with_data_key(data_key(), &kept, &[cert], LABEL), Err(SealError::Recipients)));

    let sealer = Sealer::new(&[cert], LABEL).unwrap();
    let room = MAX_SEALED_LEN - sealer.header.len() - NONCE_LEN - TAG_LEN;
    let largest = sealer.seal("K", &vec![0u8; room]).unwrap();
    assert_eq!(largest.len(), MAX_SEALED_LEN);
    assert!(matches!(sealer.seal("K", &vec![0u8; room + 1]), Err(SealError::TooLarge)));
    // What sealing allows, opening accepts; a byte more is refused before anything is parsed.
    let keys = std::slice::from_ref(fixture_key());
    assert_eq!(Opener::new(keys, &[], LABEL).open("K", &largest).unwrap().plaintext.len(), room);
    let mut over = largest;
    over.push(0);
    assert_eq!(parse(&over).unwrap_err(), OpenError::TooLarge);
    assert_eq!(Opener::new(keys, &[], LABEL).open("K", &over).unwrap_err().error, OpenError::TooLarge);
}
