//! Sealing format v2: one random data key per sealing run, wrapped once per recipient key,
//! every value AES-256-GCM under it with its key name and scope label bound in. Byte layout
//! (docs/sealing.md has it with test vectors):
//!
//! ```text
//! value  = header || nonce (12) || AES-256-GCM(data key, nonce, aad)(plaintext) || tag (16)
//! header = "MLT2" || n: u8 (1..=16) || n × (key id (8) || len: u16 BE || wrapped (len))
//! wrapped = RSA-OAEP(SHA-256, MGF1-SHA-256, label = scope label)(data key, 32 bytes)
//! aad    = header || u16 BE len(key name) || key name || u16 BE len(label) || label
//! ```
//!
//! Every value of a run carries the same header (the wrapped copies are made once and
//! repeated), so each value stays a self-contained `encryptedData` entry while one RSA
//! operation opens them all: an [`Opener`] unwraps each distinct header once. Only a key whose
//! id a stanza names is tried. The header is inside the associated data, so no byte of it (an
//! id, another recipient's wrapped key) can change without the tag failing.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256;
use zeroize::Zeroizing;

use super::format::{MAX_SEALED_LEN, OpenError, OpenedValue, SealError};
use super::key::{Certificate, KEY_ID_LEN, KeyId, SESSION_KEY_LEN, SealingKey};

/// The version marker every v2 value starts with. A kubeseal value starts with the big-endian
/// length of its RSA ciphertext (0x01 0x00 to 0x04 0x00 for 2048- to 8192-bit keys), so the two
/// never collide; in base64 a v2 value starts with `TUxUMg`, a kubeseal one (RSA-4096) with `AgA`.
pub const MAGIC: &[u8; 4] = b"MLT2";
/// What every version of our own format starts with (the fourth byte is the version).
const FAMILY: &[u8; 3] = b"MLT";
/// Recipients one value may name: sixteen clusters' keys at most.
pub const MAX_RECIPIENTS: usize = 16;
const TAG_LEN: usize = 16;

/// Whether the raw (base64-decoded) value is in our own format family (v2 or a later one).
pub fn is_ours(raw: &[u8]) -> bool {
    raw.starts_with(FAMILY)
}

/// One recipient of a value: a key id and the data key wrapped for that key. `Debug` shows the
/// key id and the wrapped key's length, never its bytes (nothing of a ciphertext in a log).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stanza<'a> {
    pub key_id: KeyId,
    pub wrapped: &'a [u8],
}

impl std::fmt::Debug for Stanza<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stanza")
            .field("key_id", &crate::text::hex(&self.key_id))
            .field("wrapped", &format_args!("<{} bytes>", self.wrapped.len()))
            .finish()
    }
}

/// A value split into its parts (no key needed). `Debug` shows the recipients and sizes only.
pub struct Parsed<'a> {
    pub header: &'a [u8],
    pub stanzas: Vec<Stanza<'a>>,
    pub nonce: &'a [u8; NONCE_LEN],
    /// Ciphertext and tag.
    pub sealed: &'a [u8],
}

impl std::fmt::Debug for Parsed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed")
            .field("header", &format_args!("<{} bytes>", self.header.len()))
            .field("stanzas", &self.stanzas)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .finish()
    }
}

/// Split a raw v2 value. Structure only: size, version, recipient count and lengths, distinct
/// ids, room for nonce and tag.
pub fn parse(raw: &[u8]) -> Result<Parsed<'_>, OpenError> {
    if raw.len() > MAX_SEALED_LEN {
        return Err(OpenError::TooLarge);
    }
    let Some(rest) = raw.strip_prefix(MAGIC) else {
        return Err(if is_ours(raw) { OpenError::UnsupportedVersion } else { OpenError::Malformed });
    };
    let (&count, mut rest) = rest.split_first().ok_or(OpenError::Truncated)?;
    let count = usize::from(count);
    if count == 0 || count > MAX_RECIPIENTS {
        return Err(OpenError::Malformed);
    }
    let mut stanzas: Vec<Stanza<'_>> = Vec::with_capacity(count);
    for _ in 0..count {
        let (id, after) = rest.split_first_chunk::<KEY_ID_LEN>().ok_or(OpenError::Truncated)?;
        let (len, after) = after.split_first_chunk::<2>().ok_or(OpenError::Truncated)?;
        let len = usize::from(u16::from_be_bytes(*len));
        if after.len() < len {
            return Err(OpenError::Truncated);
        }
        let (wrapped, after) = after.split_at(len);
        if stanzas.iter().any(|s| s.key_id == *id) {
            return Err(OpenError::Malformed);
        }
        stanzas.push(Stanza { key_id: *id, wrapped });
        rest = after;
    }
    let header = &raw[..raw.len() - rest.len()];
    let (nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>().ok_or(OpenError::Truncated)?;
    if sealed.len() < TAG_LEN {
        return Err(OpenError::Truncated);
    }
    Ok(Parsed { header, stanzas, nonce, sealed })
}

/// The associated data of a value: its header, its key name and the scope label.
fn aad(header: &[u8], key_name: &str, label: &[u8]) -> Result<Vec<u8>, ()> {
    let name_len = u16::try_from(key_name.len()).map_err(|_| ())?;
    let label_len = u16::try_from(label.len()).map_err(|_| ())?;
    let mut aad = Vec::with_capacity(header.len() + 4 + key_name.len() + label.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(&name_len.to_be_bytes());
    aad.extend_from_slice(key_name.as_bytes());
    aad.extend_from_slice(&label_len.to_be_bytes());
    aad.extend_from_slice(label);
    Ok(aad)
}

fn aead(data_key: &[u8; SESSION_KEY_LEN]) -> Result<LessSafeKey, aws_lc_rs::error::Unspecified> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, data_key)?))
}

/// One sealing run: a data key, wrapped for every recipient, for one scope label. Every value
/// sealed with it carries the same header; each gets its own random nonce.
pub struct Sealer {
    data_key: Zeroizing<[u8; SESSION_KEY_LEN]>,
    header: Vec<u8>,
    label: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("header_len", &self.header.len()).field("data_key", &"<redacted>").finish()
    }
}

impl Sealer {
    /// A new run for `recipients` (1 to [`MAX_RECIPIENTS`] distinct keys) and `label`: a fresh
    /// random data key, wrapped once per recipient (one public-key RSA operation each).
    pub fn new(recipients: &[&Certificate], label: &[u8]) -> Result<Self, SealError> {
        let mut data_key = Zeroizing::new([0u8; SESSION_KEY_LEN]);
        SystemRandom::new().fill(&mut data_key[..]).map_err(|_| SealError::Crypto)?;
        Self::with_data_key(data_key, &[], recipients, label)
    }

    /// A run with a known data key: `kept` stanzas (verbatim, other clusters' keys) first, then
    /// one for each of `recipients`. What re-wrapping for a newer key uses (`/v1/rotate`).
    fn with_data_key(
        data_key: Zeroizing<[u8; SESSION_KEY_LEN]>,
        kept: &[Stanza<'_>],
        recipients: &[&Certificate],
        label: &[u8],
    ) -> Result<Self, SealError> {
        let count = kept.len() + recipients.len();
        if count == 0 || count > MAX_RECIPIENTS {
            return Err(SealError::Recipients);
        }
        let mut ids: Vec<KeyId> = kept.iter().map(|s| s.key_id).collect();
        let mut header = Vec::with_capacity(MAGIC.len() + 1 + count * (KEY_ID_LEN + 2 + 512));
        header.extend_from_slice(MAGIC);
        header.push(u8::try_from(count).map_err(|_| SealError::Recipients)?);
        for stanza in kept {
            push_stanza(&mut header, &stanza.key_id, stanza.wrapped)?;
        }
        for cert in recipients {
            let id = cert.key_id();
            if ids.contains(&id) {
                return Err(SealError::Recipients);
            }
            ids.push(id);
            let oaep = cert.oaep_public_key().map_err(|_| SealError::Crypto)?;
            let mut wrapped = vec![0u8; oaep.ciphertext_size()];
            let written = oaep
                .encrypt(&OAEP_SHA256_MGF1SHA256, &data_key[..], &mut wrapped, Some(label))
                .map_err(|_| SealError::Crypto)?
                .len();
            wrapped.truncate(written);
            push_stanza(&mut header, &id, &wrapped)?;
        }
        Ok(Sealer { data_key, header, label: label.to_vec() })
    }

    /// Seal `plaintext` as the value of `key_name`: the raw v2 byte string (base64 it with
    /// `encode_base64` for `encryptedData`).
    pub fn seal(&self, key_name: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_with_nonce(key_name, plaintext, None)
    }

    /// [`Sealer::seal`] with a given nonce: for the committed test vectors only.
    pub(crate) fn seal_with_nonce(
        &self,
        key_name: &str,
        plaintext: &[u8],
        nonce: Option<[u8; NONCE_LEN]>,
    ) -> Result<Vec<u8>, SealError> {
        let total = self.header.len() + NONCE_LEN + plaintext.len() + TAG_LEN;
        if total > MAX_SEALED_LEN {
            return Err(SealError::TooLarge);
        }
        let nonce = match nonce {
            Some(nonce) => nonce,
            None => {
                let mut nonce = [0u8; NONCE_LEN];
                SystemRandom::new().fill(&mut nonce).map_err(|_| SealError::Crypto)?;
                nonce
            }
        };
        let aad = aad(&self.header, key_name, &self.label).map_err(|_| SealError::TooLarge)?;
        let aead = aead(&self.data_key).map_err(|_| SealError::Crypto)?;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        match aead.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut out[start..]) {
            Ok(tag) => out.extend_from_slice(tag.as_ref()),
            Err(_) => {
                zeroize::Zeroize::zeroize(&mut out);
                return Err(SealError::Crypto);
            }
        }
        Ok(out)
    }

    /// The key ids this run's values name, in header order.
    pub fn recipients(&self) -> Vec<KeyId> {
        parse_header_ids(&self.header)
    }
}

fn push_stanza(header: &mut Vec<u8>, id: &KeyId, wrapped: &[u8]) -> Result<(), SealError> {
    header.extend_from_slice(id);
    header.extend_from_slice(&u16::try_from(wrapped.len()).map_err(|_| SealError::Crypto)?.to_be_bytes());
    header.extend_from_slice(wrapped);
    Ok(())
}

fn parse_header_ids(header: &[u8]) -> Vec<KeyId> {
    // A header this module built: well formed. Parse it as a value with an empty body.
    let mut value = header.to_vec();
    value.extend_from_slice(&[0u8; NONCE_LEN + TAG_LEN]);
    parse(&value).map(|p| p.stanzas.iter().map(|s| s.key_id).collect()).unwrap_or_default()
}

/// Why a value did not open, with what the reason alone cannot say: the key ids the value
/// names (for [`OpenError::NotARecipient`]) and the retired key it needs
/// ([`OpenError::KeyRetired`]). Public facts only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub error: OpenError,
    pub recipients: Vec<KeyId>,
    pub retired: Option<Arc<str>>,
}

impl From<OpenError> for Refused {
    fn from(error: OpenError) -> Self {
        Refused { error, recipients: Vec::new(), retired: None }
    }
}

/// Opens the values of one bundle for one scope label, unwrapping each distinct header once.
/// Tries only `keys` (active); `retired` keys never open anything, they only let the failure
/// say which retired key a value needs.
pub struct Opener<'k> {
    keys: &'k [SealingKey],
    retired: &'k [SealingKey],
    label: Vec<u8>,
    /// Data keys unwrapped so far, by SHA-256 of their header, with the key that unwrapped them.
    unwrapped: HashMap<[u8; 32], (Zeroizing<[u8; SESSION_KEY_LEN]>, usize)>,
    /// Headers that unwrapped nothing, and why: values sharing a header cost its RSA work once,
    /// whether it opens or not.
    refused: HashMap<[u8; 32], Refused>,
}

impl<'k> Opener<'k> {
    pub fn new(keys: &'k [SealingKey], retired: &'k [SealingKey], label: &[u8]) -> Self {
        Opener { keys, retired, label: label.to_vec(), unwrapped: HashMap::new(), refused: HashMap::new() }
    }

    /// Open the raw value of `key_name`, in either format: v2 (only the key its stanzas name
    /// is tried) or kubeseal's (every key, newest first).
    pub fn open(&mut self, key_name: &str, raw: &[u8]) -> Result<OpenedValue, Refused> {
        if raw.len() > MAX_SEALED_LEN {
            return Err(OpenError::TooLarge.into());
        }
        if !is_ours(raw) {
            return self.open_kubeseal(raw);
        }
        let parsed = parse(raw)?;
        let (data_key, by) = self.data_key(&parsed)?;
        let aad = aad(parsed.header, key_name, &self.label).map_err(|_| OpenError::Tampered)?;
        let aead = aead(&data_key).map_err(|_| OpenError::Tampered)?;
        let mut buf = Zeroizing::new(parsed.sealed.to_vec());
        let len = aead
            .open_in_place(Nonce::assume_unique_for_key(*parsed.nonce), Aad::from(&aad), &mut buf[..])
            .map_err(|_| OpenError::Tampered)?
            .len();
        buf.truncate(len);
        Ok(OpenedValue { plaintext: buf, fingerprint: self.keys[by].fingerprint().to_owned() })
    }

    fn open_kubeseal(&mut self, raw: &[u8]) -> Result<OpenedValue, Refused> {
        match super::format::open_raw(self.keys, &self.label, raw) {
            Err(OpenError::NoKeyCouldDecrypt) => {
                // Would a retired key open it? Then say so (its plaintext is dropped unused).
                for key in self.retired {
                    if super::format::open_raw(std::slice::from_ref(key), &self.label, raw).is_ok() {
                        let retired = Some(Arc::from(key.fingerprint()));
                        return Err(Refused { error: OpenError::KeyRetired, recipients: Vec::new(), retired });
                    }
                }
                Err(OpenError::NoKeyCouldDecrypt.into())
            }
            other => other.map_err(Refused::from),
        }
    }

    /// The data key of `parsed`'s header, and the index of the key that unwrapped it.
    fn data_key(&mut self, parsed: &Parsed<'_>) -> Result<(Zeroizing<[u8; SESSION_KEY_LEN]>, usize), Refused> {
        let digest = crate::text::sha256(&[parsed.header]);
        if let Some((key, by)) = self.unwrapped.get(&digest) {
            return Ok((key.clone(), *by));
        }
        if let Some(refused) = self.refused.get(&digest) {
            return Err(refused.clone());
        }
        let result = self.unwrap(parsed);
        match &result {
            Ok((data_key, by)) => {
                self.unwrapped.insert(digest, (data_key.clone(), *by));
            }
            Err(refused) => {
                self.refused.insert(digest, refused.clone());
            }
        }
        result
    }

    /// At most one RSA operation per header, whatever it names: the stanza of the first of
    /// our keys it names (active ones first, newest first; else a retired one). Every stanza
    /// of a header a sealer made wraps the same data key under the same label, so when that
    /// one does not unwrap, no other stanza of it honestly would: trying on would only let a
    /// header naming all our keys multiply a bundle author's RSA work (and let a forged active
    /// stanza beside a genuine retired one pass for a value that needs the retired key).
    fn unwrap(&self, parsed: &Parsed<'_>) -> Result<(Zeroizing<[u8; SESSION_KEY_LEN]>, usize), Refused> {
        let recipients = || parsed.stanzas.iter().map(|s| s.key_id).collect::<Vec<_>>();
        let stanza_of = |key: &SealingKey| {
            let id = key.certificate().key_id();
            parsed.stanzas.iter().find(|s| s.key_id == id).copied()
        };
        let refused = |error| Refused { error, recipients: recipients(), retired: None };
        if let Some((index, key, stanza)) =
            self.keys.iter().enumerate().find_map(|(index, key)| Some((index, key, stanza_of(key)?)))
        {
            return match key.decrypt_session_key(stanza.wrapped, &self.label) {
                Some(data_key) => Ok((data_key, index)),
                None => Err(refused(OpenError::UnwrapFailed)),
            };
        }
        // A retired key opens nothing, but a value it *would* open needs it: the failure names
        // it, and the key's deletion waits for that bundle. Only a key that really unwraps the
        // data key counts (its plaintext is dropped unused): a key id is public, so a stanza
        // naming a key with bytes that wrap nothing is anybody's to write, and must neither
        // make the key look needed nor hold it against deletion.
        if let Some((key, stanza)) = self.retired.iter().find_map(|key| Some((key, stanza_of(key)?))) {
            return match key.decrypt_session_key(stanza.wrapped, &self.label) {
                Some(_) => Err(Refused {
                    error: OpenError::KeyRetired,
                    recipients: recipients(),
                    retired: Some(Arc::from(key.fingerprint())),
                }),
                None => Err(refused(OpenError::UnwrapFailed)),
            };
        }
        Err(refused(OpenError::NotARecipient))
    }

    /// A sealing run that re-wraps the data key of `raw` (a v2 value this opener opened) for
    /// `newest`: the stanzas of every key in `ours` are replaced by one for `newest`, the other
    /// recipients' stanzas are kept as they are (they wrap the same data key, so they still
    /// open). Values re-sealed with it get new nonces and the new header in their associated
    /// data.
    pub fn rewrap(&mut self, raw: &[u8], newest: &Certificate, ours: &[KeyId]) -> Result<Sealer, Refused> {
        let parsed = parse(raw)?;
        let (data_key, _) = self.data_key(&parsed)?;
        let newest_id = newest.key_id();
        let kept: Vec<Stanza<'_>> =
            parsed.stanzas.iter().filter(|s| !ours.contains(&s.key_id) && s.key_id != newest_id).copied().collect();
        Sealer::with_data_key(data_key, &kept, &[newest], &self.label).map_err(|_| Refused::from(OpenError::Malformed))
    }
}

/// The key ids a raw v2 value names (empty for a kubeseal value or one that does not parse).
pub fn recipients(raw: &[u8]) -> Vec<KeyId> {
    if !is_ours(raw) {
        return Vec::new();
    }
    parse(raw).map(|p| p.stanzas.iter().map(|s| s.key_id).collect()).unwrap_or_default()
}

/// The header of a raw v2 value: values with the same header share one data key.
pub fn header(raw: &[u8]) -> Option<&[u8]> {
    parse(raw).ok().map(|p| p.header)
}

#[cfg(test)]
mod tests;
