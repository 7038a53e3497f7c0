//! Status conditions: built fresh each reconcile, merged with the previous ones so that
//! `lastTransitionTime` only moves when a condition's status really changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::conditions::{FALSE, TRUE, UNKNOWN};

/// A condition as computed by a reconcile, before transition times are merged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub type_: &'static str,
    pub ok: bool,
    /// Neither true nor false: what it is about is not known yet (`ok` is false then).
    pub unknown: bool,
    pub reason: String,
    pub message: String,
}

impl Observed {
    pub fn new(type_: &'static str, ok: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, ok, unknown: false, reason: reason.into(), message: message.into() }
    }

    /// A condition whose status is `Unknown`.
    pub fn unknown(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { unknown: true, ..Self::new(type_, false, reason, message) }
    }

    /// The status it has: `True`, `False` or `Unknown`.
    pub fn status(&self) -> &'static str {
        if self.unknown {
            UNKNOWN
        } else if self.ok {
            TRUE
        } else {
            FALSE
        }
    }
}

/// Characters of a condition message kept.
const MAX_MESSAGE: usize = 8192;

/// `message` as a condition stores it.
pub fn stored_message(message: &str) -> String {
    crate::text::shorten(message, MAX_MESSAGE)
}

/// Turn `observed` into API conditions, keeping `previous` transition times where the status is
/// unchanged.
pub fn merge(previous: &[Condition], observed: &[Observed], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    observed
        .iter()
        .map(|o| {
            let status = o.status();
            let last = previous
                .iter()
                .find(|p| p.type_ == o.type_ && p.status == status)
                .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
            Condition {
                type_: o.type_.to_owned(),
                status: status.to_owned(),
                reason: o.reason.clone(),
                // The API server caps a condition message at 32 KiB; one naming a thousand
                // failing Secrets must not make the whole status write fail.
                message: stored_message(&o.message),
                observed_generation: generation,
                last_transition_time: last,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let first = merge(&[], &[Observed::new("Ready", false, "NamespaceConflict", "a")], Some(1), &at(10));
        let again = merge(&first, &[Observed::new("Ready", false, "NamespaceConflict", "b")], Some(2), &at(20));
        assert_eq!(again[0].last_transition_time, at(10));
        assert_eq!(again[0].message, "b");
        assert_eq!(again[0].observed_generation, Some(2));
    }

    #[test]
    fn long_messages_are_shortened() {
        let long = "é".repeat(MAX_MESSAGE + 1);
        let merged = merge(&[], &[Observed::new("Ready", false, "X", long)], None, &at(1));
        assert_eq!(merged[0].message.chars().count(), MAX_MESSAGE);
    }

    #[test]
    fn transition_time_moves_when_status_flips() {
        let first = merge(&[], &[Observed::new("Ready", false, "NamespaceConflict", "a")], Some(1), &at(10));
        let flipped = merge(&first, &[Observed::new("Ready", true, "Ready", "ok")], Some(1), &at(30));
        assert_eq!(flipped[0].status, "True");
        assert_eq!(flipped[0].last_transition_time, at(30));
    }
}
