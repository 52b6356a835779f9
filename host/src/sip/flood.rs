//! Per-source request limits, like Kamailio's pike: one address sending
//! requests far faster than any honest client gets the excess dropped
//! before it is parsed, so a flood costs a receive and a lock, and other
//! addresses are served as if it were not there.
//!
//! Only requests count (a message starting with a letter, but not `SIP/`):
//! responses belong to transactions the switch started, and dropping them
//! would only make it retransmit; keep-alives (CRLF, STUN) are how the
//! handsets behind one carrier-grade NAT address hold their flows.
//! Addresses in the exempt networks (the gateways, a proxy or SBC in front
//! of the switch, loopback by default) are never limited.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::ratelimit::RateLimiter;

/// Source addresses tracked at most; beyond, the fullest buckets (the
/// quietest addresses) are forgotten first.
const MAX_SOURCES: usize = 100_000;
/// One warning per limited address per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct FloodGuard {
    /// `None`: limits off.
    requests: Option<RateLimiter<IpAddr>>,
    exempt: Vec<IpNet>,
    warned: RateLimiter<IpAddr>,
    /// Requests dropped for being over their address's limit.
    pub dropped: AtomicU64,
}

impl FloodGuard {
    /// `rate` requests per second per address with bursts of `burst`; a rate
    /// of zero turns the limit off.
    pub fn new(rate: u32, burst: u32, exempt: Vec<IpNet>) -> Self {
        let requests = (rate > 0).then(|| {
            RateLimiter::new(
                burst.max(1),
                Duration::from_nanos(1_000_000_000 / u64::from(rate)),
                MAX_SOURCES,
            )
        });
        Self {
            requests,
            exempt,
            warned: RateLimiter::new(1, WARN_EVERY, MAX_SOURCES),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether a message from `source` goes on to the parser.
    pub fn admits(&self, source: IpAddr, message: &[u8], now: Instant) -> bool {
        self.admits_unless_trusted(source, message, now, || false)
    }

    /// Like [`FloodGuard::admits`], with `trusted` saying whether the sender
    /// is exempt for what it is rather than where it is (another node of
    /// the cluster). Asked only for a request that would be counted, so it
    /// costs nothing for responses, keep-alives and exempt networks.
    pub fn admits_unless_trusted(
        &self,
        source: IpAddr,
        message: &[u8],
        now: Instant,
        trusted: impl FnOnce() -> bool,
    ) -> bool {
        let Some(requests) = &self.requests else {
            return true;
        };
        let request =
            message.first().is_some_and(u8::is_ascii_alphabetic) && !message.starts_with(b"SIP/");
        if !request || self.exempt.iter().any(|n| n.contains(&source)) || trusted() {
            return true;
        }
        if requests.check(&source, now) {
            return true;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if self.warned.check(&source, now) {
            tracing::warn!(%source, "source over its request rate (sip.flood_rate): its excess requests are dropped");
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_past_its_burst_is_cut_to_its_rate_and_others_are_untouched() {
        let guard = FloodGuard::new(100, 20, vec![]);
        let now = Instant::now();
        let flood = ip("192.0.2.66");
        let admitted = (0..1000)
            .filter(|_| guard.admits(flood, REGISTER, now))
            .count();
        assert_eq!(admitted, 20);
        assert_eq!(guard.dropped.load(Ordering::Relaxed), 980);
        // Its responses and keep-alives still pass; another address is served.
        assert!(guard.admits(flood, OK, now));
        assert!(guard.admits(flood, b"\r\n\r\n", now));
        assert!(guard.admits(ip("192.0.2.7"), REGISTER, now));
        // A tenth of a second later it has earned ten more.
        let later = now + Duration::from_millis(100);
        let admitted = (0..1000)
            .filter(|_| guard.admits(flood, REGISTER, later))
            .count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn exempt_networks_trusted_senders_and_a_zero_rate_are_never_limited() {
        let guard = FloodGuard::new(10, 1, vec!["127.0.0.0/8".parse().unwrap()]);
        let now = Instant::now();
        assert!((0..100).all(|_| guard.admits(ip("127.0.0.1"), REGISTER, now)));
        assert!(!(0..100).all(|_| guard.admits(ip("198.51.100.1"), REGISTER, now)));
        let trusted = FloodGuard::new(10, 1, vec![]);
        let from = ip("198.51.100.2");
        assert!((0..100).all(|_| trusted.admits_unless_trusted(from, REGISTER, now, || true)));
        assert!(!(0..100).all(|_| trusted.admits_unless_trusted(from, REGISTER, now, || false)));
        let off = FloodGuard::new(0, 0, vec![]);
        assert!((0..100).all(|_| off.admits(ip("198.51.100.1"), REGISTER, now)));
    }
}
