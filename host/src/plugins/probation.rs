//! What happens to a guest version after it went into service: its first
//! calls are a probation, and a version that fails too many of them is
//! taken out of service and the one it replaced restored (the crash-loop
//! back-off of proxy-wasm hosts). And each guest's history of versions,
//! for the admin endpoint.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use super::FailureKind;

/// Calls a new version is watched for.
pub const PROBATION_CALLS: u32 = 50;
/// Failures (traps, timeouts, memory, nonsense answers) within the
/// probation that take a version out of service, when they are also at
/// least half of its calls so far.
pub const ROLLBACK_FAILURES: u32 = 5;
/// Entries kept per guest in its history.
const HISTORY_LEN: usize = 20;

/// Calls and failures of one version, counted by its guest.
#[derive(Debug, Default)]
pub struct VersionHealth {
    calls: AtomicU32,
    failures: AtomicU32,
}

impl VersionHealth {
    /// A call is starting.
    pub fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// A call failed with `kind`; only the guest's own faults count (not a
    /// full instance pool or a slow database).
    pub fn failed(&self, kind: FailureKind) {
        if matches!(
            kind,
            FailureKind::Trap
                | FailureKind::Timeout
                | FailureKind::Memory
                | FailureKind::InvalidResult
                | FailureKind::Instantiate
                | FailureKind::Denied
        ) {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Why the version must go, while on probation: `Some("4 of 5 calls
    /// failed")`.
    pub fn verdict(&self) -> Option<String> {
        let calls = self.calls.load(Ordering::Relaxed);
        let failures = self.failures.load(Ordering::Relaxed);
        (calls <= PROBATION_CALLS && failures >= ROLLBACK_FAILURES && failures * 2 >= calls)
            .then(|| format!("{failures} of its first {calls} calls failed"))
    }

    /// The version made its probation: the one before it can be let go.
    pub fn past_probation(&self) -> bool {
        self.calls.load(Ordering::Relaxed) > PROBATION_CALLS
    }
}

/// One event in a guest's history.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Unix time, seconds.
    pub at: u64,
    /// `in-service`, `refused` or `rolled-back`.
    pub event: &'static str,
    /// The version the event is about.
    pub sha256: String,
    /// Why (refused, rolled back); empty for `in-service`.
    pub detail: String,
}

/// The last events of one guest, newest last.
#[derive(Debug, Default)]
pub struct History(Mutex<VecDeque<HistoryEntry>>);

impl History {
    pub fn push(&self, event: &'static str, sha256: &str, detail: impl Into<String>) {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == HISTORY_LEN {
            entries.pop_front();
        }
        entries.push_back(HistoryEntry {
            at: super::registry::unix_now(),
            event,
            sha256: sha256.to_owned(),
            detail: detail.into(),
        });
    }

    pub fn entries(&self) -> Vec<HistoryEntry> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_failing_half_its_first_calls_must_go() {
        let h = VersionHealth::default();
        h.call(); // the smoke call
        for _ in 0..4 {
            h.call();
            h.failed(FailureKind::Trap);
        }
        assert_eq!(h.verdict(), None, "four failures are not yet a pattern");
        h.call();
        h.failed(FailureKind::Timeout);
        assert_eq!(
            h.verdict().as_deref(),
            Some("5 of its first 6 calls failed")
        );
    }

    #[test]
    fn failures_that_are_not_the_guests_do_not_count() {
        let h = VersionHealth::default();
        for _ in 0..5 {
            h.call();
            h.failed(FailureKind::Overloaded);
            h.failed(FailureKind::Directory);
        }
        assert_eq!(h.verdict(), None);
    }

    #[test]
    fn rare_failures_and_failures_after_probation_are_kept() {
        let h = VersionHealth::default();
        for i in 0..PROBATION_CALLS {
            h.call();
            if i % 10 == 0 {
                h.failed(FailureKind::Trap);
            }
        }
        assert_eq!(h.verdict(), None, "5 in 50 is not half");
        h.call();
        assert!(h.past_probation());
        for _ in 0..100 {
            h.call();
            h.failed(FailureKind::Trap);
        }
        assert_eq!(
            h.verdict(),
            None,
            "past probation, failures go to the fallback"
        );
    }

    #[test]
    fn history_keeps_the_last_entries() {
        let history = History::default();
        for i in 0..HISTORY_LEN + 3 {
            history.push("in-service", &format!("{i}"), "");
        }
        let entries = history.entries();
        assert_eq!(entries.len(), HISTORY_LEN);
        assert_eq!(entries[0].sha256, "3");
        assert_eq!(
            entries.last().unwrap().sha256,
            format!("{}", HISTORY_LEN + 2)
        );
    }
}
