//! How a reconcile fails: which step, and the API error behind it.

/// Errors of one reconcile, one variant per step that can fail as a whole (a child object the
/// API server refuses is not one: it is reported on the tenant and ends in [`Error::Partial`]).
/// Each maps to a metric label; none carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("adding the cleanup finalizer")]
    AddFinalizer(#[source] kube::Error),
    #[error("reading what the tenant's record has in flight")]
    ReadRecord(#[source] kube::Error),
    #[error("putting what is about to be created on the tenant's record")]
    RecordIntent(#[source] kube::Error),
    #[error("writing the tenant's status")]
    WriteStatus(#[source] kube::Error),
    #[error("removing the cleanup finalizer")]
    RemoveFinalizer(#[source] kube::Error),
    #[error("reading the bundle to open it")]
    ReadBundle(#[source] kube::Error),
    #[error("writing the bundle's status")]
    WriteBundleStatus(#[source] kube::Error),
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
    /// The API error behind a failed step.
    fn kube(&self) -> Option<&kube::Error> {
        match self {
            Error::AddFinalizer(e)
            | Error::ReadRecord(e)
            | Error::RecordIntent(e)
            | Error::WriteStatus(e)
            | Error::RemoveFinalizer(e)
            | Error::ReadBundle(e)
            | Error::WriteBundleStatus(e) => Some(e),
            Error::Panic | Error::Partial { .. } => None,
        }
    }

    /// The step and every error behind it, on one line: what a log line shows.
    pub fn chain(&self) -> String {
        let sources = std::iter::successors(Some(self as &dyn std::error::Error), |e| e.source());
        sources.map(ToString::to_string).collect::<Vec<_>>().join(": ")
    }

    /// The `result` label of `mltenant_reconcile_total`: the step that failed.
    pub fn metric_label(&self) -> &'static str {
        // The leadership fence stopped a write: this replica is stepping down, whatever the step.
        if self.kube().is_some_and(|e| crate::runtime::client::is_not_leader(e)) {
            return "not_leader";
        }
        match self {
            Error::AddFinalizer(_) => "add_finalizer",
            Error::ReadRecord(_) => "read_record",
            Error::RecordIntent(_) => "record_intent",
            Error::WriteStatus(_) => "write_status",
            Error::RemoveFinalizer(_) => "remove_finalizer",
            Error::ReadBundle(_) => "read_bundle",
            Error::WriteBundleStatus(_) => "write_bundle_status",
            Error::Panic => "panic",
            Error::Partial { .. } => "partial",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_names_itself_and_its_cause() {
        let refused = kube::Error::Api(
            kube::core::Status::failure("the server is on fire", "InternalError").with_code(500).boxed(),
        );
        let error = Error::WriteStatus(refused);
        assert_eq!(error.metric_label(), "write_status");
        let line = error.chain();
        assert!(line.starts_with("writing the tenant's status: "), "{line}");
        assert!(line.contains("the server is on fire"), "{line}");
    }
}
