use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;
use crate::api::SealedBundleSpec;

fn bundle(scope: BundleScope, tenant: Option<&str>, environment: Option<&str>) -> SealedBundle {
    SealedBundle::new(
        "b",
        SealedBundleSpec {
            tenant: tenant.map(Into::into),
            environment: environment.map(Into::into),
            tenant_selector: (scope == BundleScope::Cluster).then(|| LabelSelector {
                match_labels: Some([("tier".to_string(), "gold".to_string())].into()),
                ..Default::default()
            }),
            ..SealedBundleSpec::new(scope, [("K".to_string(), "AgB".to_string())].into())
        },
    )
}

#[test]
fn scope_checks_use_the_consumer() {
    let none = BTreeMap::new();
    let gold: BTreeMap<String, String> = [("tier".to_string(), "gold".to_string())].into();
    let tenant = bundle(BundleScope::Tenant, Some("a"), None);
    assert_eq!(consumer_label(&tenant, "a", &none, "dev").unwrap(), b"a");
    let err = consumer_label(&tenant, "b", &none, "dev").unwrap_err();
    assert_eq!(
        (err.reason(), err.to_string().as_str()),
        ("ScopeMismatch", "SealedBundle b: sealed for tenant a, not b")
    );

    let env = bundle(BundleScope::Environment, Some("a"), Some("dev"));
    assert_eq!(consumer_label(&env, "a", &none, "dev").unwrap(), b"a/dev");
    assert_eq!(consumer_label(&env, "a", &none, "production").unwrap_err().reason(), "ScopeMismatch");

    let cluster = bundle(BundleScope::Cluster, None, None);
    assert_eq!(consumer_label(&cluster, "a", &gold, "dev").unwrap(), b"");
    let outside = consumer_label(&cluster, "a", &none, "dev").unwrap_err();
    assert!(outside.to_string().contains("outside its tenantSelector"), "{outside}");
}

#[test]
fn source_hash_follows_the_ciphertext() {
    let a = bundle(BundleScope::Tenant, Some("a"), None);
    let mut b = a.clone();
    assert_eq!(source_hash(&a), source_hash(&b));
    b.spec.encrypted_data.insert("K".into(), "AgC".into());
    assert_ne!(source_hash(&a), source_hash(&b));
    assert!(source_hash(&a).starts_with("sha256:"));
}

#[test]
fn the_cached_form_keeps_digests_and_the_source_hash() {
    let full = bundle(BundleScope::Tenant, Some("a"), None);
    let mut cached = full.clone();
    keep_digests(&mut cached);
    assert!(cached.spec.encrypted_data["K"].starts_with("sha256:"), "{:?}", cached.spec.encrypted_data);
    assert_eq!(cached_source_hash(&cached), source_hash(&full));
    assert_eq!(cached_source_hash(&full), source_hash(&full), "computed when not cached");
    assert!(same_values(&cached, &full));
    let mut resealed = full.clone();
    resealed.spec.encrypted_data.insert("K".into(), "AgC".into());
    assert!(!same_values(&cached, &resealed));
}

/// The decrypt cache does not let a v2 value opened under one key name open under another.
#[test]
fn a_value_moved_to_another_key_name_is_refused_even_once_cached() {
    let key = SealingKey::generate(std::time::Duration::from_secs(3600)).unwrap();
    let label = crypto::label(BundleScope::Tenant, "a", "");
    let sealer = crypto::Sealer::new(&[key.certificate()], &label).unwrap();
    let value = |k: &str| crypto::encode_base64(&sealer.seal(k, b"v").unwrap());
    let mut b = bundle(BundleScope::Tenant, Some("a"), None);
    b.spec.encrypted_data = [("A".to_string(), value("A")), ("B".to_string(), value("B"))].into();
    let cache = DecryptCache::default();
    let keys = std::slice::from_ref(&key);
    assert!(open(&b, &label, Keys::active(keys), &cache).is_ok());
    let moved = b.spec.encrypted_data["B"].clone();
    b.spec.encrypted_data.insert("A".into(), moved);
    let failure = open(&b, &label, Keys::active(keys), &cache).unwrap_err();
    assert_eq!((failure.metric_reason(), failure.to_string().contains("key A")), ("Tampered", true));
}

/// A bundle merged into over time (one value sealed to an older key, one to the newest)
/// needs both keys, also while one of its values fails: the status lists every one, so
/// neither is deleted while a value needs it (its status used to name one key only).
#[test]
fn every_key_a_value_needs_is_found_also_past_a_failure() {
    use crate::crypto::tests::{fixture_key, shared_key};
    let (newest, older) = (shared_key(), fixture_key());
    let label = crypto::label(BundleScope::Tenant, "a", "");
    let seal = |key: &SealingKey, v: &[u8]| crypto::encode_base64(&crypto::seal(key.certificate(), &label, v).unwrap());
    let mut b = bundle(BundleScope::Tenant, Some("a"), None);
    b.spec.encrypted_data = [("A".to_string(), seal(newest, b"a")), ("B".to_string(), seal(older, b"b"))].into();
    let both = [newest.clone(), older.clone()];
    let fingerprints = |needs: &[Arc<str>]| needs.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    let mut expected = vec![newest.fingerprint().to_owned(), older.fingerprint().to_owned()];
    expected.sort();

    let found = opening(&b, &label, Keys::active(&both), &DecryptCache::default(), true);
    let opened = found.opened.as_ref().unwrap();
    assert_eq!(fingerprints(&opened.keys), expected, "every key that opened a value");
    assert_eq!(opened.fingerprint, older.fingerprint(), "the one that is not the newest: the bundle needs re-sealing");
    let shown = format!("{opened:?}");
    assert!(shown.contains("\"A\": \"<1 bytes redacted>\"") && shown.contains(older.fingerprint()), "{shown}");
    assert_eq!(fingerprints(&found.needs), expected);
    // The older key retired: the bundle fails naming it, and still needs both.
    let retired = Keys { active: std::slice::from_ref(newest), retired: std::slice::from_ref(older), generation: 1 };
    let found = opening(&b, &label, retired, &DecryptCache::default(), true);
    assert_eq!(found.opened.as_ref().unwrap_err().reason(), "KeyRetired");
    assert_eq!(fingerprints(&found.needs), expected);
    // The newest key's value tampered with: the older key is still needed by the other.
    let mut raw = crypto::decode_base64(&b.spec.encrypted_data["A"]).unwrap();
    *raw.last_mut().unwrap() ^= 1;
    b.spec.encrypted_data.insert("A".into(), crypto::encode_base64(&raw));
    let found = opening(&b, &label, Keys::active(&both), &DecryptCache::default(), true);
    assert_eq!(found.opened.unwrap_err().metric_reason(), "Tampered");
    assert_eq!(fingerprints(&found.needs), vec![older.fingerprint().to_owned()]);
    // A tenant's opening stops at the first failure.
    assert_eq!(
        open(&b, &label, Keys::active(&both), &DecryptCache::default()).unwrap_err().metric_reason(),
        "Tampered"
    );
}

/// `/v1/rotate?format=kubeseal` of a value other clusters open too is refused, naming them:
/// kubeseal's format has one recipient, and the conversion used to drop the others
/// silently (the bundle stopped opening on every other cluster). Without the format, or
/// for a value only this cluster's keys open, it goes through.
#[test]
fn rotating_to_kubeseal_never_drops_another_clusters_recipient() {
    use crate::crypto::tests::{fixture_key, fixture_key_2, shared_key};
    let (ours, retired, foreign) = (shared_key(), fixture_key_2(), fixture_key());
    let label = crypto::label(BundleScope::Tenant, "a", "");
    let seal = |certs: &[&crypto::Certificate]| {
        let sealer = crypto::Sealer::new(certs, &label).unwrap();
        crypto::encode_base64(&sealer.seal("A", b"v").unwrap())
    };
    let mut b = bundle(BundleScope::Tenant, Some("a"), None);
    b.spec.encrypted_data = [("A".to_string(), seal(&[ours.certificate(), foreign.certificate()]))].into();
    let keys = Keys { active: std::slice::from_ref(ours), retired: &[], generation: 0 };
    let error = reseal(&b, &label, keys, ours, Some(crypto::Format::Kubeseal)).unwrap_err();
    let foreign_id = crypto::key_id_hex(&foreign.certificate().key_id());
    assert!(matches!(&error, ResealError::OtherRecipients { recipients, .. } if *recipients == foreign_id), "{error}");
    let kept = reseal(&b, &label, keys, ours, None).unwrap();
    assert_eq!(crypto::v2::recipients(&crypto::decode_base64(&kept["A"]).unwrap()).len(), 2);
    // Our own keys (a retired one too) are no other cluster's.
    b.spec.encrypted_data = [("A".to_string(), seal(&[ours.certificate(), retired.certificate()]))].into();
    let keys = Keys { active: std::slice::from_ref(ours), retired: std::slice::from_ref(retired), generation: 0 };
    let converted = reseal(&b, &label, keys, ours, Some(crypto::Format::Kubeseal)).unwrap();
    assert!(!crypto::v2::is_ours(&crypto::decode_base64(&converted["A"]).unwrap()));
    // And back: a kubeseal-format value asked for in v2 is sealed afresh for the newest key.
    b.spec.encrypted_data = converted;
    let v2 = reseal(&b, &label, keys, ours, Some(crypto::Format::V2)).unwrap();
    let raw = crypto::decode_base64(&v2["A"]).unwrap();
    assert_eq!(crypto::v2::recipients(&raw), vec![ours.certificate().key_id()]);
}

/// Values that open nothing cost their RSA work once per set of keys, however many times
/// (and by however many tenants) the bundle is opened; and a bundle of the shared cache
/// with such a value fails at once, from the cache.
#[test]
fn what_does_not_open_is_tried_once_per_key_set() {
    use crate::crypto::tests::{fixture_key, shared_key};
    let label = crypto::label(BundleScope::Tenant, "a", "");
    let other = crypto::label(BundleScope::Tenant, "b", "");
    let mut b = bundle(BundleScope::Tenant, Some("a"), None);
    b.spec.encrypted_data = (0..8)
        .map(|i| {
            (format!("K{i}"), crypto::encode_base64(&crypto::seal(fixture_key().certificate(), &other, b"v").unwrap()))
        })
        .collect();
    let cache = DecryptCache::default();
    let keys = std::slice::from_ref(shared_key());
    for _ in 0..3 {
        let found = opening(&b, &label, Keys::active(keys), &cache, true);
        assert_eq!(found.opened.unwrap_err().metric_reason(), "NoKeyCouldDecrypt");
    }
    assert_eq!(cache.decryptions(), 8, "each value tried once");
    let mut cached = b.clone();
    keep_digests(&mut cached);
    let failure = open_cached(&cached, &label, keys, &cache).expect("known").unwrap_err();
    assert_eq!(failure.metric_reason(), "NoKeyCouldDecrypt");
    assert!(opening_cached(&cached, &label, keys, &cache, true).is_some_and(|o| o.needs.is_empty()));
    // Another key set: tried again.
    cache.retain_keys(&[shared_key().fingerprint()], 1);
    assert!(open_cached(&cached, &label, keys, &cache).is_none());
}

/// From the cache alone, a bundle with a value known to fail and one not tried yet fails at
/// once when a failure is enough, and is not known when every failure must be named.
#[test]
fn a_known_failure_is_enough_unless_every_failure_is_wanted() {
    use crate::crypto::tests::{fixture_key, shared_key};
    let label = crypto::label(BundleScope::Tenant, "a", "");
    let other = crypto::label(BundleScope::Tenant, "b", "");
    let sealed = || crypto::encode_base64(&crypto::seal(fixture_key().certificate(), &other, b"v").unwrap());
    let mut b = bundle(BundleScope::Tenant, Some("a"), None);
    b.spec.encrypted_data = BTreeMap::from([("A".to_owned(), sealed())]);
    let (cache, keys) = (DecryptCache::default(), std::slice::from_ref(shared_key()));
    assert!(opening(&b, &label, Keys::active(keys), &cache, true).opened.is_err());
    b.spec.encrypted_data.insert("B".to_owned(), sealed());
    keep_digests(&mut b);
    let failed = opening_cached(&b, &label, keys, &cache, false).expect("A's failure is known");
    assert_eq!(failed.opened.unwrap_err().metric_reason(), "NoKeyCouldDecrypt");
    assert!(opening_cached(&b, &label, keys, &cache, true).is_none(), "B was never tried");
}

/// What holds a key's deletion: the keys a status found out (for the bundle as it is),
/// else, while no such status speaks for it, the key ids its v2 values name.
#[test]
fn which_bundles_need_a_key() {
    use crate::api::SealedBundleStatus;
    const KEY: &str = "SHA256:aaaa";
    const ID: &str = "aaaa";
    let row = |generation: i64, status: Option<SealedBundleStatus>, names: &[&str]| {
        let mut b = bundle(BundleScope::Tenant, Some("a"), None);
        b.metadata.generation = Some(generation);
        b.status = status;
        b.annotations_mut().insert(CACHED_RECIPIENTS.to_owned(), names.join(","));
        b
    };
    let status = |observed: i64, fingerprint: Option<&str>, needs: Option<&[&str]>| SealedBundleStatus {
        observed_generation: Some(observed),
        key_fingerprint: fingerprint.map(Into::into),
        key_fingerprints: needs.map(|n| n.iter().map(|f| f.to_string()).collect()),
        ..Default::default()
    };
    for (what, bundle, reported_here, needed) in [
        ("its status lists the key", row(2, Some(status(2, None, Some(&["SHA256:bbbb", KEY]))), &[]), true, true),
        ("its status names the key", row(2, Some(status(2, Some(KEY), Some(&[]))), &[]), true, true),
        ("its status lists only other keys", row(2, Some(status(2, None, Some(&["SHA256:bbbb"]))), &[]), true, false),
        ("a forged stanza, looked at", row(2, Some(status(2, None, Some(&[]))), &[ID]), true, false),
        ("a stanza, not looked at since the change", row(3, Some(status(2, None, Some(&[]))), &[ID]), true, true),
        ("a stanza, never looked at", row(1, None, &[ID]), true, true),
        (
            "a stanza, status by an older operator",
            row(2, Some(status(2, Some("SHA256:bbbb"), None)), &[ID]),
            true,
            true,
        ),
        ("a stanza, reported on elsewhere", row(2, Some(status(2, None, Some(&[]))), &[ID]), false, true),
        ("nothing names it", row(1, None, &["bbbb"]), true, false),
        ("a kubeseal value, never looked at", row(1, None, &["bbbb", ANY_KEY]), true, true),
        ("a kubeseal value, reported on elsewhere", row(2, Some(status(2, None, Some(&[]))), &[ANY_KEY]), false, false),
        ("a kubeseal value, not looked at since", row(3, Some(status(2, None, Some(&[]))), &[ANY_KEY]), true, true),
        ("a kubeseal value, looked at", row(2, Some(status(2, None, Some(&[]))), &[ANY_KEY]), true, false),
    ] {
        assert_eq!(needs_key(&bundle, KEY, ID, reported_here), needed, "{what}");
    }
}

/// What the shared cache keeps of the keys a bundle names is bounded whatever its values
/// say, and says "any key" where it cannot tell: a kubeseal-format value names no key (a
/// bundle whose status is not current used to hold none for it, so the key it was sealed
/// to could be deleted before the operator looked), and 17 or more distinct ids are more
/// than one header can name (all were kept, up to 2,048 made-up ids per bundle).
#[test]
fn the_keys_a_cached_bundle_names_are_bounded() {
    use crate::crypto::tests::fixture_key;
    let label = crypto::label(BundleScope::Tenant, "a", "");
    let value = |id: u8| {
        // Structure only (no key needed to name one): MLT2, one stanza, nonce and tag.
        let mut raw = b"MLT2\x01".to_vec();
        raw.extend_from_slice(&[id; 8]);
        raw.extend_from_slice(&512u16.to_be_bytes());
        raw.extend_from_slice(&[0; 512 + 12 + 16]);
        crypto::encode_base64(&raw)
    };
    let cached = |data: BTreeMap<String, String>| {
        let mut b = bundle(BundleScope::Tenant, Some("a"), None);
        b.spec.encrypted_data = data;
        keep_digests(&mut b);
        b.annotations()[CACHED_RECIPIENTS].clone()
    };
    let hex = |id: u8| crypto::key_id_hex(&[id; 8]);
    assert_eq!(cached((1..=2).map(|i| (format!("K{i}"), value(i))).collect()), format!("{},{}", hex(1), hex(2)));
    let many = cached((1..=100).map(|i| (format!("K{i}"), value(i))).collect());
    assert_eq!(many.split(',').count(), crypto::v2::MAX_RECIPIENTS + 1, "{many}");
    assert!(many.ends_with(",*"), "{many}");
    let kubeseal = crypto::encode_base64(&crypto::seal(fixture_key().certificate(), &label, b"v").unwrap());
    let mixed = cached([("A".to_owned(), value(1)), ("B".to_owned(), kubeseal)].into());
    assert_eq!(mixed, format!("{},*", hex(1)));
    let mut b = bundle(BundleScope::Tenant, Some("a"), None);
    b.annotations_mut().insert(CACHED_RECIPIENTS.to_owned(), mixed);
    assert_eq!(cached_recipients(&b), vec![hex(1)], "recipients: the ids alone");
}

#[test]
fn refusals_have_their_own_reasons() {
    let mut b = bundle(BundleScope::Tenant, Some("a"), None);
    b.spec.type_ = Some("kubernetes.io/service-account-token".into());
    let failure = open(&b, b"a", Keys::active(&[]), &DecryptCache::default()).unwrap_err();
    assert_eq!(failure.reason(), "UnsupportedType");
    assert!(failure.to_string().contains("is not allowed (one of Opaque, "), "{failure}");
}

#[test]
fn every_failure_names_its_bundle_for_the_metric() {
    let bundle = || "the-bundle".to_owned();
    let failures = [
        Failure::NotFound { bundle: bundle() },
        Failure::ScopeMismatch { bundle: bundle(), problem: "p".into() },
        Failure::Decryption { bundle: bundle(), key: "K".into(), error: OpenError::Truncated },
        Failure::NotARecipient { bundle: bundle(), key: "K".into(), recipients: "r".into(), ours: "o".into() },
        Failure::KeyRetired { bundle: bundle(), key: "K".into(), fingerprint: "f".into() },
        Failure::InvalidPayload { bundle: bundle(), key: "K".into(), problem: "p" },
        Failure::Refused { bundle: bundle(), refusal: Refusal::TooManyValues(999) },
        Failure::Unreadable { bundle: bundle(), field: "spec.expiresAt".into() },
    ];
    for failure in failures {
        assert_eq!(failure.bundle(), "the-bundle", "{failure:?}");
        assert!(failure.to_string().starts_with("SealedBundle the-bundle"), "{failure}");
    }
}
