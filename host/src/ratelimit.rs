//! Keyed token-bucket rate limiting, sans-io: the caller passes the time.
//!
//! Built for "repeated failed authentications from one address are rate
//! limited without locking out other addresses" (and later sign-up, login and
//! SMS limits): each key has its own bucket, so one noisy address empties only
//! its own.
//!
//! # Failed SIP authentications
//!
//! Buckets count *failures*, not requests:
//!
//! ```
//! # use softswitch::ratelimit::RateLimiter;
//! # use std::{net::IpAddr, time::{Duration, Instant}};
//! // 10 failures in a burst, then one more every 30 s.
//! let failures = RateLimiter::<IpAddr>::new(10, Duration::from_secs(30), 100_000);
//! let addr: IpAddr = "192.0.2.7".parse().unwrap();
//! let now = Instant::now();
//! // On each request that needs authentication:
//! if !failures.allows(&addr, now) {
//!     // Blocked: answer 403 (or drop over UDP) without checking credentials.
//! }
//! // On each failed authentication (wrong response, bad nonce, wrong realm):
//! failures.check(&addr, now);
//! ```
//!
//! A successful authentication deliberately does not refill the bucket: an
//! attacker who owns one valid account must not be able to reset the limit on
//! the address they use to guess other accounts' passwords.
//!
//! # Memory
//!
//! At most `max_keys` buckets are kept. A full bucket carries no information
//! (it behaves exactly like a missing one), so those go first; when every
//! bucket is partly drained, the ones closest to full are forgotten, which
//! hands the smallest possible allowance back to their owners.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards above this many keys: enough to keep the cores from contending on
/// one lock under an address flood, while small limiters keep a single exact
/// bound.
const SHARDS: usize = 16;
const SHARDING_THRESHOLD: usize = 1024;

/// Fraction of a full shard evicted at once when no bucket is full, so the
/// O(n) selection is paid once per many insertions rather than on each.
const EVICT_DIVISOR: usize = 8;

/// A token bucket per key: `capacity` tokens, one more every `refill_per`.
///
/// Thread-safe (`Sync`), to be shared behind an `Arc`.
#[derive(Debug)]
pub struct RateLimiter<K> {
    capacity: u32,
    refill_per: Duration,
    shard_capacity: usize,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<K, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When the partial token now accruing started accruing.
    since: Instant,
}

impl Bucket {
    /// Credits the whole tokens earned since `since`, keeping the fraction.
    fn refill(&mut self, now: Instant, capacity: u32, refill_per: Duration) {
        if self.tokens >= capacity {
            self.since = now;
            return;
        }
        let elapsed = now.saturating_duration_since(self.since);
        let per = refill_per.as_nanos();
        // A zero period refills instantly.
        let earned = elapsed.as_nanos().checked_div(per).unwrap_or(u128::MAX);
        let missing = u128::from(capacity - self.tokens);
        if earned >= missing {
            self.tokens = capacity;
            self.since = now;
        } else {
            // earned < missing <= u32::MAX, so the casts and the product fit.
            self.tokens += earned as u32;
            self.since += refill_per * earned as u32;
        }
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing bursts of `capacity` per key, refilled by one token
    /// every `refill_per` (zero: refilled instantly, i.e. never limiting), and
    /// tracking at most `max_keys` keys (at least one). A `capacity` of zero
    /// refuses everything.
    pub fn new(capacity: u32, refill_per: Duration, max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let n = if max_keys >= SHARDING_THRESHOLD {
            SHARDS
        } else {
            1
        };
        RateLimiter {
            capacity,
            refill_per,
            shard_capacity: max_keys / n,
            hasher: RandomState::new(),
            shards: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Consumes one token of `key`'s bucket if there is one; `false` means
    /// the key is over its limit.
    pub fn check(&self, key: &K, now: Instant) -> bool {
        let mut shard = self.shard(key);
        if let Some(b) = shard.get_mut(key) {
            b.refill(now, self.capacity, self.refill_per);
            if b.tokens == 0 {
                return false;
            }
            b.tokens -= 1;
            return true;
        }
        if self.capacity == 0 {
            return false;
        }
        if shard.len() >= self.shard_capacity {
            self.make_room(&mut shard, now);
        }
        let bucket = Bucket {
            tokens: self.capacity - 1,
            since: now,
        };
        shard.insert(key.clone(), bucket);
        true
    }

    /// Whether `key` has a token left, without consuming it.
    pub fn allows(&self, key: &K, now: Instant) -> bool {
        match self.shard(key).get_mut(key) {
            Some(b) => {
                b.refill(now, self.capacity, self.refill_per);
                b.tokens > 0
            }
            None => self.capacity > 0,
        }
    }

    /// Number of keys currently tracked.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, Bucket>> {
        let i = self.hasher.hash_one(key) as usize % self.shards.len();
        lock(&self.shards[i])
    }

    fn make_room(&self, shard: &mut HashMap<K, Bucket>, now: Instant) {
        for b in shard.values_mut() {
            b.refill(now, self.capacity, self.refill_per);
        }
        shard.retain(|_, b| b.tokens < self.capacity);
        if shard.len() < self.shard_capacity {
            return;
        }
        // Every bucket is partly drained: forget those with the most tokens
        // left (oldest first among equals), as forgetting is a refill.
        let evict = (self.shard_capacity / EVICT_DIVISOR).max(1);
        let mut ranked: Vec<(u32, Instant, K)> = shard
            .iter()
            .map(|(k, b)| (u32::MAX - b.tokens, b.since, k.clone()))
            .collect();
        let evict = evict.min(ranked.len());
        if evict < ranked.len() {
            ranked.select_nth_unstable_by(evict, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        }
        for (_, _, k) in ranked.into_iter().take(evict) {
            shard.remove(&k);
        }
    }
}

/// Buckets are plain counters; a panic elsewhere cannot leave one in a state
/// worse than slightly off, so keep serving rather than propagate poison.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn one_address_exhausted_while_another_passes() {
        let rl = RateLimiter::new(3, Duration::from_secs(10), 1000);
        let t0 = Instant::now();
        let (bad, good) = (ip("192.0.2.1"), ip("2001:db8::1"));
        assert!((0..3).all(|_| rl.check(&bad, t0)));
        assert!(!rl.check(&bad, t0));
        assert!(!rl.allows(&bad, t0));
        assert!(rl.allows(&good, t0));
        assert!(rl.check(&good, t0));
        assert!(!rl.check(&bad, t0 + SEC));
    }

    #[test]
    fn refills_over_time_keeping_fractions_and_capped_at_capacity() {
        let rl = RateLimiter::new(2, Duration::from_secs(10), 10);
        let t0 = Instant::now();
        let k = "k";
        assert!(rl.check(&k, t0) && rl.check(&k, t0) && !rl.check(&k, t0));
        assert!(!rl.allows(&k, t0 + 9 * SEC));
        assert!(rl.allows(&k, t0 + 10 * SEC));
        assert!(rl.check(&k, t0 + 10 * SEC));
        assert!(!rl.check(&k, t0 + 15 * SEC));
        // The 5 s since the last token count towards the next one.
        assert!(rl.check(&k, t0 + 20 * SEC));
        // A long pause refills to capacity, not beyond.
        let later = t0 + 1000 * SEC;
        assert!(rl.check(&k, later) && rl.check(&k, later) && !rl.check(&k, later));
    }

    #[test]
    fn allows_does_not_consume() {
        let rl = RateLimiter::new(1, SEC, 10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(rl.allows(&1u8, t0));
        }
        assert!(rl.check(&1u8, t0));
        assert!(!rl.allows(&1u8, t0));
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let rl = RateLimiter::new(1, SEC, 10);
        let t0 = Instant::now() + 100 * SEC;
        assert!(rl.check(&1u8, t0));
        assert!(!rl.check(&1u8, t0 - 50 * SEC));
        assert!(rl.check(&1u8, t0 + SEC));
    }

    #[test]
    fn degenerate_parameters() {
        let t0 = Instant::now();
        let none = RateLimiter::new(0, SEC, 10);
        assert!(!none.check(&1u8, t0) && !none.allows(&1u8, t0));
        let unlimited = RateLimiter::new(1, Duration::ZERO, 10);
        assert!((0..100).all(|_| unlimited.check(&1u8, t0)));
        let huge = RateLimiter::new(u32::MAX, Duration::from_nanos(1), 0);
        assert!(huge.check(&1u8, t0) && huge.check(&2u8, t0 + Duration::from_secs(1 << 30)));
        assert!(huge.len() <= 1);
    }

    #[test]
    fn memory_bound_holds_under_100k_distinct_keys() {
        for max_keys in [1000, 5000] {
            let rl = RateLimiter::new(5, Duration::from_secs(60), max_keys);
            let t0 = Instant::now();
            for i in 0..100_000u32 {
                let addr = IpAddr::from(i.to_be_bytes());
                assert!(rl.check(&addr, t0 + Duration::from_millis(u64::from(i))));
                assert!(rl.len() <= max_keys);
            }
            assert!(rl.len() > max_keys / 2, "{}", rl.len());
        }
    }

    #[test]
    fn a_flood_of_new_keys_evicts_nearly_full_buckets_before_drained_ones() {
        let rl = RateLimiter::new(10, Duration::from_secs(3600), 100);
        let t0 = Instant::now();
        let attacker = ip("198.51.100.9");
        assert!((0..10).all(|_| rl.check(&attacker, t0)));
        // Each flooding key uses one token; the attacker's drained bucket
        // has the least left and so outlives them all.
        for i in 0..10_000u32 {
            rl.check(&IpAddr::from((i + 1).to_be_bytes()), t0 + SEC);
        }
        assert!(!rl.allows(&attacker, t0 + 2 * SEC));
    }

    #[test]
    fn full_buckets_are_dropped_first() {
        let rl = RateLimiter::new(1, SEC, 4);
        let t0 = Instant::now();
        for k in 0..4u8 {
            rl.check(&k, t0);
        }
        // By now every bucket has refilled: room is made without touching
        // anything that still limits someone.
        rl.check(&9u8, t0 + 5 * SEC);
        assert_eq!(rl.len(), 1);
    }

    #[test]
    fn shared_across_threads() {
        let rl = std::sync::Arc::new(RateLimiter::new(100, Duration::from_secs(60), 10_000));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let rl = rl.clone();
                std::thread::spawn(move || (0..50).filter(|_| rl.check(&"shared", t0)).count())
            })
            .collect();
        let passed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(passed, 100);
    }
}
