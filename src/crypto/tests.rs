//! Shared test keys and the committed kubeseal compatibility vectors under
//! `tests/fixtures/crypto/` (written by `hack/kubeseal-vectors.sh`).

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use crate::api::BundleScope;
use crate::crypto::{SealingKey, label, open};

/// Fingerprint of the committed TEST-ONLY fixture key (`tests/fixtures/crypto/sealing-key.crt`).
pub(super) const FIXTURE_FINGERPRINT: &str = "SHA256:b0d5b89a501e4b75925aadd4beb253836668f0356ea6c4b03c67258fa7373269";

pub(super) static FIXTURE_CERT_PEM: LazyLock<String> = LazyLock::new(|| read_fixture("sealing-key.crt"));
pub(super) static FIXTURE_KEY_PEM: LazyLock<String> = LazyLock::new(|| read_fixture("sealing-key.key"));

/// One freshly generated RSA-4096 key (30 days + 7 days grace) shared by all tests: generation
/// takes about a second, so it happens once per test binary.
pub(crate) fn shared_key() -> &'static SealingKey {
    static KEY: LazyLock<SealingKey> =
        LazyLock::new(|| SealingKey::generate(Duration::from_secs(37 * 24 * 3600)).expect("RSA-4096 key generation"));
    &KEY
}

/// The committed TEST-ONLY fixture key that the kubeseal vectors were sealed for.
pub(crate) fn fixture_key() -> &'static SealingKey {
    static KEY: LazyLock<SealingKey> =
        LazyLock::new(|| SealingKey::from_pem(&FIXTURE_CERT_PEM, &FIXTURE_KEY_PEM).expect("fixture key loads"));
    &KEY
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crypto")
}

fn read_fixture(name: &str) -> String {
    let path = fixture_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One line of `tests/fixtures/crypto/vectors.txt`.
struct Vector {
    name: String,
    scope: BundleScope,
    tenant: String,
    environment: String,
}

impl Vector {
    fn label(&self) -> Vec<u8> {
        label(self.scope, &self.tenant, &self.environment)
    }

    fn plaintext(&self) -> Vec<u8> {
        let path = fixture_dir().join(format!("{}.plain", self.name));
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    fn sealed(&self, producer: &str) -> String {
        read_fixture(&format!("{}.{producer}.b64", self.name))
    }
}

fn vectors() -> Vec<Vector> {
    let text = read_fixture("vectors.txt");
    let vectors: Vec<Vector> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 4, "vectors.txt line {line:?}");
            let scope = match f[1] {
                "Cluster" => BundleScope::Cluster,
                "Tenant" => BundleScope::Tenant,
                "Environment" => BundleScope::Environment,
                other => panic!("unknown scope {other}"),
            };
            let field = |s: &str| if s == "-" { String::new() } else { s.to_owned() };
            Vector { name: f[0].to_owned(), scope, tenant: field(f[2]), environment: field(f[3]) }
        })
        .collect();
    for scope in [BundleScope::Cluster, BundleScope::Tenant, BundleScope::Environment] {
        assert!(vectors.iter().any(|v| v.scope == scope), "no vector for {scope:?}");
    }
    vectors
}

/// A certificate in a log line or a panic says which key it is, and nothing longer.
#[test]
fn a_certificates_debug_names_its_key() {
    let cert = fixture_key().certificate();
    let debug = format!("{cert:?}");
    assert!(debug.starts_with("Certificate") && debug.contains(cert.fingerprint()), "{debug}");
    assert!(debug.contains("key_size_bits: 4096"), "{debug}");
}

#[test]
fn labels_match_kubeseal_scopes() {
    assert_eq!(label(BundleScope::Cluster, "financial-ml", "dev"), b"");
    assert_eq!(label(BundleScope::Tenant, "financial-ml", "dev"), b"financial-ml");
    assert_eq!(label(BundleScope::Environment, "financial-ml", "dev"), b"financial-ml/dev");
}

/// Values sealed by the real `kubeseal --raw` (see `hack/kubeseal-vectors.sh`) open with the
/// fixture key and give the original plaintexts: proof of byte compatibility, without needing
/// kubeseal at test time.
#[test]
fn kubeseal_vectors_open() {
    let key = fixture_key();
    for v in vectors() {
        let opened = open(std::slice::from_ref(key), &v.label(), v.sealed("kubeseal").trim_end())
            .unwrap_or_else(|e| panic!("vector {}: {e}", v.name));
        assert_eq!(&opened.plaintext[..], &v.plaintext()[..], "vector {}", v.name);
        assert_eq!(opened.fingerprint, FIXTURE_FINGERPRINT);
    }
}

/// The kubeseal vectors are bound to their scope: any other vector's label is refused.
#[test]
fn kubeseal_vectors_are_scope_bound() {
    let key = fixture_key();
    let vectors = vectors();
    for v in &vectors {
        for other in vectors.iter().filter(|o| o.label() != v.label()) {
            let err = open(std::slice::from_ref(key), &other.label(), v.sealed("kubeseal").trim_end()).unwrap_err();
            assert_eq!(err, super::OpenError::NoKeyCouldDecrypt, "{} opened with the label of {}", v.name, other.name);
        }
    }
}

/// Our own committed seals of the same plaintexts (`*.mltenant.b64`, which
/// `hack/kubeseal-vectors.sh` checks with `kubeseal --recovery-unseal`) open too.
#[test]
fn our_committed_vectors_open() {
    let key = fixture_key();
    for v in vectors() {
        let opened = open(std::slice::from_ref(key), &v.label(), v.sealed("mltenant").trim_end())
            .unwrap_or_else(|e| panic!("vector {}: {e}", v.name));
        assert_eq!(&opened.plaintext[..], &v.plaintext()[..], "vector {}", v.name);
    }
}

#[test]
fn check_format_tells_structure_without_keys() {
    use super::{OpenError, check_format};
    let good =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/crypto/tenant.kubeseal.b64"))
            .unwrap();
    assert_eq!(check_format(good.trim()), Ok(()));
    assert_eq!(check_format("not*base64"), Err(OpenError::InvalidBase64));
    assert_eq!(check_format("AA=="), Err(OpenError::Truncated));
    assert_eq!(check_format("AgABAgM="), Err(OpenError::Truncated));
}

/// The second TEST-ONLY fixture key (`sealing-key-2`), the other recipient of the v2 vectors.
pub(crate) fn fixture_key_2() -> &'static SealingKey {
    static KEY: LazyLock<SealingKey> = LazyLock::new(|| {
        SealingKey::from_pem(&read_fixture("sealing-key-2.crt"), &read_fixture("sealing-key-2.key"))
            .expect("second fixture key loads")
    });
    &KEY
}

/// Format v2 both ways against an implementation of its own (`hack/v2-vectors.py`, Python
/// `cryptography`, written from docs/sealing.md): what it sealed for the two fixture keys opens
/// with either (`.v2-python.b64`), as does what `mltenant seal --format v2` sealed and it
/// opened (`.v2-mltenant.b64`); each with one RSA operation and only under its own scope.
#[test]
fn v2_vectors_open_with_either_recipient() {
    use super::Opener;
    let vectors = vectors();
    for producer in ["v2-python", "v2-mltenant"] {
        for v in &vectors {
            let raw = super::decode_base64(v.sealed(producer).trim_end()).unwrap();
            for key in [fixture_key(), fixture_key_2()] {
                let opened = Opener::new(std::slice::from_ref(key), &[], &v.label())
                    .open("v", &raw)
                    .unwrap_or_else(|e| panic!("{producer} vector {}: {e:?}", v.name));
                assert_eq!(&opened.plaintext[..], &v.plaintext()[..], "{producer} vector {}", v.name);
                assert_eq!(opened.fingerprint, key.fingerprint());
            }
            for other in vectors.iter().filter(|o| o.label() != v.label()) {
                let refused = Opener::new(std::slice::from_ref(fixture_key()), &[], &other.label()).open("v", &raw);
                assert_eq!(
                    refused.unwrap_err().error,
                    super::OpenError::UnwrapFailed,
                    "{} under {}",
                    v.name,
                    other.name
                );
            }
            let moved = Opener::new(std::slice::from_ref(fixture_key()), &[], &v.label()).open("w", &raw);
            assert_eq!(moved.unwrap_err().error, super::OpenError::Tampered, "{} under another key name", v.name);
        }
    }
}
