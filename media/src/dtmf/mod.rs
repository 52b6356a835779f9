//! DTMF: RFC 4733 telephone-events out of band (payload, a receiver that
//! yields each key press once, a sender that packetises one), and an
//! in-band detector for carriers that leave the tones in the audio.

mod inband;

use std::time::Duration;

pub use inband::InbandDetector;

/// The events 0-15 of RFC 4733 §3.2, in event-code order.
const KEYS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// Row (low group) and column (high group) frequencies, Hz (ITU-T Q.23).
pub const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
pub const COLUMNS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// The keypad: row by row, column by column.
const PAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The key of telephone-event code `event` (only 0-15 are DTMF).
pub fn event_to_digit(event: u8) -> Option<char> {
    KEYS.get(usize::from(event)).copied()
}

/// The telephone-event code of a key; lowercase `a-d` are accepted.
pub fn digit_to_event(digit: char) -> Option<u8> {
    let digit = digit.to_ascii_uppercase();
    KEYS.iter().position(|&k| k == digit).map(|i| i as u8)
}

/// The (row, column) frequencies of a key.
pub fn frequencies(digit: char) -> Option<(f64, f64)> {
    let digit = digit.to_ascii_uppercase();
    PAD.iter().enumerate().find_map(|(r, row)| {
        row.iter()
            .position(|&k| k == digit)
            .map(|c| (ROWS[r], COLUMNS[c]))
    })
}

fn key_at(row: usize, column: usize) -> char {
    PAD[row][column]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("telephone-event payload of {0} bytes is shorter than 4")]
    TooShort(usize),
    #[error("{0:?} is not a DTMF key")]
    NotAKey(char),
    #[error("volume {0} is out of 0..=63")]
    Volume(u8),
}

/// One RFC 4733 telephone-event payload (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    /// The E bit: this packet reports the event's end.
    pub end: bool,
    /// Power level as -dBm0, 0..=63 (bigger is quieter).
    pub volume: u8,
    /// Duration so far in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event of a payload; what follows (RFC 2198
    /// redundancy is negotiated separately) is ignored.
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(DtmfError::TooShort(payload.len()));
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    pub fn write(&self) -> Result<[u8; 4], DtmfError> {
        if self.volume > 63 {
            return Err(DtmfError::Volume(self.volume));
        }
        let [d0, d1] = self.duration.to_be_bytes();
        Ok([self.event, (u8::from(self.end) << 7) | self.volume, d0, d1])
    }

    pub fn digit(&self) -> Option<char> {
        event_to_digit(self.event)
    }
}

/// Turns a stream of telephone-event packets into key presses, each once.
///
/// All packets of one event share its start's RTP timestamp (RFC 4733
/// §2.5.1), and events start at increasing timestamps. So a packet with a
/// timestamp newer than the last event's is a new key press, reported at
/// once (the first packet seen, whether or not it is the marked start,
/// which may be lost: the fastest answer for an IVR that stops a prompt);
/// everything else — the growing-duration updates, the three end packets,
/// late packets of an older event — is the same press or an old one.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    last: Option<Current>,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    timestamp: u32,
    event: u8,
    ended: bool,
    /// The longest duration reported for it.
    duration: u16,
}

/// A segment reported this long may be followed by a continuation: a key
/// is never held four seconds by accident, and a same-key press whose
/// start and the previous end were lost must not be taken for one.
const SEGMENT_FULL: u16 = 0x8000;

impl DtmfReceiver {
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// Feeds one packet (its marker bit, RTP timestamp and payload);
    /// returns the key when the packet starts a new DTMF press. Events
    /// other than 0-15 (flash, tones) are followed but yield nothing.
    pub fn receive(
        &mut self,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<Option<char>, DtmfError> {
        let event = TelephoneEvent::parse(payload)?;
        let current = Current {
            timestamp,
            event: event.event,
            ended: event.end,
            duration: event.duration,
        };
        if let Some(last) = &mut self.last {
            let age = crate::rtp::ts_delta(timestamp, last.timestamp);
            if age == 0 {
                last.ended |= event.end;
                last.duration = last.duration.max(event.duration);
                return Ok(None);
            }
            if age < 0 {
                return Ok(None);
            }
            // A key held past 65535 timestamp units (8 s at 8 kHz) goes on
            // in a new segment with a new timestamp and no marker
            // (§2.5.1.3): still the same press.
            if !marker && !last.ended && last.event == event.event && last.duration >= SEGMENT_FULL
            {
                *last = current;
                return Ok(None);
            }
        }
        self.last = Some(current);
        Ok(event.digit())
    }

    /// Forgets the stream (its source changed: timestamps start anew).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// One packet of an outgoing event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// Set on the first packet of the event.
    pub marker: bool,
    pub payload: TelephoneEvent,
}

/// The packets of one key press, one per packetisation interval: the
/// first marked, all at the event's start timestamp (the caller's), the
/// duration growing by an interval each, then the end three times (§2.5.1.4:
/// the end is what must not be lost).
#[derive(Debug, Clone)]
pub struct DtmfSender {
    event: u8,
    volume: u8,
    total: u16,
    step: u16,
    elapsed: u16,
    ends_sent: u8,
}

/// Copies of the end packet.
const END_PACKETS: u8 = 3;
/// The level of sent events: -10 dBm0, what phones send.
const SEND_VOLUME: u8 = 10;

impl DtmfSender {
    /// A press of `digit` lasting `duration`, for a stream with
    /// `clock_rate` and packets every `interval`. Durations beyond one
    /// event's 16-bit field (8 s at 8 kHz) are cut there; a press always
    /// lasts at least one interval.
    pub fn new(
        digit: char,
        duration: Duration,
        clock_rate: u32,
        interval: Duration,
    ) -> Result<DtmfSender, DtmfError> {
        let event = digit_to_event(digit).ok_or(DtmfError::NotAKey(digit))?;
        let units = |d: Duration| {
            let n = d.as_micros() * u128::from(clock_rate) / 1_000_000;
            u16::try_from(n).unwrap_or(u16::MAX)
        };
        let step = units(interval).max(1);
        Ok(DtmfSender {
            event,
            volume: SEND_VOLUME,
            total: units(duration).max(step),
            step,
            elapsed: 0,
            ends_sent: 0,
        })
    }

    /// The next packet, `None` once the last end packet has been given.
    pub fn next_packet(&mut self) -> Option<DtmfPacket> {
        if self.ends_sent == END_PACKETS {
            return None;
        }
        let marker = self.elapsed == 0;
        self.elapsed = self.elapsed.saturating_add(self.step).min(self.total);
        let end = self.elapsed == self.total;
        if end {
            self.ends_sent += 1;
        }
        Some(DtmfPacket {
            marker,
            payload: TelephoneEvent {
                event: self.event,
                end,
                volume: self.volume,
                duration: self.elapsed,
            },
        })
    }

    pub fn digit(&self) -> char {
        KEYS[usize::from(self.event)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_map_to_keys_and_frequencies() {
        assert_eq!(event_to_digit(0), Some('0'));
        assert_eq!(event_to_digit(10), Some('*'));
        assert_eq!(event_to_digit(11), Some('#'));
        assert_eq!(event_to_digit(15), Some('D'));
        assert_eq!(event_to_digit(16), None);
        for (i, k) in KEYS.iter().enumerate() {
            assert_eq!(digit_to_event(*k), Some(i as u8));
        }
        assert_eq!(digit_to_event('b'), Some(13));
        assert_eq!(digit_to_event('x'), None);
        assert_eq!(frequencies('5'), Some((770.0, 1336.0)));
        assert_eq!(frequencies('#'), Some((941.0, 1477.0)));
        assert_eq!(frequencies('D'), Some((941.0, 1633.0)));
        assert_eq!(frequencies('?'), None);
    }

    #[test]
    fn payload_round_trip_and_layout() {
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 1600,
        };
        let bytes = e.write().unwrap();
        assert_eq!(bytes, [11, 0x8A, 0x06, 0x40]);
        assert_eq!(TelephoneEvent::parse(&bytes).unwrap(), e);
        assert_eq!(e.digit(), Some('#'));
        // The R bit is ignored; longer payloads read their first event.
        let e2 = TelephoneEvent::parse(&[3, 0x4A, 0, 160, 9, 9]).unwrap();
        assert_eq!((e2.event, e2.end, e2.volume), (3, false, 10));
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(DtmfError::TooShort(3))
        );
        assert_eq!(
            TelephoneEvent { volume: 64, ..e }.write(),
            Err(DtmfError::Volume(64))
        );
    }

    fn packets(digit: char, ms: u64) -> Vec<DtmfPacket> {
        let mut s = DtmfSender::new(
            digit,
            Duration::from_millis(ms),
            8000,
            Duration::from_millis(20),
        )
        .unwrap();
        std::iter::from_fn(|| s.next_packet()).collect()
    }

    #[test]
    fn a_press_is_marked_then_grows_then_ends_three_times() {
        let p = packets('7', 100);
        let durations: Vec<u16> = p.iter().map(|p| p.payload.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        let ends: Vec<bool> = p.iter().map(|p| p.payload.end).collect();
        assert_eq!(ends, [false, false, false, false, true, true, true]);
        let markers: Vec<bool> = p.iter().map(|p| p.marker).collect();
        assert_eq!(markers, [true, false, false, false, false, false, false]);
        assert!(p.iter().all(|p| p.payload.event == 7));
        // A press shorter than an interval is one marked end, three times.
        let short = packets('1', 5);
        assert_eq!(short.len(), 3);
        assert!(short[0].marker && short.iter().all(|p| p.payload.end));
        assert!(!short[1].marker);
        // Too long for the duration field: cut at its maximum.
        let long = packets('1', 10_000);
        assert_eq!(long.last().unwrap().payload.duration, u16::MAX);
        assert!(DtmfSender::new('x', Duration::ZERO, 8000, Duration::from_millis(20)).is_err());
    }

    fn feed(rx: &mut DtmfReceiver, ts: u32, p: &DtmfPacket) -> Option<char> {
        rx.receive(p.marker, ts, &p.payload.write().unwrap())
            .unwrap()
    }

    #[test]
    fn each_press_is_reported_once() {
        let mut rx = DtmfReceiver::new();
        let mut got = Vec::new();
        for (i, digit) in "12#".chars().enumerate() {
            let ts = 1000 + i as u32 * 4000;
            for p in packets(digit, 100) {
                got.extend(feed(&mut rx, ts, &p));
            }
        }
        assert_eq!(got, ['1', '2', '#']);
    }

    #[test]
    fn lost_starts_lost_ends_and_late_packets_do_not_change_the_count() {
        let mut rx = DtmfReceiver::new();
        let five = packets('5', 100);
        // Start lost: the first update reports it.
        assert_eq!(feed(&mut rx, 100, &five[1]), Some('5'));
        assert_eq!(feed(&mut rx, 100, &five[2]), None);
        // All ends lost; the same key pressed again is a new timestamp.
        assert_eq!(feed(&mut rx, 900, &five[0]), Some('5'));
        for p in &five[1..] {
            assert_eq!(feed(&mut rx, 900, p), None);
        }
        // A straggler of the first press after the second: old, ignored.
        assert_eq!(feed(&mut rx, 100, &five[6]), None);
        // Only end packets of a short press arrive: reported once.
        let six = packets('6', 5);
        assert_eq!(feed(&mut rx, 2000, &six[1]), Some('6'));
        assert_eq!(feed(&mut rx, 2000, &six[2]), None);
        // Timestamps wrap.
        rx.reset();
        assert_eq!(feed(&mut rx, u32::MAX - 10, &five[0]), Some('5'));
        assert_eq!(feed(&mut rx, 5, &six[0]), Some('6'));
    }

    #[test]
    fn a_long_press_continues_in_new_segments() {
        let mut rx = DtmfReceiver::new();
        let start = packets('9', 100);
        assert_eq!(feed(&mut rx, 0, &start[0]), Some('9'));
        let mut full = start[1];
        full.payload.duration = u16::MAX;
        assert_eq!(feed(&mut rx, 0, &full), None);
        // The next segment: new timestamp, not marked, same event.
        let mut seg = start[1];
        seg.marker = false;
        assert_eq!(feed(&mut rx, 65535, &seg), None);
        // After the press ends, the same key is a new press.
        let mut end = start[4];
        end.payload.end = true;
        assert_eq!(feed(&mut rx, 65535, &end), None);
        assert_eq!(feed(&mut rx, 70000, &start[1]), Some('9'));
        // A short press whose end was lost, then the same key again with
        // its start lost: two presses, not a continuation.
        assert_eq!(feed(&mut rx, 80000, &start[1]), Some('9'));
    }

    #[test]
    fn other_events_and_garbage_yield_nothing() {
        let mut rx = DtmfReceiver::new();
        let flash = TelephoneEvent {
            event: 16,
            end: false,
            volume: 10,
            duration: 160,
        };
        assert_eq!(rx.receive(true, 10, &flash.write().unwrap()), Ok(None));
        assert_eq!(rx.receive(true, 20, &[1]), Err(DtmfError::TooShort(1)));
        rx.reset();
        let p = packets('0', 40);
        assert_eq!(feed(&mut rx, 0, &p[0]), Some('0'));
    }
}
