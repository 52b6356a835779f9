//! Deadline arithmetic shared by the machines.
//!
//! `Instant + Duration` panics on overflow; every deadline here is computed
//! with `checked_add`, and a deadline that cannot be represented is simply
//! never reached (only absurd configured timer values get there).

use std::time::{Duration, Instant};

/// `now + d`, or `None` if that instant cannot be represented.
pub(crate) fn after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// Whether an armed timer is due at `now`.
pub(crate) fn is_due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| d <= now)
}

/// The earliest of the armed timers.
pub(crate) fn earliest<const N: usize>(deadlines: [Option<Instant>; N]) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

/// A retransmission timer (A, E or G): the next firing and the interval that
/// led to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// When the timer fires next.
    pub(crate) due: Instant,
    /// The interval that `due` is the end of.
    interval: Duration,
}

impl Backoff {
    /// Arms the timer to fire `first` after `now` (T1 for A, E and G).
    pub(crate) fn start(now: Instant, first: Duration) -> Option<Self> {
        Some(Self {
            due: after(now, first)?,
            interval: first,
        })
    }

    /// Moves a due timer past `now`: each step computes the next interval from
    /// the previous one with `grow` (doubling for A, doubling capped at T2 for
    /// E and G, a flat T2 for E in Proceeding).
    ///
    /// The schedule stays anchored to the original firing times, so a glue
    /// that fires on time reproduces the RFC's exact sequence. When the glue
    /// fires late, missed periods are skipped rather than sent in a burst: a
    /// burst of identical datagrams carries no more information than one.
    /// `None` means the next firing cannot be represented; the timer is then
    /// dropped (the transaction timeout still ends the transaction).
    pub(crate) fn advance(self, now: Instant, grow: impl Fn(Duration) -> Duration) -> Option<Self> {
        let mut next = self;
        while next.due <= now {
            // Never let an interval collapse to zero: that would loop forever.
            let interval = grow(next.interval).max(Duration::from_millis(1));
            if interval == next.interval {
                // A flat interval: jump over all missed periods at once, so a
                // wildly late `now` costs one division, not a loop per period.
                let behind = now.saturating_duration_since(next.due);
                let periods = behind.as_nanos() / interval.as_nanos() + 1;
                let periods = u32::try_from(periods).ok()?;
                next.due = next.due.checked_add(interval.checked_mul(periods)?)?;
            } else {
                next.due = next.due.checked_add(interval)?;
            }
            next.interval = interval;
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubling_capped_backoff_reproduces_timer_e() {
        let t0 = Instant::now();
        let cap = |d: Duration| (d * 2).min(ms(4_000));
        let mut b = Backoff::start(t0, ms(500)).unwrap();
        let mut fired = vec![b.due - t0];
        for _ in 0..5 {
            b = b.advance(b.due, cap).unwrap();
            fired.push(b.due - t0);
        }
        assert_eq!(
            fired,
            vec![
                ms(500),
                ms(1_500),
                ms(3_500),
                ms(7_500),
                ms(11_500),
                ms(15_500)
            ]
        );
    }

    #[test]
    fn late_firing_skips_missed_periods() {
        let t0 = Instant::now();
        let cap = |d: Duration| (d * 2).min(ms(4_000));
        let b = Backoff::start(t0, ms(500)).unwrap();
        // Fired at 10 s instead of 0.5 s: the schedule continues where it
        // would have been (…, 7.5 s, 11.5 s), it does not restart.
        let b = b.advance(t0 + ms(10_000), cap).unwrap();
        assert_eq!(b.due - t0, ms(11_500));
    }

    #[test]
    fn flat_interval_jumps_far_in_one_step() {
        let t0 = Instant::now();
        let b = Backoff::start(t0, ms(4_000)).unwrap();
        let far = t0 + Duration::from_secs(10 * 365 * 24 * 3600);
        let b = b.advance(far, |_| ms(4_000)).unwrap();
        assert!(b.due > far && b.due - far <= ms(4_000));
    }

    #[test]
    fn zero_growth_is_clamped() {
        let t0 = Instant::now();
        let b = Backoff::start(t0, Duration::ZERO).unwrap();
        let b = b.advance(t0 + ms(5), |_| Duration::ZERO).unwrap();
        assert_eq!(b.due - t0, ms(6));
    }

    #[test]
    fn earliest_and_due() {
        let t0 = Instant::now();
        assert_eq!(
            earliest([None, Some(t0 + ms(2)), Some(t0 + ms(1))]),
            Some(t0 + ms(1))
        );
        assert_eq!(earliest::<2>([None, None]), None);
        assert!(is_due(Some(t0), t0));
        assert!(!is_due(Some(t0 + ms(1)), t0));
        assert!(!is_due(None, t0));
    }
}
