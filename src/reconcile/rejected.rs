//! A write (or read) the API server refused for one child object. It is reported on that object
//! (a condition reason, an Event, `mltenant_rejected_writes_total`) while the rest of the tenant
//! proceeds, status included; the tenant is then retried with backoff.
//!
//! A write this replica's leadership fence stopped is carried the same way (the tenant's steps
//! go on as for any refusal) but is [`fenced`](Rejected::fenced): it is no news about the object,
//! only that this replica is stepping down, so it is not reported as the API server's refusal.

use crate::runtime::client::is_not_leader;

/// The reason of a write the leadership fence stopped.
const NOT_LEADER: &str = "NotLeader";

/// One refused request about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// `Namespace`, `Secret`, `Role`, `RoleBinding`.
    pub kind: &'static str,
    /// `<namespace>/<name>`, or the name of a namespace.
    pub object: String,
    /// A closed set, for the metric: see [`reason`].
    pub reason: &'static str,
    /// The API server's own words (it never echoes Secret data), shortened.
    pub message: String,
}

impl Rejected {
    pub fn new(kind: &'static str, object: impl Into<String>, error: &kube::Error) -> Self {
        let message = match error {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        };
        Rejected { kind, object: object.into(), reason: reason(error), message: crate::text::shorten(&message, 512) }
    }

    /// Stopped by this replica's leadership fence, not refused by the API server.
    pub fn fenced(&self) -> bool {
        self.reason == NOT_LEADER
    }
}

impl std::error::Error for Rejected {}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fenced() {
            return write!(f, "{} {}: {}", self.kind, self.object, self.message);
        }
        write!(f, "{} {}: the API server refused it ({}): {}", self.kind, self.object, self.reason, self.message)
    }
}

/// The metric reason of an API error.
fn reason(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) => match status.code {
            400 | 422 => "Invalid",
            401 | 403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            429 => "Throttled",
            500..=599 => "Unavailable",
            _ => "Other",
        },
        other if is_not_leader(other) => NOT_LEADER,
        _ => "Unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status { code, message: format!("refused with {code}"), ..Default::default() }.boxed(),
        )
    }

    #[test]
    fn reasons() {
        let table = [(422, "Invalid"), (403, "Forbidden"), (409, "Conflict"), (429, "Throttled"), (503, "Unavailable")];
        for (code, reason) in table {
            let rejected = Rejected::new("Secret", "ns/s", &api(code));
            assert_eq!(rejected.reason, reason, "{code}");
            assert!(!rejected.fenced(), "{code}");
            assert!(rejected.to_string().starts_with(&format!("Secret ns/s: the API server refused it ({reason}): ")));
        }
        let unreachable = Rejected::new("Secret", "ns/s", &kube::Error::Service("connection refused".into()));
        assert_eq!((unreachable.reason, unreachable.fenced()), ("Unavailable", false));
    }

    #[test]
    fn a_write_the_leadership_fence_stopped_is_fenced_not_refused_by_the_api_server() {
        let stopped = crate::runtime::client::NotLeader::Refused(http::Method::PATCH);
        let rejected = Rejected::new("Role", "ns/r", &kube::Error::Service(Box::new(stopped)));
        assert!(rejected.fenced());
        let text = rejected.to_string();
        assert!(!text.contains("the API server refused it"), "{text}");
        assert!(
            text.starts_with("Role ns/r: ")
                && text.ends_with("PATCH refused: this replica does not hold the leader Lease")
        );
    }
}
