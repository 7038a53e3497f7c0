//! Sealing and opening of `SealedBundle` values: pure crypto, no Kubernetes client code.
//!
//! The module is split by domain:
//!
//! * [`format`](self::format) — the sealed-secrets hybrid wire format, byte-compatible with
//!   `kubeseal --raw`: [`seal`] (public key only, used by `mltenant seal` and `/v1/rotate`) and
//!   [`open`] (private keys, used by the controller and `/v1/verify`), with the closed error set
//!   [`OpenError`] whose [`OpenError::reason`] feeds the `reason` label of
//!   `mltenant_decryption_failures_total`.
//! * [`key`](self::key) — sealing keys: RSA-4096 key pairs with a self-signed X.509
//!   certificate ([`SealingKey`]), stored as a `kubernetes.io/tls` Secret ([`PemPair`]), and
//!   the public half alone ([`Certificate`]), which is what `GET /v1/cert.pem` serves and what
//!   the CLI seals against.
//! * [`label`] — the OAEP label that binds a sealed value to its consumer (the table of scopes in docs/security.md).
//!
//! Every RSA and AES operation goes through `aws-lc-rs`; the private-key path (OAEP
//! decryption) is constant time. See `docs/security.md` for which library does what and why.
//!
//! Nothing in this module logs, and no error or `Debug` output contains plaintext, session
//! keys or private-key material.
//!
//! ```
//! use mltenant_operator::api::BundleScope;
//! use mltenant_operator::crypto;
//! # let key = crypto::SealingKey::from_pem(
//! #     include_str!("../../tests/fixtures/crypto/sealing-key.crt"),
//! #     include_str!("../../tests/fixtures/crypto/sealing-key.key"),
//! # ).unwrap();
//! # let cert_pem = key.certificate().to_pem();
//! let cert = crypto::Certificate::from_pem(&cert_pem)?;
//! let label = crypto::label(BundleScope::Environment, "financial-ml", "dev");
//! let sealed = crypto::seal(&cert, &label, b"s3cr3t")?;
//! let encoded = crypto::encode_base64(&sealed); // what goes into `encryptedData`
//!
//! let opened = crypto::open(&[key], &label, &encoded)?;
//! assert_eq!(&opened.plaintext[..], b"s3cr3t");
//! assert_eq!(opened.fingerprint, cert.fingerprint());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod format;
pub mod key;
pub mod v2;

#[cfg(test)]
pub(crate) mod tests;

pub use format::{
    MAX_SEALED_LEN, OpenError, OpenedValue, SealError, decode_base64, encode_base64, open, open_raw, seal,
};
pub use key::{Certificate, KeyError, KeyId, PemPair, SealingKey, key_id_hex, rsa_decryptions};
pub use v2::{Opener, Refused, Sealer};

use crate::api::BundleScope;

/// The two sealed formats: kubeseal's (one RSA operation per value, what `kubeseal --raw`
/// reads and writes) and ours, v2 (one per sealing run, several recipients).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Kubeseal,
    V2,
}

impl Format {
    /// The format of a raw (base64-decoded) value.
    pub fn of(raw: &[u8]) -> Self {
        if v2::is_ours(raw) { Format::V2 } else { Format::Kubeseal }
    }
}

/// Check that a base64 `encryptedData` value has a sealed format, v2 or kubeseal's (base64,
/// size, framing) without any key: what `mltenant validate` can tell offline.
pub fn check_format(encoded: &str) -> Result<(), OpenError> {
    let raw = decode_base64(encoded)?;
    match Format::of(&raw) {
        Format::V2 => v2::parse(&raw).map(|_| ()),
        Format::Kubeseal => format::check_framing(&raw),
    }
}

/// The OAEP label for a value consumed under `scope` by `tenant` in `environment`.
///
/// | scope | label | same bytes as `kubeseal --raw ...` |
/// |---|---|---|
/// | Cluster | `""` | `--scope cluster-wide` |
/// | Tenant | `"<tenant>"` | `--scope namespace-wide --namespace <tenant>` |
/// | Environment | `"<tenant>/<environment>"` | `--scope strict --namespace <tenant> --name <environment>` |
///
/// Arguments the scope does not use are ignored. When opening, pass the *consuming* MLTenant
/// and environment, never values taken from the bundle alone: that is what stops a bundle
/// sealed for one team from being replayed by another.
pub fn label(scope: BundleScope, tenant: &str, environment: &str) -> Vec<u8> {
    match scope {
        BundleScope::Cluster => Vec::new(),
        BundleScope::Tenant => tenant.as_bytes().to_vec(),
        BundleScope::Environment => format!("{tenant}/{environment}").into_bytes(),
    }
}
