//! An adaptive jitter buffer for one incoming RTP stream.
//!
//! Packets are held by extended sequence number in a fixed ring of slots
//! and played one per pull. Playout starts once the buffer spans the
//! target delay; an underrun (nothing left to play) pauses playout until
//! it spans the target again, which is how the delay grows after a spike.
//! The target follows the RFC 3550 interarrival jitter estimate (three
//! times it, plus a packet) between a minimum and a maximum, and a buffer
//! that has stayed deeper than needed for a whole second drops one frame:
//! the delay shrinks back without audible gaps.
//!
//! Pure and deterministic: arrival instants come from the caller, and
//! nothing allocates once every slot has held a packet.

use std::time::{Duration, Instant};

use crate::rtp::{extend_seq, ts_delta};

/// Payloads larger than this are refused (a G.711 packet of 120 ms is
/// 960 bytes; an Opus frame at most 1275).
pub const MAX_PAYLOAD: usize = 1500;
/// A sequence jump this far ahead (RFC 3550 A.1: about a minute of 20 ms
/// packets) is not believed until the next packet follows it.
const MAX_DROPOUT: u64 = 3000;
/// This far behind, a packet is not late but a restarted sender.
const MAX_MISORDER: u64 = 100;
/// Pulls over which the minimum depth is watched before shrinking.
const SHRINK_WINDOW: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// The stream's RTP clock rate.
    pub clock_rate: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            clock_rate: 8000,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// What one pull gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout<'a> {
    /// The next packet's payload.
    Frame(&'a [u8]),
    /// A frame is due but lost, late, or the buffer ran dry: conceal it.
    Missing,
    /// The stream has not started (nothing received since the last reset).
    Empty,
}

/// What became of a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Already held.
    Duplicate,
    /// Its turn to play has passed.
    Late,
    /// Larger than [`MAX_PAYLOAD`].
    TooLarge,
    /// A wild sequence jump, dropped unless the next packet confirms it.
    Jump,
}

/// Counters since creation (resets do not clear them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub queued: u64,
    pub played: u64,
    /// Frames concealed: lost, or the buffer empty while playing.
    pub missing: u64,
    pub late: u64,
    pub duplicate: u64,
    pub too_large: u64,
    pub jumps: u64,
    /// Packets thrown away to keep the delay under the maximum or to
    /// shrink it to the target.
    pub discarded: u64,
    /// New streams (SSRC change, confirmed sequence jump).
    pub resets: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Buffering,
    Playing,
}

#[derive(Debug, Default)]
struct Slot {
    seq: Option<u64>,
    timestamp: u32,
    data: Vec<u8>,
}

#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    slots: Vec<Slot>,
    ssrc: Option<u32>,
    state: State,
    /// Whether anything was played since the last reset: before that a
    /// dry buffer is `Empty`, after it `Missing`.
    started: bool,
    /// Extended sequence number of the next packet to play.
    next: u64,
    /// Highest extended sequence number held or played.
    highest: u64,
    /// The sequence number that would confirm a jump.
    probation: Option<u16>,
    /// Timestamp units per packet, learnt from consecutive packets.
    packet_ticks: u32,
    /// RFC 3550 interarrival jitter, timestamp units.
    jitter: f64,
    last_arrival: Option<(Instant, u32)>,
    window_pulls: u32,
    window_min_depth: u64,
    stats: JitterStats,
}

/// Extended numbers start here, far from zero, so nothing underflows.
const BASE: u64 = 1 << 32;

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> JitterBuffer {
        // Enough slots for the maximum delay in 5 ms packets, and a burst.
        let max_ms = config.max_delay.as_millis().min(10_000) as usize;
        let slots = (max_ms / 5 + 16).max(64);
        JitterBuffer {
            config,
            slots: (0..slots).map(|_| Slot::default()).collect(),
            ssrc: None,
            state: State::Idle,
            started: false,
            next: BASE,
            highest: BASE,
            probation: None,
            packet_ticks: (config.clock_rate / 50).max(1),
            jitter: 0.0,
            last_arrival: None,
            window_pulls: 0,
            window_min_depth: u64::MAX,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The delay playout aims at now.
    pub fn target_delay(&self) -> Duration {
        self.ticks_to_duration(self.target_ticks())
    }

    /// How much audio is held (from the next packet to the newest).
    pub fn depth(&self) -> Duration {
        self.ticks_to_duration(self.depth_packets() * u64::from(self.packet_ticks))
    }

    /// The interarrival jitter estimate.
    pub fn jitter(&self) -> Duration {
        self.ticks_to_duration(self.jitter as u64)
    }

    /// Forgets the stream: the next packet starts a new one.
    pub fn reset(&mut self) {
        for slot in &mut self.slots {
            slot.seq = None;
        }
        self.ssrc = None;
        self.state = State::Idle;
        self.started = false;
        self.probation = None;
        self.last_arrival = None;
        self.window_pulls = 0;
        self.window_min_depth = u64::MAX;
        self.stats.resets += 1;
    }

    pub fn push(
        &mut self,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
        arrival: Instant,
    ) -> Pushed {
        if payload.len() > MAX_PAYLOAD {
            self.stats.too_large += 1;
            return Pushed::TooLarge;
        }
        if self.ssrc.is_some_and(|s| s != ssrc) {
            self.reset();
        }
        let ext = if self.state == State::Idle {
            self.ssrc = Some(ssrc);
            self.start_at(BASE + u64::from(seq));
            BASE + u64::from(seq)
        } else {
            let ext = extend_seq(self.highest, seq);
            let wild = ext > self.highest + MAX_DROPOUT || ext + MAX_MISORDER < self.next;
            if wild {
                if self.probation != Some(seq) {
                    self.probation = Some(seq.wrapping_add(1));
                    self.stats.jumps += 1;
                    return Pushed::Jump;
                }
                // Two in a row: the sender restarted its numbering.
                let ssrc = self.ssrc;
                self.reset();
                self.ssrc = ssrc;
                self.start_at(BASE + u64::from(seq));
                BASE + u64::from(seq)
            } else {
                ext
            }
        };
        self.probation = None;
        if ext < self.next {
            self.stats.late += 1;
            return Pushed::Late;
        }
        let capacity = self.slots.len() as u64;
        if ext >= self.next + capacity {
            // A burst beyond the ring: the oldest audio goes.
            self.discard_before(ext + 1 - capacity);
        }
        let index = (ext % capacity) as usize;
        if self.slots[index].seq == Some(ext) {
            self.stats.duplicate += 1;
            return Pushed::Duplicate;
        }
        self.learn_packet_ticks(ext, timestamp);
        let slot = &mut self.slots[index];
        slot.seq = Some(ext);
        slot.timestamp = timestamp;
        slot.data.clear();
        slot.data.extend_from_slice(payload);
        self.highest = self.highest.max(ext);
        self.stats.queued += 1;
        self.estimate_jitter(arrival, timestamp);
        // Never hold more than the maximum delay: a burst plays from
        // (near) its newest packet rather than seconds behind.
        let max_packets = self.duration_to_packets(self.config.max_delay);
        if self.depth_packets() > max_packets {
            let keep = self.target_packets();
            self.discard_before(self.highest + 1 - keep);
        }
        Pushed::Queued
    }

    /// The next 20 ms (one packet) of the stream.
    pub fn pop(&mut self) -> Playout<'_> {
        match self.state {
            State::Idle => return Playout::Empty,
            State::Buffering => {
                if self.depth_packets() < self.target_packets() {
                    return if self.started {
                        self.stats.missing += 1;
                        Playout::Missing
                    } else {
                        Playout::Empty
                    };
                }
                self.state = State::Playing;
                self.started = true;
            }
            State::Playing => {}
        }
        let depth = self.depth_packets();
        if depth == 0 {
            self.state = State::Buffering;
            self.stats.missing += 1;
            return Playout::Missing;
        }
        self.watch_depth(depth);
        let capacity = self.slots.len() as u64;
        let at = self.next;
        self.next += 1;
        let slot = &mut self.slots[(at % capacity) as usize];
        if slot.seq == Some(at) {
            slot.seq = None;
            self.stats.played += 1;
            Playout::Frame(&slot.data)
        } else {
            self.stats.missing += 1;
            Playout::Missing
        }
    }

    fn start_at(&mut self, ext: u64) {
        self.next = ext;
        self.highest = ext;
        self.state = State::Buffering;
    }

    /// Packets from the next to play to the newest, holes included.
    fn depth_packets(&self) -> u64 {
        if self.state == State::Idle || self.highest < self.next {
            0
        } else {
            self.highest + 1 - self.next
        }
    }

    /// Drops one frame when the buffer stayed deeper than needed for a
    /// whole window (the sender's clock is faster, or a spike is over).
    fn watch_depth(&mut self, depth: u64) {
        self.window_min_depth = self.window_min_depth.min(depth);
        self.window_pulls += 1;
        if self.window_pulls < SHRINK_WINDOW {
            return;
        }
        if self.window_min_depth > self.target_packets() + 1 {
            self.discard_before(self.next + 1);
        }
        self.window_pulls = 0;
        self.window_min_depth = u64::MAX;
    }

    /// Moves playout to `ext`, throwing away what is held before it.
    fn discard_before(&mut self, ext: u64) {
        for slot in &mut self.slots {
            if slot.seq.is_some_and(|s| s < ext) {
                slot.seq = None;
                self.stats.discarded += 1;
            }
        }
        self.next = self.next.max(ext);
    }

    fn learn_packet_ticks(&mut self, ext: u64, timestamp: u32) {
        let capacity = self.slots.len() as u64;
        let previous = &self.slots[((ext - 1) % capacity) as usize];
        if previous.seq == Some(ext - 1) {
            let step = ts_delta(timestamp, previous.timestamp);
            // Up to 120 ms packets; a jump (silence suppressed) says nothing.
            if step > 0 && step as u32 <= self.config.clock_rate / 8 {
                self.packet_ticks = step as u32;
            }
        }
    }

    fn estimate_jitter(&mut self, arrival: Instant, timestamp: u32) {
        if let Some((last_arrival, last_ts)) = self.last_arrival {
            let elapsed = arrival.saturating_duration_since(last_arrival);
            let elapsed_ticks =
                (elapsed.as_micros() * u128::from(self.config.clock_rate) / 1_000_000) as f64;
            let d = elapsed_ticks - f64::from(ts_delta(timestamp, last_ts));
            // One pause or clock step must not throw the estimate to the
            // maximum for seconds.
            let cap = self.duration_to_ticks(self.config.max_delay) as f64;
            self.jitter += (d.abs().min(cap) - self.jitter) / 16.0;
        }
        self.last_arrival = Some((arrival, timestamp));
    }

    fn target_ticks(&self) -> u64 {
        let wanted = u64::from(self.packet_ticks) + (3.0 * self.jitter) as u64;
        wanted.clamp(
            self.duration_to_ticks(self.config.min_delay),
            self.duration_to_ticks(self.config.max_delay).max(1),
        )
    }

    fn target_packets(&self) -> u64 {
        self.target_ticks()
            .div_ceil(u64::from(self.packet_ticks))
            .max(1)
    }

    fn duration_to_packets(&self, d: Duration) -> u64 {
        (self.duration_to_ticks(d) / u64::from(self.packet_ticks)).max(1)
    }

    fn duration_to_ticks(&self, d: Duration) -> u64 {
        let ticks = d.as_micros() * u128::from(self.config.clock_rate) / 1_000_000;
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    fn ticks_to_duration(&self, ticks: u64) -> Duration {
        let us = u128::from(ticks) * 1_000_000 / u128::from(self.config.clock_rate.max(1));
        Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 0xABCD;

    struct Feed {
        jb: JitterBuffer,
        t0: Instant,
    }

    impl Feed {
        fn new() -> Feed {
            Feed {
                jb: JitterBuffer::new(JitterConfig::default()),
                t0: Instant::now(),
            }
        }

        /// Pushes packet `seq` (payload = its number) arriving at `ms`.
        fn push(&mut self, seq: u16, ms: u64) -> Pushed {
            let ts = u32::from(seq).wrapping_mul(160);
            self.jb.push(
                SSRC,
                seq,
                ts,
                &seq.to_be_bytes(),
                self.t0 + Duration::from_millis(ms),
            )
        }

        fn pop(&mut self) -> Option<Option<u16>> {
            match self.jb.pop() {
                Playout::Frame(p) => Some(Some(u16::from_be_bytes([p[0], p[1]]))),
                Playout::Missing => Some(None),
                Playout::Empty => None,
            }
        }
    }

    #[test]
    fn nothing_received_is_empty_then_packets_play_in_order() {
        let mut f = Feed::new();
        assert_eq!(f.pop(), None);
        // Out of order within the delay: reordered.
        f.push(10, 0);
        f.push(12, 1);
        f.push(11, 2);
        assert_eq!(f.pop(), Some(Some(10)));
        assert_eq!(f.pop(), Some(Some(11)));
        assert_eq!(f.pop(), Some(Some(12)));
        // Ran dry while playing: conceal.
        assert_eq!(f.pop(), Some(None));
        assert_eq!(f.jb.stats().played, 3);
    }

    #[test]
    fn duplicates_and_late_packets_are_dropped_and_counted() {
        let mut f = Feed::new();
        for seq in 0..3 {
            assert_eq!(f.push(seq, u64::from(seq) * 20), Pushed::Queued);
        }
        assert_eq!(f.push(1, 60), Pushed::Duplicate);
        assert_eq!(f.pop(), Some(Some(0)));
        assert_eq!(f.pop(), Some(Some(1)));
        assert_eq!(f.push(0, 61), Pushed::Late);
        assert_eq!(f.push(1, 62), Pushed::Late);
        let s = f.jb.stats();
        assert_eq!((s.duplicate, s.late, s.queued), (1, 2, 3));
    }

    #[test]
    fn a_lost_packet_is_missing_in_its_place() {
        let mut f = Feed::new();
        for seq in [1, 2, 4, 5] {
            f.push(seq, u64::from(seq) * 20);
        }
        let played: Vec<_> = std::iter::from_fn(|| f.pop()).take(4).collect();
        assert_eq!(played, [Some(1), Some(2), None, Some(4)]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut f = Feed::new();
        let mut played = Vec::new();
        for (i, seq) in (65530u16..=65535).chain(0..6).enumerate() {
            f.push(seq, i as u64 * 20);
            played.extend(f.pop().flatten());
        }
        while let Some(Some(p)) = f.pop() {
            played.push(p);
        }
        let want: Vec<u16> = (65530u16..=65535).chain(0..6).collect();
        assert_eq!(played, want);
        assert_eq!(f.jb.stats().late, 0);
    }

    #[test]
    fn a_new_ssrc_starts_a_new_stream() {
        let mut f = Feed::new();
        f.push(100, 0);
        assert_eq!(f.pop(), Some(Some(100)));
        // Another source with lower numbers: not late, a fresh stream.
        let t = f.t0 + Duration::from_millis(20);
        assert_eq!(f.jb.push(7, 5, 0, &[0, 5], t), Pushed::Queued);
        assert_eq!(f.pop(), Some(Some(5)));
        assert_eq!(f.jb.stats().resets, 1);
    }

    #[test]
    fn a_sequence_jump_needs_confirming() {
        let mut f = Feed::new();
        f.push(100, 0);
        f.pop();
        assert_eq!(f.push(40_000, 10), Pushed::Jump);
        assert_eq!(f.push(101, 20), Pushed::Queued);
        assert_eq!(f.pop(), Some(Some(101)));
        // Two in a row: believed.
        assert_eq!(f.push(50_000, 30), Pushed::Jump);
        assert_eq!(f.push(50_001, 40), Pushed::Queued);
        assert_eq!(f.pop(), Some(Some(50_001)));
        assert_eq!(f.jb.stats().jumps, 2);
    }

    #[test]
    fn a_burst_cannot_grow_it_without_limit() {
        let mut f = Feed::new();
        let slots = f.jb.slots.len();
        for seq in 0..20_000u32 {
            f.push(seq as u16, 0);
        }
        assert_eq!(f.jb.slots.len(), slots);
        assert!(
            f.jb.depth() <= Duration::from_millis(200),
            "{:?}",
            f.jb.depth()
        );
        assert!(f.jb.slots.iter().all(|s| s.data.capacity() <= 16));
        // What plays is the newest audio.
        let first = f.pop().flatten().unwrap();
        assert!(first >= (20_000u32 - 11) as u16, "{first}");
        assert!(f.jb.stats().discarded > 19_000);
        // And oversize payloads never get in.
        let big = [0u8; MAX_PAYLOAD + 1];
        assert_eq!(f.jb.push(SSRC, 1, 0, &big, f.t0), Pushed::TooLarge);
    }

    #[test]
    fn the_target_grows_with_jitter_and_shrinks_back() {
        let mut f = Feed::new();
        assert_eq!(f.jb.target_delay(), Duration::from_millis(20));
        // Arrivals jittering up to 60 ms around their schedule.
        let mut state = 12345u64;
        for seq in 0..500u16 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let wobble = (state >> 33) % 60;
            f.push(seq, u64::from(seq) * 20 + wobble);
            f.pop();
        }
        let high = f.jb.target_delay();
        assert!(high >= Duration::from_millis(60), "{high:?}");
        assert!(high <= Duration::from_millis(200));
        // A burst deepens the buffer; then steady again: the estimate
        // decays, and the depth follows it down.
        for seq in 500..506u16 {
            f.push(seq, 10_100);
        }
        assert!(f.jb.depth() >= Duration::from_millis(120));
        for seq in 506..2000u16 {
            f.push(seq, u64::from(seq) * 20 + 100);
            f.pop();
        }
        assert_eq!(f.jb.target_delay(), Duration::from_millis(20));
        assert!(
            f.jb.depth() <= Duration::from_millis(60),
            "{:?}",
            f.jb.depth()
        );
        assert!(f.jb.stats().discarded > 0);
    }

    #[test]
    fn an_underrun_rebuilds_the_delay_before_playing_on() {
        let mut f = Feed::new();
        f.push(0, 0);
        assert_eq!(f.pop(), Some(Some(0)));
        // A 100 ms gap, then packets again.
        for _ in 0..5 {
            assert_eq!(f.pop(), Some(None));
        }
        f.push(1, 100);
        f.push(2, 101);
        assert_eq!(f.pop(), Some(Some(1)));
        assert_eq!(f.pop(), Some(Some(2)));
    }

    #[test]
    fn ptime_is_learnt_from_timestamps() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let t = Instant::now();
        for seq in 0..10u16 {
            jb.push(1, seq, u32::from(seq) * 80, &[0; 80], t);
        }
        assert_eq!(jb.packet_ticks, 80);
        assert_eq!(jb.depth(), Duration::from_millis(100));
    }
}
