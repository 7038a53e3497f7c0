//! Fetching the operator's sealing certificate: directly from an operator URL, or through the
//! API server's service proxy (what works from a laptop with only a kubeconfig).

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::crypto::Certificate;

/// Where the operator's `/v1/cert.pem` is.
#[derive(clap::Args, Clone, Debug)]
pub struct Source {
    /// The operator's HTTP address (e.g. http://127.0.0.1:8080), instead of the service proxy.
    #[arg(long, env = "MLTENANT_OPERATOR_URL")]
    pub operator_url: Option<String>,
    /// Namespace of the operator's Service (service-proxy mode).
    #[arg(long, default_value = "mltenant-system")]
    pub controller_namespace: String,
    /// Name and port name of the operator's Service (service-proxy mode).
    #[arg(long, default_value = "mltenant-operator:http")]
    pub controller_service: String,
}

/// The PEM text of the operator's current sealing certificate.
pub async fn fetch(source: &Source) -> anyhow::Result<String> {
    let pem = match &source.operator_url {
        Some(url) => match http_get(url, "/v1/cert.pem").await? {
            (200, body) => body,
            (status, body) => bail!("GET {url}/v1/cert.pem answered {status}: {}", body.trim()),
        },
        None => {
            let client =
                kube::Client::try_default().await.context("no Kubernetes configuration to reach the operator")?;
            let path = format!(
                "/api/v1/namespaces/{}/services/{}/proxy/v1/cert.pem",
                source.controller_namespace, source.controller_service
            );
            let request = http::Request::get(&path).body(Vec::new()).expect("a valid request");
            // The API server's own message ("... cannot get resource services/proxy ...") is the
            // clear part of an API error; its Debug dump is noise on a one-line error.
            client.request_text(request).await.map_err(|error| match error {
                kube::Error::Api(status) => {
                    anyhow::anyhow!("fetching the certificate through {path}: {}", status.message)
                }
                other => anyhow::Error::new(other).context(format!("fetching the certificate through {path}")),
            })?
        }
    };
    Certificate::from_pem(&pem).context("the operator served something that is not a certificate")?;
    Ok(pem)
}

/// A plain HTTP/1.0 GET of `path` on `base` (`http://host:port`): (status, body).
pub async fn http_get(base: &str, path: &str) -> anyhow::Result<(u16, String)> {
    http_request(base, "GET", path, b"").await
}

/// A plain HTTP/1.0 request to the operator: (status, body). The operator serves plain HTTP
/// inside the cluster; TLS is the API server's job in service-proxy mode.
pub async fn http_request(base: &str, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    let Some(authority) = base.strip_prefix("http://").map(|a| a.trim_end_matches('/')) else {
        bail!("--operator-url must be http://host:port, got {base:?}");
    };
    let mut stream =
        tokio::net::TcpStream::connect(authority).await.with_context(|| format!("connecting to {authority}"))?;
    let head = format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.with_context(|| format!("reading the answer from {authority}"))?;
    let (head, body) = response.split_once("\r\n\r\n").context("malformed HTTP answer")?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("malformed HTTP status line")?;
    Ok((status, body.to_owned()))
}
