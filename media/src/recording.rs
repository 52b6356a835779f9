//! Call recording: the audio of both directions of a relayed call, put on
//! one timeline and written as one 8 kHz 16-bit track (both directions
//! mixed) or two (left the caller, right the callee).
//!
//! Sans-io: [`CallRecorder::push`] takes each RTP packet the relay carried
//! with its arrival time; [`CallRecorder::take_ready`] hands out the audio
//! that can no longer change (older than [`LATENESS`]), which the caller
//! stores as it goes, so a crash loses no more than what was not yet taken.
//!
//! A packet's place on the timeline is its side's first packet's arrival
//! plus how far its RTP timestamp is past that packet's: network jitter
//! does not move audio about, and a lost packet leaves silence of its own
//! length. A new SSRC, or a timestamp that strays more than
//! [`RESYNC_AFTER`] from the arrival clock (a re-INVITE to another source,
//! a peer whose clock drifts), takes the side's timeline again from the
//! arrival time.

use std::collections::VecDeque;

use crate::codec::{Codec, Decoder, SAMPLE_RATE};
use crate::relay::Side;
use crate::rtp::Packet;

/// How the two directions are laid out in the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// One channel: both directions added.
    Mixed,
    /// Two channels, interleaved: left the caller (side A), right the callee.
    Stereo,
}

impl Layout {
    pub const fn channels(self) -> u16 {
        match self {
            Layout::Mixed => 1,
            Layout::Stereo => 2,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Layout::Mixed => "mixed",
            Layout::Stereo => "stereo",
        }
    }
}

impl std::str::FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Layout, String> {
        match s {
            "mixed" => Ok(Layout::Mixed),
            "stereo" => Ok(Layout::Stereo),
            other => Err(format!(
                "{other:?} is not a recording layout (mixed, stereo)"
            )),
        }
    }
}

/// How long audio waits for late packets before it is handed out.
pub const LATENESS_MS: u64 = 300;
/// Samples per millisecond at the recording's rate.
const PER_MS: u64 = SAMPLE_RATE as u64 / 1000;
/// Timestamp drift from the arrival clock that re-anchors a side.
pub const RESYNC_AFTER_MS: u64 = 1000;
/// Drift of PCM frames from their arrival that re-anchors a side: more
/// than a bridge holds (160 ms).
pub const PCM_RESYNC_MS: u64 = 200;

/// What was dropped rather than recorded, for the logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecorderStats {
    pub packets: u64,
    /// Not RTP, or a payload type neither SDP named (DTMF events, comfort
    /// noise, garbage).
    pub unknown: u64,
    /// Arrived after their place had been handed out.
    pub late: u64,
    pub resyncs: u64,
}

/// One direction's decoded audio from `start` (a sample index on the
/// recording's timeline) onwards; holes are silence.
struct Track {
    /// By payload type, made on first use.
    decoders: Vec<(u8, Box<dyn Decoder>)>,
    anchor: Option<Anchor>,
    /// Where the last decoded frame given as PCM ended ([`CallRecorder::push_pcm`]).
    pcm_next: Option<u64>,
    start: u64,
    samples: VecDeque<i16>,
    scratch: Vec<i16>,
}

#[derive(Clone, Copy)]
struct Anchor {
    ssrc: u32,
    /// The RTP timestamp at `at` samples, in the codec's clock.
    timestamp: u32,
    at: u64,
    clock_rate: u32,
}

impl Track {
    fn new() -> Track {
        Track {
            decoders: Vec::new(),
            anchor: None,
            pcm_next: None,
            start: 0,
            samples: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    /// Writes `audio` at sample index `at`, over silence or earlier audio;
    /// what falls before `start` is gone (returns false if all of it was).
    fn write(&mut self, at: u64, audio: &[i16]) -> bool {
        let end = at + audio.len() as u64;
        if end <= self.start {
            return false;
        }
        let skip = self.start.saturating_sub(at) as usize;
        let offset = (at.max(self.start) - self.start) as usize;
        let need = offset + audio.len() - skip;
        if self.samples.len() < need {
            self.samples.resize(need, 0);
        }
        for (i, &s) in audio[skip..].iter().enumerate() {
            self.samples[offset + i] = s;
        }
        true
    }

    /// The samples up to `until` (exclusive) and forgets them; silence
    /// where nothing arrived.
    fn take(&mut self, until: u64) -> impl Iterator<Item = i16> + '_ {
        let n = until.saturating_sub(self.start) as usize;
        self.start = self.start.max(until);
        let have = n.min(self.samples.len());
        self.samples
            .drain(..have)
            .chain(std::iter::repeat_n(0, n - have))
    }
}

/// Records one call (see the module's documentation).
pub struct CallRecorder {
    layout: Layout,
    /// Payload type → codec, from both sides' SDP.
    codecs: Vec<(u8, Codec)>,
    tracks: [Track; 2],
    /// Samples handed out so far (per channel).
    written: u64,
    stats: RecorderStats,
}

impl CallRecorder {
    /// `codecs` maps the payload types the call's SDP named to their codecs;
    /// packets of any other type are not recorded.
    pub fn new(layout: Layout, codecs: Vec<(u8, Codec)>) -> CallRecorder {
        CallRecorder {
            layout,
            codecs,
            tracks: [Track::new(), Track::new()],
            written: 0,
            stats: RecorderStats::default(),
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn stats(&self) -> RecorderStats {
        self.stats
    }

    /// Samples per channel handed out so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// A packet from `side` that arrived `at_ms` after the recording began.
    pub fn push(&mut self, side: Side, at_ms: u64, packet: &[u8]) {
        self.stats.packets += 1;
        let Ok(p) = Packet::parse(packet) else {
            self.stats.unknown += 1;
            return;
        };
        let pt = p.header.payload_type;
        let Some(codec) = self.codecs.iter().find(|c| c.0 == pt).map(|c| c.1) else {
            self.stats.unknown += 1;
            return;
        };
        let track = &mut self.tracks[side_index(side)];
        let arrival = at_ms * PER_MS;
        let place = match track.anchor {
            Some(a) if a.ssrc == p.header.ssrc && a.clock_rate == codec.clock_rate() => {
                // Signed: reordered packets sit before the anchor's.
                let ticks = p.header.timestamp.wrapping_sub(a.timestamp) as i32 as i64;
                let offset = ticks * i64::from(SAMPLE_RATE) / i64::from(a.clock_rate);
                let place = a.at as i64 + offset;
                let drift = (place - arrival as i64).unsigned_abs();
                (place >= 0 && drift <= RESYNC_AFTER_MS * PER_MS).then_some(place as u64)
            }
            _ => None,
        };
        let place = place.unwrap_or_else(|| {
            if track.anchor.is_some() {
                self.stats.resyncs += 1;
                for (_, d) in &mut track.decoders {
                    d.reset();
                }
            }
            track.anchor = Some(Anchor {
                ssrc: p.header.ssrc,
                timestamp: p.header.timestamp,
                at: arrival,
                clock_rate: codec.clock_rate(),
            });
            arrival
        });
        let decoder = match track.decoders.iter().position(|d| d.0 == pt) {
            Some(i) => &mut track.decoders[i].1,
            None => {
                track.decoders.push((pt, codec.decoder()));
                &mut track.decoders.last_mut().expect("just pushed").1
            }
        };
        let mut audio = std::mem::take(&mut track.scratch);
        audio.clear();
        decoder.decode(p.payload, &mut audio);
        if !track.write(place, &audio) {
            self.stats.late += 1;
        }
        track.scratch = audio;
    }

    /// Decoded audio from `side` (8 kHz; a bridge's 20 ms frames) handed
    /// over `at_ms` after the recording began. Frames come on a clock of
    /// their own: each follows the last one unless it strays more than
    /// [`PCM_RESYNC_MS`] from its arrival, when it is placed by arrival.
    pub fn push_pcm(&mut self, side: Side, at_ms: u64, samples: &[i16]) {
        self.stats.packets += 1;
        let track = &mut self.tracks[side_index(side)];
        let arrival = at_ms * PER_MS;
        let place = match track.pcm_next {
            Some(next) if next.abs_diff(arrival) <= PCM_RESYNC_MS * PER_MS => next,
            Some(_) => {
                self.stats.resyncs += 1;
                arrival
            }
            None => arrival,
        };
        track.pcm_next = Some(place + samples.len() as u64);
        if !track.write(place, samples) {
            self.stats.late += 1;
        }
    }

    /// The audio that is settled `now_ms` after the recording began (older
    /// than [`LATENESS_MS`]), in the layout's sample order; appended to `out`.
    pub fn take_ready(&mut self, now_ms: u64, out: &mut Vec<i16>) {
        let until = now_ms.saturating_sub(LATENESS_MS) * PER_MS;
        self.take_until(until, out);
    }

    /// Everything heard so far (the call is over), appended to `out`.
    pub fn finish(&mut self, out: &mut Vec<i16>) {
        let until = self
            .tracks
            .iter()
            .map(|t| t.start + t.samples.len() as u64)
            .max()
            .unwrap_or(0);
        self.take_until(until, out);
    }

    fn take_until(&mut self, until: u64, out: &mut Vec<i16>) {
        if until <= self.written {
            return;
        }
        let n = (until - self.written) as usize;
        let [a, b] = &mut self.tracks;
        let pairs = a.take(until).zip(b.take(until));
        match self.layout {
            Layout::Mixed => {
                out.reserve(n);
                out.extend(pairs.map(|(x, y)| x.saturating_add(y)));
            }
            Layout::Stereo => {
                out.reserve(2 * n);
                for (x, y) in pairs {
                    out.push(x);
                    out.push(y);
                }
            }
        }
        self.written = until;
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711;

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn alaw(level: i16) -> Vec<u8> {
        vec![g711::alaw_encode(level); 160]
    }

    fn recorder(layout: Layout) -> CallRecorder {
        CallRecorder::new(layout, vec![(8, Codec::Pcma), (0, Codec::Pcmu)])
    }

    #[test]
    fn stereo_keeps_each_direction_in_its_channel_at_its_time() {
        let mut r = recorder(Layout::Stereo);
        // A talks from 0 ms, B from 40 ms, 20 ms packets each.
        for i in 0..5u16 {
            r.push(
                Side::A,
                u64::from(i) * 20,
                &packet(8, i, 1000 + u32::from(i) * 160, 1, &alaw(1000)),
            );
        }
        for i in 0..3u16 {
            r.push(
                Side::B,
                40 + u64::from(i) * 20,
                &packet(8, i, 7 + u32::from(i) * 160, 2, &alaw(-2000)),
            );
        }
        let mut out = Vec::new();
        r.finish(&mut out);
        assert_eq!(out.len(), 2 * 800);
        let left: Vec<i16> = out.iter().step_by(2).copied().collect();
        let right: Vec<i16> = out.iter().skip(1).step_by(2).copied().collect();
        let a = g711::alaw_decode(g711::alaw_encode(1000));
        let b = g711::alaw_decode(g711::alaw_encode(-2000));
        assert!(left.iter().all(|&s| s == a));
        assert!(right[..320].iter().all(|&s| s == 0));
        assert!(right[320..800].iter().all(|&s| s == b));
    }

    #[test]
    fn mixed_adds_the_directions_and_lost_packets_leave_silence() {
        let mut r = recorder(Layout::Mixed);
        // Packet 1 of A is lost; B arrives reordered and jittered.
        r.push(Side::A, 0, &packet(8, 0, 0, 1, &alaw(1000)));
        r.push(Side::A, 40, &packet(8, 2, 320, 1, &alaw(1000)));
        r.push(
            Side::B,
            3,
            &packet(0, 0, 0, 2, &[g711::ulaw_encode(500); 160]),
        );
        r.push(
            Side::B,
            45,
            &packet(0, 2, 320, 2, &[g711::ulaw_encode(500); 160]),
        );
        r.push(
            Side::B,
            46,
            &packet(0, 1, 160, 2, &[g711::ulaw_encode(500); 160]),
        );
        let mut out = Vec::new();
        r.finish(&mut out);
        let a = g711::alaw_decode(g711::alaw_encode(1000));
        let b = g711::ulaw_decode(g711::ulaw_encode(500));
        // B is anchored 3 ms (24 samples) late.
        assert_eq!(out[0], a);
        assert_eq!(out[30], a + b);
        assert_eq!(out[200], b, "A's lost packet is silence, B is there");
        assert_eq!(out[340], a + b);
        assert_eq!(out.len(), 24 + 480);
    }

    #[test]
    fn audio_is_handed_out_once_settled_and_late_packets_are_counted() {
        let mut r = recorder(Layout::Mixed);
        for i in 0..50u16 {
            r.push(
                Side::A,
                u64::from(i) * 20,
                &packet(8, i, u32::from(i) * 160, 9, &alaw(100)),
            );
        }
        let mut out = Vec::new();
        r.take_ready(1000, &mut out);
        assert_eq!(out.len(), 700 * 8, "what is older than the lateness window");
        r.take_ready(1000, &mut out);
        assert_eq!(out.len(), 700 * 8, "nothing twice");
        // A packet for 100 ms arrives now: its place is gone.
        r.push(Side::A, 1000, &packet(8, 5, 5 * 160, 9, &alaw(100)));
        assert_eq!(r.stats().late, 1);
        r.finish(&mut out);
        assert_eq!(out.len(), 1000 * 8);
        assert_eq!(r.written(), 8000);
    }

    #[test]
    fn a_new_source_or_a_wild_timestamp_re_anchors_on_arrival() {
        let mut r = recorder(Layout::Mixed);
        r.push(Side::A, 0, &packet(8, 0, 0, 1, &alaw(100)));
        // Same SSRC, timestamp an hour ahead: placed by arrival instead.
        r.push(Side::A, 20, &packet(8, 1, 8000 * 3600, 1, &alaw(100)));
        // Another SSRC at 100 ms.
        r.push(Side::A, 100, &packet(8, 0, 55, 2, &alaw(100)));
        assert_eq!(r.stats().resyncs, 2);
        let mut out = Vec::new();
        r.finish(&mut out);
        assert_eq!(out.len(), 120 * 8);
        assert!(out[160..320].iter().all(|&s| s != 0));
        assert!(out[320..800].iter().all(|&s| s == 0));
    }

    #[test]
    fn garbage_and_unknown_payload_types_are_counted_not_recorded() {
        let mut r = recorder(Layout::Stereo);
        r.push(Side::A, 0, b"not rtp");
        r.push(Side::B, 0, &packet(101, 0, 0, 1, &[1, 0x80, 0, 160]));
        r.push(Side::B, 0, &[]);
        assert_eq!(r.stats().unknown, 3);
        let mut out = Vec::new();
        r.finish(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn pcm_frames_follow_each_other_and_re_anchor_after_a_gap() {
        let mut r = recorder(Layout::Stereo);
        // Ticks 2 ms late each: still back to back.
        for i in 0..5u64 {
            r.push_pcm(Side::A, i * 22, &[100; 160]);
        }
        r.push_pcm(Side::B, 10, &[-5; 160]);
        // A second of nothing, then A again: placed by arrival.
        r.push_pcm(Side::A, 1200, &[200; 160]);
        assert_eq!(r.stats().resyncs, 1);
        let mut out = Vec::new();
        r.finish(&mut out);
        let left: Vec<i16> = out.iter().step_by(2).copied().collect();
        let right: Vec<i16> = out.iter().skip(1).step_by(2).copied().collect();
        assert!(left[..800].iter().all(|&s| s == 100));
        assert!(left[800..9600].iter().all(|&s| s == 0));
        assert!(left[9600..9760].iter().all(|&s| s == 200));
        assert!(right[80..240].iter().all(|&s| s == -5));
        assert_eq!(left.len(), 9760);
    }

    #[test]
    fn opus_is_decoded_to_the_recording_rate() {
        let mut enc = Codec::OPUS.encoder();
        let mut r = CallRecorder::new(Layout::Mixed, vec![(111, Codec::OPUS)]);
        let tone = crate::tone::sine(440.0, 8000, std::time::Duration::from_secs(1));
        for (i, frame) in tone.chunks(160).enumerate() {
            let mut payload = Vec::new();
            enc.encode(frame, &mut payload).unwrap();
            r.push(
                Side::A,
                i as u64 * 20,
                &packet(111, i as u16, i as u32 * 960, 4, &payload),
            );
        }
        let mut out = Vec::new();
        r.finish(&mut out);
        assert_eq!(out.len(), 8000);
        let energy: f64 = out[4000..]
            .iter()
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            / 4000.0;
        assert!(energy.sqrt() > 1000.0, "rms {}", energy.sqrt());
    }
}
