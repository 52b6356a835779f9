//! Load shedding: when the switch falls behind, new work is refused early
//! and cheaply so the work already admitted still finishes in time.
//!
//! Without it a SIP server past its capacity collapses: requests queue,
//! answers come after the clients' retransmission timers (500 ms on UDP),
//! the retransmissions add load, and goodput falls to a fraction of the
//! clean rate. The signal is the time a request waits before the switch
//! works on it, measured in the two places a queue can build:
//!
//! - the UDP **receive buffer**: the kernel stamps each datagram on arrival
//!   ([`super::receive_time`]), so its wait there is known when it is read;
//! - the runtime's **scheduling lag**: a probe task asks to wake every few
//!   milliseconds and measures how late it runs, which is the time any
//!   runnable task (a request being parsed, a guest call, a database answer
//!   coming back) waits behind the others;
//! - the **database**: the time the SIP path's reads and writes (credentials,
//!   bindings, messages) wait for their connection and writer
//!   ([`crate::store::Store::sip_wait`]); with a slow disk, or a database
//!   starved of CPU, that is where requests queue while the runtime idles.
//!
//! Like CoDel, the lowest wait of a 100 ms window counts: a burst that
//! clears within the window is not overload, a queue that never empties is.
//!
//! The controller is loss-based, like RFC 7339's default algorithm: a share
//! of *new* requests is answered 503 with Retry-After before anything else is
//! done with them. The share grows while the lowest lag of a window stays
//! above the target and shrinks once it is well below. What keeps priority:
//!
//! - responses, ACK, CANCEL, BYE and PRACK, and every in-dialog request (a
//!   To tag): they finish work already admitted;
//! - requests carrying credentials: the challenge they answer was admitted,
//!   so they are refused only when the lag is far past the target.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rsip::Method;

use super::util::{header_value, tag_of};
use crate::queue_wait::QueueWait;

/// How often the probe asks to wake.
const PROBE_EVERY: Duration = Duration::from_millis(5);
/// How often the shed share is adjusted, from the lowest lag seen meanwhile.
const WINDOW: Duration = Duration::from_millis(100);
/// Shares are in parts per million.
const WHOLE: u32 = 1_000_000;
/// Raised by this much per window over the target: full shedding in about a
/// second of sustained overload, but a few windows are enough for the share
/// 1.5–2× overload needs.
const RAISE: u32 = 100_000;
/// Lowered by this much per window well under the target: slower than the
/// rise, so the share settles instead of swinging.
const LOWER: u32 = 25_000;
/// Never every new request: a trickle keeps measuring what gets through.
const CEILING: u32 = 950_000;
/// Lag this many times the target refuses authenticated requests too.
const SEVERE: u32 = 4;

/// What the shedder decides for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Answer 503 with Retry-After, statelessly.
    Shed,
}

/// Which kind of new work a request is, for shedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Finishes work already admitted: never shed.
    Continuing,
    /// Answers a challenge: shed only in severe overload.
    Authenticated,
    /// New work.
    New,
}

impl Class {
    pub fn of(req: &rsip::Request) -> Self {
        if matches!(
            req.method,
            Method::Ack | Method::Cancel | Method::Bye | Method::PRack
        ) || header_value(&req.headers, "To").and_then(tag_of).is_some()
        {
            return Class::Continuing;
        }
        let credentials = req.headers.iter().any(|h| {
            matches!(
                h,
                rsip::Header::Authorization(_) | rsip::Header::ProxyAuthorization(_)
            )
        });
        if credentials {
            Class::Authenticated
        } else {
            Class::New
        }
    }
}

/// The shedder's state; shared by the receive paths and the probe.
#[derive(Debug)]
pub struct Overload {
    /// Zero: shedding is off.
    target: Duration,
    shed_ppm: AtomicU32,
    severe: AtomicBool,
    /// Lowest scheduling lag of the last window, µs (for `/metrics`).
    lag_us: AtomicU64,
    /// Receive-buffer waits of the window under way, and the lowest of the
    /// last one, µs (for `/metrics`).
    receive_queue: QueueWait,
    queue_us: AtomicU64,
    /// The database's waits, once attached, and the last window's lowest.
    database: OnceLock<Arc<QueueWait>>,
    db_us: AtomicU64,
    /// Spreads the shed requests evenly over time.
    sequence: AtomicU32,
    /// Requests answered 503 by class (new, authenticated).
    pub shed_new: AtomicU64,
    pub shed_authenticated: AtomicU64,
}

impl Overload {
    pub fn new(target: Duration) -> Self {
        Self {
            target,
            shed_ppm: AtomicU32::new(0),
            severe: AtomicBool::new(false),
            lag_us: AtomicU64::new(0),
            receive_queue: QueueWait::default(),
            queue_us: AtomicU64::new(0),
            database: OnceLock::new(),
            db_us: AtomicU64::new(0),
            sequence: AtomicU32::new(0),
            shed_new: AtomicU64::new(0),
            shed_authenticated: AtomicU64::new(0),
        }
    }

    /// Whether a new request is let in now; counts the refused. It is
    /// classed only while shedding: not overloaded, nothing is read of it.
    pub fn admit(&self, req: &rsip::Request) -> Admission {
        if self.shed_ppm.load(Ordering::Relaxed) == 0 {
            return Admission::Admit;
        }
        self.admit_class(Class::of(req))
    }

    /// Whether a request of this class is let in now; counts the refused.
    fn admit_class(&self, class: Class) -> Admission {
        let share = self.shed_ppm.load(Ordering::Relaxed);
        if share == 0 || class == Class::Continuing {
            return Admission::Admit;
        }
        if class == Class::Authenticated {
            if self.severe.load(Ordering::Relaxed) {
                self.shed_authenticated.fetch_add(1, Ordering::Relaxed);
                return Admission::Shed;
            }
            return Admission::Admit;
        }
        // The golden-ratio sequence: any window of consecutive requests has
        // its share shed, with no random number per request.
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let point = (u64::from(n.wrapping_mul(0x9E37_79B9)) * u64::from(WHOLE)) >> 32;
        if point < u64::from(share) {
            self.shed_new.fetch_add(1, Ordering::Relaxed);
            Admission::Shed
        } else {
            Admission::Admit
        }
    }

    /// The share of new requests being shed, 0..=1.
    pub fn shed_share(&self) -> f64 {
        f64::from(self.shed_ppm.load(Ordering::Relaxed)) / f64::from(WHOLE)
    }

    /// The lowest scheduling lag of the last window.
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.lag_us.load(Ordering::Relaxed))
    }

    /// The lowest wait in the UDP receive buffer of the last window.
    pub fn receive_queue_wait(&self) -> Duration {
        Duration::from_micros(self.queue_us.load(Ordering::Relaxed))
    }

    /// The lowest wait of the SIP path on the database in the last window.
    pub fn database_wait(&self) -> Duration {
        Duration::from_micros(self.db_us.load(Ordering::Relaxed))
    }

    /// A datagram waited `queued` in the receive buffer.
    pub fn observe_queue(&self, queued: Duration) {
        self.receive_queue.observe(queued);
    }

    /// Where the database's waits are recorded.
    pub fn attach_database(&self, waits: Arc<QueueWait>) {
        let _ = self.database.set(waits);
    }

    /// Ends a window: the lowest receive-buffer and database waits it saw
    /// (zero where nothing queued).
    fn take_waits(&self) -> (Duration, Duration) {
        let database = self.database.get().and_then(|d| d.take());
        (
            self.receive_queue.take().unwrap_or_default(),
            database.unwrap_or_default(),
        )
    }

    /// One window's verdict from the lowest scheduling lag, receive-buffer
    /// wait and database wait it saw: the longest is the queue.
    fn adjust(&self, lag: Duration, (queued, database): (Duration, Duration)) {
        let micros = |d: Duration| d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.lag_us.store(micros(lag), Ordering::Relaxed);
        self.queue_us.store(micros(queued), Ordering::Relaxed);
        self.db_us.store(micros(database), Ordering::Relaxed);
        let lag = lag.max(queued).max(database);
        let share = self.shed_ppm.load(Ordering::Relaxed);
        let share = if lag > self.target {
            share.saturating_add(RAISE).min(CEILING)
        } else if lag < self.target / 2 {
            share.saturating_sub(LOWER)
        } else {
            share
        };
        self.shed_ppm.store(share, Ordering::Relaxed);
        self.severe
            .store(lag > self.target * SEVERE, Ordering::Relaxed);
        if share > 0 {
            tracing::debug!(
                lag_ms = lag.as_millis() as u64,
                shed_share = share,
                "overloaded"
            );
        }
    }

    /// Starts the probe (not when shedding is off). It runs on the same
    /// runtime as the SIP tasks, so it waits in the same queue.
    pub fn spawn_probe(self: &Arc<Self>) {
        if self.target.is_zero() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut window = Window::new(Instant::now());
            loop {
                let asked = Instant::now();
                tokio::time::sleep(PROBE_EVERY).await;
                let woke = Instant::now();
                let lag = woke
                    .saturating_duration_since(asked)
                    .saturating_sub(PROBE_EVERY);
                if let Some(lowest) = window.record(lag, woke) {
                    me.adjust(lowest, me.take_waits());
                }
            }
        });
    }
}

/// The lowest lag over a window: a burst that clears by itself within the
/// window is not overload; a queue that never empties is.
#[derive(Debug)]
struct Window {
    started: Instant,
    lowest: Option<Duration>,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            lowest: None,
        }
    }

    /// Adds a sample; at the end of a window, returns its lowest lag.
    fn record(&mut self, lag: Duration, now: Instant) -> Option<Duration> {
        let lowest = self.lowest.map_or(lag, |l| l.min(lag));
        if now.saturating_duration_since(self.started) >= WINDOW {
            *self = Self::new(now);
            Some(lowest)
        } else {
            self.lowest = Some(lowest);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> rsip::Request {
        rsip::Request::try_from(raw.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\n\
        From: <sip:alice@example.com>;tag=a\n\
        To: <sip:bob@example.com>\n\
        Call-ID: c1\n\
        CSeq: 1 INVITE\n\
        Content-Length: 0\n\n";

    fn shed_share_of(overload: &Overload, class: Class, n: usize) -> f64 {
        let shed = (0..n)
            .filter(|_| overload.admit_class(class) == Admission::Shed)
            .count();
        shed as f64 / n as f64
    }

    #[test]
    fn requests_are_classed_by_what_they_finish() {
        assert_eq!(Class::of(&request(INVITE)), Class::New);
        let with_auth = INVITE.replace(
            "Content-Length",
            "Proxy-Authorization: Digest username=\"alice\", realm=\"x\", nonce=\"n\", uri=\"sip:bob@example.com\", response=\"r\"\nContent-Length",
        );
        assert_eq!(Class::of(&request(&with_auth)), Class::Authenticated);
        let in_dialog = INVITE.replace(
            "To: <sip:bob@example.com>",
            "To: <sip:bob@example.com>;tag=b",
        );
        assert_eq!(Class::of(&request(&in_dialog)), Class::Continuing);
        let cancel = INVITE
            .replace("INVITE sip", "CANCEL sip")
            .replace("1 INVITE", "1 CANCEL");
        assert_eq!(Class::of(&request(&cancel)), Class::Continuing);
    }

    #[test]
    fn nothing_is_shed_until_the_lag_passes_the_target() {
        let o = Overload::new(Duration::from_millis(30));
        o.adjust(Duration::from_millis(20), (Duration::ZERO, Duration::ZERO));
        assert_eq!(shed_share_of(&o, Class::New, 1000), 0.0);
        o.adjust(Duration::from_millis(40), (Duration::ZERO, Duration::ZERO));
        let share = shed_share_of(&o, Class::New, 1000);
        assert!((share - 0.1).abs() < 0.01, "{share}");
        assert_eq!(shed_share_of(&o, Class::Continuing, 100), 0.0);
        assert_eq!(shed_share_of(&o, Class::Authenticated, 100), 0.0);
        assert_eq!(o.shed_new.load(Ordering::Relaxed), (share * 1000.0) as u64);
    }

    #[test]
    fn sustained_overload_raises_the_share_to_its_ceiling_and_recovery_lowers_it() {
        let o = Overload::new(Duration::from_millis(30));
        for _ in 0..50 {
            o.adjust(Duration::from_millis(60), (Duration::ZERO, Duration::ZERO));
        }
        assert_eq!(o.shed_share(), 0.95);
        // Between half the target and the target: held.
        o.adjust(Duration::from_millis(20), (Duration::ZERO, Duration::ZERO));
        assert_eq!(o.shed_share(), 0.95);
        for _ in 0..10 {
            o.adjust(Duration::from_millis(2), (Duration::ZERO, Duration::ZERO));
        }
        assert!((o.shed_share() - 0.70).abs() < 1e-9, "{}", o.shed_share());
        for _ in 0..100 {
            o.adjust(Duration::from_millis(2), (Duration::ZERO, Duration::ZERO));
        }
        assert_eq!(o.shed_share(), 0.0);
        assert_eq!(shed_share_of(&o, Class::New, 100), 0.0);
    }

    #[test]
    fn severe_lag_refuses_answers_to_challenges_but_never_what_finishes_work() {
        let o = Overload::new(Duration::from_millis(30));
        o.adjust(Duration::from_millis(200), (Duration::ZERO, Duration::ZERO));
        assert_eq!(shed_share_of(&o, Class::Authenticated, 10), 1.0);
        assert_eq!(shed_share_of(&o, Class::Continuing, 10), 0.0);
        o.adjust(Duration::from_millis(60), (Duration::ZERO, Duration::ZERO));
        assert_eq!(shed_share_of(&o, Class::Authenticated, 10), 0.0);
        assert_eq!(o.shed_authenticated.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn a_receive_buffer_that_never_empties_is_overload_too() {
        let o = Overload::new(Duration::from_millis(30));
        // No datagram in the window: no wait.
        assert_eq!(o.take_waits(), (Duration::ZERO, Duration::ZERO));
        for ms in [400, 90, 250, 120] {
            o.observe_queue(Duration::from_millis(ms));
        }
        let waits = o.take_waits();
        assert_eq!(waits, (Duration::from_millis(90), Duration::ZERO));
        o.adjust(Duration::from_millis(1), waits);
        assert!(o.shed_share() > 0.0);
        assert_eq!(o.receive_queue_wait(), Duration::from_millis(90));
        // The next window starts empty.
        assert_eq!(o.take_waits(), (Duration::ZERO, Duration::ZERO));
    }

    #[test]
    fn a_database_that_keeps_the_sip_path_waiting_is_overload_too() {
        let o = Overload::new(Duration::from_millis(30));
        let db = Arc::new(QueueWait::default());
        o.attach_database(db.clone());
        for ms in [3000, 800, 900, 1000] {
            db.observe(Duration::from_millis(ms));
        }
        let waits = o.take_waits();
        assert_eq!(waits, (Duration::ZERO, Duration::from_millis(800)));
        o.adjust(Duration::from_millis(1), waits);
        assert!(o.shed_share() > 0.0);
        // Far past the target: answers to challenges wait too.
        assert_eq!(o.admit_class(Class::Authenticated), Admission::Shed);
        assert_eq!(o.database_wait(), Duration::from_millis(800));
    }

    #[test]
    fn a_window_reports_its_lowest_lag_once_it_is_over() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        assert_eq!(
            w.record(Duration::from_millis(50), t0 + Duration::from_millis(10)),
            None
        );
        assert_eq!(
            w.record(Duration::from_millis(5), t0 + Duration::from_millis(50)),
            None
        );
        assert_eq!(
            w.record(Duration::from_millis(80), t0 + Duration::from_millis(100)),
            Some(Duration::from_millis(5))
        );
        // A new window starts empty.
        assert_eq!(
            w.record(Duration::from_millis(70), t0 + Duration::from_millis(200)),
            Some(Duration::from_millis(70))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_runtime_is_seen_and_shed_then_released() {
        let o = Arc::new(Overload::new(Duration::from_millis(20)));
        o.spawn_probe();
        // Keep both workers busy with tasks that never yield for 50 ms: the
        // probe waits behind them.
        let busy = Arc::new(AtomicBool::new(true));
        let mut hogs = Vec::new();
        for _ in 0..8 {
            let busy = busy.clone();
            hogs.push(tokio::spawn(async move {
                while busy.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    tokio::task::yield_now().await;
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while o.shed_share() == 0.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(o.shed_share() > 0.0, "lag {:?}", o.lag());
        busy.store(false, Ordering::Relaxed);
        for h in hogs {
            h.await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while o.shed_share() > 0.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(o.shed_share(), 0.0, "lag {:?}", o.lag());
    }
}
