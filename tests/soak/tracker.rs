//! Invariants under churn: the fleet is never converged while it is being changed, so a
//! finding (a stale Secret, a namespace not yet released) is a violation only when it lasts
//! longer than the grace period; a corrupt Secret is one at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::fleet::Findings;

pub struct Tracker {
    grace: Duration,
    /// Open findings and since when they are seen.
    open: BTreeMap<String, Instant>,
    reported: BTreeSet<String>,
    pub violations: Vec<String>,
    pub checks: usize,
    /// Findings that went away by themselves, and the longest any of them lasted.
    pub resolved: usize,
    pub longest_resolved: Duration,
}

impl Tracker {
    pub fn new(grace: Duration) -> Self {
        Tracker {
            grace,
            open: BTreeMap::new(),
            reported: BTreeSet::new(),
            violations: Vec::new(),
            checks: 0,
            resolved: 0,
            longest_resolved: Duration::ZERO,
        }
    }

    /// A violation outside the findings (a replica that died, an action that hung).
    pub fn violation(&mut self, minute: f64, what: String) {
        println!("[{minute:6.1} min] VIOLATION: {what}");
        self.violations.push(format!("[{minute:.1} min] {what}"));
    }

    pub fn observe(&mut self, findings: &Findings, minute: f64) {
        self.checks += 1;
        let now = Instant::now();
        for corrupt in &findings.corrupt {
            if self.reported.insert(corrupt.clone()) {
                self.violation(minute, corrupt.clone());
            }
        }
        let current: BTreeSet<&String> = findings.pending.iter().chain(&findings.unexpected).collect();
        let (gone, still): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.open).into_iter().partition(|(k, _)| !current.contains(k));
        for (_, since) in gone {
            self.resolved += 1;
            self.longest_resolved = self.longest_resolved.max(now - since);
        }
        self.open = still.into_iter().collect();
        for finding in current {
            let since = *self.open.entry(finding.clone()).or_insert(now);
            if now - since > self.grace && self.reported.insert(finding.clone()) {
                self.violation(minute, format!("for more than {:?}: {finding}", self.grace));
            }
        }
    }

    /// Findings open right now.
    pub fn open(&self) -> usize {
        self.open.len()
    }
}
