//! `mltenant cert`: the operator's current sealing certificate, directly from an operator URL
//! or through the API server's service proxy.

use anyhow::{Context as _, bail};

use super::operator::Source;
use crate::crypto::Certificate;

/// The PEM text of the operator's current sealing certificate.
pub async fn fetch(source: &Source) -> anyhow::Result<String> {
    let pem = match source.get("/v1/cert.pem").await? {
        (200, body) => body,
        (status, body) => bail!("GET /v1/cert.pem answered {status}: {}", body.trim()),
    };
    Certificate::from_pem(&pem).context("the operator served something that is not a certificate")?;
    Ok(pem)
}
