//! The lowest wait seen at one queue since it was last read: the statistic
//! CoDel judges a queue by. Whoever queues records each wait; the overload
//! controller takes the lowest once per window. A queue whose lowest wait
//! over a window is long never emptied in that window. A window with only a
//! few waits says nothing (one slow disk write at night is not overload).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Lock-free; shared behind an `Arc` or held in a struct.
#[derive(Debug)]
pub struct QueueWait {
    /// µs; `u64::MAX`: nothing seen since the last `take`.
    lowest_us: AtomicU64,
    seen: AtomicU32,
}

/// Waits a window needs before its lowest one counts.
const ENOUGH: u32 = 4;

impl Default for QueueWait {
    fn default() -> Self {
        Self {
            lowest_us: AtomicU64::new(u64::MAX),
            seen: AtomicU32::new(0),
        }
    }
}

impl QueueWait {
    pub fn observe(&self, waited: Duration) {
        let us = waited.as_micros().min(u128::from(u64::MAX - 1)) as u64;
        self.lowest_us.fetch_min(us, Ordering::Relaxed);
        self.seen.fetch_add(1, Ordering::Relaxed);
    }

    /// The lowest wait since the last call (`None`: too few waits to
    /// judge), and a fresh start.
    pub fn take(&self) -> Option<Duration> {
        let seen = self.seen.swap(0, Ordering::Relaxed);
        let us = self.lowest_us.swap(u64::MAX, Ordering::Relaxed);
        (seen >= ENOUGH && us != u64::MAX).then(|| Duration::from_micros(us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_wait_is_taken_once() {
        let q = QueueWait::default();
        assert_eq!(q.take(), None);
        for ms in [400, 90, 250, 120] {
            q.observe(Duration::from_millis(ms));
        }
        assert_eq!(q.take(), Some(Duration::from_millis(90)));
        assert_eq!(q.take(), None);
        // Three waits are too few to call a queue.
        for ms in [400, 500, 600] {
            q.observe(Duration::from_millis(ms));
        }
        assert_eq!(q.take(), None);
    }
}
