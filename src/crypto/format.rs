//! The sealed-secrets hybrid format, byte-compatible with `kubeseal --raw`.
//!
//! ```text
//! u16 big-endian n || RSA-OAEP(SHA-256, MGF1-SHA-256, label)(session key) [n bytes]
//!                  || AES-256-GCM(session key, nonce = 12 zero bytes, no AAD)(value) || 16-byte tag
//! ```
//!
//! The session key is 32 fresh random bytes per value, so the all-zero nonce is never reused
//! under one key (the same reasoning as upstream sealed-secrets). In `encryptedData` the whole
//! byte string is base64 (standard alphabet, padded).

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroizing;

use super::key::{Certificate, SESSION_KEY_LEN, SealingKey};

/// Largest accepted sealed value, in bytes after base64 decoding (1 MiB). Kubernetes caps a
/// whole Secret at 1 MiB, so nothing larger can be useful; the limit also bounds the work an
/// untrusted bundle can cause.
pub const MAX_SEALED_LEN: usize = 1024 * 1024;

/// Length of the AES-GCM tag appended to the value.
const TAG_LEN: usize = 16;
/// Length of the big-endian RSA ciphertext length prefix.
const PREFIX_LEN: usize = 2;

/// Base64 as Go's `base64.StdEncoding` (what kubeseal writes and sealed-secrets reads):
/// standard alphabet, padding required, non-zero trailing bits tolerated.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// Why a sealed value could not be opened. A closed set: [`OpenError::reason`] is the stable
/// `reason` label of `mltenant_decryption_failures_total`. Messages never contain secret bytes
/// or key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The value is not valid standard (padded) base64.
    #[error("sealed value is not valid base64")]
    InvalidBase64,
    /// Shorter than its 2-byte length prefix, than the RSA ciphertext length the prefix
    /// announces, or than the 16-byte AES-GCM tag after it.
    #[error("sealed value is truncated")]
    Truncated,
    /// The decoded value is larger than [`MAX_SEALED_LEN`].
    #[error("sealed value is larger than the 1 MiB limit")]
    TooLarge,
    /// None of the sealing keys could decrypt the RSA part with this label: the value was
    /// sealed for another scope/tenant/environment, or with a key this operator does not hold.
    /// The two cases are cryptographically indistinguishable.
    #[error("no key could decrypt the sealed value (sealed for another scope or with an unknown key)")]
    NoKeyCouldDecrypt,
    /// A key opened the RSA part but the AES-GCM tag did not verify: the value was modified
    /// (in v2 also: moved to another key name, or its header changed).
    #[error("sealed value failed authentication (tampered or corrupted, or moved from another key name)")]
    Tampered,
    /// v2: the value names none of this operator's keys (sealed for other clusters' keys).
    #[error("sealed for other sealing keys: none of its recipients is a key this operator holds")]
    NotARecipient,
    /// The only key that opens the value is retired (`mltenant keys retire`): it opens nothing.
    #[error("the sealing key it needs is retired")]
    KeyRetired,
    /// v2: the key the value names did not unwrap its data key under this consumer's scope
    /// label: sealed for another scope (tenant, environment), or the wrapped key was modified.
    #[error(
        "the named sealing key does not unwrap its data key under this scope: sealed for another scope, or the wrapped key was modified"
    )]
    UnwrapFailed,
    /// v2: a header that cannot be: no recipient, more than 16, the same key twice.
    #[error("sealed value has a malformed v2 header")]
    Malformed,
    /// Our format with a version this operator does not know.
    #[error("sealed value is in a format version this operator does not know")]
    UnsupportedVersion,
}

impl OpenError {
    /// Stable, low-cardinality reason for metrics and condition messages.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::InvalidBase64 => "InvalidBase64",
            OpenError::Truncated => "Truncated",
            OpenError::TooLarge => "TooLarge",
            OpenError::NoKeyCouldDecrypt => "NoKeyCouldDecrypt",
            OpenError::Tampered => "Tampered",
            OpenError::NotARecipient => "NotARecipient",
            OpenError::KeyRetired => "KeyRetired",
            OpenError::UnwrapFailed => "UnwrapFailed",
            OpenError::Malformed => "Malformed",
            OpenError::UnsupportedVersion => "UnsupportedVersion",
        }
    }
}

/// Why a value could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The sealed result would exceed [`MAX_SEALED_LEN`], so [`open`] would refuse it.
    #[error("value is too large to seal (the sealed result must stay within 1 MiB)")]
    TooLarge,
    /// The system random generator or the RSA/AES primitive failed.
    #[error("sealing failed in the crypto library")]
    Crypto,
    /// v2: no recipient, more than 16, or one key given twice.
    #[error("a sealed value names 1 to 16 distinct sealing keys")]
    Recipients,
}

/// A successfully opened value.
pub struct OpenedValue {
    /// The plaintext; zeroed when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// Fingerprint (`SHA256:<hex>`) of the sealing key that opened it.
    pub fingerprint: String,
}

impl fmt::Debug for OpenedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedValue")
            .field("plaintext", &format_args!("<{} bytes redacted>", self.plaintext.len()))
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// Seal `plaintext` for `label` under the certificate's public key. Returns the raw hybrid
/// byte string; base64 it with [`encode_base64`] for `encryptedData`.
///
/// Only the public key is used. Certificate validity is not checked here: callers that must
/// refuse expired certificates (the CLI) check [`Certificate::not_after`].
pub fn seal(cert: &Certificate, label: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let oaep = cert.oaep_public_key().map_err(|_| SealError::Crypto)?;
    let rsa_len = oaep.ciphertext_size();
    let rsa_len_prefix = u16::try_from(rsa_len).map_err(|_| SealError::Crypto)?;
    let total = PREFIX_LEN + rsa_len + plaintext.len() + TAG_LEN;
    if total > MAX_SEALED_LEN {
        return Err(SealError::TooLarge);
    }

    let rng = SystemRandom::new();
    let mut session_key = Zeroizing::new([0u8; SESSION_KEY_LEN]);
    rng.fill(&mut session_key[..]).map_err(|_| SealError::Crypto)?;

    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&rsa_len_prefix.to_be_bytes());
    out.resize(PREFIX_LEN + rsa_len, 0);
    let written = oaep
        .encrypt(&OAEP_SHA256_MGF1SHA256, &session_key[..], &mut out[PREFIX_LEN..], Some(label))
        .map_err(|_| SealError::Crypto)?
        .len();
    if written != rsa_len {
        return Err(SealError::Crypto);
    }

    let aead = session_aead(&session_key).map_err(|_| SealError::Crypto)?;
    let aes_start = out.len();
    out.extend_from_slice(plaintext);
    let tag = match aead.seal_in_place_separate_tag(zero_nonce(), Aad::empty(), &mut out[aes_start..]) {
        Ok(tag) => tag,
        Err(_) => {
            // Do not hand back (or leave behind) a buffer that still holds the plaintext.
            zeroize::Zeroize::zeroize(&mut out);
            return Err(SealError::Crypto);
        }
    };
    out.extend_from_slice(tag.as_ref());
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

/// Base64 (standard alphabet, padded) of a sealed byte string, as stored in `encryptedData`.
pub fn encode_base64(sealed: &[u8]) -> String {
    BASE64.encode(sealed)
}

/// Open a base64 `encryptedData` value with the first of `keys` (newest first) that can.
///
/// Like Go's `base64.StdEncoding` (and so like the sealed-secrets controller), CR and LF
/// characters inside the value are ignored; anything else outside the base64 alphabet is
/// [`OpenError::InvalidBase64`]. The size limit is checked before decoding.
pub fn open(keys: &[SealingKey], label: &[u8], encoded: &str) -> Result<OpenedValue, OpenError> {
    let raw = decode_base64(encoded)?;
    open_raw(keys, label, &raw)
}

/// Check that a raw value has kubeseal's framing (length prefix, room for the tag) without
/// any key.
pub fn check_framing(raw: &[u8]) -> Result<(), OpenError> {
    split(raw).map(|_| ())
}

/// Open a raw (already base64-decoded) sealed byte string. See [`open`].
pub fn open_raw(keys: &[SealingKey], label: &[u8], sealed: &[u8]) -> Result<OpenedValue, OpenError> {
    if sealed.len() > MAX_SEALED_LEN {
        return Err(OpenError::TooLarge);
    }
    let (rsa_part, aes_part) = split(sealed)?;

    // Try every key, newest first, until one decrypts the RSA part to a 32-byte session key.
    // A wrong key or a wrong label both surface as the same opaque error from aws-lc-rs.
    let Some((session_key, key)) =
        keys.iter().find_map(|key| key.decrypt_session_key(rsa_part, label).map(|s| (s, key)))
    else {
        return Err(OpenError::NoKeyCouldDecrypt);
    };

    let aead = session_aead(&session_key).map_err(|_| OpenError::Tampered)?;
    let mut buf = Zeroizing::new(aes_part.to_vec());
    let plaintext_len =
        aead.open_in_place(zero_nonce(), Aad::empty(), &mut buf[..]).map_err(|_| OpenError::Tampered)?.len();
    buf.truncate(plaintext_len);
    Ok(OpenedValue { plaintext: buf, fingerprint: key.fingerprint().to_owned() })
}

/// Decode the base64 text of a sealed value, enforcing [`MAX_SEALED_LEN`] before decoding.
pub fn decode_base64(encoded: &str) -> Result<Vec<u8>, OpenError> {
    // Largest base64 text (without line breaks) that can decode to MAX_SEALED_LEN bytes.
    const MAX_ENCODED_LEN: usize = MAX_SEALED_LEN.div_ceil(3) * 4;
    let bytes = encoded.as_bytes();
    let has_line_breaks = bytes.iter().any(|b| matches!(b, b'\r' | b'\n'));
    let encoded_len =
        if has_line_breaks { bytes.iter().filter(|b| !matches!(b, b'\r' | b'\n')).count() } else { bytes.len() };
    if encoded_len > MAX_ENCODED_LEN {
        return Err(OpenError::TooLarge);
    }
    let decoded = if has_line_breaks {
        let compact: Vec<u8> = bytes.iter().copied().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
        BASE64.decode(compact)
    } else {
        BASE64.decode(bytes)
    };
    let decoded = decoded.map_err(|_| OpenError::InvalidBase64)?;
    if decoded.len() > MAX_SEALED_LEN {
        return Err(OpenError::TooLarge);
    }
    Ok(decoded)
}

/// Split a sealed byte string into its RSA and AES-GCM parts.
fn split(sealed: &[u8]) -> Result<(&[u8], &[u8]), OpenError> {
    let (prefix, rest) = sealed.split_first_chunk::<PREFIX_LEN>().ok_or(OpenError::Truncated)?;
    let rsa_len = usize::from(u16::from_be_bytes(*prefix));
    if rest.len() < rsa_len {
        return Err(OpenError::Truncated);
    }
    let (rsa_part, aes_part) = rest.split_at(rsa_len);
    if aes_part.len() < TAG_LEN {
        return Err(OpenError::Truncated);
    }
    Ok((rsa_part, aes_part))
}

/// The AES-256-GCM key for one session key. The nonce is always zero: each session key
/// encrypts exactly one value.
fn session_aead(session_key: &[u8; SESSION_KEY_LEN]) -> Result<LessSafeKey, aws_lc_rs::error::Unspecified> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, session_key)?))
}

fn zero_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0u8; NONCE_LEN])
}

#[cfg(test)]
mod tests;
