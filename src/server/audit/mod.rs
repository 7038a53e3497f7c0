//! The audit sink: where the API server's audit webhook backend posts its events, on a port of
//! its own, served over TLS by every replica; what it counts goes to the leader's current term
//! (the replica whose controllers publish which Secrets are whose), and a standby answers 503
//! with `Retry-After` on a connection it closes, so the API server's retry may reach the leader. Only the API server's identity may post: a client certificate signed by
//! the configured CA with one of the configured names, or the configured bearer token; either
//! is checked from the handshake and the request head, before a byte of the body is read. A
//! body is bounded in size, in time and in how many are read at once, and its events are
//! counted as they are parsed (`events`) into `usage`.

pub mod events;
mod sink;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::access::exposure::identity::Expected;
use crate::access::usage::Usage;
use crate::metrics::Metrics;
use crate::server::http::connections;

/// How the sink is served and whom it lets post.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Client certificates signed by this CA (PEM) ...
    pub client_ca: Option<PathBuf>,
    /// ... whose common name or a DNS name is one of these, are the API server.
    pub client_names: Vec<String>,
    /// A file holding the bearer token the API server sends (its webhook kubeconfig's `token`).
    pub token_file: Option<PathBuf>,
}

impl Config {
    /// Refuse a configuration that would let anyone post, in one line.
    pub fn check(&self) -> Result<(), String> {
        match (&self.client_ca, self.client_names.is_empty(), &self.token_file) {
            (None, _, None) => Err(
                "the audit sink needs the API server's identity: --audit-sink-client-ca with --audit-sink-client-names, or --audit-sink-token-file".into(),
            ),
            (Some(_), true, _) => Err("--audit-sink-client-ca needs --audit-sink-client-names (the names the API server's certificate carries)".into()),
            (None, false, _) => Err("--audit-sink-client-names needs --audit-sink-client-ca".into()),
            _ => Ok(()),
        }
    }
}

/// Connections the sink holds: a few API servers, each with a few batches in flight.
const LIMITS: connections::Limits = connections::Limits {
    total: 64,
    per_peer: 32,
    header_read: std::time::Duration::from_secs(10),
    max_header_bytes: 32 * 1024,
};

/// What serving the sink needs, read once at start: a certificate or token that cannot be read
/// stops the operator there, not at its first term as leader.
#[derive(Clone)]
pub struct Prepared {
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    client_names: Vec<String>,
    /// SHA-256 of the bearer token.
    token: Option<[u8; 32]>,
}

pub fn prepare(config: &Config) -> anyhow::Result<Prepared> {
    let tls = tls::server_config(&config.tls_cert, &config.tls_key, config.client_ca.as_deref())?;
    let token = match &config.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let token = text.trim();
            anyhow::ensure!(!token.is_empty(), "{} holds no token", path.display());
            Some(crate::text::sha256(&[token.as_bytes()]))
        }
        None => None,
    };
    Ok(Prepared { addr: config.addr, tls, client_names: config.client_names.clone(), token })
}

/// How long to wait before listening again when the port is taken (by a process still
/// shutting down, say).
const LISTEN_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the sink counts into: the current leadership term's usage, none while standing by.
pub type Terms = tokio::sync::watch::Receiver<Option<Arc<Usage>>>;

/// A leadership term as the sink sees it: its usage from start to drop.
pub struct Term<'a>(&'a tokio::sync::watch::Sender<Option<Arc<Usage>>>);

impl<'a> Term<'a> {
    pub fn start(terms: &'a tokio::sync::watch::Sender<Option<Arc<Usage>>>, usage: Option<Arc<Usage>>) -> Self {
        terms.send_replace(usage);
        Term(terms)
    }
}

impl Drop for Term<'_> {
    fn drop(&mut self) {
        self.0.send_replace(None);
    }
}

/// Serve the sink until the future is dropped (the process stops).
pub async fn serve(prepared: Prepared, terms: Terms, expected: Expected, metrics: Arc<Metrics>) {
    let listener = loop {
        match connections::listen(prepared.addr) {
            Ok(listener) => break listener,
            Err(error) => {
                tracing::warn!(addr = %prepared.addr, %error, "cannot listen for audit events yet");
                tokio::time::sleep(LISTEN_RETRY).await;
            }
        }
    };
    tracing::info!(addr = %prepared.addr, "serving the audit sink (POST /audit)");
    let sink = sink::Sink::new(terms, expected, metrics.clone(), prepared.client_names, prepared.token);
    let acceptor = tokio_rustls::TlsAcceptor::from(prepared.tls);
    if let Err(error) =
        connections::serve(listener, sink::router(sink), LIMITS, metrics.audit_counters(), Some(acceptor)).await
    {
        tracing::error!(%error, "the audit sink stopped");
    }
}
