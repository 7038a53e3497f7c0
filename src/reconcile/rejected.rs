//! A write (or read) the API server refused for one child object. It is reported on that object
//! (a condition reason, an Event, `mltenant_rejected_writes_total`) while the rest of the tenant
//! proceeds, status included; the tenant is then retried with backoff.

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
    /// Worth retrying soon without any change (throttling, an unavailable server).
    pub transient: bool,
}

impl Rejected {
    pub fn new(kind: &'static str, object: impl Into<String>, error: &kube::Error) -> Self {
        let (reason, transient) = reason(error);
        let message = match error {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        };
        Rejected { kind, object: object.into(), reason, message: crate::text::shorten(&message, 512), transient }
    }
}

impl std::error::Error for Rejected {}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: the API server refused it ({}): {}", self.kind, self.object, self.reason, self.message)
    }
}

/// The metric reason of an API error, and whether it is transient.
pub fn reason(error: &kube::Error) -> (&'static str, bool) {
    match error {
        kube::Error::Api(status) => match status.code {
            400 | 422 => ("Invalid", false),
            401 | 403 => ("Forbidden", false),
            404 => ("NotFound", true),
            409 => ("Conflict", true),
            429 => ("Throttled", true),
            500..=599 => ("Unavailable", true),
            _ => ("Other", true),
        },
        _ => ("Unavailable", true),
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
    fn reasons_and_transience() {
        let table = [
            (422, "Invalid", false),
            (403, "Forbidden", false),
            (409, "Conflict", true),
            (429, "Throttled", true),
            (503, "Unavailable", true),
        ];
        for (code, reason, transient) in table {
            let rejected = Rejected::new("Secret", "ns/s", &api(code));
            assert_eq!((rejected.reason, rejected.transient), (reason, transient), "{code}");
            assert!(rejected.to_string().starts_with(&format!("Secret ns/s: the API server refused it ({reason}): ")));
        }
    }
}
