//! How a reconcile fails.

/// Errors of one reconcile. Each maps to a metric label; none carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The reconcile panicked. Caught so that one object cannot take the process (and with it
    /// every tenant) down; the text is where it happened, never the panic's message, which could
    /// quote data.
    #[error("the reconcile panicked (a bug; reported, other objects are unaffected)")]
    Panic,
    /// Some child objects were refused; the rest was reconciled and the status written.
    #[error("{count} request(s) refused, first: {first}")]
    Partial { count: usize, first: String },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            // The leadership fence stopped a write: this replica is stepping down.
            Error::Kube(error) if crate::client::is_not_leader(error) => "not_leader",
            Error::Kube(_) => "kube_api",
            Error::Panic => "panic",
            Error::Partial { .. } => "partial",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
