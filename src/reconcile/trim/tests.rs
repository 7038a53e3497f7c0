use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, OwnerReference};
use serde_json::json;

use super::*;

fn entry(fields: Value) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(labels::FIELD_MANAGER.into()),
        operation: Some("Apply".into()),
        fields_v1: Some(FieldsV1(fields)),
        ..Default::default()
    }
}

fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// A Secret as the operator applies it.
fn desired() -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("s".into()),
            labels: map(&[(labels::MANAGED_BY_KEY, labels::MANAGED_BY), ("team", "fin")]),
            annotations: map(&[(labels::BUNDLE, "b"), ("note", "from the bundle's template")]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some([("K".to_string(), ByteString(b"v".to_vec()))].into()),
        ..Default::default()
    }
}

/// `desired()` as stored after the operator applied it: its manager owns exactly that.
fn stored() -> Secret {
    let mut s = desired();
    s.metadata.managed_fields = Some(vec![entry(json!({
        "f:metadata": {
            "f:labels": {"f:app.kubernetes.io/managed-by": {}, "f:team": {}},
            "f:annotations": {"f:mltenant.io/bundle": {}, "f:note": {}},
        },
        "f:data": {"f:K": {}},
        "f:type": {},
    }))]);
    s
}

fn trimmed(mut s: Secret) -> Secret {
    s.trim();
    s
}

fn owned(s: &Secret) -> &str {
    &s.metadata.annotations.as_ref().unwrap()[OWNED]
}

#[test]
fn a_secret_as_applied_digests_like_the_desired_one_and_keeps_no_value() {
    let live = trimmed(stored());
    assert_eq!(owned(&live), desired_digest(&desired()));
    assert_eq!(live.data, None, "no value, not even a digest per key");
    assert_eq!(live.metadata.managed_fields, None);
    let kept: Vec<&String> = live.metadata.labels.as_ref().unwrap().keys().collect();
    assert_eq!(kept, [labels::MANAGED_BY_KEY], "a template label is digested, not kept");
    assert_eq!(live.type_.as_deref(), Some("Opaque"));
}

#[test]
fn what_others_add_is_neither_kept_nor_compared() {
    let mut s = stored();
    let huge = "x".repeat(200 * 1024);
    s.metadata.annotations.as_mut().unwrap().insert("someone/else".into(), huge.clone());
    s.metadata.labels.as_mut().unwrap().insert("other".into(), "label".into());
    s.data.as_mut().unwrap().insert("theirs".into(), ByteString(huge.into_bytes()));
    s.metadata.owner_references = Some(vec![OwnerReference { kind: "Pod".into(), ..Default::default() }; 100]);
    let live = trimmed(s);
    assert_eq!(owned(&live), desired_digest(&desired()), "converged whatever others added");
    let size = serde_json::to_vec(&live).unwrap().len();
    assert!(size < 1024, "{size} bytes kept");
}

#[test]
fn a_change_to_what_the_operator_set_shows_in_the_digest() {
    type Edit = fn(&mut Secret);
    let edits: [(&str, Edit); 4] = [
        ("a value edited", |s| {
            s.data.as_mut().unwrap().insert("K".into(), ByteString(b"other".to_vec()));
        }),
        ("a template annotation edited", |s| {
            s.metadata.annotations.as_mut().unwrap().insert("note".into(), "edited".into());
        }),
        ("a label removed", |s| {
            s.metadata.labels.as_mut().unwrap().remove("team");
        }),
        ("managedFields rewritten to claim a key the operator never set", |s| {
            s.metadata.managed_fields = Some(vec![entry(json!({"f:data": {"f:K": {}, "f:forged": {}}}))]);
        }),
    ];
    for (why, edit) in edits {
        let mut s = stored();
        edit(&mut s);
        assert_ne!(owned(&trimmed(s)), desired_digest(&desired()), "{why}");
    }
    let mut taken = stored();
    taken.metadata.managed_fields = None;
    assert_ne!(owned(&trimmed(taken)), desired_digest(&desired()), "nothing owned any more");
}

#[test]
fn values_read_as_they_are_are_capped_and_a_forged_digest_is_replaced() {
    let mut s = stored();
    let annotations = s.metadata.annotations.as_mut().unwrap();
    annotations.insert(labels::TENANT_UID.into(), "u".repeat(100_000));
    annotations.insert(OWNED.into(), "sha256:forged".into());
    let live = trimmed(s);
    let annotations = live.metadata.annotations.as_ref().unwrap();
    assert!(annotations[labels::TENANT_UID].len() <= 71, "{}", annotations[labels::TENANT_UID].len());
    assert_eq!(annotations[OWNED], desired_digest(&desired()));
}

#[test]
fn a_trimmed_bundle_keeps_only_its_source_hash_and_recipients_of_annotations() {
    let mut bundle = SealedBundle::new(
        "b",
        crate::api::SealedBundleSpec::new(crate::api::BundleScope::Cluster, [("K".into(), "AgB".into())].into()),
    );
    bundle.metadata.annotations = map(&[(LAST_APPLIED, "{...}"), ("big", "x"), ("argocd.argoproj.io/x", "y")]);
    bundle.metadata.labels = Some((0..1000).map(|i| (format!("example.com/l{i:04}"), "v".repeat(63))).collect());
    bundle.trim();
    let kept: Vec<&String> = bundle.metadata.annotations.as_ref().unwrap().keys().collect();
    assert_eq!(kept, [unseal::CACHED_RECIPIENTS, labels::SOURCE_HASH]);
    assert_eq!(bundle.metadata.labels.unwrap().len(), OWN_KIND_LABELS, "labels past the bound are not kept");
}
