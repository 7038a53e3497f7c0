//! Talking to the operator's HTTP API, for the CLI and the tests: directly (`--operator-url`,
//! plain HTTP inside the cluster or to a local process) or through the API server's service
//! proxy (what works from a laptop with only a kubeconfig; TLS and the caller's right to use the
//! proxy are the API server's job). Requests that need the caller's identity (`/v1/verify`,
//! `/v1/rotate`) carry the kubeconfig's bearer token; through the proxy in
//! [`FORWARDED_TOKEN_HEADER`], because the API server consumes `Authorization` itself. They
//! send the bundle as JSON and name the tenant it is sealed for in the URL, which is what the
//! operator authorises.

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::{BundleScope, SealedBundle};
use crate::server::auth::FORWARDED_TOKEN_HEADER;

/// Where the operator's HTTP API is.
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

/// An answer: HTTP status and body.
pub type Answer = (u16, String);

impl Source {
    /// GET `path` (no identity needed: the certificate and health are public).
    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(http::Method::GET, path, Vec::new(), false).await
    }

    /// POST `bundle` as JSON to `endpoint` (`/v1/verify`, `/v1/rotate`) for the consumer it is
    /// sealed for ([`bundle_path`]), as the kubeconfig's identity.
    pub async fn post_bundle(&self, endpoint: &str, bundle: &SealedBundle) -> anyhow::Result<Answer> {
        let body = serde_json::to_vec(bundle).context("encoding the SealedBundle")?;
        self.send(http::Method::POST, &bundle_path(endpoint, bundle), body, true).await
    }

    async fn send(&self, method: http::Method, path: &str, body: Vec<u8>, identify: bool) -> anyhow::Result<Answer> {
        let json = (!body.is_empty()).then_some((http::header::CONTENT_TYPE.as_str(), "application/json"));
        match &self.operator_url {
            Some(base) => {
                let token = if identify { Some(bearer_token(&kube_config().await?).await?) } else { None };
                let auth = token.map(|t| format!("Bearer {t}"));
                let auth = auth.as_deref().map(|a| (http::header::AUTHORIZATION.as_str(), a));
                let headers: Vec<(&str, &str)> = auth.into_iter().chain(json).collect();
                direct(base, method.as_str(), path, &headers, &body).await
            }
            None => {
                let config = kube_config().await?;
                let token = if identify { Some(bearer_token(&config).await?) } else { None };
                let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
                let proxied = format!(
                    "/api/v1/namespaces/{}/services/{}/proxy{path}",
                    self.controller_namespace, self.controller_service
                );
                let mut request = http::Request::builder().method(method).uri(&proxied);
                if let Some(token) = token {
                    request = request.header(FORWARDED_TOKEN_HEADER, format!("Bearer {token}"));
                }
                if let Some((name, value)) = json {
                    request = request.header(name, value);
                }
                let request = request.body(kube::client::Body::from(body)).expect("a valid request");
                let response =
                    client.send(request).await.with_context(|| format!("reaching the operator through {proxied}"))?;
                let status = response.status().as_u16();
                let bytes = response.into_body().collect_bytes().await.context("reading the operator's answer")?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if status >= 400 && text.contains("\"kind\":\"Status\"") {
                    // The API server answered itself (e.g. no right to use the proxy): its
                    // message is the clear part.
                    let message = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["message"].as_str().map(str::to_owned))
                        .unwrap_or(text);
                    bail!("through {proxied}: {message}");
                }
                Ok((status, text))
            }
        }
    }
}

async fn kube_config() -> anyhow::Result<kube::Config> {
    kube::Config::infer().await.context("no Kubernetes configuration to reach the operator")
}

/// The bearer token the kubeconfig authenticates with (a static token, a token file, an exec
/// plugin...), obtained the way the kube client itself would add it to a request.
async fn bearer_token(config: &kube::Config) -> anyhow::Result<String> {
    use kube::client::ConfigExt as _;
    use tower::{Layer as _, ServiceExt as _};
    let no_token = || {
        anyhow::anyhow!(
            "the kubeconfig's user has no bearer token (client certificates cannot be forwarded): use a token, e.g. from `kubectl create token`"
        )
    };
    let layer = config.auth_layer().context("reading the kubeconfig's credentials")?.ok_or_else(no_token)?;
    // The layer wants an HTTP service under it: this one answers with the header it was given.
    let capture = tower::service_fn(|request: http::Request<kube::client::Body>| async move {
        Ok::<_, tower::BoxError>(http::Response::new(request.headers().get(http::header::AUTHORIZATION).cloned()))
    });
    let request = http::Request::new(kube::client::Body::empty());
    let answer = layer.layer(capture).oneshot(request).await.map_err(|e| anyhow::anyhow!("getting a token: {e}"))?;
    let value = answer.into_body().ok_or_else(no_token)?;
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(no_token)?;
    Ok(token.to_owned())
}

/// The path to POST `bundle` to `endpoint` with: `?tenant=<name>` for a bundle of scope Tenant
/// or Environment (the tenant it is sealed for, which the operator authorises before reading
/// the body), nothing for Cluster scope.
pub fn bundle_path(endpoint: &str, bundle: &SealedBundle) -> String {
    match (bundle.spec.scope, bundle.spec.tenant.as_deref()) {
        (BundleScope::Cluster, _) | (_, None) => endpoint.to_owned(),
        // `/v1/rotate?format=v2` has a query already (a second `?` made the format unreadable).
        (_, Some(tenant)) => {
            let separator = if endpoint.contains('?') { '&' } else { '?' };
            format!("{endpoint}{separator}tenant={}", percent_encoded(tenant))
        }
    }
}

/// `text` with every byte but unreserved ones percent-encoded (a valid tenant name is unchanged;
/// an invalid one reaches the operator as sent, to be refused there).
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.0 request to `base` (`http://host:port`), with `headers` besides Host and
/// Content-Length.
pub async fn direct(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Answer> {
    let Some(authority) = base.strip_prefix("http://").map(|a| a.trim_end_matches('/')) else {
        bail!("--operator-url must be http://host:port, got {base:?}");
    };
    let stream =
        tokio::net::TcpStream::connect(authority).await.with_context(|| format!("connecting to {authority}"))?;
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head =
        format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\n{extra}Content-Length: {}\r\n\r\n", body.len());
    // Sent and read at once: the operator answers a refusal (401, 403, 413) without reading the
    // body, then closes, which resets a connection still sending; the answer arrived first.
    let (mut reader, mut writer) = stream.into_split();
    let send = async {
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(body).await
    };
    let mut response = Vec::new();
    let (sent, received) = tokio::join!(send, reader.read_to_end(&mut response));
    let response = String::from_utf8_lossy(&response);
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        received.with_context(|| format!("reading the answer from {authority}"))?;
        sent.with_context(|| format!("sending the request to {authority}"))?;
        bail!("malformed HTTP answer from {authority}");
    };
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("malformed HTTP status line")?;
    Ok((status, body.to_owned()))
}

/// Turn a refusal of the operator into one line.
pub fn refused(path: &str, (status, body): &Answer) -> anyhow::Error {
    let reason = match status {
        401 => "the operator did not accept the kubeconfig's token".to_owned(),
        403 => format!("forbidden: {}", body.trim()),
        _ => body.trim().to_owned(),
    };
    anyhow::anyhow!("{path} answered {status}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SealedBundleSpec;

    #[test]
    fn the_path_names_the_tenant_the_bundle_is_sealed_for() {
        let bundle = |scope, tenant: Option<&str>| {
            let spec =
                SealedBundleSpec { tenant: tenant.map(Into::into), ..SealedBundleSpec::new(scope, Default::default()) };
            SealedBundle::new("named-otherwise", spec)
        };
        assert_eq!(bundle_path("/v1/verify", &bundle(BundleScope::Tenant, Some("fin"))), "/v1/verify?tenant=fin");
        assert_eq!(bundle_path("/v1/rotate", &bundle(BundleScope::Environment, Some("a.b"))), "/v1/rotate?tenant=a.b");
        assert_eq!(bundle_path("/v1/verify", &bundle(BundleScope::Cluster, None)), "/v1/verify");
        assert_eq!(
            bundle_path("/v1/rotate?format=v2", &bundle(BundleScope::Tenant, Some("fin"))),
            "/v1/rotate?format=v2&tenant=fin"
        );
        assert_eq!(
            bundle_path("/v1/verify", &bundle(BundleScope::Tenant, Some("a&b=c"))),
            "/v1/verify?tenant=a%26b%3Dc"
        );
    }
}
