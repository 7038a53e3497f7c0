//! Sealing keys: an RSA key pair plus a self-signed X.509 certificate carrying its public key.
//!
//! * [`SealingKey`] holds the private key (in `aws-lc-rs`, which wipes it when freed) and its
//!   certificate. It is stored as a `kubernetes.io/tls` Secret: [`SealingKey::to_pem`] gives the
//!   `tls.crt` / `tls.key` pair (certificate PEM and unencrypted PKCS#8 `PRIVATE KEY` PEM) and
//!   [`SealingKey::from_pem`] reads it back.
//! * [`Certificate`] is the public half alone: what `GET /v1/cert.pem` serves and what
//!   `mltenant seal --cert` reads.
//!
//! Fingerprint: `"SHA256:"` followed by the lowercase hex SHA-256 of the DER
//! `SubjectPublicKeyInfo` of the certificate, i.e. the same digest as
//! `openssl x509 -in tls.crt -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum`.
//! It identifies the key pair, not the certificate, so it survives re-issuing the certificate.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use aws_lc_rs::{digest, hkdf, hmac};
use jiff::Timestamp;
use x509_cert::der::pem::{self, LineEnding};
use x509_cert::der::{Decode, Encode};
use zeroize::Zeroizing;

/// RSA private-key operations (OAEP decryptions) this process did, whatever asked for them:
/// what `mltenant_rsa_operations_total` exports and the bench compares between formats.
pub static RSA_DECRYPTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many RSA private-key operations this process did so far.
pub fn rsa_decryptions() -> u64 {
    RSA_DECRYPTIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Length of the AES session key a sealed value carries under RSA (AES-256).
pub(super) const SESSION_KEY_LEN: usize = 32;

/// Common name of the certificates this operator issues for its sealing keys.
pub const SEALING_KEY_COMMON_NAME: &str = "mltenant-operator sealing key";

const PEM_CERTIFICATE: &str = "CERTIFICATE";
const PEM_PRIVATE_KEY: &str = "PRIVATE KEY";
const PEM_RSA_PRIVATE_KEY: &str = "RSA PRIVATE KEY";

/// Why a certificate or key could not be read or made. Messages describe the problem only;
/// they never contain private-key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The certificate PEM/DER could not be parsed or does not carry a usable RSA public key.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// The private key PEM could not be parsed or is not an acceptable RSA key.
    #[error("invalid private key: {0}")]
    InvalidPrivateKey(&'static str),
    /// The private key is not the one whose public key the certificate carries.
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    /// Generating the key pair or its certificate failed.
    #[error("sealing key generation failed: {0}")]
    Generation(String),
}

/// Length of a key id (format v2): the first 8 bytes of the SHA-256 of the DER
/// `SubjectPublicKeyInfo`, i.e. the first 16 hex digits of the fingerprint.
pub const KEY_ID_LEN: usize = 8;

/// The id format v2 tags a wrapped data key with: see [`KEY_ID_LEN`]. Public (derived from the
/// public key alone); it only says which key to try, it proves nothing.
pub type KeyId = [u8; KEY_ID_LEN];

/// A key id as text: 16 lowercase hex digits (the fingerprint's first 16).
pub fn key_id_hex(id: &KeyId) -> String {
    crate::text::hex(id)
}

/// An X.509 certificate with an RSA public key: the public side of a [`SealingKey`].
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    public_key: PublicEncryptingKey,
    fingerprint: String,
    key_id: KeyId,
    not_before: Timestamp,
    not_after: Timestamp,
}

impl Certificate {
    /// Parse the first `CERTIFICATE` block of a PEM text (other text and blocks around it are
    /// ignored, as `kubeseal --cert` does).
    pub fn from_pem(pem_text: &str) -> Result<Self, KeyError> {
        let block = first_pem_block(pem_text, PEM_CERTIFICATE)
            .ok_or_else(|| KeyError::InvalidCertificate("no CERTIFICATE PEM block found".into()))?;
        let (_, der) = pem::decode_vec(block.as_bytes())
            .map_err(|e| KeyError::InvalidCertificate(format!("malformed PEM: {e}")))?;
        Self::from_der(&der)
    }

    /// Parse a DER certificate. Its public key must be RSA, 2048 to 8192 bits.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| KeyError::InvalidCertificate(format!("malformed X.509: {e}")))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info().to_der().map_err(|e| KeyError::InvalidCertificate(e.to_string()))?;
        let public_key = PublicEncryptingKey::from_der(&spki).map_err(|_| {
            KeyError::InvalidCertificate("the public key is not an RSA key of 2048 to 8192 bits".into())
        })?;
        let validity = tbs.validity();
        let spki_digest = digest::digest(&digest::SHA256, &spki);
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&spki_digest.as_ref()[..KEY_ID_LEN]);
        Ok(Certificate {
            der: der.to_vec(),
            public_key,
            fingerprint: fingerprint_of_spki(&spki),
            key_id,
            not_before: x509_time(validity.not_before)?,
            not_after: x509_time(validity.not_after)?,
        })
    }

    /// The certificate as PEM (`-----BEGIN CERTIFICATE-----`, LF line endings).
    pub fn to_pem(&self) -> String {
        pem::encode_string(PEM_CERTIFICATE, LineEnding::LF, &self.der).expect("a parsed certificate always encodes")
    }

    /// The certificate as DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// `SHA256:<lowercase hex of sha256(DER SubjectPublicKeyInfo)>`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The key id format v2 tags this key's wrapped data keys with (see [`KEY_ID_LEN`]).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Start of validity (`notBefore`).
    pub fn not_before(&self) -> Timestamp {
        self.not_before
    }

    /// End of validity (`notAfter`), for the sealing-key expiry metric and for refusing to seal
    /// with an expired certificate.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }

    /// Whether `now` is after `notAfter` (kubeseal refuses to seal with such a certificate).
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        now > self.not_after
    }

    /// Size of the RSA modulus in bits.
    pub fn key_size_bits(&self) -> usize {
        self.public_key.key_size_bits()
    }

    pub(super) fn oaep_public_key(&self) -> Result<OaepPublicEncryptingKey, aws_lc_rs::error::Unspecified> {
        OaepPublicEncryptingKey::new(self.public_key.clone())
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint)
            .field("key_size_bits", &self.key_size_bits())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// An RSA sealing key pair with its self-signed certificate. Opens sealed values; `Debug` never
/// shows the private key.
pub struct SealingKey {
    certificate: Certificate,
    private_key: PrivateDecryptingKey,
    oaep: OaepPrivateDecryptingKey,
    /// The key of the proofs this key vouches for (see [`SealingKey::prove`]): derived from the
    /// private key, so it exists wherever the key is loaded and nowhere else.
    proof: hmac::Key,
}

impl SealingKey {
    /// Generate a new RSA-4096 key and a self-signed certificate (CN
    /// [`SEALING_KEY_COMMON_NAME`]) valid from now for `validity` (e.g. the 30-day rotation
    /// period plus a grace period). Takes around a second or more: RSA-4096 generation.
    pub fn generate(validity: Duration) -> Result<Self, KeyError> {
        let now = Timestamp::now();
        let validity = jiff::SignedDuration::try_from(validity)
            .map_err(|_| KeyError::Generation("validity is too long".into()))?;
        let not_after = now.checked_add(validity).map_err(|_| KeyError::Generation("validity is too long".into()))?;
        Self::generate_valid_between(now, not_after)
    }

    /// Like [`SealingKey::generate`] with an explicit validity window (certificates carry whole
    /// seconds; sub-second parts are dropped).
    pub fn generate_valid_between(not_before: Timestamp, not_after: Timestamp) -> Result<Self, KeyError> {
        if not_after <= not_before {
            return Err(KeyError::Generation("notAfter must be after notBefore".into()));
        }
        let private_key = PrivateDecryptingKey::generate(KeySize::Rsa4096)
            .map_err(|_| KeyError::Generation("RSA-4096 key generation failed".into()))?;
        let cert_der = self_signed_certificate(&private_key, not_before, not_after)?;
        let certificate = Certificate::from_der(&cert_der)?;
        Self::new(certificate, private_key)
    }

    /// Load a key from the PEM pair of a `kubernetes.io/tls` Secret: `tls.crt` (certificate)
    /// and `tls.key` (unencrypted PKCS#8 `PRIVATE KEY`). Fails when the key does not match the
    /// certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, KeyError> {
        let certificate = Certificate::from_pem(cert_pem)?;
        let block = first_pem_block(key_pem, PEM_PRIVATE_KEY);
        let Some(block) = block else {
            return Err(KeyError::InvalidPrivateKey(if first_pem_block(key_pem, PEM_RSA_PRIVATE_KEY).is_some() {
                "PKCS#1 'RSA PRIVATE KEY' is not supported; convert it with `openssl pkcs8 -topk8 -nocrypt`"
            } else {
                "no PRIVATE KEY PEM block found"
            }));
        };
        let pkcs8 = match pem::decode_vec(block.as_bytes()) {
            Ok((_, der)) => Zeroizing::new(der),
            Err(_) => return Err(KeyError::InvalidPrivateKey("malformed PEM")),
        };
        let private_key =
            PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(|e| KeyError::InvalidPrivateKey(e.description_()))?;
        Self::new(certificate, private_key)
    }

    fn new(certificate: Certificate, private_key: PrivateDecryptingKey) -> Result<Self, KeyError> {
        let ours = private_key.public_key().as_der().map_err(|_| KeyError::InvalidPrivateKey("unusable RSA key"))?;
        let theirs = certificate.public_key.as_der().map_err(|_| KeyError::KeyMismatch)?;
        if ours.as_ref() != theirs.as_ref() {
            return Err(KeyError::KeyMismatch);
        }
        let oaep = OaepPrivateDecryptingKey::new(private_key.clone())
            .map_err(|_| KeyError::InvalidPrivateKey("unusable RSA key"))?;
        let proof = proof_key(&private_key)?;
        Ok(SealingKey { certificate, private_key, oaep, proof })
    }

    /// A proof, vouched for by this key, over `parts` (each length-prefixed, so no two lists
    /// of parts give the same input): HMAC-SHA256 under a key derived from the private key
    /// (HKDF-SHA256 of its PKCS#8 DER, salt `mltenant.io/proof`, info `v1`). Only a process
    /// holding the private key can make or check one; it reveals nothing of what it covers.
    /// What the operator stamps on a Secret it wrote, so that a restart can tell, without
    /// decrypting, that the Secret holds what the current ciphertext gives (docs/sealing.md).
    pub fn prove(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.proof);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Whether `tag` is this key's proof over `parts` (constant-time comparison).
    pub fn verify_proof(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let expected = self.prove(parts);
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected, tag).is_ok()
    }

    /// The PEM pair to store in a `kubernetes.io/tls` Secret. The private key text is zeroed
    /// when dropped; write it only into the Secret.
    pub fn to_pem(&self) -> Result<PemPair, KeyError> {
        let pkcs8 =
            self.private_key.as_der().map_err(|_| KeyError::InvalidPrivateKey("PKCS#8 serialization failed"))?;
        let key_pem = pem::encode_string(PEM_PRIVATE_KEY, LineEnding::LF, pkcs8.as_ref())
            .map_err(|_| KeyError::InvalidPrivateKey("PEM encoding failed"))?;
        Ok(PemPair { cert_pem: self.certificate.to_pem(), key_pem: Zeroizing::new(key_pem) })
    }

    /// The public side: what is served at `/v1/cert.pem` and used to seal.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// Fingerprint of the key (see [`Certificate::fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        self.certificate.fingerprint()
    }

    /// `notAfter` of the key's certificate.
    pub fn not_after(&self) -> Timestamp {
        self.certificate.not_after()
    }

    /// RSA-OAEP-decrypt the session key of a sealed value; `None` when this key (with this
    /// label) cannot. Constant time in the padding check (aws-lc-rs).
    pub(super) fn decrypt_session_key(
        &self,
        rsa_part: &[u8],
        label: &[u8],
    ) -> Option<Zeroizing<[u8; SESSION_KEY_LEN]>> {
        if rsa_part.len() != self.oaep.key_size_bytes() {
            return None;
        }
        RSA_DECRYPTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut out = Zeroizing::new(vec![0u8; self.oaep.min_output_size()]);
        let plaintext = self.oaep.decrypt(&OAEP_SHA256_MGF1SHA256, rsa_part, &mut out[..], Some(label)).ok()?;
        let session_key: &[u8; SESSION_KEY_LEN] = (&*plaintext).try_into().ok()?;
        Some(Zeroizing::new(*session_key))
    }
}

impl Clone for SealingKey {
    fn clone(&self) -> Self {
        // The clone shares aws-lc's reference-counted key object; nothing is copied.
        let private_key = self.private_key.clone();
        let oaep = OaepPrivateDecryptingKey::new(private_key.clone()).expect("an RSA key accepted before is accepted");
        SealingKey { certificate: self.certificate.clone(), private_key, oaep, proof: self.proof.clone() }
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("fingerprint", &self.certificate.fingerprint)
            .field("not_before", &self.certificate.not_before)
            .field("not_after", &self.certificate.not_after)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// The `tls.crt` / `tls.key` contents of a `kubernetes.io/tls` Secret holding a sealing key.
#[derive(Clone)]
pub struct PemPair {
    /// Certificate PEM (`tls.crt`).
    pub cert_pem: String,
    /// Unencrypted PKCS#8 private key PEM (`tls.key`); zeroed when dropped.
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for PemPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemPair").field("cert_pem", &self.cert_pem).field("key_pem", &"<redacted>").finish()
    }
}

/// The proof key of `private_key` (see [`SealingKey::prove`]).
fn proof_key(private_key: &PrivateDecryptingKey) -> Result<hmac::Key, KeyError> {
    let pkcs8 = private_key.as_der().map_err(|_| KeyError::InvalidPrivateKey("PKCS#8 serialization failed"))?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"mltenant.io/proof").extract(pkcs8.as_ref());
    let okm = prk.expand(&[b"v1"], hmac::HMAC_SHA256).map_err(|_| KeyError::InvalidPrivateKey("HKDF failed"))?;
    Ok(hmac::Key::from(okm))
}

/// `SHA256:` + lowercase hex of SHA-256 over a DER `SubjectPublicKeyInfo`.
fn fingerprint_of_spki(spki_der: &[u8]) -> String {
    format!("SHA256:{}", crate::text::hex(digest::digest(&digest::SHA256, spki_der).as_ref()))
}

fn x509_time(time: x509_cert::time::Time) -> Result<Timestamp, KeyError> {
    let seconds = i64::try_from(time.to_unix_duration().as_secs())
        .map_err(|_| KeyError::InvalidCertificate("validity date out of range".into()))?;
    Timestamp::from_second(seconds).map_err(|_| KeyError::InvalidCertificate("validity date out of range".into()))
}

/// The first `-----BEGIN <label>-----` … `-----END <label>-----` block of a PEM text.
fn first_pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = start + text[start..].find(&end)? + end.len();
    Some(&text[start..stop])
}

/// A self-signed certificate (sha256WithRSAEncryption, keyUsage keyEncipherment, not a CA) for
/// `private_key`, signed with that same key. Returns DER.
fn self_signed_certificate(
    private_key: &PrivateDecryptingKey,
    not_before: Timestamp,
    not_after: Timestamp,
) -> Result<Vec<u8>, KeyError> {
    let generation = |what: &str| KeyError::Generation(what.to_string());
    let pkcs8 = private_key.as_der().map_err(|_| generation("PKCS#8 serialization failed"))?;
    // rcgen is built with its `zeroize` feature, so its copy of the key is wiped on drop too.
    let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_ref().into(), &rcgen::PKCS_RSA_SHA256)
        .map_err(|_| generation("the RSA key was not accepted for signing"))?;

    let mut serial = [0u8; 16];
    SystemRandom::new().fill(&mut serial).map_err(|_| generation("no randomness for the serial number"))?;
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x40; // and no leading zero byte to strip

    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, SEALING_KEY_COMMON_NAME);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.not_before = offset_date_time(not_before)?;
    params.not_after = offset_date_time(not_after)?;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment];
    let cert = params.self_signed(&signer).map_err(|e| KeyError::Generation(format!("self-signing failed: {e}")))?;
    Ok(cert.der().to_vec())
}

fn offset_date_time(ts: Timestamp) -> Result<time::OffsetDateTime, KeyError> {
    time::OffsetDateTime::from_unix_timestamp(ts.as_second())
        .map_err(|_| KeyError::Generation("validity date out of range".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tests::{FIXTURE_CERT_PEM, FIXTURE_KEY_PEM, fixture_key, shared_key};

    #[test]
    fn generated_key_has_the_promised_shape() {
        let key = shared_key();
        let cert = key.certificate();
        assert_eq!(cert.key_size_bits(), 4096);
        let parsed = x509_cert::Certificate::from_der(cert.der()).unwrap();
        assert_eq!(parsed.tbs_certificate().subject().to_string(), format!("CN={SEALING_KEY_COMMON_NAME}"));
        assert_eq!(parsed.tbs_certificate().issuer(), parsed.tbs_certificate().subject(), "self-signed");
        // Validity as requested by the shared test key (30 days + 7 days grace).
        let span = cert.not_after().duration_since(cert.not_before());
        assert_eq!(span, jiff::SignedDuration::from_hours(37 * 24));
        assert!(!cert.is_expired_at(Timestamp::now()));
        assert!(cert.is_expired_at(cert.not_after() + jiff::SignedDuration::from_secs(1)));
        assert_eq!(key.not_after(), cert.not_after());
    }

    #[test]
    fn pem_round_trip() {
        let key = shared_key();
        let pair = key.to_pem().unwrap();
        assert!(pair.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pair.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = SealingKey::from_pem(&pair.cert_pem, &pair.key_pem).unwrap();
        assert_eq!(back.fingerprint(), key.fingerprint());
        assert_eq!(back.not_after(), key.not_after());
        assert_eq!(back.certificate().der(), key.certificate().der());
        // And the reloaded key opens what the original sealed.
        let sealed = crate::crypto::seal(key.certificate(), b"l", b"v").unwrap();
        assert_eq!(&crate::crypto::open_raw(&[back], b"l", &sealed).unwrap().plaintext[..], b"v");
        let cert = Certificate::from_pem(&pair.cert_pem).unwrap();
        assert_eq!(cert.to_pem(), pair.cert_pem);
    }

    #[test]
    fn fingerprint_is_sha256_of_the_spki() {
        let key = fixture_key();
        let parsed = x509_cert::Certificate::from_der(key.certificate().der()).unwrap();
        let spki = parsed.tbs_certificate().subject_public_key_info().to_der().unwrap();
        let hex: String = digest::digest(&digest::SHA256, &spki).as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(key.fingerprint(), format!("SHA256:{hex}"));
        // The committed value (also in tests/fixtures/crypto/README.md), computed independently
        // with `openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum`.
        assert_eq!(key.fingerprint(), crate::crypto::tests::FIXTURE_FINGERPRINT);
    }

    #[test]
    fn certificate_pem_tolerates_surrounding_text() {
        let text = format!("subject=CN = whatever\n{}\n-----BEGIN CERTIFICATE-----\ngarbage\n", *FIXTURE_CERT_PEM);
        let cert = Certificate::from_pem(&text).unwrap();
        assert_eq!(cert.fingerprint(), fixture_key().fingerprint());
    }

    #[test]
    fn mismatched_key_and_certificate_are_refused() {
        let other = shared_key().to_pem().unwrap();
        assert_eq!(SealingKey::from_pem(&FIXTURE_CERT_PEM, &other.key_pem).unwrap_err(), KeyError::KeyMismatch);
        assert_eq!(SealingKey::from_pem(&other.cert_pem, &FIXTURE_KEY_PEM).unwrap_err(), KeyError::KeyMismatch);
    }

    #[test]
    fn bad_inputs_are_refused_without_echoing_them() {
        assert!(matches!(Certificate::from_pem("nope"), Err(KeyError::InvalidCertificate(_))));
        assert!(matches!(
            Certificate::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(KeyError::InvalidCertificate(_))
        ));
        assert!(matches!(
            SealingKey::from_pem(&FIXTURE_CERT_PEM, &FIXTURE_CERT_PEM),
            Err(KeyError::InvalidPrivateKey(_))
        ));
        let pkcs1 = FIXTURE_KEY_PEM.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        let err = SealingKey::from_pem(&FIXTURE_CERT_PEM, &pkcs1).unwrap_err();
        assert!(err.to_string().contains("PKCS#1"), "{err}");
        // A damaged key body: the error names the problem, never the bytes.
        let body_line = FIXTURE_KEY_PEM.lines().nth(3).unwrap();
        let damaged = FIXTURE_KEY_PEM.replacen(body_line, &"A".repeat(body_line.len()), 1);
        let err = SealingKey::from_pem(&FIXTURE_CERT_PEM, &damaged).unwrap_err();
        assert!(matches!(err, KeyError::InvalidPrivateKey(_)), "{err:?}");
        assert!(!err.to_string().contains(body_line) && !format!("{err:?}").contains(body_line));
        // A certificate whose key is not RSA.
        let ec = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        let err = Certificate::from_pem(&ec.cert.pem()).unwrap_err();
        assert!(err.to_string().contains("not an RSA key"), "{err}");
    }

    #[test]
    fn debug_output_has_no_private_material() {
        let key = fixture_key();
        let pair = key.to_pem().unwrap();
        let body_line = pair.key_pem.lines().nth(1).unwrap().to_owned();
        for debug in [format!("{key:?}"), format!("{pair:?}"), format!("{:?}", key.certificate())] {
            assert!(!debug.contains(&body_line), "{debug}");
            assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        }
        assert!(format!("{key:?}").contains(key.fingerprint()));
        assert!(format!("{key:?}").contains("<redacted>"));
        let shown = format!("{pair:?}");
        assert!(shown.contains("key_pem: \"<redacted>\"") && shown.contains("BEGIN CERTIFICATE"), "{shown}");
    }

    /// Serial numbers are 16 random bytes, positive, with no leading zero byte a DER encoder
    /// would strip (so every certificate's serial has the same length).
    #[test]
    fn serial_numbers_are_sixteen_positive_bytes() {
        let key = fixture_key();
        let now = Timestamp::now();
        for _ in 0..16 {
            let der =
                self_signed_certificate(&key.private_key, now, now + jiff::SignedDuration::from_hours(1)).unwrap();
            let parsed = x509_cert::Certificate::from_der(&der).unwrap();
            let serial = parsed.tbs_certificate().serial_number().as_bytes().to_vec();
            assert_eq!(serial.len(), 16, "{serial:02x?}");
            assert_eq!(serial[0] & 0xc0, 0x40, "{serial:02x?}");
        }
    }

    #[test]
    fn explicit_validity_window() {
        assert!(matches!(
            SealingKey::generate_valid_between(Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH),
            Err(KeyError::Generation(_))
        ));
    }
}
