//! RTCP reports (RFC 3550 §6) an endpoint sends its peer: a sender report
//! with one reception report block for the stream it hears, and an SDES
//! CNAME, as one compound packet. Sans-io: the endpoint records what it
//! hears and asks for a packet when one is due.
//!
//! Only a browser's leg sends them (over SRTCP, multiplexed): browsers
//! take their round-trip time, loss and jitter figures (`getStats`'
//! remote-inbound-rtp, and the audio encoder's adaptation) from them.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::rtp;

const VERSION_BITS: u8 = 0x80;
const PT_SR: u8 = 200;
const PT_SDES: u8 = 202;
const SDES_CNAME: u8 = 1;
/// Seconds between 1900 (NTP's epoch) and 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What is known of the stream heard (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone)]
pub struct Reception {
    ssrc: u32,
    base: u64,
    highest: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in timestamp units, ×16 (A.8's fixed point).
    jitter16: u64,
    last_transit: Option<i64>,
    clock_rate: u32,
    started: Instant,
}

impl Reception {
    pub fn new(ssrc: u32, sequence: u16, clock_rate: u32, now: Instant) -> Reception {
        Reception {
            ssrc,
            base: u64::from(sequence),
            highest: u64::from(sequence),
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter16: 0,
            last_transit: None,
            clock_rate,
            started: now,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// A packet of the stream arrived at `now`.
    pub fn record(&mut self, sequence: u16, timestamp: u32, now: Instant) {
        let ext = rtp::extend_seq(self.highest, sequence);
        self.highest = self.highest.max(ext);
        self.received += 1;
        let arrival =
            now.saturating_duration_since(self.started).as_secs_f64() * f64::from(self.clock_rate);
        // Wrapping difference: only changes of the transit time count.
        let transit = (arrival as i64 as u32).wrapping_sub(timestamp) as i32 as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, kept ×16.
            self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// The report block (24 bytes); moves the interval's counters on.
    fn block(&mut self, last_sr: Option<(u32, Instant)>, now: Instant, out: &mut Vec<u8>) {
        let expected = self.highest - self.base + 1;
        let lost = expected.saturating_sub(self.received).min(0x7F_FFFF);
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.push(fraction);
        out.extend_from_slice(&(lost as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&(self.highest as u32).to_be_bytes());
        out.extend_from_slice(&((self.jitter16 >> 4) as u32).to_be_bytes());
        let (lsr, dlsr) = match last_sr {
            Some((lsr, at)) => {
                let delay = now.saturating_duration_since(at).as_secs_f64() * 65536.0;
                (lsr, delay.min(f64::from(u32::MAX)) as u32)
            }
            None => (0, 0),
        };
        out.extend_from_slice(&lsr.to_be_bytes());
        out.extend_from_slice(&dlsr.to_be_bytes());
    }
}

/// What the sender side counted since the stream began.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub packets: u32,
    pub octets: u32,
    /// The RTP timestamp of the latest packet.
    pub timestamp: u32,
}

/// The NTP timestamp of `now` (wall clock): seconds since 1900, 32.32.
pub fn ntp_now() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an incoming sender report's NTP timestamp (its
/// LSR for our next report block), if `packet` (plain RTCP) starts with one.
pub fn sender_report_lsr(packet: &[u8]) -> Option<u32> {
    if packet.len() < 28 || packet[0] >> 6 != 2 || packet[1] != PT_SR {
        return None;
    }
    Some(u32::from_be_bytes([
        packet[10], packet[11], packet[12], packet[13],
    ]))
}

/// A compound packet: SR (with a block for `heard`, when there is one)
/// then SDES with `cname`, into `out` (cleared first).
pub fn compound(
    ssrc: u32,
    sent: Sent,
    heard: Option<&mut Reception>,
    last_sr: Option<(u32, Instant)>,
    cname: &str,
    now: Instant,
    out: &mut Vec<u8>,
) {
    out.clear();
    let blocks = u8::from(heard.is_some());
    out.push(VERSION_BITS | blocks);
    out.push(PT_SR);
    out.extend_from_slice(&(6 + 6 * u16::from(blocks)).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&ntp_now().to_be_bytes());
    out.extend_from_slice(&sent.timestamp.to_be_bytes());
    out.extend_from_slice(&sent.packets.to_be_bytes());
    out.extend_from_slice(&sent.octets.to_be_bytes());
    if let Some(heard) = heard {
        heard.block(last_sr, now, out);
    }
    // SDES: one chunk, CNAME then END, padded to a 32-bit boundary.
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let chunk = 4 + 2 + cname.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    out.push(VERSION_BITS | 1);
    out.push(PT_SDES);
    out.extend_from_slice(&((padded / 4) as u16).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(SDES_CNAME);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.resize(out.len() + padded - chunk + 1, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_compound_report_is_a_sender_report_with_a_block_then_sdes() {
        let t0 = Instant::now();
        let mut heard = Reception::new(0xABCD, 65530, 8000, t0);
        // 65530..=65535, then 2..=5 (0 and 1 lost), 20 ms apart.
        let seqs: Vec<u16> = (65530..=65535).chain(2..=5).collect();
        for (i, seq) in seqs.iter().enumerate() {
            let at = t0 + Duration::from_millis(20 * i as u64);
            heard.record(*seq, 1000 + 160 * i as u32, at);
        }
        let sent = Sent {
            packets: 7,
            octets: 7 * 160,
            timestamp: 4242,
        };
        let mut out = Vec::new();
        let sr_at = t0 + Duration::from_millis(100);
        let now = t0 + Duration::from_millis(600);
        compound(
            1,
            sent,
            Some(&mut heard),
            Some((0x1234_5678, sr_at)),
            "sw",
            now,
            &mut out,
        );
        assert_eq!(out.len() % 4, 0);
        assert!(rtp::is_rtcp(&out));
        assert_eq!((out[0], out[1]), (0x81, 200));
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 12);
        assert_eq!(&out[16..20], &4242u32.to_be_bytes());
        assert_eq!(&out[20..24], &7u32.to_be_bytes());
        assert_eq!(&out[24..28], &(7u32 * 160).to_be_bytes());
        let block = &out[28..52];
        assert_eq!(&block[0..4], &0xABCDu32.to_be_bytes());
        // 12 expected, 10 received: 2 lost, fraction 2/12 × 256 = 42.
        assert_eq!(block[4], 42);
        assert_eq!(&block[5..8], &[0, 0, 2]);
        // Extended highest: one cycle, sequence 5.
        assert_eq!(
            u32::from_be_bytes(block[8..12].try_into().unwrap()),
            0x1_0005
        );
        // Evenly spaced packets: no jitter.
        assert_eq!(u32::from_be_bytes(block[12..16].try_into().unwrap()), 0);
        assert_eq!(&block[16..20], &0x1234_5678u32.to_be_bytes());
        // 0.5 s in 1/65536 s.
        let dlsr = u32::from_be_bytes(block[20..24].try_into().unwrap());
        assert!((32_700..=32_800).contains(&dlsr), "{dlsr}");
        let sdes = &out[52..];
        assert_eq!((sdes[0], sdes[1]), (0x81, 202));
        assert_eq!(
            usize::from(u16::from_be_bytes([sdes[2], sdes[3]])) * 4 + 4,
            sdes.len()
        );
        assert_eq!(&sdes[8..12], &[1, 2, b's', b'w']);
        assert_eq!(sdes[12], 0);
        // The next interval saw nothing new: no fraction lost.
        compound(1, sent, Some(&mut heard), None, "sw", now, &mut out);
        assert_eq!(out[28 + 4], 0);
    }

    #[test]
    fn jitter_follows_uneven_arrivals_and_sender_reports_are_read() {
        let t0 = Instant::now();
        let mut heard = Reception::new(7, 1, 8000, t0);
        for i in 0..50u32 {
            // Every other packet 10 ms late: |D| = 80 units each time.
            let late = if i % 2 == 1 { 10 } else { 0 };
            let at = t0 + Duration::from_millis(u64::from(20 * i + late));
            heard.record(1 + i as u16, 160 * i, at);
        }
        let mut out = Vec::new();
        compound(
            1,
            Sent::default(),
            Some(&mut heard),
            None,
            "x",
            t0,
            &mut out,
        );
        let jitter = u32::from_be_bytes(out[40..44].try_into().unwrap());
        assert!((60..=80).contains(&jitter), "{jitter}");
        assert_eq!(
            sender_report_lsr(&out),
            Some(u32::from_be_bytes(out[10..14].try_into().unwrap()))
        );
        assert_eq!(sender_report_lsr(&out[..20]), None);
        // No stream heard yet: a sender report without blocks.
        compound(1, Sent::default(), None, None, "x", t0, &mut out);
        assert_eq!((out[0], u16::from_be_bytes([out[2], out[3]])), (0x80, 6));
    }
}
