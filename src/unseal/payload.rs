//! What a bundle must look like before the operator writes (or deletes) anything for it: an
//! allowed Secret type, no reserved template keys, a bounded number of values, and opened values
//! that the Secret type accepts. Checking all of it first means a bad bundle, or a type change
//! to a payload the new type rejects, never leaves a namespace without its last good Secret.

use std::collections::BTreeMap;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::api::limits::{self, BASIC_AUTH, DOCKER_CFG, DOCKER_CONFIG_JSON, MAX_VALUES, OPAQUE, SSH_AUTH, TLS};
use crate::api::{OutOfBounds, SealedBundle};

/// The Kubernetes limit on a Secret's data.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Why a bundle's claims are refused, before any decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    UnsupportedType(String),
    ReservedMetadata(String),
    TooManyValues(usize),
    /// A field outside the bounds of the CRD (stored under an older one, or with a CRD
    /// installed without them): which field, which bound.
    OutOfBounds(OutOfBounds),
}

/// The Secret type the bundle produces.
pub fn secret_type(bundle: &SealedBundle) -> &str {
    bundle.spec.type_.as_deref().unwrap_or(OPAQUE)
}

/// Check what needs no plaintext: type, template keys, number of values, then every field's
/// bounds (the CRD's, again: `SealedBundleSpec::check_bounds`). Cheap, so it runs before any
/// RSA work.
pub fn check_claims(bundle: &SealedBundle) -> Result<(), Refusal> {
    let type_ = secret_type(bundle);
    if !limits::SECRET_TYPES.contains(&type_) {
        return Err(Refusal::UnsupportedType(crate::text::shorten(type_, 64)));
    }
    let template = bundle.spec.template.iter();
    let keys = template.flat_map(|t| t.labels.iter().chain(t.annotations.iter()).flat_map(BTreeMap::keys));
    if let Some(key) = keys.into_iter().find(|k| limits::is_reserved_key(k)) {
        return Err(Refusal::ReservedMetadata(crate::text::shorten(key, 128)));
    }
    let count = bundle.spec.encrypted_data.len();
    if count > MAX_VALUES {
        return Err(Refusal::TooManyValues(count));
    }
    bundle.spec.check_bounds().map_err(Refusal::OutOfBounds)
}

/// Check opened values against the Secret type: (data key, problem) when refused.
pub fn check_values(
    type_: &str,
    data: &BTreeMap<String, Zeroizing<Vec<u8>>>,
) -> Result<(), (&'static str, &'static str)> {
    if data.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_SECRET_BYTES {
        return Err(("*", "the values exceed the 1 MiB Secret size limit"));
    }
    let get = |key: &'static str| data.get(key).map(|v| v.as_slice());
    match type_ {
        DOCKER_CONFIG_JSON => {
            let key = ".dockerconfigjson";
            let value = get(key).ok_or((key, "is missing (required by type kubernetes.io/dockerconfigjson)"))?;
            let json: serde_json::Value = serde_json::from_slice(value).map_err(|_| (key, "is not JSON"))?;
            if !json.get("auths").is_some_and(serde_json::Value::is_object) {
                return Err((key, "has no \"auths\" object"));
            }
        }
        DOCKER_CFG => {
            let key = ".dockercfg";
            let value = get(key).ok_or((key, "is missing (required by type kubernetes.io/dockercfg)"))?;
            let json: serde_json::Value = serde_json::from_slice(value).map_err(|_| (key, "is not JSON"))?;
            if !json.is_object() {
                return Err((key, "is not a JSON object of registries"));
            }
        }
        BASIC_AUTH if get("username").is_none() && get("password").is_none() => {
            return Err(("username", "or password is required by type kubernetes.io/basic-auth"));
        }
        SSH_AUTH => {
            get("ssh-privatekey").ok_or(("ssh-privatekey", "is missing (required by type kubernetes.io/ssh-auth)"))?;
        }
        TLS => {
            let crt = get("tls.crt").ok_or(("tls.crt", "is missing (required by type kubernetes.io/tls)"))?;
            let labels = pem_labels(crt).ok_or(("tls.crt", "is not PEM"))?;
            if labels.is_empty() || labels.iter().any(|l| l != "CERTIFICATE") {
                return Err(("tls.crt", "must hold PEM CERTIFICATE blocks only"));
            }
            let key = get("tls.key").ok_or(("tls.key", "is missing (required by type kubernetes.io/tls)"))?;
            let labels = pem_labels(key).ok_or(("tls.key", "is not PEM"))?;
            if labels.len() != 1 || !labels[0].ends_with("PRIVATE KEY") {
                return Err(("tls.key", "must hold exactly one PEM private key block"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// The labels of the PEM blocks in `text`, or `None` if it is not PEM (a block that does not
/// close, a body that is not base64, or no block at all). Never echoes the content.
fn pem_labels(text: &[u8]) -> Option<Vec<String>> {
    let text = std::str::from_utf8(text).ok()?;
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let (label, body) = after.split_once("-----")?;
        let end_marker = format!("-----END {label}-----");
        let end = body.find(&end_marker)?;
        let base64: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD.decode(base64).ok().filter(|der| !der.is_empty())?;
        labels.push(label.to_owned());
        rest = &body[end + end_marker.len()..];
    }
    (!labels.is_empty()).then_some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BundleScope, SealedBundleSpec, SecretTemplate};

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Zeroizing<Vec<u8>>> {
        pairs.iter().map(|(k, v)| (k.to_string(), Zeroizing::new(v.to_vec()))).collect()
    }

    const CERT: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
    const KEY: &[u8] = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n";

    /// Secret type, values, and the key the check refuses (or `Ok`).
    type Case<'a> = (&'a str, &'a [(&'a str, &'a [u8])], Result<(), &'a str>);

    #[test]
    fn payloads_per_type() {
        let table: &[Case] = &[
            (OPAQUE, &[("anything", b"x")], Ok(())),
            (DOCKER_CONFIG_JSON, &[(".dockerconfigjson", br#"{"auths":{}}"#)], Ok(())),
            (DOCKER_CONFIG_JSON, &[(".dockerconfigjson", b"hunter2")], Err(".dockerconfigjson")),
            (DOCKER_CONFIG_JSON, &[(".dockerconfigjson", br#"{"credsStore":"x"}"#)], Err(".dockerconfigjson")),
            (DOCKER_CONFIG_JSON, &[], Err(".dockerconfigjson")),
            (DOCKER_CFG, &[(".dockercfg", br#"{"ghcr.io":{"auth":"eDp5"}}"#)], Ok(())),
            (DOCKER_CFG, &[(".dockercfg", b"[]")], Err(".dockercfg")),
            ("kubernetes.io/basic-auth", &[("password", b"p")], Ok(())),
            ("kubernetes.io/basic-auth", &[("user", b"u")], Err("username")),
            ("kubernetes.io/ssh-auth", &[("ssh-privatekey", b"k")], Ok(())),
            ("kubernetes.io/ssh-auth", &[("id_rsa", b"k")], Err("ssh-privatekey")),
            ("kubernetes.io/tls", &[("tls.crt", CERT), ("tls.key", KEY)], Ok(())),
            ("kubernetes.io/tls", &[("tls.crt", b"not pem"), ("tls.key", KEY)], Err("tls.crt")),
            ("kubernetes.io/tls", &[("tls.crt", KEY), ("tls.key", KEY)], Err("tls.crt")),
            ("kubernetes.io/tls", &[("tls.crt", CERT), ("tls.key", CERT)], Err("tls.key")),
            ("kubernetes.io/tls", &[("tls.crt", CERT)], Err("tls.key")),
            (
                "kubernetes.io/tls",
                &[("tls.crt", CERT), ("tls.key", b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----")],
                Err("tls.key"),
            ),
        ];
        for (type_, values, want) in table {
            let got = check_values(type_, &data(values)).map_err(|(key, _)| key);
            assert_eq!(got, *want, "{type_} {:?}", values.iter().map(|(k, _)| k).collect::<Vec<_>>());
        }
    }

    /// Keys and values may fill a Secret's 1 MiB exactly, not a byte more.
    #[test]
    fn values_fill_a_secret_up_to_one_mebibyte() {
        let data = |size: usize| BTreeMap::from([("K".to_string(), Zeroizing::new(vec![b'x'; size]))]);
        assert_eq!(check_values(OPAQUE, &data(1024 * 1024 - 1)), Ok(()));
        assert_eq!(check_values(OPAQUE, &data(1024 * 1024)).unwrap_err().0, "*");
    }

    #[test]
    fn a_certificate_chain_is_pem() {
        let chain = [CERT, CERT].concat();
        assert_eq!(pem_labels(&chain).unwrap(), ["CERTIFICATE", "CERTIFICATE"]);
        assert_eq!(pem_labels(b"-----BEGIN CERTIFICATE-----\nMIIB\n"), None, "unterminated");
    }

    #[test]
    fn problems_never_echo_the_value() {
        let (_, problem) = check_values(DOCKER_CONFIG_JSON, &data(&[(".dockerconfigjson", b"hunter2")])).unwrap_err();
        assert!(!problem.contains("hunter2"));
    }

    fn bundle(type_: Option<&str>, template: Option<SecretTemplate>, values: usize) -> SealedBundle {
        let data = (0..values).map(|i| (format!("K{i}"), "AgB".to_string())).collect();
        SealedBundle::new(
            "b",
            SealedBundleSpec {
                tenant: Some("t".into()),
                type_: type_.map(Into::into),
                template,
                ..SealedBundleSpec::new(BundleScope::Tenant, data)
            },
        )
    }

    #[test]
    fn claims_refused_before_any_decryption() {
        assert_eq!(check_claims(&bundle(None, None, 1)), Ok(()));
        assert_eq!(
            check_claims(&bundle(Some("kubernetes.io/service-account-token"), None, 1)),
            Err(Refusal::UnsupportedType("kubernetes.io/service-account-token".into()))
        );
        let token_annotation = SecretTemplate {
            annotations: Some([("kubernetes.io/service-account.name".to_string(), "default".to_string())].into()),
            ..Default::default()
        };
        assert_eq!(
            check_claims(&bundle(None, Some(token_annotation), 1)),
            Err(Refusal::ReservedMetadata("kubernetes.io/service-account.name".into()))
        );
        let argo = SecretTemplate {
            labels: Some([("argocd.argoproj.io/secret-type".to_string(), "cluster".to_string())].into()),
            ..Default::default()
        };
        assert!(matches!(check_claims(&bundle(None, Some(argo), 1)), Err(Refusal::ReservedMetadata(_))));
        assert_eq!(check_claims(&bundle(None, None, MAX_VALUES)), Ok(()));
        assert_eq!(check_claims(&bundle(None, None, MAX_VALUES + 1)), Err(Refusal::TooManyValues(MAX_VALUES + 1)));
    }

    /// A bundle stored before the CRD bounded it (or with a CRD without the bounds) is refused
    /// before any RSA work, naming the field and the bound, never the value.
    #[test]
    fn fields_out_of_bounds_are_refused_without_their_value() {
        let refused = |b: SealedBundle| match check_claims(&b) {
            Err(Refusal::OutOfBounds(out)) => out,
            other => panic!("{other:?}"),
        };
        let mut late = bundle(None, None, 1);
        late.spec.expires_at =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("9999-12-30T00:00:00Z".parse().unwrap()));
        let out = refused(late);
        assert_eq!(out.field, "spec.expiresAt");
        assert!(out.to_string().contains("up to (not including) 9000-01-01T00:00:00Z"), "{out}");
        let noisy = SecretTemplate {
            annotations: Some((0..5).map(|i| (format!("note-{i}"), "secret-looking ".repeat(240))).collect()),
            ..Default::default()
        };
        let out = refused(bundle(None, Some(noisy), 1));
        assert_eq!(
            out.to_string(),
            "spec.template.annotations is out of bounds: may hold at most 16384 characters in all, keys and values together"
        );
        let mut tenant = bundle(None, None, 1);
        tenant.spec.tenant = Some("a tenant ".repeat(40));
        let out = refused(tenant);
        assert!(!out.to_string().contains("a tenant"), "{out}");
        let mut sealed = bundle(None, None, 1);
        sealed.spec.encrypted_data.insert("K0".into(), "A".repeat(limits::MAX_SEALED_VALUE_CHARS + 1));
        assert_eq!(refused(sealed).field, "spec.encryptedData");
    }

    #[test]
    fn the_sealed_value_bound_is_the_base64_of_what_the_crypto_layer_opens() {
        assert_eq!(limits::MAX_SEALED_VALUE_CHARS, crate::crypto::MAX_SEALED_LEN.div_ceil(3) * 4);
    }
}
